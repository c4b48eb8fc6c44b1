// Whole-packet reads and writes over a socket, for the phases where Recall talks the protocol
// itself (handshake, authentication, change user) rather than relaying bytes.
// The relay takes the socket over afterwards with detach(), which returns unread bytes.
import type { Socket } from 'node:net';
import { encodePacket, PacketFramer, type Packet } from '../../protocol/mysql/packets.js';
import { ProtocolError } from '../../protocol/mysql/errors.js';

export class ChannelClosedError extends Error {
  constructor(message = 'connection closed') {
    super(message);
    this.name = 'ChannelClosedError';
  }
}

export class PacketChannel {
  private readonly framer: PacketFramer;
  private waiter: { resolve: (p: Packet) => void; reject: (e: Error) => void } | null = null;
  private failure: Error | null = null;
  private readonly onData = (chunk: Buffer): void => this.pump(chunk);
  private readonly onEnd = (): void => this.fail(new ChannelClosedError());
  private readonly onError = (e: Error): void => this.fail(new ChannelClosedError(e.message));

  constructor(
    readonly socket: Socket,
    payloadBytesMax: number,
    initial?: Buffer,
  ) {
    this.framer = new PacketFramer(payloadBytesMax);
    if (initial && initial.length) this.framer.push(initial);
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
    socket.on('error', this.onError);
  }

  private pump(chunk: Buffer | null): void {
    if (chunk) this.framer.push(chunk);
    if (!this.waiter) return;
    let p: Packet | null;
    try {
      p = this.framer.next();
    } catch (e) {
      this.fail(e as Error);
      return;
    }
    if (p) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve(p);
    }
  }

  private fail(e: Error): void {
    if (!this.failure) this.failure = e;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(this.failure);
  }

  /** Bytes received that are not yet a whole packet. */
  pendingBytes(): number {
    return this.framer.pendingBytes();
  }

  read(): Promise<Packet> {
    if (this.waiter) throw new Error('PacketChannel.read while another read is pending');
    try {
      const p = this.framer.next();
      if (p) return Promise.resolve(p);
    } catch (e) {
      return Promise.reject(e);
    }
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  /** Read a packet and insist on its sequence id (ER_NET_PACKETS_OUT_OF_ORDER otherwise). */
  async readSeq(seq: number): Promise<Packet> {
    const p = await this.read();
    if (p.seq !== (seq & 0xff)) {
      throw new ProtocolError(`packet sequence id ${p.seq} out of order, expected ${seq & 0xff}`, 1156, '08S01');
    }
    return p;
  }

  write(payload: Buffer, seq: number): void {
    this.socket.write(encodePacket(payload, seq));
  }

  /** Stop listening and hand back the unread bytes. */
  detach(): Buffer {
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onEnd);
    this.socket.off('close', this.onEnd);
    this.socket.off('error', this.onError);
    const w = this.waiter;
    this.waiter = null;
    w?.reject(new ChannelClosedError('channel detached'));
    return this.framer.drain();
  }
}
