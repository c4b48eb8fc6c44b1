// A byte reader over one message body, one method per wire type (Int32, Int16, String = NUL
// terminated, Byten). Reading past the end is bad input from the peer, never a crash.
// https://www.postgresql.org/docs/current/protocol-message-types.html
import { PgProtocolError } from './errors.js';

export class Reader {
  private pos: number;

  constructor(
    private readonly buf: Buffer,
    start = 0,
    private readonly end = buf.length,
  ) {
    this.pos = start;
  }

  get offset(): number {
    return this.pos;
  }

  remaining(): number {
    return this.end - this.pos;
  }

  private need(n: number): void {
    if (n < 0 || this.pos + n > this.end) throw new PgProtocolError('invalid message format');
  }

  int8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }

  int16(): number {
    this.need(2);
    const v = this.buf.readInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  int32(): number {
    this.need(4);
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  /** A NUL-terminated string (UTF-8). */
  cstring(): string {
    const nul = this.buf.indexOf(0, this.pos);
    if (nul < 0 || nul >= this.end) throw new PgProtocolError('invalid string in message');
    const s = this.buf.toString('utf8', this.pos, nul);
    this.pos = nul + 1;
    return s;
  }

  bytes(n: number): Buffer {
    this.need(n);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  rest(): Buffer {
    return this.bytes(this.end - this.pos);
  }
}
