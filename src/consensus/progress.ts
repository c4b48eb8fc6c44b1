// Per-follower replication progress kept by the leader (etcd/raft tracker.Progress).
// Probe: one Append at a time until the follower's match is found.
// Replicate: pipelined Appends, bounded by Inflights (messages and bytes).
// Snapshot: a snapshot is streaming; no Appends until it is acknowledged.
import type { Snapshot } from './types.js';

export const enum ProgressState {
  Probe = 'probe',
  Replicate = 'replicate',
  Snapshot = 'snapshot',
}

/** Appends in flight to one follower, by last index, bounded in count and bytes. */
export class Inflights {
  private items: { index: number; bytes: number }[] = [];
  private bytes = 0;
  constructor(
    private readonly countMax: number,
    private readonly bytesMax: number,
  ) {}
  get count(): number {
    return this.items.length;
  }
  add(index: number, bytes: number): void {
    this.items.push({ index, bytes });
    this.bytes += bytes;
  }
  /** Frees every message whose last index is <= index (acknowledged). */
  freeLE(index: number): void {
    let n = 0;
    while (n < this.items.length && this.items[n]!.index <= index) {
      this.bytes -= this.items[n]!.bytes;
      n++;
    }
    if (n > 0) this.items.splice(0, n);
  }
  freeFirstOne(): void {
    const first = this.items[0];
    if (first) this.freeLE(first.index);
  }
  full(): boolean {
    return this.items.length >= this.countMax || (this.bytesMax > 0 && this.bytes >= this.bytesMax);
  }
  reset(): void {
    this.items = [];
    this.bytes = 0;
  }
}

/** A snapshot being streamed to one follower in chunks. */
export interface SnapshotSend {
  readonly snapshot: Snapshot;
  /** Next byte offset to send. */
  sent: number;
  /** Bytes the follower has acknowledged. */
  acked: number;
  /** Ticks since the last acknowledgement (the transfer is restarted when too long). */
  idleTicks: number;
  /** Offset of the last go-back after a gap report (-1: none). */
  rewoundAt: number;
}

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = ProgressState.Probe;
  /** Probe state: an Append is out and unanswered. */
  probeSent = false;
  pendingSnapshot = 0;
  snapshotSend: SnapshotSend | undefined;
  /** Heard from since the last check-quorum round. */
  recentActive = false;
  readonly inflights: Inflights;

  constructor(
    next: number,
    public isLearner: boolean,
    inflightMessagesMax: number,
    inflightBytesMax: number,
  ) {
    this.next = next;
    this.inflights = new Inflights(inflightMessagesMax, inflightBytesMax);
  }

  private resetState(state: ProgressState): void {
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.snapshotSend = undefined;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    if (this.state === ProgressState.Snapshot) {
      // The snapshot may have been installed: probe right after it.
      const pending = this.pendingSnapshot;
      this.resetState(ProgressState.Probe);
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState(ProgressState.Probe);
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState(ProgressState.Replicate);
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshot: Snapshot): void {
    this.resetState(ProgressState.Snapshot);
    this.pendingSnapshot = snapshot.meta.index;
    this.snapshotSend = { snapshot, sent: 0, acked: 0, idleTicks: 0, rewoundAt: -1 };
  }

  /** An acknowledgement up to n; false if it is stale. */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, n + 1);
    return updated;
  }

  /** A rejection of the Append after `rejected`; matchHint is the follower's guess. False if stale. */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === ProgressState.Replicate) {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1, 1);
    this.probeSent = false;
    return true;
  }

  isPaused(): boolean {
    switch (this.state) {
      case ProgressState.Probe:
        return this.probeSent;
      case ProgressState.Replicate:
        return this.inflights.full();
      default:
        return true;
    }
  }
}
