// Volatile column defaults written out: INSERT ... VALUES gets the omitted columns (and the
// DEFAULT keywords) as the default expression with its time/random/uuid calls rewritten to
// literals; UPDATE ... SET col = DEFAULT likewise. Where that cannot be done faithfully (INSERT
// ... SELECT, a fresh value per row) the statement is refused with a way round.
import type { PgTableDefaults } from './pg-defaults.js';
import { closingBracket, lexPg, type PgToken } from './pg-lex.js';
import { type Fields, funcName, quoteIdent, unwrap } from './pg-tree.js';
import { PG_SET_RETURNING_FUNCTIONS, PG_STABLE_FUNCTIONS, PG_VOLATILE_FUNCTIONS } from './pg-builtins.js';
import type { Rewriter } from './pg-rewrite.js';

interface ScopeLike {
  perRow: boolean;
}

export function insertDefaults(rw: Rewriter, f: Fields, defaults: PgTableDefaults, s: ScopeLike): void {
  const given = Array.isArray(f.cols) ? f.cols.map((c) => String(unwrap(c)?.[1].name ?? '')) : undefined;
  const sel = unwrap(f.selectStmt)?.[1];
  const values = sel && Array.isArray(sel.valuesLists) ? sel.valuesLists.map((r) => (unwrap(r)?.[1].items as unknown[] | undefined) ?? []) : undefined;
  const rowLength = values?.[0]?.length ?? 0;
  const positionOf = (col: string): number => (given ? given.indexOf(col) : defaults.columns.indexOf(col) < rowLength ? defaults.columns.indexOf(col) : -1);

  if (sel && !values) return selectDefaults(rw, f, sel, given, defaults, s);

  // DEFAULT keywords inside VALUES rows
  for (const row of values ?? []) {
    for (const [col, d] of defaults.volatile) {
      const k = positionOf(col);
      const item = k >= 0 ? unwrap(row[k]) : undefined;
      if (item?.[0] !== 'SetToDefault') continue;
      const value = rw.defaultValue(col, d, s.perRow);
      if (value === undefined) return;
      const at = rw.at(item[1].location);
      rw.edit(at, at + 'DEFAULT'.length, value);
    }
  }

  const omitted = [...defaults.volatile.keys()].filter((col) => positionOf(col) < 0);
  if (omitted.length === 0) return;
  const tokens = lexPg(rw.text, rw.at((f.relation as Fields).location), rw.end);
  let k = skipName(tokens, 0);
  if (word(tokens[k], 'as')) k += 2;
  const fail = () => rw.refuse(`cannot write the DEFAULT of ${omitted.join(', ')} into this form of INSERT; list the columns and give their values`);

  // the column list: extend it, or write one (positional VALUES fill the first columns)
  const listed = given ?? defaults.columns.slice(0, rowLength);
  let afterList = k;
  if (given) {
    if (!punct(tokens[k], '(')) return fail();
    const close = closingBracket(tokens, k);
    if (close < 0) return fail();
    rw.edit(tokens[close]!.start, tokens[close]!.start, omitted.map((c) => `, ${quoteIdent(c)}`).join(''));
    afterList = close + 1;
  }
  const columnList = `(${[...listed, ...omitted].map(quoteIdent).join(', ')})`;

  if (!sel) {
    // DEFAULT VALUES: the whole row is defaults
    const at = findWords(tokens, afterList, 'default', 'values');
    if (at < 0) return fail();
    const vals: string[] = [];
    for (const col of omitted) {
      const v = rw.defaultValue(col, defaults.volatile.get(col)!, s.perRow);
      if (v === undefined) return;
      vals.push(v);
    }
    rw.edit(tokens[at]!.start, tokens[at + 1]!.end, `${columnList} VALUES (${vals.join(', ')})`);
    return;
  }
  if (!given) rw.edit(tokens[k - 1]!.end, tokens[k - 1]!.end, ` ${columnList}`);

  // append the values to each VALUES row
  let v = findWords(tokens, afterList, 'values');
  if (v < 0) return fail();
  v++;
  for (let r = 0; r < values!.length; r++) {
    if (!punct(tokens[v], '(')) return fail();
    const close = closingBracket(tokens, v);
    if (close < 0) return fail();
    const extra: string[] = [];
    for (const col of omitted) {
      const val = rw.defaultValue(col, defaults.volatile.get(col)!, s.perRow);
      if (val === undefined) return;
      extra.push(`, ${val}`);
    }
    rw.edit(tokens[close]!.start, tokens[close]!.start, extra.join(''));
    v = close + 1;
    if (r < values!.length - 1) {
      if (!punct(tokens[v], ',')) return fail();
      v++;
    }
  }
}

