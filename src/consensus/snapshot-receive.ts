// Follower side of the chunked InstallSnapshot stream. Chunks that arrive ahead of
// the next expected offset are kept (a bounded reassembly buffer), because the
// network reorders; duplicates are ignored; a chunk of a transfer we do not have
// (we restarted) is answered with a reject at offset 0 so the leader starts over.
import type { Message, Snapshot, SnapshotMeta } from './types.js';

export type ChunkResult =
  | { kind: 'ignore' }
  | { kind: 'reject'; received: number }
  | { kind: 'partial'; received: number }
  | { kind: 'complete'; snapshot: Snapshot };

/** Bytes a follower buffers for one incoming snapshot before refusing it. */
const snapshotBytesMax = 1 << 30;
/** Out-of-order chunks kept for reassembly. */
const aheadChunksMax = 4096;

function sameMeta(a: SnapshotMeta, b: SnapshotMeta): boolean {
  return a.index === b.index && a.term === b.term;
}

interface Transfer {
  readonly meta: SnapshotMeta;
  readonly term: number;
  readonly chunks: Uint8Array[];
  received: number;
  /** offset -> chunk, for chunks that overtook earlier ones. */
  readonly ahead: Map<number, { data: Uint8Array; last: boolean }>;
  aheadBytes: number;
}

export class SnapshotReceiver {
  private cur: Transfer | undefined;

  receive(m: Message): ChunkResult {
    const meta = m.snapshotMeta;
    if (!meta) return { kind: 'ignore' };
    const off = m.chunkOffset ?? 0;
    const data = m.chunkData ?? new Uint8Array(0);
    const last = m.chunkLast === true;
    const same = this.cur !== undefined && sameMeta(this.cur.meta, meta) && this.cur.term === m.term;
    if (!same) {
      if (off !== 0) return { kind: 'reject', received: 0 };
      this.cur = { meta, term: m.term, chunks: [], received: 0, ahead: new Map(), aheadBytes: 0 };
    }
    const cur = this.cur!;
    if (off < cur.received) return off === 0 ? { kind: 'partial', received: cur.received } : { kind: 'ignore' };
    if (off > cur.received) {
      if (!cur.ahead.has(off) && cur.ahead.size < aheadChunksMax && cur.received + cur.aheadBytes + data.length <= snapshotBytesMax) {
        cur.ahead.set(off, { data, last });
        cur.aheadBytes += data.length;
      }
      return { kind: 'ignore' };
    }
    let chunk: { data: Uint8Array; last: boolean } | undefined = { data, last };
    let done = false;
    while (chunk) {
      if (cur.received + chunk.data.length > snapshotBytesMax) {
        this.cur = undefined;
        return { kind: 'reject', received: 0 };
      }
      cur.chunks.push(chunk.data);
      cur.received += chunk.data.length;
      if (chunk.last) {
        done = true;
        break;
      }
      chunk = cur.ahead.get(cur.received);
      if (chunk) {
        cur.ahead.delete(cur.received);
        cur.aheadBytes -= chunk.data.length;
      }
    }
    if (!done) return { kind: 'partial', received: cur.received };
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
