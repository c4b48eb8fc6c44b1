// Authenticated peer links for one node. Every node dials every peer (an outbound
// link, reconnected with jittered exponential backoff) and accepts peers' dials.
// send() uses our outbound link; requests go out on it and their responses come
// back on the same connection. Messages that cannot be sent at once (peer not
// connected, or its send queue over queueBytesMax) are dropped and the peer is
// reported unreachable: the consensus core retries, and buffering for a dead peer
// would only add latency and memory.
import net from 'node:net';
import * as keepAlive from 'net-keepalive';
import { logger, type Logger } from '../util/log.js';
import { Connection } from './connection.js';
import { FrameType, FRAME_HEADER_BYTES, type Frame } from './frame.js';

export type PeerId = number;
export type MessageHandler = (from: PeerId, payload: Buffer) => void;
export type RequestHandler = (from: PeerId, payload: Buffer) => Promise<Uint8Array> | Uint8Array;

export interface TransportOptions {
  readonly id: PeerId;
  readonly clusterId: string;
  readonly secret: string | Uint8Array;
  /** 'host:port' to listen on (port 0 picks a free one). */
  readonly listen: string;
  readonly peers: ReadonlyMap<PeerId, string>;
  readonly frameBytesMax?: number;
  readonly queueBytesMax?: number;
  readonly handshakeTimeoutMs?: number;
  readonly backoffMinMs?: number;
  readonly backoffMaxMs?: number;
  readonly keepAliveIdleMs?: number;
  readonly keepAliveIntervalMs?: number;
  readonly keepAliveProbes?: number;
  /** TCP_USER_TIMEOUT: unacknowledged data for this long kills the connection. */
  readonly userTimeoutMs?: number;
}

export class PeerUnavailableError extends Error {
  constructor(readonly peer: PeerId, why: string) {
    super(`peer ${peer} unavailable: ${why}`);
    this.name = 'PeerUnavailableError';
  }
}

export class RequestTimeoutError extends Error {
  constructor(readonly peer: PeerId, timeoutMs: number) {
    super(`request to peer ${peer} timed out after ${timeoutMs} ms`);
    this.name = 'RequestTimeoutError';
  }
}

export class RemoteError extends Error {
  constructor(readonly peer: PeerId, message: string) {
    super(`peer ${peer}: ${message}`);
    this.name = 'RemoteError';
  }
}

interface Pending {
  readonly peer: PeerId;
  readonly conn: Connection;
  readonly resolve: (b: Buffer) => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout;
}