/** UPDATE ... SET col = DEFAULT (also in MERGE and ON CONFLICT DO UPDATE). */
export function updateDefault(rw: Rewriter, targetList: unknown, defaults: PgTableDefaults, perRow: boolean): void {
  for (const t of (targetList as unknown[] | undefined) ?? []) {
    const target = unwrap(t)?.[1];
    if (!target) continue;
    const col = String(target.name ?? '');
    const d = defaults.volatile.get(col);
    if (!d) continue;
    let val = unwrap(target.val);
    if (val?.[0] === 'MultiAssignRef') {
      // SET (a, b) = (DEFAULT, 1): this target is column colno of the row
      const src = unwrap(val[1].source);
      const args = src?.[0] === 'RowExpr' ? (src[1].args as unknown[] | undefined) : undefined;
      val = args ? unwrap(args[Number(val[1].colno ?? 1) - 1]) : undefined;
    }
    if (val?.[0] !== 'SetToDefault') continue;
    const value = rw.defaultValue(col, d, perRow);
    if (value === undefined) return;
    const at = rw.at(val[1].location);
    rw.edit(at, at + 'DEFAULT'.length, value);
  }
}

/** Past a possibly qualified name starting at tokens[k]. */
function skipName(tokens: readonly PgToken[], k: number): number {
  k++;
  while (punct(tokens[k], '.') && tokens[k + 1]) k += 2;
  return k;
}

function word(t: PgToken | undefined, w: string): boolean {
  return t?.kind === 'word' && t.value === w;
}

function punct(t: PgToken | undefined, p: string): boolean {
  return t?.kind === 'punct' && t.value === p;
}

/** Index of the first occurrence of the words in a row, at bracket depth 0, from k; -1 if none. */
function findWords(tokens: readonly PgToken[], k: number, ...words: string[]): number {
  let depth = 0;
  for (let i = k; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (punct(t, '(') || punct(t, '[')) depth++;
    else if (punct(t, ')') || punct(t, ']')) depth--;
    else if (depth === 0 && words.every((w, j) => word(tokens[i + j], w))) return i;
  }
  return -1;
}

/** Whether a SELECT makes (or may make) several rows: FROM, grouping, windows, set-returning calls. */
export function selectMany(f: Fields): boolean {
  return (Array.isArray(f.fromClause) && f.fromClause.length > 0) || !!f.groupClause || !!f.havingClause || !!f.windowClause || mayReturnSets(f.targetList);
}

/** Whether a target list may return several rows per input row (a set-returning or user function). */
function mayReturnSets(targetList: unknown): boolean {
  let sets = false;
  const check = (v: unknown): void => {
    if (sets || !v || typeof v !== 'object') return;
    if (Array.isArray(v)) return v.forEach(check);
    const u = unwrap(v);
    if (u?.[0] === 'SubLink') return; // a subquery yields one value
    if (u?.[0] === 'FuncCall') {
      const { schema, name } = funcName(u[1]);
      const builtin = (!schema || schema === 'pg_catalog') && (PG_STABLE_FUNCTIONS.has(name) || PG_VOLATILE_FUNCTIONS.has(name));
      if (!builtin || PG_SET_RETURNING_FUNCTIONS.has(name)) sets = true;
    }
    const f = u ? u[1] : (v as Fields);
    for (const k in f) check(f[k]);
  };
  check(targetList);
  return sets;
}


