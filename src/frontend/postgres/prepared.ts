// SQL-level PREPARE / EXECUTE through the router (DESIGN.md "Router").
//
// PREPARE, DEALLOCATE and DISCARD ALL run on the client's own local session only, never on the
// lane: reads by EXECUTE run there, and the lane's and appliers' connections are shared by many
// sessions (a PREPARE there would collide with another session's name, and replicas must not
// depend on one). An EXECUTE that writes is replicated as the prepared statement's text with the
// arguments put in place of its parameters, `(arg)::type` with the types postgres inferred at
// PREPARE, so the lane rewrites time, random and volatile defaults in it like in any write, and
// replicas run that text alone.
//
// Which text an EXECUTE runs is read from the local session itself (pg_prepared_statements), not
// from what the router saw go by: a PREPARE can fail (an existing name, a syntax error, an aborted
// transaction), and so can a DEALLOCATE. The tracker only lets an EXECUTE be relayed without that
// look-up when it is certain the name holds a read or nothing at all.
import type { PgKind, PgStatement } from '../../sql/pg-classify.js';
import { closingBracket, lexPg, type PgToken } from '../../sql/pg-lex.js';
import { literal } from '../../replication/pg/conn.js';

interface Tracked {
  kind: PgKind | undefined;
  /** only one PREPARE (or Parse) of this name was seen since it was last dropped: postgres holds
   * that statement or, when it failed, nothing */
  certain: boolean;
}

const WRITE_KINDS = new Set<PgKind | undefined>(['write', 'ddl']);

/** The SQL-level prepared statements of one session, as far as routing needs them. */
export class SqlPreparedTracker {
  private readonly names = new Map<string, Tracked>();

  /** A statement of the session's text went by (PREPARE, DEALLOCATE, DISCARD ALL). */
  note(st: PgStatement): void {
    const p = st.prepared;
    if (p?.action === 'prepare' && p.name) {
      // a second PREPARE of a name fails unless the first one did: which text holds is not known
      const had = this.names.get(p.name);
      this.names.set(p.name, { kind: p.bodyKind, certain: !had });
    } else if (p?.action === 'deallocate') {
      // forgotten even if the DEALLOCATE fails: unknown names are looked up, never guessed
      if (p.name) this.names.delete(p.name);
      else this.names.clear();
    } else if (st.command === 'DISCARD') this.names.clear();
  }

  /** A protocol-level Parse of a named statement: the same namespace as PREPARE. */
  parsed(name: string): void {
    const had = this.names.get(name);
    if (had) had.certain = false;
  }

  /** A protocol-level Close of a statement (it drops a PREPAREd one of that name too). */
  closed(name: string): void {
    this.names.delete(name);
  }

  /** decide: an EXECUTE of `name` can be relayed as it is (certainly a read, or nothing to run). */
  relayable(name: string): boolean {
    const t = this.names.get(name);
    return !!t && t.certain && !WRITE_KINDS.has(t.kind);
  }

  /** decide: an EXECUTE of `name` certainly writes (it must not run on a failed local transaction either). */
  writes(name: string): boolean {
    return WRITE_KINDS.has(this.names.get(name)?.kind);
  }
}

/** PREPARE or DEALLOCATE: runs on the local session only. */
export function isPreparedStatementCommand(st: PgStatement | null): boolean {
  return st?.prepared?.action === 'prepare' || st?.prepared?.action === 'deallocate';
}

/**
 * EXPLAIN ANALYZE EXECUTE name: it runs the prepared statement, here. The name, or null when the
 * text is not that. Read from the tokens (cached classifications have no tree): any EXPLAIN naming
 * ANALYZE and EXECUTE counts, which at worst looks up a name that does not exist.
 */
export function explainedExecute(st: PgStatement | null): string | null {
  if (st?.command !== 'EXPLAIN') return null;
  const tokens = lexPg(st.text);
  const at = tokens.findIndex((t) => t.kind === 'word' && t.value === 'execute');
  if (at < 0 || !tokens.slice(0, at).some((t) => t.kind === 'word' && (t.value === 'analyze' || t.value === 'analyse'))) return null;
  const n = tokens[at + 1];
  if (n?.kind === 'word') return n.value;
  if (n?.kind === 'qident' && n.value.startsWith('"')) return n.value.slice(1, -1).replace(/""/g, '"');
  return null;
}

/** One row of pg_prepared_statements. */
export interface PreparedRow {
  name: string;
  statement: string;
  fromSql: boolean;
  types: string[];
}

/** The query reading the session's prepared statements of these names. */
export function preparedQuery(names: readonly string[]): string {
  return (
    'SELECT name, statement, from_sql, pg_catalog.array_to_json(parameter_types::pg_catalog.text[])::text ' +
    `FROM pg_catalog.pg_prepared_statements WHERE name IN (${names.map(literal).join(', ')})`
  );
}

export function preparedRows(rows: Array<Array<string | null>>): Map<string, PreparedRow> {
  const out = new Map<string, PreparedRow>();
  for (const [name, statement, fromSql, types] of rows) {
    if (name == null || statement == null) continue;
    out.set(name, { name, statement, fromSql: fromSql === 't', types: JSON.parse(types ?? '[]') as string[] });
  }
  return out;
}

/** What an EXECUTE becomes: the statement to run instead, or postgres' error. */
export type Expansion = { sql: string } | { error: { sqlstate: string; message: string } };

