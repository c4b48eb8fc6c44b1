// A cursor over one packet payload, one method per wire type.
// Basic types: https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_data_types.html
import { ProtocolError } from './errors.js';

export class PacketReader {
  offset: number;
  constructor(
    readonly buf: Buffer,
    offset = 0,
  ) {
    this.offset = offset;
  }

  remaining(): number {
    return this.buf.length - this.offset;
  }

  atEnd(): boolean {
    return this.offset >= this.buf.length;
  }

  private need(n: number): void {
    if (this.offset + n > this.buf.length) {
      throw new ProtocolError(`truncated packet: need ${n} bytes at offset ${this.offset}, have ${this.remaining()}`);
    }
  }

  int1(): number {
    this.need(1);
    return this.buf[this.offset++]!;
  }

  int2(): number {
    this.need(2);
    const v = this.buf.readUInt16LE(this.offset);
    this.offset += 2;
    return v;
  }

  int3(): number {
    this.need(3);
    const v = this.buf.readUIntLE(this.offset, 3);
    this.offset += 3;
    return v;
  }

  int4(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.offset);
    this.offset += 4;
    return v;
  }

  int6(): number {
    this.need(6);
    const v = this.buf.readUIntLE(this.offset, 6);
    this.offset += 6;
    return v;
  }

  int8(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64LE(this.offset);
    this.offset += 8;
    return v;
  }

  /** Length-encoded integer; null for the 0xFB NULL marker. Values above 2^53 are refused. */
  lenencInt(): number | null {
    const first = this.int1();
    if (first < 0xfb) return first;
    if (first === 0xfb) return null;
    if (first === 0xfc) return this.int2();
    if (first === 0xfd) return this.int3();
    if (first === 0xfe) {
      const v = this.int8();
      if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ProtocolError(`length-encoded integer too large: ${v}`);
      return Number(v);
    }
    throw new ProtocolError('invalid length-encoded integer prefix 0xff');
  }

  /** Length-encoded integer that must not be NULL. */
  lenencLength(): number {
    const v = this.lenencInt();
    if (v === null) throw new ProtocolError('unexpected NULL length');
    return v;
  }

  fixed(n: number): Buffer {
    this.need(n);
    const v = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    return v;
  }

  fixedString(n: number): string {
    return this.fixed(n).toString('utf8');
  }

  lenencBytes(): Buffer | null {
    const n = this.lenencInt();
    return n === null ? null : this.fixed(n);
  }

  lenencString(): string | null {
    const b = this.lenencBytes();
    return b === null ? null : b.toString('utf8');
  }

  nullTerminated(): Buffer {
    const end = this.buf.indexOf(0, this.offset);
    if (end < 0) throw new ProtocolError(`missing NUL terminator after offset ${this.offset}`);
    const v = this.buf.subarray(this.offset, end);
    this.offset = end + 1;
    return v;
  }

  nullTerminatedString(): string {
    return this.nullTerminated().toString('utf8');
  }

  /** Null-terminated if a NUL follows, else the rest of the packet (several fields are "string<EOF>" in practice). */
  nullTerminatedOrRest(): Buffer {
    const end = this.buf.indexOf(0, this.offset);
    if (end < 0) return this.rest();
    return this.nullTerminated();
  }

  rest(): Buffer {
    const v = this.buf.subarray(this.offset);
    this.offset = this.buf.length;
    return v;
  }

  restString(): string {
    return this.rest().toString('utf8');
  }

  skip(n: number): void {
    this.need(n);
    this.offset += n;
  }
}
