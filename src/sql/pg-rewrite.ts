// Makes a PostgreSQL write deterministic: the time, random and uuid functions it calls become
// literals fixed by the leader, spliced into the original text at the parse tree's locations
// (everything else stays byte for byte as the client wrote it), column defaults that call them
// are written out, and what cannot be made deterministic is refused with SQLSTATE 0A000.
// See DESIGN.md "PostgreSQL".
import { classifyPg, type PgRefusal, type PgStatement } from './pg-classify.js';
import type { TextOffsets } from './pg-parse.js';
import type { PgTableDefaults, PgVolatileDefault } from './pg-defaults.js';
import { closingBracket, lexPg, skipTrivia, tokenAt } from './pg-lex.js';
import { type Fields, funcName, constText, defOption, rangeVarName, unwrap } from './pg-tree.js';
import { FRESH_FUNCTIONS, NEVER_FUNCTIONS, TIME_FUNCTIONS, TIME_KEYWORDS } from './pg-volatile.js';
import { insertDefaults, selectMany, updateDefault } from './pg-rewrite-insert.js';
import { bodyCalls, routineBody } from './pg-bodies.js';

export interface PgWriteContext {
  /** transaction start, for now(), current_timestamp, ...: timestamptz text with an explicit
   * offset, e.g. '2026-11-24 01:02:03.456789+00' (pgTimestamp() makes one) */
  transactionTimestamp: string;
  /** statement start, for statement_timestamp() */
  statementTimestamp: string;
  /** clock_timestamp(), timeofday(); default statementTimestamp */
  clockTimestamp?: string;
  /** a value in [0, 1) for each random() */
  random: () => number;
  /** a version-4 uuid for each gen_random_uuid() / uuid_generate_v4() */
  uuid: () => string;
  /** the written tables' columns (key: PgStatement.tables name), for volatile defaults */
  tables?: ReadonlyMap<string, PgTableDefaults>;
  /** values of settings read with current_setting('name') (lower-case names); absent: refused */
  settings?: ReadonlyMap<string, string | null>;
}

export interface PgEdit {
  start: number;
  end: number;
  text: string;
}

export type PgRewriteResult =
  | { ok: true; sql: string; changed: boolean; edits: PgEdit[] }
  | { ok: false; refusal: PgRefusal };

