// One client session: the startup phase (SSLRequest, GSSENCRequest, CancelRequest, StartupMessage
// with protocol negotiation), authentication against the role's stored verifier, Recall's own
// login to the local postgres as that role, then the relay. The state is one explicit value.
// https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP
import type { Socket } from 'node:net';
import tls from 'node:tls';
import { randomInt } from 'node:crypto';
import {
  MSG_ERROR_RESPONSE,
  PROTOCOL_MAJOR_SUPPORTED,
  PROTOCOL_MINOR_LATEST,
  SQLSTATE_CANNOT_CONNECT_NOW,
  SQLSTATE_FEATURE_NOT_SUPPORTED,
  SQLSTATE_INVALID_AUTHORIZATION,
  SQLSTATE_TOO_MANY_CONNECTIONS,
  TX_FAILED,
  TX_IDLE,
  TX_IN_TRANSACTION,
} from '../../protocol/postgres/constants.js';
import { PgProtocolError } from '../../protocol/postgres/errors.js';
import { encodeBackendKeyData, encodeErrorResponse, encodeTerminate, type PgError } from '../../protocol/postgres/messages.js';
import { decodeStartupPacket, encodeNegotiateProtocolVersion } from '../../protocol/postgres/startup.js';
import { errorsTotal } from '../../admin/metrics.js';
import type { Logger } from '../../util/log.js';
import { ChannelClosedError, MessageChannel } from './channel.js';
import { authenticateClient, type AuthMethod, type Credential } from './authenticate.js';
import { describeTarget, loginBackend, type BackendTarget } from './backend-login.js';
import { Relay, type QueryBatch } from './relay.js';
import type { RoleStore } from './roles.js';

export type SessionState = 'startup' | 'authenticating' | 'idle' | 'inTransaction' | 'inFailedTransaction' | 'busy' | 'intercepted' | 'closing';

/** What every session of one frontend shares. */
export interface SessionContext {
  roles: RoleStore;
  auth: AuthMethod;
  backend: BackendTarget;
  secureContext: tls.SecureContext | null;
  tlsRequired: boolean;
  /** Key of the mock verifiers offered for unknown roles (one per process). */
  mockKey: Buffer;
  messageBytesMax: number;
  authTimeoutMs: number;
  connectionsMax: number;
  /** Sessions counted against connectionsMax (this one included once it is past start-up). */
  connections(): number;
  /** A CancelRequest came in: the frontend finds the session by key and cancels its backend query. */
  cancel(processId: number, secretKey: number): void;
  /** Register the key the client was given (after login). */
  registerKey(s: Session): void;
  log: Logger;
  /** Routing hooks (absent: relay everything). */
  decide?: (s: Session, batch: QueryBatch) => boolean;
  intercept?: (s: Session, batch: QueryBatch, leftover: Buffer) => void;
}

const protocolErrors = errorsTotal.labels('postgres', 'protocol');
const recallErrors = errorsTotal.labels('postgres', 'recall');

function fatal(code: string, message: string, detail?: string): PgError {
  return { severity: 'FATAL', code, message, detail };
}

export class Session {
  private phase: 'startup' | 'authenticating' | 'relay' | 'intercepted' | 'closing' = 'startup';
  private timer: NodeJS.Timeout | null = null;
  private relay: Relay | null = null;
  private backendSocket: Socket | null = null;
  /** The client's Terminate was forwarded: the backend ends the session itself. */
  private terminated = false;
  /** The role and database of the session, and the startup parameters it was opened with. */
  user = '';
  database = '';
  parameters = new Map<string, string>();
  /** What authentication left: enough to log in as this role elsewhere (the leader), never the password. */
  credential: Credential | null = null;
  isTls = false;
  /** The key given to the client (processId is the backend's pid, so pg_backend_pid() agrees). */
  processId = 0;
  secretKey = 0;
  /** The backend's own key, for forwarding a CancelRequest. */
  backendKey = { processId: 0, secretKey: 0 };

  constructor(
    private client: Socket,
    private readonly ctx: SessionContext,
    private readonly onClosed: (s: Session) => void,
  ) {
    client.setNoDelay(true);
    client.on('error', () => this.close());
    client.on('close', () => this.close());
  }

  get state(): SessionState {
    if (this.phase === 'relay') {
      const r = this.relay!;
      if (r.pendingCount() > 0) return 'busy';
      return r.txStatus === TX_IN_TRANSACTION ? 'inTransaction' : r.txStatus === TX_FAILED ? 'inFailedTransaction' : 'idle';
    }
    return this.phase === 'closing' ? 'closing' : this.phase;
  }

  /** Past start-up and authentication (counted against connectionsMax). */
  get established(): boolean {
    return this.phase === 'relay' || this.phase === 'intercepted';
  }

