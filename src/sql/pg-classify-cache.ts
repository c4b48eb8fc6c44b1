// classifyPg behind a cache keyed by the text's shape (pg-shape.ts: literals blanked out), for
// the front end's hot path: one parse per distinct statement shape instead of one per
// statement. See DESIGN.md "PostgreSQL".
//
// What a hit returns:
// - a text without literals (BEGIN, COMMIT, `SELECT 1` is not one: 1 is a literal) is its own
//   key: the cached statements are returned as they are, parse tree included (frozen, shared).
// - a text with literals hits only an entry made from one statement whose kind and details
//   cannot depend on literal values: a SELECT, INSERT, UPDATE or DELETE (kind, command, tables,
//   functions, locking, INTO are all spelled by words, not values). The hit is built for the
//   new text: `text`, `end` and `chunkEnd` follow its length; `node` and `offsets` are absent
//   (a rewrite of a write parses the exact text itself, as pg-rewrite.ts does).
// Other statements with literals (SET x = 5, EXPLAIN (ANALYZE 0), COMMIT PREPARED 'gid',
// NOTIFY c, 'payload') are classified afresh each time.
import { classifyPg, type PgStatement } from './pg-classify.js';
import type { PgShape } from './pg-shape.js';
import { pgShape } from './pg-shape.js';

/** Distinct shapes remembered (first in, first out). */
export const CLASSIFY_CACHE_ENTRIES_MAX = 2048;

/** Commands whose classification is the same for any literal values (see above). */
const VALUE_FREE_COMMANDS = new Set(['SELECT', 'INSERT', 'UPDATE', 'DELETE']);
const VALUE_FREE_NODES = new Set(['SelectStmt', 'InsertStmt', 'UpdateStmt', 'DeleteStmt']);

type Entry =
  | { exact: true; statements: readonly PgStatement[] }
  | { exact: false; template: PgStatement; start: number; tail: number };

export class PgClassifyCache {
  private readonly entries = new Map<string, Entry>();
  hits = 0;
  misses = 0;

  constructor(private readonly entriesMax = CLASSIFY_CACHE_ENTRIES_MAX) {}

  /** classifyPg(sql), from the cache when the text's shape was seen before. */
  classify(sql: string): PgStatement[] {
    const shape = pgShape(sql);
    if (shape) {
      const e = this.entries.get(shape.key);
      if (e) {
        this.hits++;
        return e.exact ? (e.statements as PgStatement[]) : [fromTemplate(e, sql)];
      }
    }
    this.misses++;
    const statements = classifyPg(sql);
    if (shape) {
      const e = entryFor(sql, shape, statements);
      if (e) this.remember(shape.key, e);
    }
    return statements;
  }

  size(): number {
    return this.entries.size;
  }

  private remember(key: string, e: Entry): void {
    if (this.entries.size >= this.entriesMax) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    this.entries.set(key, e);
  }
}

function entryFor(sql: string, shape: PgShape, statements: PgStatement[]): Entry | null {
  if (shape.firstLiteral < 0) {
    for (const st of statements) freeze(st);
    return { exact: true, statements: Object.freeze(statements) };
  }
  if (statements.length !== 1) return null;
  const st = statements[0]!;
  if (!VALUE_FREE_COMMANDS.has(st.command) || !st.node || !VALUE_FREE_NODES.has(Object.keys(st.node)[0] ?? '')) return null;
  if (st.refuse || st.error || st.chunkStart !== 0 || st.chunkEnd !== sql.length) return null;
  // the literals lie inside the statement: what precedes `start` and follows `end` is the same in every text of this shape
  if (shape.firstLiteral < st.start || shape.lastLiteralEnd > st.end) return null;
  // the template stays private and plain (spreading a frozen object, or one that had properties
  // deleted, is several times slower); its lists are shared by every hit, so they are frozen
  const { node: _node, offsets: _offsets, ...rest } = st;
  const template: PgStatement = { ...rest, text: '' };
  freezeLists(template);
  return { exact: false, template, start: st.start, tail: sql.length - st.end };
}

function fromTemplate(e: Extract<Entry, { exact: false }>, sql: string): PgStatement {
  const end = sql.length - e.tail;
  if (end < e.start) throw new Error(`classify cache: a text of a cached shape ends before its statement starts (${e.start} > ${end})`);
  return { ...e.template, start: e.start, end, chunkStart: 0, chunkEnd: sql.length, text: sql.slice(e.start, end) };
}

/** Cached statements are shared by every hit: freeze them and their lists, so a caller's change throws instead of leaking. */
function freeze(st: PgStatement): void {
  freezeLists(st);
  Object.freeze(st);
}

function freezeLists(st: PgStatement): void {
  Object.freeze(st.tables);
  Object.freeze(st.sessionFunctions);
  Object.freeze(st.userFunctions);
  Object.freeze(st.writingFunctions);
  if (st.settings) Object.freeze(st.settings);
}
