// On-disk record of one log entry inside a segment file:
//   u32 payloadBytes | u32 crc32c(payload) | payload
//   payload = u48 index | u48 term | u8 type | data
// The index is inside the checksummed payload so that recovery can tell a record
// that belongs here from stale bytes, and detect gaps.
import type { Entry, EntryType } from '../consensus/types.js';
import { crc32c } from './crc32c.js';

export const RECORD_HEADER_BYTES = 8;
export const PAYLOAD_HEADER_BYTES = 13;
/** A sanity bound for a record's length field; anything larger is garbage, not an entry. */
export const RECORD_PAYLOAD_BYTES_MAX = 256 * 1024 * 1024;

export function recordBytes(e: Entry): number {
  return RECORD_HEADER_BYTES + PAYLOAD_HEADER_BYTES + e.data.length;
}

/** Write the record of `e` into `buf` at `off`; returns the offset after it. */
export function writeRecord(buf: Buffer, off: number, e: Entry): number {
  const payloadBytes = PAYLOAD_HEADER_BYTES + e.data.length;
  const p = off + RECORD_HEADER_BYTES;
  buf.writeUInt32LE(payloadBytes, off);
  buf.writeUIntLE(e.index, p, 6);
  buf.writeUIntLE(e.term, p + 6, 6);
  buf[p + 12] = e.type;
  buf.set(e.data, p + PAYLOAD_HEADER_BYTES);
  buf.writeUInt32LE(crc32c(buf, 0, p, p + payloadBytes), off + 4);
  return p + payloadBytes;
}

export type ParseResult =
  | { ok: true; entry: Entry; next: number }
  | { ok: false; why: string };

/**
 * Parse the record at `off` of `buf` (which holds the file from offset 0).
 * Entries share no memory with `buf` so that the file buffer can be dropped.
 */
export function parseRecord(buf: Buffer, off: number): ParseResult {
  if (off + RECORD_HEADER_BYTES > buf.length) return { ok: false, why: 'partial header' };
  const payloadBytes = buf.readUInt32LE(off);
  if (payloadBytes < PAYLOAD_HEADER_BYTES || payloadBytes > RECORD_PAYLOAD_BYTES_MAX) {
    return { ok: false, why: `implausible length ${payloadBytes}` };
  }
  const p = off + RECORD_HEADER_BYTES;
  if (p + payloadBytes > buf.length) return { ok: false, why: 'partial payload' };
  const want = buf.readUInt32LE(off + 4);
  if (crc32c(buf, 0, p, p + payloadBytes) !== want) return { ok: false, why: 'checksum mismatch' };
  const entry: Entry = {
    index: buf.readUIntLE(p, 6),
    term: buf.readUIntLE(p + 6, 6),
    type: buf[p + 12]! as EntryType,
    data: Uint8Array.prototype.slice.call(buf, p + PAYLOAD_HEADER_BYTES, p + payloadBytes),
  };
  return { ok: true, entry, next: p + payloadBytes };
}

/**
 * After a bad record at `off`, look for any later valid record whose index lies
 * beyond `expectIndex - 1`: if one exists, the damage is in the middle of the log
 * (data we must not silently drop), not a torn tail. Returns its offset or -1.
 */
export function findValidRecordAfter(buf: Buffer, off: number, expectIndex: number): number {
  for (let o = off + 1; o + RECORD_HEADER_BYTES + PAYLOAD_HEADER_BYTES <= buf.length; o++) {
    // Cheap pre-filter on the index field before paying for a checksum.
    const idx = buf.readUIntLE(o + RECORD_HEADER_BYTES, 6);
    if (idx < expectIndex || idx > expectIndex + 1_000_000_000) continue;
    const r = parseRecord(buf, o);
    if (r.ok) return o;
  }
  return -1;
}