  /** The backend socket, for the routing code that answers an intercepted batch. */
  get backend(): Socket | null {
    return this.backendSocket;
  }

  get socket(): Socket {
    return this.client;
  }

  start(): void {
    this.timer = setTimeout(() => this.close(), this.ctx.authTimeoutMs);
    this.timer.unref();
    this.run().catch((e: unknown) => this.fail(e));
  }

  private fail(e: unknown): void {
    if (this.phase === 'closing') return;
    if (e instanceof ChannelClosedError) return this.close();
    if (e instanceof PgProtocolError) {
      protocolErrors.inc();
      return this.sendAndClose(fatal(e.code, e.message, e.detail));
    }
    recallErrors.inc();
    this.ctx.log.warn('session start-up failed', { error: (e as Error).message, user: this.user });
    this.sendAndClose(fatal(SQLSTATE_CANNOT_CONNECT_NOW, `Recall could not open the session: ${(e as Error).message}`));
  }

  /** Send an ErrorResponse (or a server's own ErrorResponse bytes) and close. */
  sendAndClose(err: PgError | Buffer): void {
    if (this.phase === 'closing') return;
    try {
      this.client.end(Buffer.isBuffer(err) ? err : encodeErrorResponse(err));
    } catch {
      /* already gone */
    }
    this.close(false);
  }

  private async run(): Promise<void> {
    let ch = new MessageChannel(this.client);
    let sslDone = false;
    let gssDone = false;
    let startup;
    for (;;) {
      const p = decodeStartupPacket(await ch.readStartup());
      if (p.kind === 'CancelRequest') {
        ch.detach();
        this.ctx.cancel(p.processId, p.secretKey);
        return this.close(); // postgres answers a CancelRequest with nothing
      }
      if (p.kind === 'SSLRequest' && !sslDone && !this.isTls) {
        sslDone = true;
        const accept = this.ctx.secureContext !== null;
        // postgres refuses bytes sent after the request before the answer (CVE-2021-23214)
        if (ch.buffered() > 0) throw new PgProtocolError('received unencrypted data after SSL request');
        ch.detach();
        this.client.write(accept ? 'S' : 'N');
        if (accept) {
          this.client = await this.upgradeTls(this.client);
          this.isTls = true;
        }
        ch = new MessageChannel(this.client);
        continue;
      }
      if (p.kind === 'GSSENCRequest' && !gssDone && !this.isTls) {
        gssDone = true;
        if (ch.buffered() > 0) throw new PgProtocolError('received unencrypted data after GSSAPI encryption request');
        this.client.write('N');
        continue;
      }
      if (p.kind !== 'StartupMessage') {
        // a second SSLRequest/GSSENCRequest: postgres reports it as an unsupported protocol 1234.x
        throw new PgProtocolError(`unsupported frontend protocol 1234.${p.kind === 'SSLRequest' ? 5679 : 5680}: server supports 3.0 to 3.0`, SQLSTATE_FEATURE_NOT_SUPPORTED);
      }
      startup = p;
      break;
    }
    if (startup.major !== PROTOCOL_MAJOR_SUPPORTED) {
      throw new PgProtocolError(
        `unsupported frontend protocol ${startup.major}.${startup.minor}: server supports 3.0 to 3.${PROTOCOL_MINOR_LATEST}`,
        SQLSTATE_FEATURE_NOT_SUPPORTED,
      );
    }
    if (this.ctx.tlsRequired && !this.isTls) {
      throw new PgProtocolError('Recall requires TLS (SSL) for client connections; connect with sslmode=require', SQLSTATE_INVALID_AUTHORIZATION);
    }
    // protocol extensions (_pq_.*) and minor versions above 3.0 are negotiated down as postgres does
    const unrecognized = [...startup.parameters.keys()].filter((k) => k.startsWith('_pq_.'));
    for (const k of unrecognized) startup.parameters.delete(k);
    if (startup.minor > PROTOCOL_MINOR_LATEST || unrecognized.length > 0) {
      this.client.write(encodeNegotiateProtocolVersion(PROTOCOL_MINOR_LATEST, unrecognized));
    }
    const user = startup.parameters.get('user') ?? '';
    if (!user) throw new PgProtocolError('no PostgreSQL user name specified in startup packet', SQLSTATE_INVALID_AUTHORIZATION);
    this.user = user;
    this.database = startup.parameters.get('database') || user;
    this.parameters = startup.parameters;
    if (this.ctx.connections() >= this.ctx.connectionsMax) {
      return this.sendAndClose(fatal(SQLSTATE_TOO_MANY_CONNECTIONS, 'sorry, too many clients already'));
    }
    this.phase = 'authenticating';
    const auth = await authenticateClient(ch, user, this.ctx.auth, this.ctx.roles, this.ctx.mockKey);
    if (this.isClosing()) return;
    if (!auth.ok) {
      recallErrors.inc();
      return this.sendAndClose(auth.error);
    }
    this.credential = auth.credential;
    let login;
    try {
      login = await loginBackend(this.ctx.backend, startup.parameters, auth.credential, this.ctx.authTimeoutMs);
    } catch (e) {
      recallErrors.inc();
      if (e instanceof ChannelClosedError) throw new Error(`the local database at ${describeTarget(this.ctx.backend)} closed the connection during login`);
      throw new Error(`cannot reach the local database at ${describeTarget(this.ctx.backend)} (${(e as Error).message}); retry later`);
    }
    if (this.isClosing()) {
      if (login.ok) login.session.socket.destroy();
      return;
    }
    if (!login.ok) return this.sendAndClose(login.message ?? login.error!);
    const b = login.session;
    this.backendSocket = b.socket;
    b.socket.on('close', () => this.backendClosed());
    this.backendKey = { processId: b.processId, secretKey: b.secretKey };
    this.processId = b.processId;
    this.secretKey = randomInt(-0x80000000, 0x7fffffff);
    const greeting = b.greeting.slice();
    if (b.keyDataIndex >= 0) greeting[b.keyDataIndex] = encodeBackendKeyData(this.processId, this.secretKey);
    this.ctx.registerKey(this);
    this.client.cork();
    for (const m of greeting) this.client.write(m);
    this.client.uncork();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.startRelay(ch.detach(), b.leftover);
  }

