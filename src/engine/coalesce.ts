// Merge the messages of one Ready before they go on the wire. The core emits one
// Append per proposal (each proposal broadcasts); under load a Ready holds
// hundreds of them per follower. Back-to-back Appends to the same peer in the same
// term whose entries are contiguous are one Append with the first one's
// predecessor, all entries, and the latest commit index. Likewise a follower's
// successive accepting AppendResponses collapse into the last one: the leader
// frees every in-flight Append up to the acknowledged index (Inflights.freeLE).
// Only messages adjacent in the per-peer order are merged, so order is kept.
import { MessageType, type Entry, type Message } from '../consensus/types.js';

export function coalesceMessages(msgs: readonly Message[], mergedBytesMax: number): Message[] {
  if (msgs.length < 2) return msgs as Message[];
  const out: (Message | undefined)[] = [];
  const lastByPeer = new Map<number, { pos: number; bytes: number; entries: Entry[] | undefined }>();
  for (const m of msgs) {
    const prev = lastByPeer.get(m.to);
    const p = prev ? out[prev.pos] : undefined;
    if (p && prev && p.term === m.term) {
      if (m.type === MessageType.Append && p.type === MessageType.Append && m.entries && p.entries && m.entries.length > 0) {
        const pLast = p.logIndex! + p.entries.length;
        const mBytes = m.entries.reduce((n, e) => n + e.data.length, 0);
        if (pLast === m.logIndex && prev.bytes + mBytes <= mergedBytesMax) {
          const entries = prev.entries ?? [...p.entries];
          for (const e of m.entries) entries.push(e);
          out[prev.pos] = { ...p, entries, commit: Math.max(p.commit ?? 0, m.commit ?? 0) };
          prev.entries = entries;
          prev.bytes += mBytes;
          continue;
        }
      }
      if (
        m.type === MessageType.AppendResponse && p.type === MessageType.AppendResponse &&
        !m.reject && !p.reject && (m.logIndex ?? 0) >= (p.logIndex ?? 0)
      ) {
        out[prev.pos] = m;
        continue;
      }
    }
    out.push(m);
    const bytes = m.type === MessageType.Append && m.entries ? m.entries.reduce((n, e) => n + e.data.length, 0) : 0;
    lastByPeer.set(m.to, { pos: out.length - 1, bytes, entries: undefined });
  }
  return out as Message[];
}
