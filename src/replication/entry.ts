// The replicated log entry of a SQL write: the statements, the context that makes each one
// replay identically (what MySQL's statement-based binary log records), and the outcome the
// leader saw, which every replica compares with its own. JSON: entries are small next to the
// fsync that carries them, and a human can read one with `recall` tooling.
import { crc32c } from '../log/crc32c.js';

/** Session state a statement ran under (the values of the leader's session when it ran). */
export interface SysContext {
  db: string | null;
  sqlMode: string;
  timeZone: string;
  charsetClient: string;
  collationConnection: string;
  charsetResults: string | null;
  fkChecks: string;
  uniqueChecks: string;
  aiIncrement: string;
  aiOffset: string;
}

/** What the leader saw: error number, or affected rows / insert id / warnings; r when rows came back. */
export interface Outcome {
  e?: number;
  a?: number;
  i?: number;
  w?: number;
  r?: 1;
}

export interface StatementItem {
  /** statement text as raw bytes in a latin1 string (COM_QUERY text, or the prepared text) */
  sql: string;
  /** COM_STMT_EXECUTE body after the statement id (base64): a prepared statement's parameters */
  params?: string;
  /** index into the entry's ctxs */
  c: number;
  /** SET timestamp value: seconds.microseconds */
  ts: string;
  seeds?: [number, number];
  /** last_insert_id of the session before the statement (when the statement reads it) */
  lid?: number;
  /** user variables the statement reads: `@\`x\` = literal` */
  vars?: string[];
  /** LOAD DATA LOCAL INFILE content (base64) */
  infile?: string;
  out: Outcome;
  /** replay with SET insert_id = out.i: the statement itself generated AUTO_INCREMENT values (an
   * INSERT/REPLACE/LOAD without LAST_INSERT_ID(expr)); never for others, where the forced value
   * would be taken by an insert in a trigger */
  pin?: 1;
}

export interface Origin {
  /** node id of the leader that executed it */
  n: number;
  /** that node's lane sequence number (unique per process start: random high part) */
  s: number;
}

export type SqlEntry =
  /** rollback: the transaction was rolled back on the leader; replicas replay it and roll it back too,
   * so AUTO_INCREMENT counters (which a rollback does not give back) stay equal */
  | { t: 'w'; o: Origin; fr: 0 | 1; ctxs: SysContext[]; items: StatementItem[]; rollback?: 1 }
  | { t: 'ddl'; o: Origin; fr: 0 | 1; ctxs: SysContext[]; item: StatementItem }
  | { t: 'ddlx'; o: Origin; at: number; out: Outcome };

export function encodeEntry(e: SqlEntry): Buffer {
  return Buffer.from(JSON.stringify(e), 'utf8');
}

export class EntryFormatError extends Error {}

export function decodeEntry(data: Uint8Array): SqlEntry {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
  } catch (e) {
    throw new EntryFormatError(`entry is not JSON: ${(e as Error).message}`);
  }
  const o = v as { t?: unknown; o?: { n?: unknown; s?: unknown } };
  if (!o || typeof o !== 'object' || (o.t !== 'w' && o.t !== 'ddl' && o.t !== 'ddlx') || typeof o.o?.n !== 'number' || typeof o.o?.s !== 'number') {
    throw new EntryFormatError('entry has no valid type or origin');
  }
  return v as SqlEntry;
}

export function entryChecksum(data: Uint8Array): number {
  return crc32c(data) >>> 0;
}

/** Same outcome? Affected rows and insert id only count for successes; errors by number. */
export function sameOutcome(a: Outcome, b: Outcome): boolean {
  if ((a.e ?? 0) !== (b.e ?? 0)) return false;
  if (a.e) return true;
  return (a.a ?? 0) === (b.a ?? 0) && (a.i ?? 0) === (b.i ?? 0);
}

export function describeOutcome(o: Outcome): string {
  return o.e ? `error ${o.e}` : `ok, ${o.a ?? 0} rows affected, insert id ${o.i ?? 0}${o.r ? ', rows returned' : ''}`;
}

/** Errors raised before a statement touches anything (access checks, parsing, name resolution):
 * such statements are not replayed; the leader's account may lack a privilege the applier has. */
export const NO_EFFECT_ERRORS: ReadonlySet<number> = new Set([1044, 1045, 1142, 1143, 1227, 1370, 1410, 1211, 1064, 1146, 1054, 1049]);

/** Whether an entry with these items changes anything a replica must replay. */
export function hasEffect(items: readonly StatementItem[]): boolean {
  return items.some((i) => !i.out.e || !NO_EFFECT_ERRORS.has(i.out.e));
}