/** Timestamptz text with microseconds in UTC from microseconds since the Unix epoch. */
export function pgTimestamp(epochMicros: bigint): string {
  const ms = Number(epochMicros / 1000n);
  const us = Number(((epochMicros % 1000000n) + 1000000n) % 1000000n);
  const iso = new Date(ms).toISOString(); // 2026-11-24T01:02:03.456Z
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)}.${String(us).padStart(6, '0')}+00`;
}

const TIMESTAMP_RE = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,6})?[+-]\d\d(:\d\d)?$/;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Apply non-overlapping edits to text (edits in any order). */
export function splice(text: string, edits: readonly PgEdit[]): string {
  const sorted = [...edits].sort((a, b) => a.start - b.start);
  let out = '';
  let at = 0;
  for (const e of sorted) {
    if (e.start < at || e.end < e.start || e.end > text.length) throw new Error(`overlapping or invalid edit ${e.start}-${e.end}`);
    out += text.slice(at, e.start) + e.text;
    at = e.end;
  }
  return out + text.slice(at);
}

/** Rewrite every statement of a text (classifying it first); the result is the whole text. */
export function rewritePgWrite(sql: string, ctx: PgWriteContext): PgRewriteResult {
  const stmts = classifyPg(sql);
  const edits: PgEdit[] = [];
  for (const st of stmts) {
    if (st.kind === 'invalid') return { ok: false, refusal: { sqlstate: st.error!.sqlstate, message: st.error!.message } };
    const r = statementEdits(st, ctx);
    if (!Array.isArray(r)) return { ok: false, refusal: r };
    edits.push(...r);
  }
  return { ok: true, sql: splice(sql, edits), changed: edits.length > 0, edits };
}

/** Rewrite one classified statement; the result is the statement's own text (st.text). */
export function rewritePgStatement(st: PgStatement, ctx: PgWriteContext): PgRewriteResult {
  const r = statementEdits(st, ctx);
  if (!Array.isArray(r)) return { ok: false, refusal: r };
  const edits = r.map((e) => ({ start: e.start - st.start, end: e.end - st.start, text: e.text }));
  return { ok: true, sql: splice(st.text, edits), changed: edits.length > 0, edits };
}

function statementEdits(st: PgStatement, ctx: PgWriteContext): PgEdit[] | PgRefusal {
  if (st.refuse) return st.refuse;
  if (!st.node || !st.offsets) throw new Error('statement has no parse tree');
  checkContext(ctx);
  // offsets index into the whole input, of which st.text is a slice
  const rw = new Rewriter(st.offsets.text, st.offsets, st.end, ctx);
  try {
    rw.statement(st.node as unknown as Fields);
  } catch (err) {
    // The parser accepted the text, so this is a disagreement of ours with it (a bug), met on a
    // client's statement: refuse that statement rather than stop the process.
    return { sqlstate: 'XX000', message: `Recall could not make this statement deterministic (${(err as Error).message}); please report it` };
  }
  return rw.refusal ?? rw.edits;
}

function checkContext(ctx: PgWriteContext): void {
  for (const ts of [ctx.transactionTimestamp, ctx.statementTimestamp, ctx.clockTimestamp ?? ctx.statementTimestamp]) {
    if (!TIMESTAMP_RE.test(ts)) throw new Error(`bad timestamp in write context: ${ts}`);
  }
}

interface Scope {
  /** evaluated once per row of a scan, not once per statement */
  perRow: boolean;
  /** in RETURNING: the value goes to the client, not into the data */
  returning: boolean;
  /** the statement changes data: row choice and system columns matter */
  dataWrite: boolean;
  /** inside EXISTS (...): which rows a LIMIT picks does not change the answer */
  exists: boolean;
}

const refusal = (message: string): PgRefusal => ({ sqlstate: '0A000', message });

export class Rewriter {
  readonly edits: PgEdit[] = [];
  refusal: PgRefusal | undefined;

  constructor(
    readonly text: string,
    readonly offsets: TextOffsets,
    /** end of the statement in text: scans for a node's end never pass it */
    readonly end: number,
    readonly ctx: PgWriteContext,
  ) {}

  refuse(message: string): void {
    this.refusal ??= refusal(message);
  }

  edit(start: number, end: number, text: string): void {
    this.edits.push({ start, end, text });
  }

  /** Index in text of a parse-tree location (bytes). */
  at(location: unknown): number {
    if (typeof location !== 'number' || location < 0) throw new Error('node without a location');
    return this.offsets.index(location);
  }

  statement(node: Fields): void {
    const u = unwrap(node);
    if (!u) return;
    const [type, f] = u;
    const once: Scope = { perRow: false, returning: false, dataWrite: true, exists: false };
    switch (type) {
      case 'SelectStmt':
      case 'InsertStmt':
      case 'UpdateStmt':
      case 'DeleteStmt':
      case 'MergeStmt':
        return this.visit(node, { ...once, dataWrite: type !== 'SelectStmt' || !!f.intoClause || hasWritingCte(f) });
      case 'CreateTableAsStmt':
        if (f.objtype === 'OBJECT_MATVIEW') return this.refuseIfAny(f.query, 'CREATE MATERIALIZED VIEW', 'its query runs again at every REFRESH');
        return this.visit(f.query, once);
      case 'ExplainStmt':
        if (defOption(f.options, 'analyze')) this.statement(f.query as Fields); // ANALYZE runs it
        return;
      case 'CallStmt':
        return this.visit((f.funccall as Fields | undefined)?.args, once);
      case 'DeclareCursorStmt':
        return this.statement(f.query as Fields);
      case 'CopyStmt':
        if (f.query) this.statement(f.query as Fields);
        if (f.is_from) this.copyDefaults(f);
        return;
      case 'PrepareStmt':
        return this.refuseIfAny(f.query, 'PREPARE', 'a literal fixed at PREPARE would repeat in every EXECUTE; pass the values as parameters, listing the columns whose defaults call them (PREPARE p (int, timestamptz) AS INSERT INTO t (a, created) VALUES ($1, $2); EXECUTE p (1, now()))');
      case 'ExecuteStmt':
        return this.visit(f.params, once); // the parameters are evaluated now
      case 'AlterTableStmt':
        return this.alterTable(f);
      case 'CreateFunctionStmt':
      case 'DoStmt':
        return this.routine(type, f);
      default:
        return; // other DDL stores expressions (defaults, bodies, views) instead of evaluating them
    }
  }

  /** Refuse when the tree calls anything Recall would rewrite or refuse in a write. */
  private refuseIfAny(value: unknown, what: string, why: string): void {
    const probe = new Rewriter(this.text, this.offsets, this.end, this.ctx);
    probe.visit(value, { perRow: false, returning: false, dataWrite: true, exists: false });
    const found = probe.edits.length > 0 || probe.refusal;
    if (found) {
      this.refuse(`${what} of a statement calling time, random or uuid functions (in its text or through column defaults) is not supported through Recall: ${why}`);
    }
  }

  visit(value: unknown, s: Scope): void {
    if (this.refusal || !value || typeof value !== 'object') return;
    if (Array.isArray(value)) {
      for (const v of value) this.visit(v, s);
      return;
    }
    const u = unwrap(value);
    if (!u) {
      for (const k in value as Fields) this.visit((value as Fields)[k], s);
      return;
    }
    const [type, f] = u;
    switch (type) {
      case 'SelectStmt':
        return this.select(f, s);
      case 'InsertStmt':
        return this.insert(f, s);
      case 'UpdateStmt':
        return this.update(f, s);
      case 'DeleteStmt':
        this.visit(f.withClause, s);
        this.visit([f.usingClause, f.whereClause], { ...s, perRow: true });
        return this.visit(f.returningClause ?? f.returningList, { ...s, returning: true });
      case 'MergeStmt':
        this.mergeDefaults(f);
        this.visit(f.withClause, s);
        this.visit([f.sourceRelation, f.joinCondition, f.mergeWhenClauses], { ...s, perRow: true });
        return this.visit(f.returningClause ?? f.returningList, { ...s, returning: true });
      case 'SubLink': {
        const exists = f.subLinkType === 'EXISTS_SUBLINK';
        this.visit(f.testexpr, s);
        return this.visit(f.subselect, { ...s, exists: s.exists || exists });
      }
      case 'RangeFunction':
        return this.rangeFunction(f, s);
      case 'FuncCall':
        return this.funcCall(f, s);
      case 'SQLValueFunction':
        return this.sqlValueFunction(f);
      case 'ColumnRef':
        return this.columnRef(f, s);
      case 'RangeTableSample':
        if (s.dataWrite) this.refuse('TABLESAMPLE in a write picks rows at random or by physical position, which differ between replicas; choose the rows with a WHERE condition');
        return this.visit(f, s);
      default:
        for (const k in f) this.visit(f[k], s);
    }
  }

  private select(f: Fields, s: Scope): void {
    this.visit(f.withClause, s);
    if (f.op && f.op !== 'SETOP_NONE') {
      this.select((f.larg ?? {}) as Fields, s);
      this.select((f.rarg ?? {}) as Fields, s);
      this.visit([f.sortClause, f.limitCount, f.limitOffset], { ...s, perRow: true });
      return;
    }
    if (f.valuesLists) {
      // each row of a VALUES list is written out in the text: a call in it is evaluated once
      this.visit(f.valuesLists, s);
      return;
    }
    const many = selectMany(f);
    const inner = { ...s, perRow: s.perRow || many };
    if (s.dataWrite && !s.exists && (f.limitCount || f.limitOffset) && !f.sortClause && many) {
      this.refuse('LIMIT/OFFSET without ORDER BY in a write picks rows in physical order, which differs between replicas; add an ORDER BY on a unique key');
    }
    if (s.dataWrite && !s.exists && Array.isArray(f.distinctClause) && unwrap(f.distinctClause[0]) && !f.sortClause) {
      this.refuse('DISTINCT ON without ORDER BY in a write keeps an arbitrary row of each group, which differs between replicas; add an ORDER BY');
    }
    this.visit([f.targetList, f.fromClause, f.whereClause, f.groupClause, f.havingClause, f.windowClause, f.sortClause, f.limitCount, f.limitOffset], inner);
  }

  private insert(f: Fields, s: Scope): void {
    this.visit(f.withClause, s);
    this.visit(f.selectStmt, s);
    const sel = unwrap(f.selectStmt)?.[1];
    const rows = sel && Array.isArray(sel.valuesLists) ? sel.valuesLists.length : sel ? 2 : 1; // DEFAULT VALUES: one row
    const conflict = f.onConflictClause as Fields | undefined;
    const conflictPerRow = s.perRow || rows > 1;
    if (conflict) this.visit([conflict.targetList, conflict.whereClause], { ...s, perRow: conflictPerRow });
    this.visit(f.returningClause ?? f.returningList, { ...s, returning: true });
    const table = rangeVarName(f.relation as Fields);
    const defaults = table ? this.ctx.tables?.get(table) : undefined;
    if (defaults && defaults.volatile.size > 0) {
      insertDefaults(this, f, defaults, s);
      if (conflict) updateDefault(this, conflict.targetList, defaults, conflictPerRow);
    }
  }

  private update(f: Fields, s: Scope): void {
    this.visit(f.withClause, s);
    this.visit([f.targetList, f.fromClause, f.whereClause], { ...s, perRow: true });
    this.visit(f.returningClause ?? f.returningList, { ...s, returning: true });
    const table = rangeVarName(f.relation as Fields);
    const defaults = table ? this.ctx.tables?.get(table) : undefined;
    if (defaults && defaults.volatile.size > 0) updateDefault(this, f.targetList, defaults, true);
  }

  private mergeDefaults(f: Fields): void {
    const table = rangeVarName(f.relation as Fields);
    const defaults = table ? this.ctx.tables?.get(table) : undefined;
    if (!defaults || defaults.volatile.size === 0) return;
    for (const w of (f.mergeWhenClauses as unknown[] | undefined) ?? []) {
      const c = unwrap(w)?.[1];
      if (!c) continue;
      if (c.commandType === 'CMD_UPDATE') updateDefault(this, c.targetList, defaults, true);
      if (c.commandType === 'CMD_INSERT') {
        const given = new Set(((c.targetList as unknown[] | undefined) ?? []).map((t) => String(unwrap(t)?.[1].name ?? '')));
        const positional = !c.targetList;
        const values = (c.values as unknown[] | undefined) ?? [];
        for (const [col] of defaults.volatile) {
          const idx = positional ? defaults.columns.indexOf(col) : -1;
          const omitted = positional ? idx >= values.length : !given.has(col);
          const usesDefault = positional && idx < values.length && unwrap(values[idx])?.[0] === 'SetToDefault';
          if (omitted || usesDefault || (!positional && unwrap(values[[...given].indexOf(col)])?.[0] === 'SetToDefault')) {
            this.refuse(`MERGE ... INSERT leaves column ${col} to its DEFAULT ${defaults.volatile.get(col)!.expr}, which every replica would evaluate itself; give the column a value in the INSERT (Recall rewrites time and random functions written in the statement)`);
          }
        }
      }
    }
  }

  private copyDefaults(f: Fields): void {
    const table = rangeVarName(f.relation as Fields);
    const defaults = table ? this.ctx.tables?.get(table) : undefined;
    if (!defaults) return;
    const listed = Array.isArray(f.attlist) ? new Set(f.attlist.map((a) => String(unwrap(a)?.[1].sval ?? ''))) : undefined;
    for (const [col, d] of defaults.volatile) {
      if (listed && !listed.has(col)) {
        this.refuse(`COPY FROM leaves column ${col} to its DEFAULT ${d.expr}, which every replica would evaluate itself; list the column in the COPY and send its values`);
      }
    }
  }

  private alterTable(f: Fields): void {
    for (const c of (f.cmds as unknown[] | undefined) ?? []) {
      const cmd = unwrap(c)?.[1];
      const def = cmd ? unwrap(cmd.def) : undefined;
      if (!cmd || !def || def[0] !== 'ColumnDef') continue;
      if (cmd.subtype === 'AT_AddColumn') {
        const probe = new Rewriter(this.text, this.offsets, this.end, this.ctx);
        probe.visit(def[1].constraints, { perRow: true, returning: false, dataWrite: true, exists: false });
        if (probe.edits.length > 0 || probe.refusal) {
          this.refuse(`ADD COLUMN ${String(def[1].colname)} with a DEFAULT that reads the clock or a random source fills the existing rows with each replica's own values; add the column without the default, set the existing rows with an UPDATE, then ALTER COLUMN ... SET DEFAULT`);
        }
      } else if (cmd.subtype === 'AT_AlterColumnType') {
        // USING is evaluated for each existing row, now: rewrite it like a write
        this.visit(def[1].raw_default, { perRow: true, returning: false, dataWrite: true, exists: false });
      }
    }
  }

  /** A body that reads the clock or a random source runs on every replica with its own. */
  private routine(type: string, f: Fields): void {
    const { language, body } = routineBody(type === 'DoStmt' ? f.args : f.options);
    const lang = language ?? (type === 'DoStmt' ? 'plpgsql' : 'sql');
    let calls: string[] = [];
    if (f.sql_body) {
      const probe = new Rewriter(this.text, this.offsets, this.end, this.ctx);
      probe.visit(f.sql_body, { perRow: false, returning: false, dataWrite: true, exists: false });
      if (probe.edits.length > 0 || probe.refusal) calls = ['now() or another time, random or uuid function'];
    } else if (body !== undefined && (lang === 'sql' || lang === 'plpgsql')) calls = bodyCalls(body);
    if (calls.length === 0) return;
    const list = calls.map((c) => (/^[a-z_]+$/.test(c) && !c.startsWith('current_') && !c.startsWith('local') ? `${c}()` : c)).join(', ');
    this.refuse(type === 'DoStmt'
      ? `the DO block calls ${list}, and every replica would run it with its own clock or random source; run the statements themselves (Recall rewrites these calls in INSERT, UPDATE, DELETE and SELECT) or pass the values in`
      : `the function body calls ${list}, which every replica would evaluate itself each time the function runs in a replicated write (a trigger, a called function); pass the value as an argument, or set the column in the statement itself (UPDATE ... SET updated_at = now() and INSERT ... VALUES (now()) are rewritten; a DEFAULT now() is written out only into INSERTs the client sends, not into INSERTs inside a body)`);
  }

  private rangeFunction(f: Fields, s: Scope): void {
    for (const item of (f.functions as unknown[] | undefined) ?? []) {
      const list = unwrap(item)?.[1].items as unknown[] | undefined;
      const call = list ? unwrap(list[0]) : undefined;
      if (call?.[0] === 'FuncCall') {
        const { schema, name } = funcName(call[1]);
        if ((!schema || schema === 'pg_catalog') && (TIME_FUNCTIONS.has(name) || FRESH_FUNCTIONS.has(name))) {
          this.refuse(`${name}() as a table in FROM cannot be replaced by a literal; select it in the target list instead (SELECT ${name}() AS ${name})`);
          return;
        }
      }
    }
    for (const k in f) this.visit(f[k], { ...s, perRow: true });
  }

  private funcCall(f: Fields, s: Scope): void {
    const { schema, name } = funcName(f);
    const args = (f.args as unknown[] | undefined) ?? [];
    const builtin = !schema || schema === 'pg_catalog';
    if (builtin && args.length === 0 && !f.agg_star && !f.over) {
      const time = TIME_FUNCTIONS.get(name);
      if (time) return this.edit(this.at(f.location), this.callEnd(this.at(f.location)), timeLiteral(this.ctx, time.clock, time.casts, undefined, time.text));
      const fresh = FRESH_FUNCTIONS.get(name);
      if (fresh) {
        if (s.returning) return; // goes to the client only
        if (s.perRow) {
          return this.refuse(`${name}() is evaluated once per row here, and a single value fixed by the leader would repeat in every row; generate the values in the client, or write one row per VALUES entry (${name}() in INSERT ... VALUES is rewritten)`);
        }
        return this.edit(this.at(f.location), this.callEnd(this.at(f.location)), freshLiteral(this.ctx, fresh));
      }
    }
    if (builtin && name === 'current_setting' && !s.returning) this.currentSetting(f, args);
    else if (builtin && name === 'random' && args.length > 0 && !s.returning) {
      this.refuse('random(min, max) returns a new value each call and Recall does not rewrite it; generate the value in the client');
    } else if (builtin && NEVER_FUNCTIONS.has(name) && !s.returning) {
      const rule = NEVER_FUNCTIONS.get(name)!;
      return this.refuse(`${name}() cannot be replicated in a write: ${rule.reason}; ${rule.workaround}`);
    }
    for (const k of ['args', 'agg_order', 'agg_filter', 'over']) this.visit(f[k], s);
  }

  private currentSetting(f: Fields, args: unknown[]): void {
    const nameArg = unwrap(args[0]);
    const setting = nameArg?.[0] === 'A_Const' ? constText(nameArg[1]) : undefined;
    const value = setting !== undefined ? this.ctx.settings?.get(setting.toLowerCase()) : undefined;
    if (setting === undefined || value === undefined) {
      this.refuse(`current_setting(${setting === undefined ? '...' : `'${setting}'`}) in a write reads a setting of this session that replicas do not have; read it first and send the value as a literal`);
      return;
    }
    this.edit(this.at(f.location), this.callEnd(this.at(f.location)), value === null ? 'NULL::text' : `${quoteLiteral(value)}::text`);
  }

  private sqlValueFunction(f: Fields): void {
    const rule = TIME_KEYWORDS.get(String(f.op));
    if (!rule) return;
    const start = this.at(f.location);
    const word = tokenAt(this.text, start, this.end);
    if (!word || word.kind !== 'word') throw new Error(`no keyword at the location of ${String(f.op)}`);
    let end = word.end;
    if (rule.precision) {
      const open = skipTrivia(this.text, end, this.end);
      if (this.text[open] !== '(') throw new Error(`no precision after ${word.value}`);
      end = this.callEnd(open);
    }
    const precision = rule.precision ? Number(f.typmod ?? 0) : undefined;
    this.edit(start, end, timeLiteral(this.ctx, 'transaction', rule.casts, precision));
  }

  private columnRef(f: Fields, s: Scope): void {
    if (!s.dataWrite || s.returning) return;
    const fields = (f.fields as unknown[] | undefined) ?? [];
    const last = unwrap(fields.at(-1));
    const col = last?.[0] === 'String' ? String(last[1].sval) : '';
    if (['ctid', 'xmin', 'xmax', 'cmin', 'cmax'].includes(col)) {
      this.refuse(`the system column ${col} in a write names a physical row version or transaction id, which differ between replicas; use a key column`);
    }
  }

  /** Index just past the call starting at i: the name (possibly qualified), then (...) balanced. */
  callEnd(i: number): number {
    let j = i;
    for (;;) {
      const t = tokenAt(this.text, skipTrivia(this.text, j, this.end), this.end);
      if (!t) throw new Error('call without parentheses');
      if (t.kind === 'punct' && t.value === '(') {
        const tokens = lexPg(this.text, t.start, this.end);
        const close = closingBracket(tokens, 0);
        if (close < 0) throw new Error('unbalanced call');
        return tokens[close]!.end;
      }
      j = t.end;
    }
  }

  /** The replacement for one evaluation of a volatile default (its expression, rewritten). */
  defaultValue(col: string, d: PgVolatileDefault, perRow: boolean): string | undefined {
    if (d.never) {
      this.refuse(`column ${col} has DEFAULT ${d.expr}, and ${d.never}() cannot be replicated; give the column a value`);
      return undefined;
    }
    if (d.fresh && perRow) {
      this.refuse(`column ${col} has DEFAULT ${d.expr}, a new value for each row, and here it would be evaluated once per row by every replica; give the column a value (one VALUES row per row, where Recall rewrites ${d.expr})`);
      return undefined;
    }
    const { text, statement, offsets } = d.parsed;
    const inner = new Rewriter(text, offsets, text.length, this.ctx);
    inner.statement(statement.node as unknown as Fields);
    if (inner.refusal) {
      this.refuse(inner.refusal.message);
      return undefined;
    }
    return `(${splice(text, inner.edits).slice('SELECT '.length)})`;
  }
}

