// One TCP connection to a peer, in either direction. Its state is one explicit
// value: 'handshake' until the peer has proved it knows the cluster secret,
// 'authenticated' after, 'closed' at the end. Before authentication only Hello,
// Auth and Reject frames are accepted and frames are limited to a few hundred bytes.
import type net from 'node:net';
import type { Logger } from '../util/log.js';
import { TickCork } from '../util/cork.js';
import { FRAME_HEADER_BYTES, FrameDecoder, FrameError, FrameType, frameHeader, encodeFrame, writeFrameHeader, type Frame } from './frame.js';
import { authMac, decodeHello, encodeHello, macEqual, newNonce, type Hello, MAC_BYTES } from './handshake.js';

/** Frames up to this body size are copied into one buffer before they are written. */
const SMALL_FRAME_BYTES_MAX = 4096;

export type ConnectionState = 'handshake' | 'authenticated' | 'closed';

const HANDSHAKE_FRAME_BYTES_MAX = 512;

export interface ConnectionOptions {
  readonly selfId: number;
  readonly clusterId: string;
  readonly secret: Uint8Array;
  /** Outbound connections know whom they dialled; inbound ones accept any known peer. */
  readonly expectedPeer?: number;
  readonly isKnownPeer: (id: number) => boolean;
  readonly frameBytesMax: number;
  readonly handshakeTimeoutMs: number;
  readonly log: Logger;
}

export interface ConnectionEvents {
  authenticated(c: Connection): void;
  frame(c: Connection, f: Frame): void;
  closed(c: Connection, reason: string): void;
}

export class Connection {
  state: ConnectionState = 'handshake';
  peerId = 0;
  private readonly decoder = new FrameDecoder(HANDSHAKE_FRAME_BYTES_MAX);
  private readonly hello: Hello;
  private peerHello: Hello | undefined;
  private readonly cork: TickCork;
  private readonly handshakeTimer: NodeJS.Timeout;
  readonly remote: string;

  constructor(readonly socket: net.Socket, private readonly opts: ConnectionOptions, private readonly ev: ConnectionEvents) {
    this.remote = `${socket.remoteAddress}:${socket.remotePort}`;
    this.cork = new TickCork(socket);
    this.hello = { clusterId: opts.clusterId, nodeId: opts.selfId, nonce: newNonce() };
    this.handshakeTimer = setTimeout(() => this.reject('handshake timed out'), opts.handshakeTimeoutMs);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (e) => this.close(`socket error: ${e.message}`));
    socket.on('close', () => this.close('connection closed by peer'));
    this.writeFrame(FrameType.Hello, encodeHello(this.hello));
  }

  /** Bytes accepted for sending but not yet handed to the kernel (the send queue). */
  get queuedBytes(): number {
    return this.socket.writableLength;
  }

  /** Write one frame made of `parts` (large parts are handed to the socket as they are, not copied). */
  write(type: FrameType, parts: readonly Uint8Array[]): void {
    if (this.state === 'closed') return;
    let n = 0;
    for (const p of parts) n += p.length;
    // Corking until the end of this tick turns many small frames into one writev.
    this.cork.hold();
    if (n <= SMALL_FRAME_BYTES_MAX) {
      // A heartbeat and its response are a few dozen bytes: one copied buffer costs less than
      // a socket.write per part (each one a stream call and a writev element).
      const b = Buffer.allocUnsafe(FRAME_HEADER_BYTES + n);
      writeFrameHeader(b, type, n);
      let at = FRAME_HEADER_BYTES;
      for (const p of parts) {
        b.set(p, at);
        at += p.length;
      }
      this.socket.write(b);
      return;
    }
    this.socket.write(frameHeader(type, n));
    for (const p of parts) if (p.length > 0) this.socket.write(p);
  }

  close(reason: string): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearTimeout(this.handshakeTimer);
    this.socket.destroy();
    this.ev.closed(this, reason);
  }

  private writeFrame(type: FrameType, body: Uint8Array): void {
    if (this.state !== 'closed') this.socket.write(encodeFrame(type, body));
  }

  /** Refuse the peer: tell it why (best effort), log, close. */
  private reject(reason: string): void {
    if (this.state === 'closed') return;
    this.opts.log.warn('peer connection rejected', { remote: this.remote, peer: this.peerId || undefined, reason });
    this.writeFrame(FrameType.Reject, Buffer.from(reason, 'utf8'));
    this.socket.end();
    this.state = 'closed';
    clearTimeout(this.handshakeTimer);
    // Give the Reject frame a moment to leave before the socket is destroyed.
    setTimeout(() => this.socket.destroy(), 100).unref();
    this.ev.closed(this, reason);
  }

  private onData(chunk: Buffer): void {
    if (this.state === 'closed') return;
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (e) {
      if (e instanceof FrameError) return this.reject(e.message);
      throw e;
    }
    for (const f of frames) {
      if ((this.state as ConnectionState) === 'closed') return; // a handler may have closed us
      if (f.type === FrameType.Reject) {
        this.opts.log.warn('peer refused our connection', { remote: this.remote, reason: f.body.toString('utf8').slice(0, 200) });
        this.close('rejected by peer');
        return;
      }
      if (this.state === 'handshake') this.onHandshakeFrame(f);
      else this.ev.frame(this, f);
    }
  }

  private onHandshakeFrame(f: Frame): void {
    if (f.type === FrameType.Hello && !this.peerHello) {
      const h = decodeHello(f.body);
      if (!h) return this.reject('malformed hello');
      if (h.clusterId !== this.opts.clusterId) return this.reject(`wrong cluster id "${h.clusterId.slice(0, 64)}" (expected "${this.opts.clusterId}")`);
      if (this.opts.expectedPeer !== undefined && h.nodeId !== this.opts.expectedPeer) {
        return this.reject(`dialled node ${this.opts.expectedPeer} but node ${h.nodeId} answered`);
      }
      if (h.nodeId === this.opts.selfId || !this.opts.isKnownPeer(h.nodeId)) return this.reject(`unknown node id ${h.nodeId}`);
      this.peerHello = h;
      this.peerId = h.nodeId;
      this.writeFrame(FrameType.Auth, authMac(this.opts.secret, this.opts.clusterId, this.hello, h));
      return;
    }
    if (f.type === FrameType.Auth && this.peerHello) {
      const want = authMac(this.opts.secret, this.opts.clusterId, this.peerHello, this.hello);
      if (f.body.length !== MAC_BYTES || !macEqual(f.body, want)) return this.reject('authentication failed (wrong cluster secret?)');
      this.state = 'authenticated';
      clearTimeout(this.handshakeTimer);
      this.decoder.setFrameBytesMax(this.opts.frameBytesMax);
      this.ev.authenticated(this);
      return;
    }
    this.reject(`unexpected frame type ${f.type} during handshake`);
  }
}
