// The full resync of this replica (DESIGN.md "Recovery"): when the log no longer holds what the
// local database needs, when the database diverged, or when the leader sent a snapshot, the
// database is replaced by a copy of a healthy donor's, through one of the methods (built-in
// snapshot transfer, hook-mode rsync). The need is written to a marker file first, so a replica
// killed in the middle resyncs again after a restart instead of serving a half-copied database.
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../util/log.js';
import type { ResyncContext, ResyncProgress } from './types.js';
import { resyncBytes, resyncBytesTotal, resyncInProgress, resyncRate, resyncsTotal } from './metrics.js';

export type ResyncMethod = 'snapshot' | 'rsync';

/** One way of replacing the local database by a donor's; returns the donor's index. */
export interface ResyncRunner {
  readonly method: ResyncMethod;
  run(donor: number, minIndex: number, ctx: ResyncContext): Promise<{ index: number; bytes: number; seconds: number }>;
}

/** What the manager needs of the applier (src/replication/applier.ts). */
export interface ResyncApplier {
  readonly applied: number;
  hold(): Promise<void>;
  release(): void;
  /** Re-read everything from the replaced database. */
  reload(): Promise<void>;
}

export interface ResyncManagerOptions {
  dataDir: string;
  log: Logger;
  applier: ResyncApplier;
  runner: ResyncRunner;
  /** Donors to try, best first (connected followers before the leader). */
  candidates(): number[];
  /** Index the copy must hold at least (the log's first index - 1: what follows is in the log). */
  logFloor(): number;
  /** Hand leadership over first when this node leads. */
  stepDown(): Promise<void>;
  /** Base context (transport, signal) for the runner. */
  context: Omit<ResyncContext, 'onProgress' | 'log'>;
  retryMsMin?: number;
  retryMsMax?: number;
}

export interface ResyncStatus {
  state: 'idle' | 'needed' | 'running' | 'failed';
  reason?: string;
  method?: ResyncMethod;
  since?: string;
  progress?: ResyncProgress;
  lastError?: string;
  /** The last completed resync. */
  last?: { method: ResyncMethod; donor: number; index: number; bytes: number; seconds: number; bytesPerSec: number; at: string };
}

const MARKER = 'resync-needed.json';

export class ResyncManager {
  private state: ResyncStatus['state'] = 'idle';
  private reason = '';
  private minIndex = 0;
  private since = '';
  private progress: ResyncProgress | undefined;
  private lastError = '';
  private last: ResyncStatus['last'];
  private retryMs: number;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private running: Promise<void> | null = null;

  constructor(private readonly o: ResyncManagerOptions) {
    this.retryMs = o.retryMsMin ?? 2000;
  }

  /** A marker left by a run that did not finish: resync again. */
  resumeFromMarker(): boolean {
    try {
      const m = JSON.parse(fs.readFileSync(path.join(this.o.dataDir, MARKER), 'utf8')) as { reason?: string; minIndex?: number };
      this.request(`${m.reason ?? 'unknown'} (a resync was unfinished at restart)`, Number(m.minIndex) || 0);
      return true;
    } catch {
      return false;
    }
  }

  get active(): boolean {
    return this.state !== 'idle';
  }

  /** Short text for errors and readiness. */
  describe(): string | null {
    if (this.state === 'idle') return null;
    const p = this.progress;
    const pct = p?.totalBytes ? ` ${Math.min(100, Math.round((100 * p.bytes) / p.totalBytes))}%` : '';
    const at = p ? `, ${p.phase}${pct} from node ${p.donor}` : '';
    return `resync ${this.state}${at}: ${this.reason}${this.lastError ? ` (last error: ${this.lastError})` : ''}`;
  }

  status(): ResyncStatus {
    return {
      state: this.state,
      ...(this.reason ? { reason: this.reason } : {}),
      ...(this.state !== 'idle' ? { method: this.o.runner.method, since: this.since } : {}),
      ...(this.progress && this.state !== 'idle' ? { progress: this.progress } : {}),
      ...(this.lastError ? { lastError: this.lastError } : {}),
      ...(this.last ? { last: this.last } : {}),
    };
  }

