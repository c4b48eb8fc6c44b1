// What every dialect's applier shares (DESIGN.md "The applier"): the loop that applies committed
// entries in log order from the durable log, the retry after a database error, the waiters of
// read-your-writes, the lane's expectations (entries this node's lane commits itself), the pause a
// donor takes and the hold of a resync, gap detection and divergence. A dialect supplies how one
// entry is applied, how the applied index is read back, and its connections.
import type { Entry } from '../consensus/types.js';
import type { ApplierBaseDeps, ApplierStatus, ReplicaApplier } from './dialect.js';

const APPLY_BATCH_ENTRIES = 256;
const RETRY_MS = 500;

/** The lane's handle on an entry it is about to propose. */
export interface ApplierExpectation {
  committed(index: number): void;
  failed(): void;
}

interface Expected {
  state: 'pending' | 'committed' | 'failed';
  index: number;
  settled: Promise<void>;
  settle: () => void;
}

export abstract class ApplierCore implements ReplicaApplier {
  /** highest index whose effects are in the local database (no-ops and membership changes included) */
  applied = 0;
  diverged: { index: number; reason: string } | null = null;
  /** Set when the log no longer has the next entry to apply. */
  gap: { applied: number; firstIndex: number } | null = null;
  protected closed = false;
  private readonly expected = new Map<number, Expected>();
  private waiters: Array<{ index: number; resolve: () => void }> = [];
  private running = false;
  private wake = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private lastError = '';
  /** Held by a donor taking a copy, or by a resync replacing the database: nothing is applied. */
  private held = false;
  private loopDone: Promise<void> = Promise.resolve();

  constructor(
    protected readonly d: ApplierBaseDeps,
    /**
     * Forget a committed expectation at once: when the lane commits without an fsync (postgres), a
     * crash can lose the entry, and the loop must then apply it like any other.
     */
    private readonly forgetCommitted = false,
  ) {}

  /** Create Recall's bookkeeping schema if needed and read the applied index. */
  abstract open(): Promise<void>;
  /** Set `applied` from what the database has committed. */
  protected abstract readApplied(): Promise<void>;
  /** Apply one committed entry (advance() when done, diverge() when it cannot). */
  protected abstract applyOne(e: Entry): Promise<void>;
  /** Close every connection (they are opened again on demand). */
  protected abstract dropConnections(): void;

  /** The commit index advanced. */
  notify(): void {
    this.wake = true;
    if (!this.running && !this.retryTimer && !this.held && !this.closed) this.loopDone = this.loop();
  }

  /**
   * A donor's pause (recovery/types.ts ApplierPause): wait until `minIndex` is applied, then
   * stop applying until resume(); resolves with the index the database holds.
   */
  async pause(minIndex: number, timeoutMs: number): Promise<number> {
    if (this.diverged) throw new Error(`this replica diverged (${this.diverged.reason}) and cannot be a donor`);
    if (this.held) throw new Error('the applier is already paused (another copy or a resync is in progress)');
    if (!(await this.waitApplied(minIndex, timeoutMs))) {
      throw new Error(`this replica applied ${this.applied}, not ${minIndex}, within ${timeoutMs} ms`);
    }
    await this.hold();
    const d = this.diverged as { reason: string } | null; // may have been set while the last entry applied
    if (d) {
      this.release();
      throw new Error(`this replica diverged (${d.reason}) and cannot be a donor`);
    }
    return this.applied;
  }

  resume(): void {
    this.release();
  }

  /** Stop applying and wait for the entry in flight. */
  async hold(): Promise<void> {
    this.held = true;
    await this.loopDone;
    while (this.running) await new Promise((r) => setTimeout(r, 5));
  }

  release(): void {
    if (!this.held) return;
    this.held = false;
    this.notify();
  }

  /** After the database was replaced: forget everything about the old one and read its index. */
  async reload(): Promise<void> {
    this.dropConnections();
    this.expected.clear();
    this.diverged = null;
    this.gap = null;
    this.lastError = '';
    await this.open();
    this.advance(this.applied);
  }

