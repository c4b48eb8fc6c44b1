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
import { unwrap, walk } from '../../sql/pg-tree.js';

/** postgres truncates identifiers to NAMEDATALEN - 1 bytes */
const IDENTIFIER_BYTES_MAX = 63;

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
    // the name now holds the Parse's statement (or its earlier one): a later PREPARE of it fails,
    // so what that PREPARE says is not what an EXECUTE runs
    const had = this.names.get(name);
    this.names.set(name, { kind: had?.kind, certain: false });
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
 * text is not that. Any EXPLAIN naming ANALYZE and EXECUTE counts, which at worst looks up a name
 * that does not exist. The name comes from the parse tree when the statement has one (postgres'
 * own folding, truncation and U&"" decoding), else from the tokens.
 */
export function explainedExecute(st: PgStatement | null): string | null {
  if (st?.command !== 'EXPLAIN') return null;
  const tokens = lexPg(st.text);
  const at = tokens.findIndex((t) => t.kind === 'word' && t.value === 'execute');
  if (at < 0 || !tokens.slice(0, at).some((t) => t.kind === 'word' && (t.value === 'analyze' || t.value === 'analyse'))) return null;
  const query = unwrap(unwrap(st.node)?.[1].query);
  if (query?.[0] === 'ExecuteStmt' && typeof query[1].name === 'string') return query[1].name;
  const n = tokens[at + 1];
  // postgres folds only ASCII letters of an unquoted name (in UTF-8), and truncates both kinds
  if (n?.kind === 'word') return truncateIdentifier(st.text.slice(n.start, n.end).replace(/[A-Z]+/g, (x) => x.toLowerCase()));
  if (n?.kind === 'qident' && n.value.startsWith('"')) return truncateIdentifier(n.value.slice(1, -1).replace(/""/g, '"'));
  return null;
}

function truncateIdentifier(name: string): string {
  if (Buffer.byteLength(name) <= IDENTIFIER_BYTES_MAX) return name;
  let out = '';
  for (const ch of name) {
    if (Buffer.byteLength(out + ch) > IDENTIFIER_BYTES_MAX) break;
    out += ch;
  }
  return out;
}

/** One row of pg_prepared_statements. */
export interface PreparedRow {
  name: string;
  statement: string;
  fromSql: boolean;
  types: string[];
  /** parameters (from 1) whose type is a domain with a length (or an array of one): see preparedQuery */
  lengthDomains?: number[];
}

/**
 * The query reading the session's prepared statements of these names. The types are spelled by
 * format_type with typmod -1: regtype's `character` and `bit` mean character(1) and bit(1) in a
 * cast (a value cast to them is cut to one character), `bpchar` and `"bit"` keep it whole as the
 * parameter did. The last column lists the parameters whose type is a domain with a typmod (or
 * over another domain, or an array of such): EXECUTE coerces an argument in assignment context,
 * which refuses a value too long for a domain over varchar(4), where a cast silently cuts it.
 */
export function preparedQuery(names: readonly string[]): string {
  const params = 'pg_catalog.unnest(parameter_types) WITH ORDINALITY AS u(t, n)';
  return (
    `SELECT name, statement, from_sql, pg_catalog.array_to_json(ARRAY(SELECT pg_catalog.format_type(u.t, -1) FROM ${params} ORDER BY u.n))::text, ` +
    `pg_catalog.array_to_json(ARRAY(SELECT u.n FROM ${params} JOIN pg_catalog.pg_type p ON p.oid = u.t::pg_catalog.oid ` +
    `WHERE EXISTS (SELECT FROM pg_catalog.pg_type d WHERE d.oid IN (p.oid, p.typelem) AND d.typtype = 'd' AND (d.typtypmod <> -1 ` +
    `OR EXISTS (SELECT FROM pg_catalog.pg_type b WHERE b.oid IN (d.typbasetype, (SELECT e.typelem FROM pg_catalog.pg_type e WHERE e.oid = d.typbasetype)) AND b.typtype = 'd'))) ` +
    `ORDER BY u.n))::text ` +
    `FROM pg_catalog.pg_prepared_statements WHERE name IN (${names.map(literal).join(', ')})`
  );
}