  private upgradeTls(raw: Socket): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const s = new tls.TLSSocket(raw, { isServer: true, secureContext: this.ctx.secureContext! });
      s.setNoDelay(true);
      s.once('secure', () => resolve(s));
      s.once('error', reject);
      s.on('error', () => this.close());
      s.on('close', () => this.close());
    });
  }

  private startRelay(clientLeftover: Buffer, backendLeftover: Buffer): void {
    this.phase = 'relay';
    const decide = this.ctx.decide;
    const intercept = this.ctx.intercept;
    this.relay = new Relay(this.client, this.backendSocket!, this.ctx.messageBytesMax, {
      fatal: (err) => this.sendAndClose(err),
      terminated: () => {
        this.terminated = true;
        this.close();
      },
      backendBroken: () => {
        this.ctx.log.warn('the local database sent a message Recall cannot follow; closing the session', { user: this.user });
        this.close();
      },
      ...(decide && intercept
        ? {
            decide: (batch: QueryBatch) => decide(this, batch),
            intercept: (batch: QueryBatch, leftover: Buffer) => {
              this.phase = 'intercepted';
              intercept(this, batch, leftover);
            },
          }
        : {}),
    });
    this.relay.attach(clientLeftover, backendLeftover);
  }

  /** Routing: hand the session back to the relay after an intercepted batch. */
  resume(leftover: Buffer): void {
    if (this.phase !== 'intercepted') return;
    this.phase = 'relay';
    this.relay!.resume(leftover);
  }

  /** Transaction status of the last ReadyForQuery ('I', 'T', 'E'). */
  get txStatus(): number {
    return this.relay?.txStatus ?? TX_IDLE;
  }

  private backendClosed(): void {
    if (this.phase === 'closing') return;
    recallErrors.inc();
    const busy = this.relay !== null && this.relay.pendingCount() > 0;
    this.ctx.log.warn('the local database closed the session', { user: this.user, busy });
    // postgres said why itself (FATAL: terminating connection due to administrator command, ...): that is the answer
    if (this.relay && this.relay.lastBackendType === MSG_ERROR_RESPONSE) {
      this.client.end();
      return this.close(false);
    }
    // postgres itself says this when it is shut down under a session (57P01, FATAL)
    this.sendAndClose(fatal('57P01', 'terminating connection because the local database server went away (Recall); reconnect and retry'));
  }

  private isClosing(): boolean {
    return this.phase === 'closing';
  }

  /** Close both sides (idempotent). A clean Terminate spares the server an "unexpected EOF" log line. */
  close(destroyClient = true): void {
    if (this.phase === 'closing') return;
    const clean = this.relay !== null && this.relay.idle();
    this.phase = 'closing';
    if (this.timer) clearTimeout(this.timer);
    this.relay?.close();
    const b = this.backendSocket;
    if (b && !b.destroyed) {
      if (this.terminated) {
        b.end();
        setTimeout(() => b.destroy(), 1000).unref();
      } else if (clean) {
        b.end(encodeTerminate());
        setTimeout(() => b.destroy(), 1000).unref();
      } else b.destroy();
    }
    if (destroyClient) this.client.destroy();
    else setTimeout(() => this.client.destroy(), 1000).unref();
    this.onClosed(this);
  }
}