  /** This replica needs a new copy of its database holding at least `minIndex`. */
  request(reason: string, minIndex: number): void {
    if (this.closed) return;
    this.minIndex = Math.max(this.minIndex, minIndex);
    if (this.state !== 'idle') return;
    this.state = 'needed';
    this.reason = reason;
    this.since = new Date().toISOString();
    this.lastError = '';
    resyncInProgress.set(1);
    try {
      fs.writeFileSync(path.join(this.o.dataDir, MARKER), JSON.stringify({ reason, minIndex: this.minIndex, at: this.since }) + '\n');
    } catch (e) {
      this.o.log.warn('could not write the resync marker', { error: (e as Error).message });
    }
    this.o.log.warn('full resync needed', { reason, minIndex: this.minIndex, method: this.o.runner.method });
    this.schedule(0);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running?.catch(() => undefined);
  }

  private schedule(ms: number): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.running = this.run().finally(() => (this.running = null));
    }, ms);
    this.timer.unref();
  }

  private async run(): Promise<void> {
    this.state = 'running';
    const log = this.o.log;
    try {
      await this.o.stepDown();
      await this.o.applier.hold();
      const minIndex = Math.max(this.minIndex, this.o.logFloor());
      const donors = this.o.candidates();
      if (donors.length === 0) throw new Error('no connected replica to copy from');
      let done: { index: number; bytes: number; seconds: number; donor: number } | null = null;
      const errors: string[] = [];
      for (const donor of donors) {
        if (this.closed) return;
        log.info('full resync starting', { method: this.o.runner.method, donor, minIndex, reason: this.reason });
        try {
          const r = await this.o.runner.run(donor, minIndex, { ...this.o.context, log, onProgress: (p) => this.onProgress(p) });
          done = { ...r, donor };
          break;
        } catch (e) {
          errors.push(`node ${donor}: ${(e as Error).message}`);
          log.warn('full resync from donor failed', { donor, error: (e as Error).message });
        }
      }
      if (!done) throw new Error(errors.join('; '));
      await this.o.applier.reload();
      const applied = this.o.applier.applied;
      if (applied < minIndex) throw new Error(`the copy holds index ${applied}, older than the ${minIndex} this replica needs`);
      fs.rmSync(path.join(this.o.dataDir, MARKER), { force: true });
      const bytesPerSec = done.seconds > 0 ? Math.round(done.bytes / done.seconds) : 0;
      this.last = { method: this.o.runner.method, donor: done.donor, index: applied, bytes: done.bytes, seconds: done.seconds, bytesPerSec, at: new Date().toISOString() };
      log.info('full resync done', { ...this.last, mbPerSec: Math.round(bytesPerSec / 1e5) / 10 });
      resyncsTotal.inc({ method: this.o.runner.method, outcome: 'ok' });
      this.state = 'idle';
      this.reason = '';
      this.minIndex = 0;
      this.lastError = '';
      this.retryMs = this.o.retryMsMin ?? 2000;
      resyncInProgress.set(0);
      this.o.applier.release();
    } catch (e) {
      // The applier stays held: the database is either unchanged (and still lacks what it
      // needs) or partly replaced; either way it must not apply or serve until a run succeeds.
      this.lastError = (e as Error).message;
      this.state = 'failed';
      resyncsTotal.inc({ method: this.o.runner.method, outcome: 'failed' });
      log.error('full resync failed; retrying', { error: this.lastError, retryInMs: this.retryMs });
      const wait = this.retryMs;
      this.retryMs = Math.min(this.retryMs * 2, this.o.retryMsMax ?? 30_000);
      this.schedule(wait);
    }
  }

  private lastLog = 0;

  private onProgress(p: ResyncProgress): void {
    this.progress = p;
    resyncBytes.set(p.bytes);
    resyncBytesTotal.set(p.totalBytes ?? 0);
    resyncRate.set(p.bytesPerSec);
    const now = Date.now();
    if (now - this.lastLog >= 5000) {
      this.lastLog = now;
      this.o.log.info('resync progress', {
        phase: p.phase,
        donor: p.donor,
        mb: Math.round(p.bytes / 1e5) / 10,
        ...(p.totalBytes ? { totalMb: Math.round(p.totalBytes / 1e5) / 10 } : {}),
        mbPerSec: Math.round(p.bytesPerSec / 1e5) / 10,
        ...(p.etaSec !== undefined ? { etaSec: Math.round(p.etaSec) } : {}),
      });
    }
  }
}