export function preparedRows(rows: Array<Array<string | null>>): Map<string, PreparedRow> {
  const out = new Map<string, PreparedRow>();
  for (const [name, statement, fromSql, types, lengthDomains] of rows) {
    if (name == null || statement == null) continue;
    const row: PreparedRow = { name, statement, fromSql: fromSql === 't', types: JSON.parse(types ?? '[]') as string[] };
    if (lengthDomains) row.lengthDomains = JSON.parse(lengthDomains) as number[];
    out.set(name, row);
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
  const refused = argumentRefusal(exec, classify);
  if (refused) return { error: refused };
  const domain = row.lengthDomains?.[0];
  if (domain !== undefined) {
    return {
      error: {
        sqlstate: '0A000',
        message: `Recall cannot replicate EXECUTE "${row.name}": parameter $${domain} is of a domain with a length or precision (${row.types[domain - 1] ?? '?'}), which a cast in its place would cut where EXECUTE refuses a longer value; send the statement itself`,
      },
    };
  }
  const tokens = lexPg(body);
  const uses = new Map<number, number>();
  for (const t of tokens) if (t.kind === 'param') uses.set(paramNumber(t), (uses.get(paramNumber(t)) ?? 0) + 1);
  for (const k of uses.keys()) {
    if (args[k - 1] === undefined) return { error: { sqlstate: '42P02', message: `there is no parameter $${k}` } };
  }
  for (const [i, arg] of args.entries()) {
    const n = uses.get(i + 1) ?? 0;
    // postgres evaluates an argument once: copying an expression (random(), nextval()) into
    // two places would evaluate it twice, leaving it out (a parameter the text does not use)
    // would not evaluate it at all
    if (n !== 1 && !constant(arg.tokens)) {
      const how = n === 0 ? 'not used by the statement' : `used ${n} times`;
      return {
        error: {
          sqlstate: '0A000',
          message: `Recall replicates EXECUTE "${row.name}" with its arguments in place of the parameters, and $${i + 1} is ${how}: its argument must be a constant, not an expression (it would be evaluated ${n} times)`,
        },
      };
    }
  }
  let out = '';
  let at = 0;
  for (const t of tokens) {
    if (t.kind !== 'param') continue;
    const k = paramNumber(t);
    // parenthesized whole: `$1[1]`, `$1.field` and `FETCH FIRST $1 ROWS` need it to stay a
    // subscript, a field and a plain expression
    out += body.slice(at, t.start) + `((${args[k - 1]!.text})::${row.types[k - 1]!})`;
    at = t.end;
  }
  // up to the last token: a `-- comment` at the end would swallow anything put after the text
  const last = tokens[tokens.length - 1];
  return { sql: out + body.slice(at, Math.max(at, last?.end ?? body.length)) };
}

/**
 * What postgres refuses in an EXECUTE's arguments and the prepared text would accept in their
 * place: a column reference (it would read the written table's column), a subquery, a window
 * function. From the EXECUTE's parse tree; without one (a cached classification) nothing is
 * refused here.
 */
function argumentRefusal(exec: string, classify: Classify): { sqlstate: string; message: string } | null {
  const node = classify(exec).find((s) => s.kind === 'execute')?.node;
  let out: { sqlstate: string; message: string } | null = null;
  walk(unwrap(node)?.[1].params, (type, f) => {
    if (out) return false;
    if (type === 'ColumnRef') out = { sqlstate: '42703', message: 'an argument of EXECUTE cannot refer to a column' };
    else if (type === 'SubLink') out = { sqlstate: '0A000', message: 'cannot use subquery in EXECUTE parameter' };
    else if (type === 'FuncCall' && f.over) out = { sqlstate: '42P20', message: 'window functions are not allowed in EXECUTE parameters' };
    return !out;
  });
  return out;
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
  // the text of the whole query the PREPARE came in: find that PREPARE among its statements (when
  // it has two of the name, which one holds depends on which failed: not known here)
  const sts = classify(row.statement).filter((s) => s.prepared?.action === 'prepare' && s.prepared.name === row.name);
  if (sts.length !== 1) return null;
  const st = sts[0]!;
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