function hasWritingCte(f: Fields): boolean {
  return JSON.stringify(f.withClause ?? {}).match(/"(Insert|Update|Delete|Merge)Stmt"/) !== null;
}

function timeLiteral(ctx: PgWriteContext, clock: 'transaction' | 'statement' | 'clock', casts: string[], precision?: number, text?: true): string {
  const ts = clock === 'transaction' ? ctx.transactionTimestamp : clock === 'statement' ? ctx.statementTimestamp : (ctx.clockTimestamp ?? ctx.statementTimestamp);
  const chain = casts.map((c, i) => (i === casts.length - 1 && precision !== undefined ? `${c}(${precision})` : c)).join('::');
  const lit = `'${ts}'::${chain}`;
  // timeofday(): text like 'Tue Nov 24 01:02:03.456789 2026 UTC' in the session's TimeZone
  return text ? `to_char(${lit}, 'Dy Mon DD HH24:MI:SS.US YYYY TZ')` : lit;
}

function freshLiteral(ctx: PgWriteContext, kind: 'random' | 'uuid'): string {
  if (kind === 'random') {
    const v = ctx.random();
    if (!(v >= 0 && v < 1)) throw new Error(`random source gave ${v}, not a value in [0, 1)`);
    return `'${String(v)}'::float8`;
  }
  const u = ctx.uuid();
  if (!UUID_RE.test(u)) throw new Error(`uuid source gave ${u}`);
  return `'${u.toLowerCase()}'::uuid`;
}

export function quoteLiteral(s: string): string {
  return s.includes('\\') ? `E'${s.replace(/\\/g, '\\\\').replace(/'/g, "''")}'` : `'${s.replace(/'/g, "''")}'`;
}
