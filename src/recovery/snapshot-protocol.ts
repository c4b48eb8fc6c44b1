// Wire codec of the built-in snapshot transfer (CHANNEL_SNAPSHOT), carried in the peer
// transport's request/response frames (src/transport/transport.ts). Every request starts with
// an op byte; every field is fixed-size big-endian, so a request is validated by length alone.
// Session ids are 64 random bits, so a restarted donor never mistakes a joiner's old session
// for a new one and serves it bytes of another backup.
//
//   Begin ('B')  u8 op, u8 version, u64 minIndex
//     reply      u64 session, u64 index, u64 estimatedBytes
//   Read  ('R')  u8 op, u64 session, u64 offset, u32 length, u64 ack (all below it is unpacked:
//                the donor may drop it)
//     reply      u8 flags (1 = eof, 2 = total known), u32 crc32, u64 spooled, u64 total, u32 n, n bytes
//   End   ('E')  u8 op, u64 session
//     reply      empty
//
// Errors travel as the transport's RemoteError (a text message), never in these bodies.

import { ByteReader } from './byte-reader.js';

export const SNAPSHOT_PROTOCOL_VERSION = 1;

export const OP_BEGIN = 0x42; // 'B'
export const OP_READ = 0x52; // 'R'
export const OP_END = 0x45; // 'E'

const FLAG_EOF = 1;
const FLAG_TOTAL = 2;

export type SessionId = bigint;

export interface BeginRequest {
  op: 'begin';
  version: number;
  minIndex: number;
}
export interface ReadRequest {
  op: 'read';
  session: SessionId;
  offset: number;
  length: number;
  /** The joiner never asks for bytes below this again. */
  ack: number;
}
export interface EndRequest {
  op: 'end';
  session: SessionId;
}
export type SnapshotRequest = BeginRequest | ReadRequest | EndRequest;

export interface BeginReply {
  session: SessionId;
  /** The index the donor's database holds (its applier is paused there during the backup). */
  index: number;
  /** Size of the donor's data directory: the best guess of the stream size before it is done. */
  estimatedBytes: number;
}

export interface ReadReply {
  /** The stream ends with these bytes (offset + n === total). */
  eof: boolean;
  crc: number;
  /** Bytes the donor has spooled so far (grows while its backup runs). */
  spooled: number;
  /** The stream's size, once the backup finished. */
  total?: number;
  data: Buffer;
}

export class SnapshotProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SnapshotProtocolError';
  }
}

const reader = (payload: Uint8Array, what: string) => new ByteReader(payload, what, (m) => new SnapshotProtocolError(m));

class ByteWriter {
  private readonly buf: Buffer;
  private pos = 0;
  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }
  u8(v: number): this {
    this.buf.writeUInt8(v, this.pos);
    this.pos += 1;
    return this;
  }
  u32(v: number): this {
    this.buf.writeUInt32BE(v >>> 0, this.pos);
    this.pos += 4;
    return this;
  }
  u64(v: number | bigint): this {
    this.buf.writeBigUInt64BE(BigInt(v), this.pos);
    this.pos += 8;
    return this;
  }
  done(): Buffer {
    if (this.pos !== this.buf.length) throw new Error(`snapshot codec: wrote ${this.pos} of ${this.buf.length} bytes`);
    return this.buf;
  }
}


export function encodeBegin(minIndex: number): Buffer {
  return new ByteWriter(10).u8(OP_BEGIN).u8(SNAPSHOT_PROTOCOL_VERSION).u64(minIndex).done();
}

export function encodeRead(session: SessionId, offset: number, length: number, ack: number): Buffer {
  return new ByteWriter(29).u8(OP_READ).u64(session).u64(offset).u32(length).u64(ack).done();
}

export function encodeEnd(session: SessionId): Buffer {
  return new ByteWriter(9).u8(OP_END).u64(session).done();
}

/** Decodes a joiner's request; anything malformed throws SnapshotProtocolError. */
export function decodeRequest(payload: Uint8Array): SnapshotRequest {
  const r = reader(payload, 'snapshot request');
  const op = r.u8();
  let req: SnapshotRequest;
  switch (op) {
    case OP_BEGIN:
      req = { op: 'begin', version: r.u8(), minIndex: r.u64() };
      break;
    case OP_READ:
      req = { op: 'read', session: r.u64big(), offset: r.u64(), length: r.u32(), ack: r.u64() };
      break;
    case OP_END:
      req = { op: 'end', session: r.u64big() };
      break;
    default:
      throw new SnapshotProtocolError(`snapshot request: unknown op 0x${op.toString(16)}`);
  }
  r.end();
  return req;
}

export function encodeBeginReply(rep: BeginReply): Buffer {
  return new ByteWriter(24).u64(rep.session).u64(rep.index).u64(rep.estimatedBytes).done();
}

export function decodeBeginReply(payload: Uint8Array): BeginReply {
  const r = reader(payload, 'snapshot begin reply');
  const rep = { session: r.u64big(), index: r.u64(), estimatedBytes: r.u64() };
  r.end();
  return rep;
}

export const READ_REPLY_HEAD_BYTES = 25;

/**
 * The reply's head. The donor reads a chunk straight into a buffer after
 * READ_REPLY_HEAD_BYTES of room and copies this head in front of it (no copy of the chunk).
 */
export function encodeReadReplyHead(rep: Omit<ReadReply, 'data'>, dataBytes: number): Buffer {
  const flags = (rep.eof ? FLAG_EOF : 0) | (rep.total !== undefined ? FLAG_TOTAL : 0);
  return new ByteWriter(READ_REPLY_HEAD_BYTES)
    .u8(flags)
    .u32(rep.crc)
    .u64(rep.spooled)
    .u64(rep.total ?? 0)
    .u32(dataBytes)
    .done();
}

export function encodeReadReply(rep: ReadReply): Buffer {
  return Buffer.concat([encodeReadReplyHead(rep, rep.data.length), rep.data]);
}

export function decodeReadReply(payload: Uint8Array): ReadReply {
  const r = reader(payload, 'snapshot read reply');
  const flags = r.u8();
  const crc = r.u32();
  const spooled = r.u64();
  const total = r.u64();
  const n = r.u32();
  const data = r.bytes(n);
  r.end();
  return { eof: (flags & FLAG_EOF) !== 0, crc, spooled, total: flags & FLAG_TOTAL ? total : undefined, data };
}
