// The MySQL protocol listener (port 8500): accepts clients, enforces maxConnections, and runs
// one Session per client, each relayed 1:1 to its own backend session on the local database.
import net from 'node:net';
import tls from 'node:tls';
import { CLIENT_SSL, ER_CON_COUNT_ERROR, RECALL_CAPABILITIES } from '../../protocol/mysql/constants.js';
import { encodeErr } from '../../protocol/mysql/generic.js';
import { encodePacket } from '../../protocol/mysql/packets.js';
import { generateRsaKeyPair, type RsaKeyPair } from '../../protocol/mysql/auth.js';
import { Accounts } from '../../backend/mysql/accounts.js';
import { logger } from '../../util/log.js';
import { clientConnections, clientConnectionsTotal } from '../../admin/metrics.js';
import { Session } from './session.js';
import type { FrontendContext } from './context.js';
import type { Sha2CacheEntry } from './authenticate.js';
import type { WriteService } from './router.js';
import crypto from 'node:crypto';

export interface MysqlFrontendOptions {
  host: string;
  port: number; // 0 = free port (for tests)
  backend: { socketPath?: string; host?: string; port?: number; adminUser: string; adminPassword: string };
  tls?: { cert: string; key: string }; // PEM text (not paths)
  /** Refuse clients that do not upgrade to TLS (only meaningful with `tls`). */
  tlsRequired?: boolean;
  rsaKeyPair?: { publicKey: string; privateKey: string }; // generated at start if absent
  maxConnections: number;
  maxPacketBytes: number;
  connectTimeoutMs: number;
  netReadTimeoutMs: number;
  serverVersion?: string; // default: backend's version string
  /** Plugin named in Recall's handshake (MySQL's default_authentication_plugin); default mysql_native_password.
   * Clients such as mysql2 answer with the plugin the server names, so this is how caching_sha2_password is chosen. */
  defaultAuthPlugin?: 'mysql_native_password' | 'caching_sha2_password';
  /** Replication (write lane, forwarding, consistency); absent: a plain relay to the local database. */
  writes?: WriteService;
  nodeId?: number;
  /** Read consistency of new sessions (default session). */
  consistency?: 'local' | 'session' | 'linearizable';
}

export const MYSQL_FRONTEND_DEFAULTS = {
  maxConnections: 1000,
  maxPacketBytes: 64 * 1024 * 1024,
  connectTimeoutMs: 10_000,
  netReadTimeoutMs: 30_000,
} as const;

export class MysqlFrontend {
  private server: net.Server | null = null;
  private readonly sessions = new Set<Session>();
  private ctx: FrontendContext | null = null;
  private readonly log = logger('mysql-frontend');

  constructor(private readonly opts: MysqlFrontendOptions) {}

  async listen(): Promise<{ host: string; port: number }> {
    const o = this.opts;
    const b = o.backend;
    const accounts = new Accounts({
      socketPath: b.socketPath,
      host: b.host,
      port: b.port,
      adminUser: b.adminUser,
      adminPassword: b.adminPassword,
      // the backend sees Recall's own connection: over the socket that is 'localhost'
      localHosts: b.socketPath ? ['localhost'] : ['localhost', b.host ?? '127.0.0.1'],
    });
    try {
      await accounts.refresh(); // fail start-up early when the admin account does not work
    } catch (e) {
      await accounts.close();
      throw new Error(`cannot read accounts from the local database as ${b.adminUser}: ${(e as Error).message}`);
    }
    const rsa: RsaKeyPair = o.rsaKeyPair ?? generateRsaKeyPair();
    const secureContext = o.tls ? tls.createSecureContext({ cert: o.tls.cert, key: o.tls.key }) : null;
    this.ctx = {
      opts: o,
      backendTarget: { socketPath: b.socketPath, host: b.host, port: b.port },
      accounts,
      rsa,
      sha2Cache: new Map<string, Sha2CacheEntry>(),
      secureContext,
      log: this.log,
      writes: o.writes ?? null,
      sessionPrefix: `${o.nodeId ?? 0}:${crypto.randomBytes(4).toString('hex')}:`,
      serverCapabilities: (backendCaps) => (RECALL_CAPABILITIES & backendCaps) | (secureContext ? CLIENT_SSL : 0),
    };
    const server = net.createServer((socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port, o.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (e) => this.log.error('listener error', { error: e.message }));
    const addr = server.address() as net.AddressInfo;
    this.log.info('MySQL frontend listening', { host: addr.address, port: addr.port, tls: !!secureContext });
    return { host: addr.address, port: addr.port };
  }

  private accept(socket: net.Socket): void {
    const ctx = this.ctx;
    socket.on('error', () => socket.destroy());
    if (!ctx) return void socket.destroy();
    if (this.sessions.size >= this.opts.maxConnections) {
      clientConnectionsTotal.labels('mysql', 'refused').inc();
      socket.end(encodePacket(encodeErr({ errno: ER_CON_COUNT_ERROR, sqlState: '08004', message: 'Too many connections' }), 0));
      setTimeout(() => socket.destroy(), 1000).unref();
      return;
    }
    clientConnectionsTotal.labels('mysql', 'accepted').inc();
    clientConnections.labels('mysql').inc();
    const session = new Session(socket, ctx, (s) => {
      if (this.sessions.delete(s)) clientConnections.labels('mysql').dec();
    });
    this.sessions.add(session);
    session.start();
  }

  stats(): { connections: number } {
    return { connections: this.sessions.size };
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const s of [...this.sessions]) s.close();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    await this.ctx?.accounts.close();
    this.ctx = null;
  }
}
