// Packet framing: 3-byte little-endian payload length, 1-byte sequence id, payload.
// A payload of 0xFFFFFF bytes or more is split into 0xFFFFFF-byte packets followed by a
// shorter one (possibly empty), each with the next sequence id.
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_packets.html
import { PACKET_PAYLOAD_MAX } from './constants.js';
import { ProtocolError } from './errors.js';

export const PACKET_HEADER_BYTES = 4;

/** Frame one logical payload as one or more packets starting at sequence id `seq`. */
export function encodePacket(payload: Buffer, seq: number): Buffer {
  const parts = Math.floor(payload.length / PACKET_PAYLOAD_MAX) + 1;
  const out = Buffer.allocUnsafe(payload.length + parts * PACKET_HEADER_BYTES);
  let src = 0;
  let dst = 0;
  for (let i = 0; i < parts; i++) {
    const n = Math.min(PACKET_PAYLOAD_MAX, payload.length - src);
    out.writeUIntLE(n, dst, 3);
    out[dst + 3] = (seq + i) & 0xff;
    payload.copy(out, dst + PACKET_HEADER_BYTES, src, src + n);
    src += n;
    dst += PACKET_HEADER_BYTES + n;
  }
  return out;
}

/** Number of packets (and so sequence ids) a payload of this length takes. */
export function packetCount(payloadBytes: number): number {
  return Math.floor(payloadBytes / PACKET_PAYLOAD_MAX) + 1;
}

/** Rewrite the sequence id of every packet in a buffer of whole packets (used when relaying a packet
 * into a conversation whose numbering differs, e.g. the backend's auth OK to the client). */
export function renumberPackets(buf: Buffer, firstSeq: number): Buffer {
  let off = 0;
  let seq = firstSeq;
  while (off + PACKET_HEADER_BYTES <= buf.length) {
    const len = buf.readUIntLE(off, 3);
    buf[off + 3] = seq++ & 0xff;
    off += PACKET_HEADER_BYTES + len;
  }
  return buf;
}

export interface Packet {
  /** Joined payload of all packets of a logical packet. */
  payload: Buffer;
  /** Sequence id of the first packet. */
  seq: number;
  /** Sequence id of the last packet (differs from seq for payloads >= 16 MiB). */
  lastSeq: number;
}

/**
 * Incremental framer for a byte stream: push chunks as they arrive, take whole logical packets
 * (continuations joined). Used outside the relay fast path: handshakes, the backend admin side,
 * tests. Refuses payloads above `payloadBytesMax` as soon as the header announces them.
 */
export class PacketFramer {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private parts: Buffer[] = [];
  private partsBytes = 0;
  private firstSeq = -1;
  private lastPartSeq = -1;

  constructor(private readonly payloadBytesMax = 64 * 1024 * 1024) {}

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** Bytes received but not yet returned as a packet (a stalled client is mid-packet when > 0). */
  pendingBytes(): number {
    return this.buffered + this.partsBytes;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length < n) {
      const joined = Buffer.concat(this.chunks);
      this.chunks = [joined];
    }
    return this.chunks[0]!;
  }

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const head = this.peek(n);
    const out = head.subarray(0, n);
    if (head.length === n) this.chunks.shift();
    else this.chunks[0] = head.subarray(n);
    this.buffered -= n;
    return out;
  }

  /** Next whole logical packet, or null if more bytes are needed. Throws ProtocolError on a too-large packet. */
  next(): Packet | null {
    for (;;) {
      if (this.buffered < PACKET_HEADER_BYTES) return null;
      const head = this.peek(PACKET_HEADER_BYTES);
      const len = head.readUIntLE(0, 3);
      const seq = head[3]!;
      if (this.partsBytes + len > this.payloadBytesMax) {
        throw new ProtocolError(
          `packet of ${this.partsBytes + len} bytes exceeds the limit of ${this.payloadBytesMax} bytes`,
          1153,
          '08S01',
        );
      }
      if (this.buffered < PACKET_HEADER_BYTES + len) return null;
      if (this.firstSeq >= 0 && seq !== ((this.lastPartSeq + 1) & 0xff)) {
        throw new ProtocolError(
          `packet sequence id ${seq} out of order, expected ${(this.lastPartSeq + 1) & 0xff}`,
          1156,
          '08S01',
        );
      }
      this.take(PACKET_HEADER_BYTES);
      this.lastPartSeq = seq;
      const payload = Buffer.from(this.take(len)); // copy: chunks may be reused by the caller
      if (this.firstSeq < 0) this.firstSeq = seq;
      if (len === PACKET_PAYLOAD_MAX) {
        this.parts.push(payload);
        this.partsBytes += len;
        continue;
      }
      const whole = this.parts.length === 0 ? payload : Buffer.concat([...this.parts, payload]);
      const packet = { payload: whole, seq: this.firstSeq, lastSeq: seq };
      this.parts = [];
      this.partsBytes = 0;
      this.firstSeq = -1;
      return packet;
    }
  }

  /** Bytes buffered after the last whole packet (handed on when the relay takes over the stream). */
  drain(): Buffer {
    const rest = Buffer.concat(this.chunks);
    this.chunks = [];
    this.buffered = 0;
    return rest;
  }
}
