// The PostgreSQL protocol listener (port 8532): accepts clients, runs one Session per client, each
// relayed to its own backend session on the local postgres, and routes CancelRequests by key.
import net from 'node:net';
import tls from 'node:tls';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { LARGE_MESSAGE_BYTES_MAX } from '../../protocol/postgres/constants.js';
import { clientConnections, clientConnectionsTotal } from '../../admin/metrics.js';
import { logger } from '../../util/log.js';
import type { AuthMethod } from './authenticate.js';
import { cancelBackend, type BackendTarget } from './backend-login.js';
import type { QueryBatch } from './relay.js';
import { Roles, type AdminConnection, type RoleStore } from './roles.js';
import { Session, type SessionContext } from './session.js';

export type { Session };

export type { QueryBatch } from './relay.js';
export type { Credential, AuthMethod } from './authenticate.js';

export interface PostgresFrontendOptions {
  host: string;
  port: number; // 0: a free port (tests)
  /** Where client sessions log in as their role (unix socket in socketDir when given, else TCP). */
  backend: BackendTarget;
  /** Recall's own connection that reads pg_authid (the managed server's superuser over its private socket). */
  admin: AdminConnection;
  /** How clients authenticate (as a pg_hba method). Default scram-sha-256. */
  auth?: AuthMethod;
  /** PEM text (not paths): SSLRequest is answered 'S' and the connection upgraded. */
  tls?: { cert: string; key: string };
  /** Refuse clients that did not upgrade to TLS. */
  tlsRequired?: boolean;
  /** Limit of a Query, Parse, Bind, CopyData or FunctionCall message (postgres: 1 GiB - 1). */
  messageBytesMax?: number;
  /** Start-up and authentication must finish within this (postgres' authentication_timeout, 60 s). */
  authTimeoutMs?: number;
  connectionsMax?: number;
  nodeId?: number;
  /**
   * The routing hook point: offered every whole Query, and every run of extended-query messages up
   * to Sync or Flush, before it is forwarded; true takes it over. Absent: everything is relayed.
   */
  decide?: (session: Session, batch: QueryBatch) => boolean;
  /** Runs a batch `decide` took, once every earlier response reached the client; call session.resume(leftover) when done. */
  intercept?: (session: Session, batch: QueryBatch, leftover: Buffer) => void;
  /** Overrides the pg_authid reader (tests, or a store of the leader's roles). */
  roles?: RoleStore;
}

export const POSTGRES_FRONTEND_DEFAULTS = {
  auth: 'scram-sha-256' as AuthMethod,
  messageBytesMax: LARGE_MESSAGE_BYTES_MAX,
  authTimeoutMs: 60_000,
  connectionsMax: 1000,
};

export interface PostgresListener {
  port: number;
  connections(): number;
  close(): Promise<void>;
}

export class PostgresFrontend {
  private server: net.Server | null = null;
  private readonly sessions = new Set<Session>();
  private readonly byPid = new Map<number, Session>();
  private established = 0;
  private roles: RoleStore | null = null;
  private readonly log;

  constructor(private readonly opts: PostgresFrontendOptions) {
    this.log = logger('postgres-frontend', { nodeId: opts.nodeId });
  }

  async listen(): Promise<{ host: string; port: number }> {
    const o = this.opts;
    const roles = o.roles ?? new Roles(o.admin);
    try {
      await roles.lookup(o.admin.user); // fail start-up early when the admin connection does not work
    } catch (e) {
      await roles.close();
      throw new Error(`cannot read roles from the local database as ${o.admin.user}: ${(e as Error).message}`);
    }
    this.roles = roles;
    const ctx: SessionContext = {
      roles,
      auth: o.auth ?? POSTGRES_FRONTEND_DEFAULTS.auth,
      backend: o.backend,
      secureContext: o.tls ? tls.createSecureContext({ cert: o.tls.cert, key: o.tls.key }) : null,
      tlsRequired: o.tlsRequired ?? false,
      mockKey: randomBytes(32),
      messageBytesMax: o.messageBytesMax ?? POSTGRES_FRONTEND_DEFAULTS.messageBytesMax,
      authTimeoutMs: o.authTimeoutMs ?? POSTGRES_FRONTEND_DEFAULTS.authTimeoutMs,
      connectionsMax: o.connectionsMax ?? POSTGRES_FRONTEND_DEFAULTS.connectionsMax,
      connections: () => this.established,
      cancel: (pid, secret) => this.cancel(pid, secret),
      registerKey: (s) => {
        this.byPid.set(s.processId, s);
        this.established++;
      },
      log: this.log,
      decide: o.decide,
      intercept: o.intercept,
    };
    const server = net.createServer((socket) => this.accept(socket, ctx));
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
    this.log.info('PostgreSQL frontend listening', { host: addr.address, port: addr.port, tls: !!o.tls });
    return { host: addr.address, port: addr.port };
  }

  private accept(socket: net.Socket, ctx: SessionContext): void {
    socket.on('error', () => socket.destroy());
    clientConnectionsTotal.labels('postgres', 'accepted').inc();
    clientConnections.labels('postgres').inc();
    const session = new Session(socket, ctx, (s) => this.closed(s));
    this.sessions.add(session);
    session.start();
  }

  private closed(s: Session): void {
    if (!this.sessions.delete(s)) return;
    clientConnections.labels('postgres').dec();
    if (s.processId !== 0 && this.byPid.get(s.processId) === s) {
      this.byPid.delete(s.processId);
      this.established--;
    }
  }

  /** A CancelRequest with a key Recall gave out: forward the backend's own key to the backend. */
  private cancel(processId: number, secretKey: number): void {
    const s = this.byPid.get(processId);
    const a = Buffer.alloc(4);
    const b = Buffer.alloc(4);
    a.writeInt32BE(secretKey);
    b.writeInt32BE(s?.secretKey ?? ~secretKey);
    if (!s || !timingSafeEqual(a, b)) {
      this.log.info('CancelRequest with an unknown key ignored', { processId });
      return; // postgres ignores them silently too
    }
    cancelBackend(this.opts.backend, s.backendKey.processId, s.backendKey.secretKey, 5000).catch((e: unknown) =>
      this.log.warn('could not forward a CancelRequest to the local database', { error: (e as Error).message }),
    );
  }

  /** The open sessions (the routing code and tests read their role, credential and state). */
  sessionsList(): Session[] {
    return [...this.sessions];
  }

  stats(): { connections: number } {
    return { connections: this.sessions.size };
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const s of [...this.sessions]) s.close();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    await this.roles?.close();
    this.roles = null;
  }
}

/** The entry the CLI uses: listen, and hand back the port, a connection count and close(). */
export async function startPostgresFrontend(opts: PostgresFrontendOptions): Promise<PostgresListener> {
  const fe = new PostgresFrontend(opts);
  const bound = await fe.listen();
  return { port: bound.port, connections: () => fe.stats().connections, close: () => fe.close() };
}
