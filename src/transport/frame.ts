// Wire framing of a peer link:
//   u32 length (of what follows) | u8 version | u8 type | body
// The decoder is incremental (TCP delivers bytes split anywhere) and enforces a
// frame size limit before buffering, so a peer cannot make us allocate without bound.

export const FRAME_VERSION = 1;
export const FRAME_HEADER_BYTES = 6;

export const enum FrameType {
  /** Handshake: cluster id, node id, challenge nonce. */
  Hello = 1,
  /** Handshake: HMAC proof over both challenges. */
  Auth = 2,
  /** One-way message on a channel. */
  Data = 3,
  Request = 4,
  Response = 5,
  /** Sent before closing a connection we refuse, so the other side logs why. */
  Reject = 6,
}

export class FrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FrameError';
  }
}

/** The header of a frame whose body is `bodyBytes` long (the body is written separately). */
export function frameHeader(type: FrameType, bodyBytes: number): Buffer {
  const h = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  writeFrameHeader(h, type, bodyBytes);
  return h;
}

/** The header of a frame with `bodyBytes` of body, at the start of `b`. */
export function writeFrameHeader(b: Buffer, type: FrameType, bodyBytes: number): void {
  b.writeUInt32BE(bodyBytes + 2, 0);
  b[4] = FRAME_VERSION;
  b[5] = type;
}

export function encodeFrame(type: FrameType, body: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(FRAME_HEADER_BYTES + body.length);
  b.writeUInt32BE(body.length + 2, 0);
  b[4] = FRAME_VERSION;
  b[5] = type;
  b.set(body, FRAME_HEADER_BYTES);
  return b;
}

export interface Frame {
  readonly type: FrameType;
  readonly body: Buffer;
}

export class FrameDecoder {
  private chunks: Buffer[] = [];
  private bytes = 0;

  /** frameBytesMax bounds a whole frame, header included. */
  constructor(private frameBytesMax: number) {}

  setFrameBytesMax(n: number): void {
    this.frameBytesMax = n;
  }

  /** Feed bytes; returns complete frames. Throws FrameError on a malformed or oversized frame. */
  push(chunk: Buffer): Frame[] {
    this.chunks.push(chunk);
    this.bytes += chunk.length;
    const out: Frame[] = [];
    for (;;) {
      if (this.bytes < 4) break;
      const head = this.peek(4);
      const len = head.readUInt32BE(0);
      if (len < 2) throw new FrameError(`malformed frame: length ${len}`);
      if (len + 4 > this.frameBytesMax) {
        throw new FrameError(`frame of ${len + 4} bytes exceeds frameBytesMax ${this.frameBytesMax}`);
      }
      if (this.bytes < len + 4) break;
      const whole = this.take(len + 4);
      if (whole[4] !== FRAME_VERSION) throw new FrameError(`unsupported frame version ${whole[4]}`);
      out.push({ type: whole[5] as FrameType, body: whole.subarray(FRAME_HEADER_BYTES) });
    }
    return out;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length < n) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!;
  }

  private take(n: number): Buffer {
    let first = this.chunks[0]!;
    if (first.length < n) {
      // Concatenate only once the whole frame has arrived.
      first = Buffer.concat(this.chunks);
      this.chunks = [first];
    }
    const out = first.subarray(0, n);
    if (first.length === n) this.chunks.shift();
    else this.chunks[0] = first.subarray(n);
    this.bytes -= n;
    return out;
  }
}
