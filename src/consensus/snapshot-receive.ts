// Follower side of the chunked InstallSnapshot stream: chunks must arrive in order;
// a duplicate is ignored, a gap rejects the transfer (the leader restarts it).
import type { Message, Snapshot, SnapshotMeta } from './types.js';

export type ChunkResult =
  | { kind: 'ignore' }
  | { kind: 'reject' }
  | { kind: 'partial'; received: number }
  | { kind: 'complete'; snapshot: Snapshot };

/** Bytes a follower buffers for one incoming snapshot before refusing it. */
const snapshotBytesMax = 1 << 30;

function sameMeta(a: SnapshotMeta, b: SnapshotMeta): boolean {
  return a.index === b.index && a.term === b.term;
}

export class SnapshotReceiver {
  private cur: { meta: SnapshotMeta; term: number; chunks: Uint8Array[]; received: number } | undefined;

  receive(m: Message): ChunkResult {
    const meta = m.snapshotMeta;
    if (!meta) return { kind: 'ignore' };
    const off = m.chunkOffset ?? 0;
    const data = m.chunkData ?? new Uint8Array(0);
    if (off === 0) {
      if (this.cur && sameMeta(this.cur.meta, meta) && this.cur.term === m.term && this.cur.received > 0) {
        // A duplicate first chunk of the transfer in progress.
        return { kind: 'partial', received: this.cur.received };
      }
      this.cur = { meta, term: m.term, chunks: [], received: 0 };
    } else if (!this.cur || !sameMeta(this.cur.meta, meta) || this.cur.term !== m.term) {
      return { kind: 'reject' };
    } else if (off < this.cur.received) {
      return { kind: 'ignore' };
    } else if (off > this.cur.received) {
      return { kind: 'reject' };
    }
    const cur = this.cur;
    if (cur.received + data.length > snapshotBytesMax) {
      this.cur = undefined;
      return { kind: 'reject' };
    }
    cur.chunks.push(data);
    cur.received += data.length;
    if (!m.chunkLast) return { kind: 'partial', received: cur.received };
    this.cur = undefined;
    const all = new Uint8Array(cur.received);
    let at = 0;
    for (const c of cur.chunks) {
      all.set(c, at);
      at += c.length;
    }
    return { kind: 'complete', snapshot: { meta: cur.meta, data: all } };
  }
}
