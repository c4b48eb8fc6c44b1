// Merge the messages of one Ready before they go on the wire. The core emits one
// Append per proposal (each proposal broadcasts); under load a Ready holds
// hundreds of them per follower. Back-to-back Appends to the same peer in the same
// term whose entries are contiguous are one Append with the first one's
// predecessor, all entries, and the latest commit index. Likewise a follower's
// successive accepting AppendResponses collapse into the last one: the leader
// frees every in-flight Append up to the acknowledged index (Inflights.freeLE).
// Only messages adjacent in the per-peer order are merged, so order is kept.
import { MessageType, type Entry, type Message } from '../consensus/types.js';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

interface Open {
  pos: number;
  bytes: number;
  /** Our own copy once a merge happened (the core's message objects are never mutated). */
  merged: (Mutable<Message> & { entries: Entry[] }) | undefined;
}

function dataBytes(entries: readonly Entry[]): number {
  let n = 0;
  for (const e of entries) n += e.data.length;
  return n;
}

export function coalesceMessages(msgs: readonly Message[], mergedBytesMax: number): Message[] {
  if (msgs.length < 2) return msgs as Message[];
  const out: Message[] = [];
  const open = new Map<number, Open>();
  for (const m of msgs) {
    const o = open.get(m.to);
    const p = o ? out[o.pos]! : undefined;
    if (o && p && p.term === m.term) {
      if (m.type === MessageType.Append && p.type === MessageType.Append && m.entries && p.entries && m.entries.length > 0) {
        const mBytes = dataBytes(m.entries);
        if (p.logIndex! + p.entries.length === m.logIndex && o.bytes + mBytes <= mergedBytesMax) {
          let merged = o.merged;
          if (!merged) {
            merged = { ...p, entries: [...p.entries] };
            o.merged = merged;
            out[o.pos] = merged;
          }
          for (const e of m.entries) merged.entries.push(e);
          if ((m.commit ?? 0) > (merged.commit ?? 0)) merged.commit = m.commit;
          o.bytes += mBytes;
          continue;
        }
      }
      if (m.type === MessageType.AppendResponse && p.type === MessageType.AppendResponse && !m.reject && !p.reject && (m.logIndex ?? 0) >= (p.logIndex ?? 0)) {
        out[o.pos] = m;
        continue;
      }
    }
    out.push(m);
    open.set(m.to, { pos: out.length - 1, bytes: m.type === MessageType.Append && m.entries ? dataBytes(m.entries) : 0, merged: undefined });
  }
  return out;
}
