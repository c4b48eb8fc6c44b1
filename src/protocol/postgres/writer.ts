// A byte writer, one method per wire type; `message(type)` frames the body with its type byte
// and Int32 length, `startup()` frames an untyped startup-phase packet. A fresh writer per
// encode: no buffer is shared between sessions.
// https://www.postgresql.org/docs/current/protocol-message-types.html
export class Writer {
  private buf: Buffer;
  private pos = 5; // room for the type byte and length

  constructor(size = 64) {
    this.buf = Buffer.allocUnsafe(Math.max(size, 16));
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  int8(v: number): this {
    this.ensure(1);
    this.buf[this.pos++] = v & 0xff;
    return this;
  }

  int16(v: number): this {
    this.ensure(2);
    this.buf.writeInt16BE(v, this.pos);
    this.pos += 2;
    return this;
  }

  int32(v: number): this {
    this.ensure(4);
    this.buf.writeInt32BE(v | 0, this.pos);
    this.pos += 4;
    return this;
  }

  cstring(s: string): this {
    const n = Buffer.byteLength(s);
    this.ensure(n + 1);
    this.buf.write(s, this.pos, 'utf8');
    this.pos += n;
    this.buf[this.pos++] = 0;
    return this;
  }

  bytes(b: Buffer | Uint8Array): this {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }

  /** A typed message: type byte, Int32 length (counting itself), body. */
  message(type: number): Buffer {
    this.buf[0] = type;
    this.buf.writeInt32BE(this.pos - 1, 1);
    return this.buf.subarray(0, this.pos);
  }

  /** An untyped startup-phase packet (StartupMessage, SSLRequest, CancelRequest): Int32 length, body. */
  startup(): Buffer {
    this.buf.writeInt32BE(this.pos - 1, 1);
    return this.buf.subarray(1, this.pos);
  }
}
