// Encoding of the hard state and snapshot files (written with atomic-file.ts).
import type { ConfState, HardState, Snapshot } from '../consensus/types.js';

export function encodeHardState(hs: HardState): Buffer {
  const b = Buffer.alloc(18);
  b.writeUIntLE(hs.term, 0, 6);
  b.writeUIntLE(hs.vote, 6, 6);
  b.writeUIntLE(hs.commit, 12, 6);
  return b;
}

export function decodeHardState(b: Buffer, file: string): HardState {
  if (b.length !== 18) throw new Error(`${file}: hard state has ${b.length} bytes, expected 18`);
  return { term: b.readUIntLE(0, 6), vote: b.readUIntLE(6, 6), commit: b.readUIntLE(12, 6) };
}

function encodeIds(ids: readonly number[], b: Buffer, off: number): number {
  b.writeUInt32LE(ids.length, off);
  off += 4;
  for (const id of ids) {
    b.writeUInt32LE(id, off);
    off += 4;
  }
  return off;
}

/** Snapshot file: u48 index | u48 term | voters | learners | data. */
export function encodeSnapshot(s: Snapshot): Buffer {
  const { voters, learners } = s.meta.conf;
  const b = Buffer.allocUnsafe(12 + 8 + 4 * (voters.length + learners.length) + s.data.length);
  b.writeUIntLE(s.meta.index, 0, 6);
  b.writeUIntLE(s.meta.term, 6, 6);
  let off = encodeIds(voters, b, 12);
  off = encodeIds(learners, b, off);
  b.set(s.data, off);
  return b;
}

export function decodeSnapshot(b: Buffer, file: string): Snapshot {
  try {
    const index = b.readUIntLE(0, 6);
    const term = b.readUIntLE(6, 6);
    let off = 12;
    const ids = (): number[] => {
      const n = b.readUInt32LE(off);
      off += 4;
      const out: number[] = [];
      for (let i = 0; i < n; i++, off += 4) out.push(b.readUInt32LE(off));
      return out;
    };
    const voters = ids();
    const learners = ids();
    const conf: ConfState = { voters, learners };
    return { meta: { index, term, conf }, data: Uint8Array.prototype.slice.call(b, off) };
  } catch (e) {
    throw new Error(`${file}: malformed snapshot file (${(e as Error).message})`);
  }
}
