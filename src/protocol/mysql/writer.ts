// Builds one packet payload, one method per wire type. A fresh writer per encode:
// nothing is shared between sessions.
// Basic types: https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_data_types.html

export class PacketWriter {
  private buf: Buffer;
  private len = 0;

  constructor(capacity = 128) {
    this.buf = Buffer.allocUnsafe(capacity);
  }

  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  int1(v: number): this {
    this.ensure(1);
    this.buf[this.len++] = v & 0xff;
    return this;
  }

  int2(v: number): this {
    this.ensure(2);
    this.buf.writeUInt16LE(v & 0xffff, this.len);
    this.len += 2;
    return this;
  }

  int3(v: number): this {
    this.ensure(3);
    this.buf.writeUIntLE(v & 0xffffff, this.len, 3);
    this.len += 3;
    return this;
  }

  int4(v: number): this {
    this.ensure(4);
    this.buf.writeUInt32LE(v >>> 0, this.len);
    this.len += 4;
    return this;
  }

  int6(v: number): this {
    this.ensure(6);
    this.buf.writeUIntLE(v, this.len, 6);
    this.len += 6;
    return this;
  }

  int8(v: bigint | number): this {
    this.ensure(8);
    this.buf.writeBigUInt64LE(BigInt(v), this.len);
    this.len += 8;
    return this;
  }

  lenencInt(v: number | null): this {
    if (v === null) return this.int1(0xfb);
    if (v < 0xfb) return this.int1(v);
    if (v <= 0xffff) return this.int1(0xfc).int2(v);
    if (v <= 0xffffff) return this.int1(0xfd).int3(v);
    return this.int1(0xfe).int8(v);
  }

  fixed(b: Buffer | Uint8Array): this {
    this.ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
    return this;
  }

  fixedString(s: string): this {
    return this.fixed(Buffer.from(s, 'utf8'));
  }

  zeros(n: number): this {
    this.ensure(n);
    this.buf.fill(0, this.len, this.len + n);
    this.len += n;
    return this;
  }

  lenencBytes(b: Buffer | null): this {
    if (b === null) return this.int1(0xfb);
    return this.lenencInt(b.length).fixed(b);
  }

  lenencString(s: string | null): this {
    return this.lenencBytes(s === null ? null : Buffer.from(s, 'utf8'));
  }

  nullTerminated(b: Buffer | string): this {
    this.fixed(typeof b === 'string' ? Buffer.from(b, 'utf8') : b);
    return this.int1(0);
  }

  length(): number {
    return this.len;
  }

  /** The payload built so far (a copy-free view). */
  payload(): Buffer {
    return this.buf.subarray(0, this.len);
  }
}