export function parseHostPort(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(':');
  const port = Number(s.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad address "${s}", expected host:port`);
  return { host: s.slice(0, i).replace(/^\[|\]$/g, ''), port };
}

class OutLink {
  conn: Connection | undefined;
  backoffMs: number;
  timer: NodeJS.Timeout | undefined;
  dialing = false;
  closed = false;
  lastError = '';
  constructor(readonly peer: PeerId, public address: string, backoffMinMs: number) {
    this.backoffMs = backoffMinMs;
  }
}

export class Transport {
  private readonly opts: Required<TransportOptions>;
  private readonly secret: Buffer;
  private readonly log: Logger;
  private readonly server: net.Server;
  private readonly links = new Map<PeerId, OutLink>();
  private readonly inbound = new Set<Connection>();
  private readonly handlers = new Map<number, MessageHandler>();
  private readonly requestHandlers = new Map<number, RequestHandler>();
  private readonly pending = new Map<number, Pending>();
  private readonly unreachableCbs: ((peer: PeerId) => void)[] = [];
  private readonly connectedCbs: ((peer: PeerId) => void)[] = [];
  private nextRequestId = 1;
  private closed = false;
  private keepAliveWarned = false;

  private constructor(opts: TransportOptions) {
    this.opts = {
      frameBytesMax: 16 * 1024 * 1024,
      queueBytesMax: 32 * 1024 * 1024,
      handshakeTimeoutMs: 5000,
      backoffMinMs: 20,
      backoffMaxMs: 1000,
      keepAliveIdleMs: 1000,
      keepAliveIntervalMs: 1000,
      keepAliveProbes: 3,
      userTimeoutMs: 3000,
      ...opts,
    };
    this.secret = typeof opts.secret === 'string' ? Buffer.from(opts.secret, 'utf8') : Buffer.from(opts.secret);
    this.log = logger('transport', { nodeId: opts.id });
    this.server = net.createServer((s) => this.accept(s));
  }

  static async start(opts: TransportOptions): Promise<Transport> {
    const t = new Transport(opts);
    const { host, port } = parseHostPort(opts.listen);
    await new Promise<void>((resolve, reject) => {
      t.server.once('error', reject);
      t.server.listen(port, host, () => {
        t.server.off('error', reject);
        resolve();
      });
    });
    t.server.on('error', (e) => t.log.error('peer listener error', { error: e.message }));
    for (const [id, addr] of opts.peers) if (id !== opts.id) t.addPeer(id, addr);
    return t;
  }

  /** The port actually listened on. */
  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  addPeer(id: PeerId, address: string): void {
    const old = this.links.get(id);
    if (old && old.address === address) return;
    if (old) this.removePeer(id);
    const link = new OutLink(id, address, this.opts.backoffMinMs);
    this.links.set(id, link);
    this.dial(link);
  }

  removePeer(id: PeerId): void {
    const link = this.links.get(id);
    if (!link) return;
    link.closed = true;
    clearTimeout(link.timer);
    link.conn?.close('peer removed');
    this.links.delete(id);
  }

  isConnected(peer: PeerId): boolean {
    return this.links.get(peer)?.conn?.state === 'authenticated';
  }

  onMessage(channel: number, handler: MessageHandler): void {
    this.handlers.set(channel, handler);
  }

  onRequest(channel: number, handler: RequestHandler): void {
    this.requestHandlers.set(channel, handler);
  }

  /** Called when a message to `peer` was dropped (not connected or queue full). */
  onUnreachable(cb: (peer: PeerId) => void): void {
    this.unreachableCbs.push(cb);
  }

  /** Called when our outbound link to `peer` becomes authenticated. */
  onConnected(cb: (peer: PeerId) => void): void {
    this.connectedCbs.push(cb);
  }

  /** Send a one-way message; false if it was dropped (and the peer reported unreachable). */
  send(peer: PeerId, channel: number, payload: Uint8Array): boolean {
    const conn = this.usable(peer, FRAME_HEADER_BYTES + 2 + payload.length);
    if (!conn) return false;
    const ch = Buffer.allocUnsafe(2);
    ch.writeUInt16BE(channel, 0);
    conn.write(FrameType.Data, [ch, payload]);
    return true;
  }

  request(peer: PeerId, channel: number, payload: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    const conn = this.usable(peer, FRAME_HEADER_BYTES + 6 + payload.length);
    if (!conn) return Promise.reject(new PeerUnavailableError(peer, this.links.get(peer)?.lastError || 'not connected or send queue full'));
    const id = this.nextRequestId++;
    const head = Buffer.allocUnsafe(6);
    head.writeUInt16BE(channel, 0);
    head.writeUInt32BE(id >>> 0, 2);
    return new Promise<Uint8Array>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id >>> 0);
        reject(new RequestTimeoutError(peer, timeoutMs));
      }, timeoutMs);
      this.pending.set(id >>> 0, { peer, conn, resolve, reject, timer });
      conn.write(FrameType.Request, [head, payload]);
    });
  }

  /** Per-peer link state for status(). */
  peerStatus(): { id: PeerId; address: string; connected: boolean; queuedBytes: number; lastError: string }[] {
    return [...this.links.values()].map((l) => ({
      id: l.peer,
      address: l.address,
      connected: l.conn?.state === 'authenticated',
      queuedBytes: l.conn?.queuedBytes ?? 0,
      lastError: l.lastError,
    }));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const id of [...this.links.keys()]) this.removePeer(id);
    for (const c of this.inbound) c.close('transport closing');
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new PeerUnavailableError(p.peer, 'transport closed'));
      this.pending.delete(id);
    }
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  // ---- internals ----

  private usable(peer: PeerId, bytes: number): Connection | undefined {
    const conn = this.links.get(peer)?.conn;
    if (conn && conn.state === 'authenticated' && conn.queuedBytes + bytes <= this.opts.queueBytesMax) return conn;
    for (const cb of this.unreachableCbs) cb(peer);
    return undefined;
  }

  private tune(s: net.Socket): void {
    s.setNoDelay(true);
    s.setKeepAlive(true, this.opts.keepAliveIdleMs);
    try {
      keepAlive.setKeepAliveInterval(s, this.opts.keepAliveIntervalMs);
      keepAlive.setKeepAliveProbes(s, this.opts.keepAliveProbes);
      keepAlive.setUserTimeout(s, this.opts.userTimeoutMs);
    } catch (e) {
      if (!this.keepAliveWarned) this.log.warn('could not tune TCP keepalive', { error: (e as Error).message });
      this.keepAliveWarned = true;
    }
  }

  private connOptions(expectedPeer?: PeerId) {
    return {
      selfId: this.opts.id,
      clusterId: this.opts.clusterId,
      secret: this.secret,
      expectedPeer,
      isKnownPeer: (id: number) => this.links.has(id),
      frameBytesMax: this.opts.frameBytesMax,
      handshakeTimeoutMs: this.opts.handshakeTimeoutMs,
      log: this.log,
    };
  }

  private accept(s: net.Socket): void {
    if (this.closed) {
      s.destroy();
      return;
    }
    this.tune(s);
    const c = new Connection(s, this.connOptions(), {
      authenticated: (c) => this.log.debug('inbound peer authenticated', { peer: c.peerId, remote: c.remote }),
      frame: (c, f) => this.onFrame(c, f),
      closed: (c) => {
        this.inbound.delete(c);
        this.failPending(c);
      },
    });
    this.inbound.add(c);
  }

  private dial(link: OutLink): void {
    if (link.closed || this.closed || link.dialing) return;
    link.dialing = true;
    let addr: { host: string; port: number };
    try {
      addr = parseHostPort(link.address);
    } catch (e) {
      link.lastError = (e as Error).message;
      this.log.error('bad peer address', { peer: link.peer, address: link.address });
      return;
    }
    const s = net.connect({ host: addr.host, port: addr.port });
    s.once('connect', () => this.tune(s));
    const c = new Connection(s, this.connOptions(link.peer), {
      authenticated: (c) => {
        link.conn = c;
        link.backoffMs = this.opts.backoffMinMs;
        link.lastError = '';
        this.log.info('connected to peer', { peer: link.peer, address: link.address });
        for (const cb of this.connectedCbs) cb(link.peer);
      },
      frame: (c, f) => this.onFrame(c, f),
      closed: (c, reason) => {
        const wasUp = link.conn === c;
        if (wasUp) {
          link.conn = undefined;
          this.log.info('lost connection to peer', { peer: link.peer, reason });
        }
        link.lastError = reason;
        link.dialing = false;
        this.failPending(c);
        this.scheduleDial(link);
      },
    });
    void c;
  }

  private scheduleDial(link: OutLink): void {
    if (link.closed || this.closed) return;
    // Full jitter in [backoff/2, backoff): restarted peers are not hit in lockstep.
    const delay = link.backoffMs * (0.5 + Math.random() / 2);
    link.backoffMs = Math.min(link.backoffMs * 2, this.opts.backoffMaxMs);
    clearTimeout(link.timer);
    link.timer = setTimeout(() => this.dial(link), delay);
  }

  private failPending(c: Connection): void {
    for (const [id, p] of this.pending) {
      if (p.conn !== c) continue;
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.reject(new PeerUnavailableError(p.peer, 'connection lost before the response'));
    }
  }

  private onFrame(c: Connection, f: Frame): void {
    const b = f.body;
    try {
      switch (f.type) {
        case FrameType.Data: {
          if (b.length < 2) return c.close('malformed data frame');
          const h = this.handlers.get(b.readUInt16BE(0));
          if (h) h(c.peerId, b.subarray(2));
          return;
        }
        case FrameType.Request: {
          if (b.length < 6) return c.close('malformed request frame');
          void this.serveRequest(c, b.readUInt16BE(0), b.readUInt32BE(2), b.subarray(6));
          return;
        }
        case FrameType.Response: {
          if (b.length < 5) return c.close('malformed response frame');
          const id = b.readUInt32BE(0);
          const p = this.pending.get(id);
          if (!p || p.conn !== c) return; // late answer to a timed-out request
          this.pending.delete(id);
          clearTimeout(p.timer);
          if (b[4] === 0) p.resolve(b.subarray(5));
          else p.reject(new RemoteError(p.peer, b.subarray(5).toString('utf8')));
          return;
        }
        default:
          this.log.warn('unexpected frame type from peer', { peer: c.peerId, type: f.type });
          c.close(`unexpected frame type ${f.type}`);
      }
    } catch (e) {
      // A handler choking on a peer's payload is bad input, not a reason to die.
      this.log.error('error handling peer frame', { peer: c.peerId, type: f.type, error: (e as Error).stack });
    }
  }

  private async serveRequest(c: Connection, channel: number, id: number, payload: Buffer): Promise<void> {
    const head = Buffer.allocUnsafe(5);
    head.writeUInt32BE(id, 0);
    let body: Uint8Array;
    try {
      const h = this.requestHandlers.get(channel);
      if (!h) throw new Error(`no handler for channel ${channel}`);
      body = await h(c.peerId, payload);
      head[4] = 0;
    } catch (e) {
      head[4] = 1;
      body = Buffer.from((e as Error).message, 'utf8');
    }
    if (c.state === 'authenticated') c.write(FrameType.Response, [head, body]);
  }
}
