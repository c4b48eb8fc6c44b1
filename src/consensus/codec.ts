// Binary codec for consensus messages (peer wire format), conf changes and entries.
// Layout: version byte, message type byte, presence bitmap (varint), from, to, term,
// then each present optional field in a fixed order. Integers are unsigned LEB128
// varints up to 2^53-1. Decoding faces the network: anything malformed, truncated or
// oversized throws DecodeError, never anything else.
import { ConfChangeType, EntryType, MessageType, type ConfChange, type ConfState, type Entry, type Message, type SnapshotMeta } from './types.js';

export const codecVersion = 1;
/** Limits on decoded input (a peer cannot make us allocate without bound). */
export const messageBytesMax = 256 * 1024 * 1024;
export const entriesPerMessageMax = 1_000_000;
export const confMembersMax = 10_000;

export class DecodeError extends Error {
  constructor(message: string) {
    super(`consensus message: ${message}`);
    this.name = 'DecodeError';
  }
}

class Writer {
  private buf = new Uint8Array(64);
  private len = 0;
  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const b = new Uint8Array(size);
    b.set(this.buf.subarray(0, this.len));
    this.buf = b;
  }
  byte(v: number): void {
    this.ensure(1);
    this.buf[this.len++] = v & 0xff;
  }
  uint(v: number): void {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`cannot encode ${v} as an unsigned integer`);
    this.ensure(8);
    while (v >= 0x80) {
      this.buf[this.len++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[this.len++] = v;
  }
  bytes(b: Uint8Array): void {
    this.uint(b.length);
    this.ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  done(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

class Reader {
  private at = 0;
  constructor(private readonly buf: Uint8Array) {}
  byte(): number {
    if (this.at >= this.buf.length) throw new DecodeError('truncated');
    return this.buf[this.at++]!;
  }
  uint(): number {
    let v = 0;
    let mul = 1;
    for (let i = 0; i < 8; i++) {
      const b = this.byte();
      v += (b & 0x7f) * mul;
      if (!Number.isSafeInteger(v)) throw new DecodeError('integer too large');
      if ((b & 0x80) === 0) return v;
      mul *= 0x80;
    }
    throw new DecodeError('integer too long');
  }
  bool(): boolean {
    const b = this.byte();
    if (b > 1) throw new DecodeError(`bad boolean ${b}`);
    return b === 1;
  }
  bytes(): Uint8Array {
    const n = this.uint();
    if (n > this.buf.length - this.at) throw new DecodeError('truncated bytes');
    const out = this.buf.slice(this.at, this.at + n);
    this.at += n;
    return out;
  }
  count(max: number, what: string): number {
    const n = this.uint();
    if (n > max || n > this.buf.length - this.at) throw new DecodeError(`too many ${what} (${n})`);
    return n;
  }
  end(): void {
    if (this.at !== this.buf.length) throw new DecodeError(`${this.buf.length - this.at} trailing bytes`);
  }
}

// Presence bits of the optional fields, in encoding order.
const F = {
  logIndex: 1 << 0,
  logTerm: 1 << 1,
  entries: 1 << 2,
  commit: 1 << 3,
  reject: 1 << 4,
  rejectHint: 1 << 5,
  hintTerm: 1 << 6,
  snapshotMeta: 1 << 7,
  chunkOffset: 1 << 8,
  chunkData: 1 << 9,
  chunkLast: 1 << 10,
  context: 1 << 11,
  transfer: 1 << 12,
} as const;
const fieldsAll = (1 << 13) - 1;

function writeEntry(w: Writer, e: Entry): void {
  w.uint(e.term);
  w.uint(e.index);
  w.byte(e.type);
  w.bytes(e.data);
}

function readEntry(r: Reader): Entry {
  const term = r.uint();
  const index = r.uint();
  const type = r.byte();
  if (type > EntryType.ConfChange) throw new DecodeError(`bad entry type ${type}`);
  const data = r.bytes();
  return { term, index, type: type as EntryType, data };
}

function writeConf(w: Writer, c: ConfState): void {
  w.uint(c.voters.length);
  for (const v of c.voters) w.uint(v);
  w.uint(c.learners.length);
  for (const v of c.learners) w.uint(v);
}

function readConf(r: Reader): ConfState {
  const voters: number[] = [];
  for (let n = r.count(confMembersMax, 'voters'); n > 0; n--) voters.push(r.uint());
  const learners: number[] = [];
  for (let n = r.count(confMembersMax, 'learners'); n > 0; n--) learners.push(r.uint());
  return { voters, learners };
}

function writeMeta(w: Writer, m: SnapshotMeta): void {
  w.uint(m.index);
  w.uint(m.term);
  writeConf(w, m.conf);
}

function readMeta(r: Reader): SnapshotMeta {
  const index = r.uint();
  const term = r.uint();
  return { index, term, conf: readConf(r) };
}

export function encodeMessage(m: Message): Uint8Array {
  const w = new Writer();
  w.byte(codecVersion);
  w.byte(m.type);
  let bits = 0;
  for (const [k, bit] of Object.entries(F)) if (m[k as keyof Message] !== undefined) bits |= bit;
  w.uint(bits);
  w.uint(m.from);
  w.uint(m.to);
  w.uint(m.term);
  if (m.logIndex !== undefined) w.uint(m.logIndex);
  if (m.logTerm !== undefined) w.uint(m.logTerm);
  if (m.entries !== undefined) {
    w.uint(m.entries.length);
    for (const e of m.entries) writeEntry(w, e);
  }
  if (m.commit !== undefined) w.uint(m.commit);
  if (m.reject !== undefined) w.byte(m.reject ? 1 : 0);
  if (m.rejectHint !== undefined) w.uint(m.rejectHint);
  if (m.hintTerm !== undefined) w.uint(m.hintTerm);
  if (m.snapshotMeta !== undefined) writeMeta(w, m.snapshotMeta);
  if (m.chunkOffset !== undefined) w.uint(m.chunkOffset);
  if (m.chunkData !== undefined) w.bytes(m.chunkData);
  if (m.chunkLast !== undefined) w.byte(m.chunkLast ? 1 : 0);
  if (m.context !== undefined) w.bytes(m.context);
  if (m.transfer !== undefined) w.byte(m.transfer ? 1 : 0);
  return w.done();
}

export function decodeMessage(b: Uint8Array): Message {
  if (!(b instanceof Uint8Array)) throw new DecodeError('not bytes');
  if (b.length > messageBytesMax) throw new DecodeError(`${b.length} bytes exceeds ${messageBytesMax}`);
  const r = new Reader(b);
  const version = r.byte();
  if (version !== codecVersion) throw new DecodeError(`unsupported version ${version}`);
  const type = r.byte();
  if (type < MessageType.PreVote || type > MessageType.Propose) throw new DecodeError(`bad message type ${type}`);
  const bits = r.uint();
  if ((bits & ~fieldsAll) !== 0) throw new DecodeError(`unknown fields 0x${bits.toString(16)}`);
  const m: { -readonly [K in keyof Message]: Message[K] } = { type: type as MessageType, from: r.uint(), to: r.uint(), term: r.uint() };
  if (bits & F.logIndex) m.logIndex = r.uint();
  if (bits & F.logTerm) m.logTerm = r.uint();
  if (bits & F.entries) {
    const entries: Entry[] = [];
    for (let n = r.count(entriesPerMessageMax, 'entries'); n > 0; n--) entries.push(readEntry(r));
    m.entries = entries;
  }
  if (bits & F.commit) m.commit = r.uint();
  if (bits & F.reject) m.reject = r.bool();
  if (bits & F.rejectHint) m.rejectHint = r.uint();
  if (bits & F.hintTerm) m.hintTerm = r.uint();
  if (bits & F.snapshotMeta) m.snapshotMeta = readMeta(r);
  if (bits & F.chunkOffset) m.chunkOffset = r.uint();
  if (bits & F.chunkData) m.chunkData = r.bytes();
  if (bits & F.chunkLast) m.chunkLast = r.bool();
  if (bits & F.context) m.context = r.bytes();
  if (bits & F.transfer) m.transfer = r.bool();
  r.end();
  return m;
}

export function encodeEntry(e: Entry): Uint8Array {
  const w = new Writer();
  w.byte(codecVersion);
  writeEntry(w, e);
  return w.done();
}

export function decodeEntry(b: Uint8Array): Entry {
  const r = new Reader(b);
  const version = r.byte();
  if (version !== codecVersion) throw new DecodeError(`unsupported entry version ${version}`);
  const e = readEntry(r);
  r.end();
  return e;
}

export function encodeConfChange(cc: ConfChange): Uint8Array {
  const w = new Writer();
  w.byte(codecVersion);
  w.byte(cc.type);
  w.uint(cc.node);
  return w.done();
}

export function decodeConfChange(b: Uint8Array): ConfChange {
  const r = new Reader(b);
  const version = r.byte();
  if (version !== codecVersion) throw new DecodeError(`unsupported conf change version ${version}`);
  const type = r.byte();
  if (type > ConfChangeType.RemoveNode) throw new DecodeError(`bad conf change type ${type}`);
  const node = r.uint();
  r.end();
  return { type: type as ConfChangeType, node };
}
