// The reading half of the resync protocols' binary codecs (snapshot-protocol.ts, rsync-protocol.ts):
// big-endian fixed-width fields, length-prefixed strings, and a clear error for a message that is
// truncated, out of range or too long, since a peer may send anything.
export class ByteReader {
  private pos = 0;
  private readonly buf: Buffer;

  /** `fail` builds the protocol's own error from a message naming `what` was being read. */
  constructor(
    payload: Uint8Array,
    private readonly what: string,
    private readonly fail: (message: string) => Error,
  ) {
    this.buf = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  }
  private need(n: number): void {
    if (this.pos + n > this.buf.length) throw this.fail(`${this.what}: truncated (${this.buf.length} bytes)`);
  }
  u8(): number {
    this.need(1);
    return this.buf.readUInt8(this.pos++);
  }
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  u64big(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }
  /** A u64 that must fit a JS number exactly (indexes, offsets, sizes). */
  u64(): number {
    const v = this.u64big();
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw this.fail(`${this.what}: value ${v} out of range`);
    return Number(v);
  }
  bytes(n: number): Buffer {
    this.need(n);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  /** A u16-length-prefixed UTF-8 string of at most bytesMax bytes. */
  str(bytesMax: number): string {
    this.need(2);
    const n = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    if (n > bytesMax) throw this.fail(`${this.what}: string of ${n} bytes exceeds ${bytesMax}`);
    return this.bytes(n).toString('utf8');
  }
  end(): void {
    if (this.pos !== this.buf.length) throw this.fail(`${this.what}: ${this.buf.length - this.pos} unexpected trailing bytes`);
  }
}
