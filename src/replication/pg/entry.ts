// The replicated entry of a PostgreSQL write: the statements as the leader ran them (after the
// determinism rewrite, so they carry the leader's clock and random values), the session settings
// that change how their text is read, the role they ran as, and the outcome the leader saw (the
// command tag, or the SQLSTATE of the error), which every replica compares with its own. JSON, as
// for MySQL (src/replication/entry.ts): small next to the fsync that carries it, and readable.
import { crc32c } from '../../log/crc32c.js';

/** One statement: simple-query text, or an extended-query execution (unnamed statement and portal). */
export interface PgItem {
  /** statement text (UTF-8) */
  q: string;
  /** extended protocol: parameter type OIDs of the Parse, parameter formats, values (base64, null for NULL) */
  x?: { types: number[]; formats: number[]; values: Array<string | null> };
  /** COPY FROM STDIN: the data, deflated (raw deflate), base64 */
  copy?: string;
  /** the leader's outcome: the command tag ('INSERT 0 1', 'UPDATE 3', 'CREATE TABLE') or the error */
  out: PgOutcome;
}

export interface PgOutcome {
  tag?: string;
  /** SQLSTATE of the error */
  e?: string;
  /** the error depends on the leader's circumstances (timeout, lock, serialization, resources):
   * a replica cannot reproduce it, so it does not run the statement (nor any after it) */
  nd?: 1;
}

export type PgEntry =
  | {
      t: 'w';
      /** origin: node and the lane's sequence number (the applier waits for its own lane) */
      o: { n: number; s: number };
      db: string;
      role: string;
      /** session settings (lower-case names) the statements were read under */
      set: Record<string, string>;
      items: PgItem[];
      /** sequences the entry moved, as they were before it ran on the leader: [name as regclass
       * text, value, is_called]. postgres WAL-logs sequences 32 values ahead, so a server that
       * crashed hands out numbers past its last ones; replicas set these first and stay equal. */
      seq?: Array<[string, string, boolean]>;
      /** the transaction failed or was rolled back after running writes: replicas run it and roll
       * it back too (sequences do not give numbers back) */
      rollback?: 1;
    }
  | {
      /** a statement that cannot run inside a transaction block (CREATE DATABASE, CREATE INDEX
       * CONCURRENTLY, ...): committed first, run alone after the applied index commits */
      t: 'ntb';
      o: { n: number; s: number };
      db: string;
      role: string;
      set: Record<string, string>;
      item: PgItem;
    }
  | {
      /** the leader's outcome of the 'ntb' entry at index `of`, proposed once it ran there (the
       * 'ntb' entry is committed before anything runs, so it cannot carry it): replicas compare
       * it with their own outcome of that statement, as they do for the items of a 'w' entry */
      t: 'ntbo';
      o: { n: number; s: number };
      of: number;
      out: PgOutcome;
    };

/** Settings that change how a statement's text is read or what it writes. */
export const PG_ENTRY_SETTINGS = [
  'search_path',
  'timezone',
  'datestyle',
  'intervalstyle',
  'standard_conforming_strings',
  'bytea_output',
  'extra_float_digits',
  'role',
  'lc_monetary',
  'lc_numeric',
  'backslash_quote',
  'escape_string_warning',
] as const;

/** SQLSTATE classes whose errors come from the leader's circumstances, not from the statement. */
const NONDETERMINISTIC_CLASSES = ['40', '53', '54', '55', '57', '58', 'XX', 'HV', '08'];

export function nondeterministicError(sqlstate: string): boolean {
  return NONDETERMINISTIC_CLASSES.includes(sqlstate.slice(0, 2));
}

export function encodePgEntry(e: PgEntry): Buffer {
  return Buffer.from(JSON.stringify(e), 'utf8');
}

function isStringMap(v: unknown): v is Record<string, string> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string');
}

function isOutcome(v: unknown): v is PgOutcome {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const o = v as PgOutcome;
  return (o.tag === undefined || typeof o.tag === 'string') && (o.e === undefined || typeof o.e === 'string');
}

function isItem(v: unknown): v is PgItem {
  if (typeof v !== 'object' || v === null) return false;
  const i = v as PgItem;
  if (typeof i.q !== 'string' || !isOutcome(i.out)) return false;
  if (i.copy !== undefined && typeof i.copy !== 'string') return false;
  if (i.x !== undefined) {
    const x = i.x;
    if (!Array.isArray(x.types) || !Array.isArray(x.formats) || !Array.isArray(x.values)) return false;
    if (!x.values.every((s) => s === null || typeof s === 'string')) return false;
  }
  return true;
}

/** Throws on anything that is not an entry this version wrote. */
export function decodePgEntry(data: Uint8Array): PgEntry {
  const v = JSON.parse(Buffer.from(data).toString('utf8')) as PgEntry;
  if (typeof v !== 'object' || v === null) throw new Error('not an object');
  if (typeof v.o?.n !== 'number' || typeof v.o?.s !== 'number') throw new Error('no origin');
  if (v.t === 'ntbo') {
    if (!Number.isSafeInteger(v.of) || v.of < 1 || !isOutcome(v.out)) throw new Error('bad outcome entry');
    return v;
  }
  if (typeof v.db !== 'string' || typeof v.role !== 'string' || !isStringMap(v.set)) throw new Error('no database, role or settings');
  if (v.t === 'w') {
    if (!Array.isArray(v.items) || !v.items.every(isItem)) throw new Error('bad items');
    if (v.seq !== undefined && !(Array.isArray(v.seq) && v.seq.every((x) => Array.isArray(x) && typeof x[0] === 'string' && typeof x[1] === 'string' && typeof x[2] === 'boolean'))) {
      throw new Error('bad sequences');
    }
    return v;
  }
  if (v.t === 'ntb') {
    if (!isItem(v.item)) throw new Error('bad item');
    return v;
  }
  throw new Error(`unknown entry type ${String((v as { t: unknown }).t)}`);
}

export function pgEntryChecksum(data: Uint8Array): number {
  return crc32c(data) >>> 0;
}

export function sameOutcome(a: PgOutcome, b: PgOutcome): boolean {
  return (a.tag ?? null) === (b.tag ?? null) && (a.e ?? null) === (b.e ?? null);
}

export function describeOutcome(o: PgOutcome): string {
  return o.e ? `error ${o.e}` : `'${o.tag ?? ''}'`;
}