type Classify = (sql: string) => PgStatement[];

/**
 * The text an EXECUTE runs, with its arguments in place of the parameters. `exec` is the EXECUTE
 * statement's own text (its arguments may use the outer statement's $n: they stay as they are).
 */
export function expandExecute(exec: string, row: PreparedRow, classify: Classify): Expansion {
  const body = preparedBody(row, classify);
  if (body === null) return { error: { sqlstate: '0A000', message: `Recall cannot read the text of prepared statement "${row.name}" to replicate its EXECUTE; send the statement itself` } };
  const args = executeArgs(exec);
  if (args === null) return { error: { sqlstate: '42601', message: `Recall cannot read the arguments of this EXECUTE` } };
  if (args.length !== row.types.length) {
    return { error: { sqlstate: '42601', message: `wrong number of parameters for prepared statement "${row.name}"` } };
  }
  const tokens = lexPg(body);
  const uses = new Map<number, number>();
  for (const t of tokens) if (t.kind === 'param') uses.set(paramNumber(t), (uses.get(paramNumber(t)) ?? 0) + 1);
  for (const [k, n] of uses) {
    const arg = args[k - 1];
    if (arg === undefined) return { error: { sqlstate: '42P02', message: `there is no parameter $${k}` } };
    // postgres evaluates an argument once: copying an expression (random(), nextval()) into
    // two places would evaluate it twice
    if (n > 1 && !constant(arg.tokens)) {
      return {
        error: {
          sqlstate: '0A000',
          message: `Recall replicates EXECUTE "${row.name}" with its arguments in place of the parameters, and $${k} is used ${n} times: its argument must be a constant, not an expression (it would be evaluated ${n} times)`,
        },
      };
    }
  }
  let out = '';
  let at = 0;
  for (const t of tokens) {
    if (t.kind !== 'param') continue;
    const k = paramNumber(t);
    out += body.slice(at, t.start) + `(${args[k - 1]!.text})::${row.types[k - 1]!}`;
    at = t.end;
  }
  return { sql: out + body.slice(at) };
}

function paramNumber(t: PgToken): number {
  return Number(t.value.slice(1));
}

/** The prepared statement may write (also when its text cannot be read: the safe side). */
export function preparedWrites(row: PreparedRow, classify: Classify): boolean {
  const body = preparedBody(row, classify);
  return body === null || classify(body).some((st) => st.refuse || WRITE_KINDS.has(st.kind));
}

/** The prepared statement's own text: after PREPARE's AS, or the whole text of a protocol-level one. */
function preparedBody(row: PreparedRow, classify: Classify): string | null {
  if (!row.fromSql) return row.statement;
  // the text of the whole query the PREPARE came in: find that PREPARE among its statements
  const st = classify(row.statement).find((s) => s.prepared?.action === 'prepare' && s.prepared.name === row.name);
  if (!st) return null;
  const tokens = lexPg(st.text);
  let k = 2; // PREPARE name
  if (tokens[k]?.value === '(') k = closingBracket(tokens, k) + 1;
  if (k <= 0 || tokens[k]?.value !== 'as' || !tokens[k + 1]) return null;
  return st.text.slice(tokens[k + 1]!.start);
}

interface Arg {
  text: string;
  tokens: PgToken[];
}

/** The arguments of `EXECUTE name (a, b)`, as written; [] without parentheses. */
function executeArgs(exec: string): Arg[] | null {
  const tokens = lexPg(exec);
  if (tokens[0]?.value !== 'execute' || !tokens[1]) return null;
  if (tokens[2]?.value !== '(') return tokens.length === 2 ? [] : null;
  const close = closingBracket(tokens, 2);
  if (close < 0) return null;
  const args: Arg[] = [];
  let from = 3;
  let depth = 0;
  for (let k = 3; k <= close; k++) {
    const v = tokens[k]!.kind === 'punct' ? tokens[k]!.value : '';
    if (v === '(' || v === '[') depth++;
    else if ((v === ')' || v === ']') && k < close) depth--;
    else if ((v === ',' && depth === 0) || k === close) {
      if (k === from) return k === close && args.length === 0 ? [] : null;
      args.push({ text: exec.slice(tokens[from]!.start, tokens[k - 1]!.end), tokens: tokens.slice(from, k) });
      from = k + 1;
    }
  }
  return args;
}

const CONSTANT_WORDS = new Set(['null', 'true', 'false']);

/** A literal, maybe signed, maybe cast: the same value wherever it is copied. */
function constant(tokens: PgToken[]): boolean {
  let k = 0;
  if (tokens[k]?.kind === 'op' && (tokens[k]!.value === '-' || tokens[k]!.value === '+')) k++;
  const t = tokens[k];
  if (!t || !(t.kind === 'number' || t.kind === 'string' || (t.kind === 'word' && CONSTANT_WORDS.has(t.value)))) return false;
  k++;
  // casts: ::type, ::schema.type, ::type(n), ::type[]
  while (k < tokens.length) {
    if (tokens[k]!.value !== '::') return false;
    k++;
    while (k < tokens.length && tokens[k]!.value !== '::') {
      const x = tokens[k]!;
      if (!(x.kind === 'word' || x.kind === 'qident' || x.kind === 'number' || ['.', '(', ')', '[', ']'].includes(x.value))) return false;
      k++;
    }
  }
  return true;
}