  /** Resolves true once `index` is applied locally, false after timeoutMs. */
  waitApplied(index: number, timeoutMs: number): Promise<boolean> {
    if (this.applied >= index) return Promise.resolve(true);
    return new Promise((resolve) => {
      const w = { index, resolve: () => resolve(true) };
      this.waiters.push(w);
      setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) {
          this.waiters.splice(i, 1);
          resolve(false);
        }
      }, timeoutMs).unref();
    });
  }

  /** The lane is about to propose its entry with this sequence number: the loop waits for its verdict. */
  expect(seq: number): ApplierExpectation {
    let settle!: () => void;
    const settled = new Promise<void>((r) => (settle = r));
    const e: Expected = { state: 'pending', index: 0, settled, settle };
    this.expected.set(seq, e);
    return {
      committed: (index) => {
        e.state = 'committed';
        e.index = index;
        if (index > this.applied) this.advance(index);
        e.settle();
        if (this.forgetCommitted) this.expected.delete(seq); // a loop waiting on it holds it
      },
      failed: () => {
        e.state = 'failed';
        e.settle();
        // the entry may still be in the log: the loop applies it when it gets there
        this.notify();
      },
    };
  }

  /**
   * An entry this node's lane proposed (sequence `seq`): waits for the lane's verdict; true when
   * the lane committed it itself (nothing to apply), false when the loop must apply it.
   */
  protected async committedByLane(seq: number): Promise<boolean> {
    const ex = this.expected.get(seq);
    if (!ex) return false;
    await ex.settled;
    this.expected.delete(seq);
    if (ex.state !== 'committed') return false; // the lane gave up but the entry is committed
    if (ex.index > this.applied) this.advance(ex.index);
    return true;
  }

  status(): ApplierStatus {
    return {
      applied: this.applied,
      ...(this.held ? { paused: true } : {}),
      diverged: this.diverged !== null,
      ...(this.diverged ? { divergedReason: this.diverged.reason } : {}),
      ...(this.lastError ? { lastError: this.lastError } : {}),
    };
  }

  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.dropConnections();
  }

  protected advance(index: number): void {
    this.applied = index;
    if (this.waiters.length === 0) return;
    const still: typeof this.waiters = [];
    for (const w of this.waiters) (w.index <= index ? w.resolve() : still.push(w));
    this.waiters = still;
  }

  protected diverge(index: number, reason: string): void {
    if (this.diverged) return;
    this.diverged = { index, reason };
    this.d.log.error('replica diverged: applying stopped', { index, reason });
    this.d.onDiverged?.(reason);
  }

  /** After a database error: re-read what the database committed, then resume (one loop at a time). */
  private scheduleRetry(): void {
    if (this.retryTimer || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.readApplied()
        .then(() => {
          this.retryTimer = null;
          this.lastError = '';
          this.notify();
        })
        .catch((e: Error) => {
          this.lastError = e.message;
          this.retryTimer = null;
          this.dropConnections();
          this.scheduleRetry();
        });
    }, RETRY_MS);
  }

  private async loop(): Promise<void> {
    this.running = true;
    try {
      while (this.wake && !this.closed && !this.diverged && !this.held) {
        this.wake = false;
        for (;;) {
          const commit = this.d.commitIndex();
          if (this.applied >= commit || this.closed || this.diverged || this.held) break;
          const first = this.d.firstIndex();
          if (this.applied + 1 < first) {
            if (!this.gap) {
              this.gap = { applied: this.applied, firstIndex: first };
              this.d.log.warn('the log no longer holds the entries this database needs: full resync required', { applied: this.applied, firstIndex: first });
              this.d.onGap?.(this.applied, first);
            }
            break;
          }
          const entries = this.d.entries(this.applied + 1, Math.min(commit, this.applied + APPLY_BATCH_ENTRIES) + 1);
          if (entries.length === 0) break;
          for (const e of entries) {
            if (e.index !== this.applied + 1) break; // a concurrent lane commit moved us on
            await this.applyOne(e);
            if (this.diverged || this.closed || this.held) break;
          }
        }
      }
      this.lastError = '';
    } catch (e) {
      // The database went away (or refused): retry from what it has committed.
      this.lastError = (e as Error).message;
      this.d.log.warn('applier paused: local database error; retrying', { applied: this.applied, error: this.lastError });
      this.dropConnections();
      this.scheduleRetry();
      this.running = false;
      return;
    }
    this.running = false;
    if (this.wake && !this.closed && !this.diverged && !this.held) this.loopDone = this.loop();
  }
}
