// A fault test's write load, the same for MySQL and PostgreSQL: concurrent clients insert rows
// with client-chosen unique keys over all of a cluster's ports, the last client two rows per
// transaction, and every attempt is recorded with what its client may conclude: ok, failed (it
// certainly did not happen) or unknown (it may have). A client whose connection is lost moves on
// to the next port. The driver (mysql2 or pg) is the one thing that differs.
import assert from 'node:assert/strict';
import type { TestCluster } from './cluster.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export type Outcome = 'ok' | 'failed' | 'unknown';

export interface Attempt {
  /** One key, or two written by one transaction (all or none must exist). */
  keys: string[];
  client: number;
  node: number;
  start: number;
  end: number;
  outcome: Outcome;
  error?: string;
}

/** How one client library connects, runs a statement and reports an error. */
export interface StreamDriver<C> {
  /** Connects to node i's client port; rejects when nothing could be sent. */
  connect(node: number): Promise<C>;
  /** Runs a statement with positional parameters (INSERT INTO t (k, client, seq, phase, via)). */
  insert(conn: C, key: string, client: number, seq: number, phase: string, via: number): Promise<unknown>;
  run(conn: C, sql: 'BEGIN' | 'COMMIT' | 'ROLLBACK'): Promise<unknown>;
  /** The connection is done (lost, or timed out in a statement). */
  drop(conn: C): void;
  /** Whether the error is the server's answer (the connection is still usable). */
  serverAnswered(e: unknown): boolean;
  /** A server's error that leaves the outcome unknown (MySQL 1180, PostgreSQL 40003). */
  outcomeUnknown(e: unknown): boolean;
  errText(e: unknown): string;
}

export class InsertStream<C> {
  readonly attempts: Attempt[] = [];
  private running = true;
  private readonly clients: Promise<void>[] = [];

  constructor(
    private readonly c: TestCluster,
    readonly phase: string,
    private readonly driver: StreamDriver<C>,
    private readonly o: { clients: number; statementTimeoutMs: number },
  ) {
    for (let i = 0; i < o.clients; i++) this.clients.push(this.client(i));
  }

  /** What a client may conclude from an error: the insert certainly did not happen, or it cannot know. */
  classify(e: unknown): Outcome {
    if (!this.driver.serverAnswered(e) || this.driver.outcomeUnknown(e)) return 'unknown';
    return 'failed';
  }

  private async client(ci: number): Promise<void> {
    const d = this.driver;
    let node = ci % this.c.nodes.length;
    let conn: C | undefined;
    for (let seq = 0; this.running; ) {
      if (!conn) {
        try {
          conn = await d.connect(node);
        } catch {
          // Nothing was sent: try the next port.
          node = (node + 1) % this.c.nodes.length;
          await sleep(50);
          continue;
        }
      }
      // The last client writes two rows per transaction (the lane holds it on the leader from
      // its first write to COMMIT): a failover must commit both rows or neither.
      const txn = ci === this.o.clients - 1;
      const base = `${this.phase}-c${ci}-${seq++}`;
      const keys = txn ? [`${base}-a`, `${base}-b`] : [base];
      const start = Date.now();
      const cn = conn;
      let committing = false;
      try {
        if (txn) {
          await d.run(cn, 'BEGIN');
          for (const k of keys) await d.insert(cn, k, ci, seq, this.phase, node + 1);
          committing = true;
          await d.run(cn, 'COMMIT');
        } else {
          await d.insert(cn, keys[0]!, ci, seq, this.phase, node + 1);
        }
        this.attempts.push({ keys, client: ci, node, start, end: Date.now(), outcome: 'ok' });
      } catch (e) {
        // Inside a transaction anything before COMMIT leaves nothing behind; only the COMMIT
        // (or an autocommit statement) can have an unknown outcome.
        const outcome = txn && !committing ? 'failed' : this.classify(e);
        this.attempts.push({ keys, client: ci, node, start, end: Date.now(), outcome, error: d.errText(e) });
        if (!d.serverAnswered(e)) {
          // connection lost or client timeout: this connection is done
          d.drop(cn);
          conn = undefined;
          node = (node + 1) % this.c.nodes.length;
        } else if (txn) {
          await d.run(cn, 'ROLLBACK').catch(() => undefined);
        }
        await sleep(20);
      }
    }
    if (conn) d.drop(conn);
  }