// Reserved words that end a SELECT's target list at bracket depth 0.
const TARGETS_END: ReadonlySet<string> = new Set([
  'from', 'where', 'group', 'having', 'window', 'order', 'limit', 'offset', 'fetch', 'for', 'union', 'intersect', 'except', 'into', 'on', 'returning',
]);

/**
 * INSERT ... SELECT leaving volatile-default columns out: their values are appended to the
 * column list and to the SELECT's target list (a time default is one value for the statement;
 * a fresh one is only right when the SELECT makes one row, which defaultValue checks).
 */
function selectDefaults(rw: Rewriter, f: Fields, sel: Fields, given: string[] | undefined, defaults: PgTableDefaults, s: ScopeLike): void {
  const targets = Array.isArray(sel.targetList) ? sel.targetList : [];
  const star = JSON.stringify(targets).includes('"A_Star"');
  const positional = !given;
  const omitted = [...defaults.volatile.keys()].filter((col) => (given ? !given.includes(col) : defaults.columns.indexOf(col) >= targets.length));
  if (omitted.length === 0) return;
  const why = (what: string) => rw.refuse(`INSERT ... SELECT leaves column ${omitted[0]} to its DEFAULT ${defaults.volatile.get(omitted[0]!)!.expr}, which every replica would evaluate itself, and ${what}; list the column and select its value (INSERT INTO t (..., ${quoteIdent(omitted[0]!)}) SELECT ..., ${defaults.volatile.get(omitted[0]!)!.expr} ...: Recall rewrites the calls written in the statement)`);
  if ((sel.op && sel.op !== 'SETOP_NONE') || targets.length === 0) return why('Recall cannot add it to a UNION/INTERSECT/EXCEPT');
  if (positional && star) return why('with SELECT * and no column list the columns it fills are unknown');
  const first = unwrap(targets[0])?.[1];
  const tokens = lexPg(rw.text, rw.at(first?.location), rw.end);
  let end = tokens.length;
  let depth = 0;
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (punct(t, '(') || punct(t, '[')) depth++;
    else if (punct(t, ')') || punct(t, ']')) {
      if (--depth < 0) {
        end = i; // INSERT INTO t (SELECT ...): the SELECT's closing parenthesis
        break;
      }
    } else if (depth === 0 && (punct(t, ';') || (t.kind === 'word' && TARGETS_END.has(t.value) && !(t.value === 'from' && word(tokens[i - 1], 'distinct'))))) {
      end = i;
      break;
    }
  }
  if (end === 0) return why('its target list could not be found');
  const perRow = s.perRow || selectMany(sel);
  const vals: string[] = [];
  for (const col of omitted) {
    const v = rw.defaultValue(col, defaults.volatile.get(col)!, perRow);
    if (v === undefined) return;
    vals.push(`, ${v}`);
  }
  // the column list: extend the one given, or write one
  const rel = lexPg(rw.text, rw.at((f.relation as Fields).location), rw.end);
  let k = skipName(rel, 0);
  if (word(rel[k], 'as')) k += 2;
  if (given) {
    if (!punct(rel[k], '(')) return why('its column list could not be found');
    const close = closingBracket(rel, k);
    if (close < 0) return why('its column list could not be found');
    rw.edit(rel[close]!.start, rel[close]!.start, omitted.map((c) => `, ${quoteIdent(c)}`).join(''));
  } else {
    const listed = defaults.columns.slice(0, targets.length);
    rw.edit(rel[k - 1]!.end, rel[k - 1]!.end, ` (${[...listed, ...omitted].map(quoteIdent).join(', ')})`);
  }
  rw.edit(tokens[end - 1]!.end, tokens[end - 1]!.end, vals.join(''));
}
