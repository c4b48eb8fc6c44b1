// Whole messages from a socket during start-up and authentication (the relay takes over the raw
// bytes afterwards): untyped startup packets and typed messages, each bounded, with whatever
// arrived after the last message handed back by detach().
import type { Socket } from 'node:net';
import { STARTUP_PACKET_BYTES_MAX } from '../../protocol/postgres/constants.js';
import { PgProtocolError } from '../../protocol/postgres/errors.js';
import { typeByteName } from '../../protocol/postgres/framing.js';

export class ChannelClosedError extends Error {
  constructor() {
    super('connection closed');
  }
}

export class MessageChannel {
  private buf: Buffer;
  private waiter: (() => void) | null = null;
  private closed = false;
  private readonly onData = (chunk: Buffer): void => {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    this.wake();
  };
  private readonly onClose = (): void => {
    this.closed = true;
    this.wake();
  };

  constructor(
    readonly socket: Socket,
    leftover: Buffer = Buffer.alloc(0),
  ) {
    this.buf = leftover;
    socket.on('data', this.onData);
    socket.on('close', this.onClose);
    socket.on('end', this.onClose);
    if (socket.destroyed) this.closed = true;
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  private async need(n: number): Promise<void> {
    while (this.buf.length < n) {
      if (this.closed) throw new ChannelClosedError();
      await new Promise<void>((resolve) => (this.waiter = resolve));
    }
  }

  private take(n: number): Buffer {
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Bytes received and not read yet. */
  buffered(): number {
    return this.buf.length;
  }

  /** One untyped startup packet (Int32 length first), 8 to 10000 bytes as postgres allows. */
  async readStartup(): Promise<Buffer> {
    await this.need(4);
    const len = this.buf.readInt32BE(0);
    if (len < 8 || len > STARTUP_PACKET_BYTES_MAX) throw new PgProtocolError('invalid length of startup packet');
    await this.need(len);
    return this.take(len);
  }

  /** One typed message, whole (type byte, Int32 length, body); `expect` limits the type byte. */
  async readMessage(lengthMax: number, expect?: number): Promise<Buffer> {
    await this.need(5);
    const type = this.buf[0]!;
    if (expect !== undefined && type !== expect) {
      throw new PgProtocolError(`expected password response, got message type ${typeByteName(type)}`);
    }
    const len = this.buf.readInt32BE(1);
    if (len < 4 || len > lengthMax) throw new PgProtocolError('invalid message length');
    await this.need(len + 1);
    return this.take(len + 1);
  }

  write(b: Buffer): void {
    this.socket.write(b);
  }

  /** Stop reading; returns the bytes that arrived after the last message read. */
  detach(): Buffer {
    this.socket.off('data', this.onData);
    this.socket.off('close', this.onClose);
    this.socket.off('end', this.onClose);
    const rest = this.buf;
    this.buf = Buffer.alloc(0);
    return rest;
  }
}