  acked(): Attempt[] {
    return this.attempts.filter((a) => a.outcome === 'ok');
  }

  /** Ends the stream; a client stuck in a statement is abandoned after its statement timeout. */
  async stop(): Promise<void> {
    this.running = false;
    let timer: NodeJS.Timeout | undefined;
    const stuck = new Promise<void>((r) => (timer = setTimeout(r, this.o.statementTimeoutMs + 2000)));
    await Promise.race([Promise.all(this.clients), stuck]);
    clearTimeout(timer);
  }

  summary(): string {
    const n = (o: Outcome) => this.attempts.filter((a) => a.outcome === o).length;
    const errs = new Map<string, number>();
    for (const a of this.attempts) if (a.error) errs.set(`${a.outcome}: ${a.error}`, (errs.get(`${a.outcome}: ${a.error}`) ?? 0) + 1);
    const top = [...errs].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([k, v]) => `    ${v} x ${k}`);
    const t0 = this.attempts[0]?.start ?? 0;
    const slow = [...this.attempts].sort((a, b) => b.end - b.start - (a.end - a.start)).slice(0, 4);
    const slowest = slow.map((a) => `    slow: ${a.end - a.start} ms from +${a.start - t0} ms via node ${a.node + 1}: ${a.outcome}${a.error ? ` ${a.error.slice(0, 90)}` : ''}`);
    return [`  ${this.phase}: ${this.attempts.length} attempts, ${n('ok')} ok, ${n('failed')} failed, ${n('unknown')} unknown`, ...top, ...slowest].join('\n');
  }

  /**
   * Node `node` holds the keys `have` of this stream's phase: every acknowledged insert is there,
   * none reported failed is, and no transaction is there in part.
   */
  assertOutcomes(node: number, have: ReadonlySet<string>): void {
    const count = (a: Attempt) => a.keys.filter((k) => have.has(k)).length;
    const missing = this.attempts.filter((a) => a.outcome === 'ok' && count(a) < a.keys.length);
    assert.equal(missing.length, 0, `node ${node + 1} lacks ${missing.length} acknowledged inserts, e.g. ${JSON.stringify(missing.slice(0, 3))}`);
    const present = this.attempts.filter((a) => a.outcome === 'failed' && count(a) > 0);
    assert.equal(present.length, 0, `node ${node + 1} holds ${present.length} inserts reported as failed, e.g. ${JSON.stringify(present.slice(0, 3))}`);
    const torn = this.attempts.filter((a) => count(a) > 0 && count(a) < a.keys.length);
    assert.equal(torn.length, 0, `node ${node + 1} holds ${torn.length} transactions in part, e.g. ${JSON.stringify(torn.slice(0, 3))}`);
  }

  /** Last ack at or before t, and the first ack of a statement sent at or after t on one of `nodes`. */
  resumeGap(t: number, nodes: number[]): { lastBefore: number; firstAfter: number | undefined; gapMs: number | undefined } {
    const acks = this.acked();
    const lastBefore = Math.max(...acks.filter((a) => a.end <= t).map((a) => a.end));
    const after = acks.filter((a) => a.start >= t && nodes.includes(a.node)).map((a) => a.end);
    const firstAfter = after.length ? Math.min(...after) : undefined;
    return { lastBefore, firstAfter, gapMs: firstAfter === undefined ? undefined : firstAfter - lastBefore };
  }
}

/** Which rows (by key k) differ between the nodes' copies of t: tells a phantom from a lost write. */
export function rowDifferences(rowsPerNode: ReadonlyArray<ReadonlyArray<Record<string, unknown>>>): string {
  const sets = rowsPerNode.map((r) => new Map(r.map((x) => [String(x.k), JSON.stringify(x)])));
  const all = new Set(sets.flatMap((m) => [...m.keys()]));
  const diff = [...all].filter((k) => !sets.every((m) => m.get(k) === sets[0]!.get(k)));
  const where = diff.slice(0, 10).map((k) => `${k}: ${sets.map((m, i) => `n${i + 1}=${m.has(k) ? 'yes' : 'no'}`).join(' ')}`);
  return `${diff.length} rows differ:\n${where.join('\n')}`;
}
