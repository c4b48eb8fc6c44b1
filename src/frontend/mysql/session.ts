// One client session: Recall's own handshake and authentication, the backend login as the
// client's account, then the relay; COM_CHANGE_USER and unknown commands are answered here.
import type { Socket } from 'node:net';
import tls from 'node:tls';
import {
  AUTH_CACHING_SHA2,
  AUTH_NATIVE,
  CLIENT_MYSQL,
  CLIENT_SSL,
  COM_CHANGE_USER,
  ER_HANDSHAKE_ERROR,
  ER_SERVER_SHUTDOWN,
  ER_UNKNOWN_COM_ERROR,
  RECALL_MARIADB_CAPABILITIES,
} from '../../protocol/mysql/constants.js';
import { ProtocolError } from '../../protocol/mysql/errors.js';
import { encodeErr } from '../../protocol/mysql/generic.js';
import {
  decodeChangeUser,
  decodeHandshakeResponse41,
  encodeAuthSwitchRequest,
  encodeHandshakeV10,
  isSslRequest,
} from '../../protocol/mysql/handshake.js';
import { newScramble } from '../../protocol/mysql/auth.js';
import { ChannelClosedError, PacketChannel } from '../../backend/mysql/channel.js';
import type { Packet } from '../../protocol/mysql/packets.js';
import { BackendConnection, BackendRefusedError } from '../../backend/mysql/connection.js';
import { authenticateClient, type AuthContext } from './authenticate.js';
import { Relay } from './relay.js';
import type { FrontendContext } from './context.js';
import { errorsTotal } from '../../admin/metrics.js';
import { decodeOk } from '../../protocol/mysql/generic.js';
import { COM_INIT_DB, COM_QUERY, COM_STMT_EXECUTE, COM_STMT_PREPARE, COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA, COM_STMT_RESET, COM_RESET_CONNECTION } from '../../protocol/mysql/constants.js';
import { classifyMysql } from '../../sql/mysql-classify.js';
import { Router, type Action } from './router.js';
import { runRouted, type RoutedSession } from './routed.js';
import type { SysContext } from '../../replication/entry.js';

let sessionSeq = 0;

export type SessionState = 'handshake' | 'authenticating' | 'ready' | 'inCommand' | 'closing';

/** Handshake packets are small; a bigger one is bad input long before maxPacketBytes. */
const HANDSHAKE_PACKET_BYTES_MAX = 1024 * 1024;

const recallErrors = errorsTotal.labels('mysql', 'recall');
const protocolErrors = errorsTotal.labels('mysql', 'protocol');

export class Session {
  private phase: 'handshake' | 'authenticating' | 'relay' | 'intercept' | 'closing' = 'handshake';
  private backend: BackendConnection | null = null;
  private relay: Relay | null = null;
  private capabilities = 0;
  private isTls = false;
  private username = '';
  private readonly clientHost: string;
  private connectTimer: NodeJS.Timeout | null = null;
  /** The scramble of the handshake: COM_CHANGE_USER tokens are computed against it. */
  private scramble: Buffer = Buffer.alloc(0);
  private stage1: Buffer | null = null;
  private loginOk: Buffer = Buffer.alloc(0);
  private charset = 45;
  private mariadbCaps = 0;
  private router: Router | null = null;
  private readonly key: string;
  private routedCtx: { sys: SysContext; isolation: string } | null = null;

  constructor(
    private client: Socket,
    private readonly ctx: FrontendContext,
    private readonly onClosed: (s: Session) => void,
  ) {
    this.key = ctx.sessionPrefix + String(++sessionSeq);
    if (ctx.writes) this.router = new Router(ctx.writes, ctx.opts.consistency ?? 'session');
    const addr = client.remoteAddress ?? 'localhost';
    this.clientHost = addr.startsWith('::ffff:') ? addr.slice(7) : addr;
    client.setNoDelay(true);
    client.on('error', () => this.close());
    client.on('close', () => this.close());
  }

  /** One explicit value for the connection's state. */
  get state(): SessionState {
    if (this.phase === 'relay') return this.relay && this.relay.pendingCount() > 0 ? 'inCommand' : 'ready';
    if (this.phase === 'intercept') return 'inCommand';
    return this.phase;
  }

  /** Status flags of the last OK/EOF from the database (in transaction, autocommit). */
  get statusFlags(): number {
    return this.relay?.statusFlags ?? 0;
  }

  start(): void {
    this.connectTimer = setTimeout(() => this.close(), this.ctx.opts.connectTimeoutMs);
    this.handshake().catch((e: unknown) => this.failHandshake(e));
  }

  private failHandshake(e: unknown, seq = 2): void {
    if (this.phase === 'closing') return;
    if (e instanceof ProtocolError) {
      protocolErrors.inc();
      this.sendAndClose(e.errno, e.sqlState, e.errno === ER_HANDSHAKE_ERROR ? 'Bad handshake' : e.message, seq);
    } else if (e instanceof ChannelClosedError) {
      this.close();
    } else {
      // e.g. the accounts could not be read: say so rather than hang up without a word
      recallErrors.inc();
      this.ctx.log.warn('authentication failed', { error: (e as Error).message, client: this.clientHost });
      this.sendAndClose(ER_SERVER_SHUTDOWN, '08S01', `Recall could not authenticate the client: ${(e as Error).message}`, seq);
    }
  }

  private sendAndClose(errno: number, sqlState: string, message: string, seq: number): void {
    if (this.phase === 'closing') return;
    try {
      this.client.end(encodePacketErr(errno, sqlState, message, seq));
    } catch {
      /* socket already gone */
    }
    this.close(false);
  }

  private async handshake(): Promise<void> {
    const o = this.ctx.opts;
    try {
      this.backend = await BackendConnection.open(this.ctx.backendTarget, o.maxPacketBytes, o.connectTimeoutMs);
    } catch (e) {
      recallErrors.inc();
      if (e instanceof BackendRefusedError) {
        this.client.end(withSeq(e.errPayload, 0));
        return this.close(false);
      }
      return this.sendAndClose(ER_SERVER_SHUTDOWN, '08S01', `Recall cannot reach the local database (${(e as Error).message}); retry later`, 0);
    }
    if (this.phase === 'closing') return this.backend.destroy();
    this.backend.socket.on('error', () => undefined);
    this.backend.socket.on('close', () => this.onBackendClosed());
    const bh = this.backend.handshake;
    const serverCaps = this.ctx.serverCapabilities(bh.capabilities);
    // MariaDB's extended capabilities the relay passes through (extended metadata: JSON/UUID/INET6 column info)
    const serverExt = serverCaps & CLIENT_MYSQL ? 0 : (bh.mariadbCapabilities ?? 0) & RECALL_MARIADB_CAPABILITIES;
    const scramble = newScramble();
    this.scramble = scramble;
    let channel = new PacketChannel(this.client, HANDSHAKE_PACKET_BYTES_MAX);
    channel.write(
      encodeHandshakeV10({
        protocolVersion: 10,
        serverVersion: o.serverVersion ?? bh.serverVersion,
        connectionId: bh.connectionId, // the backend's thread id, so KILL and CONNECTION_ID() agree
        authPluginData: scramble,
        capabilities: serverCaps,
        charset: bh.charset,
        statusFlags: bh.statusFlags,
        authPluginName: o.defaultAuthPlugin ?? AUTH_NATIVE,
        mariadbCapabilities: serverExt,
      }),
      0,
    );
    let p = await channel.readSeq(1);
    if (isSslRequest(p.payload)) {
      if (!this.ctx.secureContext) throw new ProtocolError('SSL requested but not offered');
      // The TLS ClientHello may already sit behind the SSLRequest: hand it back to the stream,
      // TLSSocket reads what a paused socket has buffered when it wraps it (same tick, nothing lost).
      const early = channel.detach();
      this.client.pause();
      if (early.length) this.client.unshift(early);
      this.client = await this.upgradeTls(this.client);
      this.isTls = true;
      channel = new PacketChannel(this.client, HANDSHAKE_PACKET_BYTES_MAX);
      p = await channel.readSeq(2);
    } else if (this.ctx.opts.tlsRequired) {
      throw new ProtocolError('Recall requires TLS for client connections', 1045, '28000');
    }
    let resp;
    try {
      resp = decodeHandshakeResponse41(p.payload);
    } catch {
      throw new ProtocolError('Bad handshake', ER_HANDSHAKE_ERROR);
    }
    this.phase = 'authenticating';
    this.capabilities = resp.capabilities & serverCaps & ~CLIENT_SSL;
    const auth: AuthContext = this.authContext(channel, scramble, o.defaultAuthPlugin ?? AUTH_NATIVE);
    const outcome = await authenticateClient(auth, resp.username, resp.authPluginName, resp.authResponse, p.lastSeq + 1);
    if (this.isClosing()) return; // the client left (or timed out) while we looked it up
    if (!outcome.ok) {
      recallErrors.inc();
      return this.sendAndClose(outcome.errno, outcome.sqlState, outcome.message, outcome.nextSeq);
    }
    const login = await this.backend.login({
      capabilities: this.capabilities,
      maxPacketSize: resp.maxPacketSize,
      charset: resp.charset,
      mariadbCapabilities: resp.capabilities & CLIENT_MYSQL ? 0 : (resp.mariadbCapabilities ?? 0) & serverExt,
      username: resp.username,
      stage1: outcome.stage1,
      database: resp.database,
      attributes: [...resp.attributes, ['_recall_client_addr', this.clientHost]],
    });
    if (this.isClosing()) return;
    if (!login.ok) {
      this.client.end(withSeq(login.payload, outcome.nextSeq));
      return this.close(false);
    }
    this.username = resp.username;
    this.stage1 = outcome.stage1;
    this.charset = resp.charset;
    this.mariadbCaps = resp.capabilities & CLIENT_MYSQL ? 0 : (resp.mariadbCapabilities ?? 0) & serverExt;
    this.loginOk = login.payload;
    channel.write(login.payload, outcome.nextSeq);
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.connectTimer = null;
    this.startRelay(channel.detach(), this.backend.detach());
  }

  private upgradeTls(raw: Socket): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const s = new tls.TLSSocket(raw, { isServer: true, secureContext: this.ctx.secureContext! });
      s.once('secure', () => resolve(s));
      s.once('error', reject);
      s.on('error', () => this.close());
      s.on('close', () => this.close());
    });
  }

  private authContext(channel: PacketChannel, scramble: Buffer, scramblePlugin: string): AuthContext {
    return {
      channel,
      scramble,
      scramblePlugin,
      isTls: this.isTls,
      rsa: this.ctx.rsa,
      accounts: this.ctx.accounts,
      sha2Cache: this.ctx.sha2Cache,
      clientHost: this.clientHost,
    };
  }

  private startRelay(clientLeftover: Buffer, backendLeftover: Buffer): void {
    this.phase = 'relay';
    const backend = this.backend!;
    this.relay = new Relay(this.client, backend.socket, this.capabilities, this.ctx.opts.maxPacketBytes, this.ctx.opts.netReadTimeoutMs, {
      intercept: (held) => {
        this.phase = 'intercept';
        if (this.router && held.length > 4 && (held[4] === COM_QUERY || held[4] === COM_STMT_EXECUTE || held[4] === COM_STMT_PREPARE || held[4] === COM_INIT_DB)) {
          // routed: bounded by the lane and read timeouts, not by the handshake timer
          this.routed(held).catch((e: unknown) => this.failHandshake(e, 1));
          return;
        }
        // a client that stalls in the middle of a change-user exchange is cut off like one in the handshake
        const timer = setTimeout(() => this.close(), this.ctx.opts.connectTimeoutMs);
        this.intercepted(held)
          .catch((e: unknown) => this.failHandshake(e, 1))
          .finally(() => clearTimeout(timer));
      },
      fatal: (err, seq) => {
        protocolErrors.inc();
        this.sendAndClose(err.errno, err.sqlState, err.message, seq);
      },
      clientGone: () => this.close(),
      backendGone: (pending, started) => this.backendGone(pending, started),
      ...(this.router ? this.routingHooks(this.router) : {}),
    });
    try {
      this.relay.statusFlags = decodeOk(this.loginOk, this.capabilities).statusFlags;
    } catch {
      this.relay.statusFlags = 0x0002; // autocommit
    }
    this.relay.attach(clientLeftover, backendLeftover);
  }

  private routingHooks(router: Router) {
    return {
      decide: (cmd: number, payload: Buffer) => {
        const f = this.relay?.statusFlags ?? 0;
        return router.decide(cmd, payload, (f & 0x0001) !== 0 || (f & 0x0002) === 0);
      },
      prepared: (stmtId: number, params: number, text: Buffer) => {
        router.prepared.set(stmtId, { text, params, stmts: classifyMysql(text.toString('latin1')), types: null, longData: false });
      },
      statementCommand: (cmd: number, stmtId: number) => {
        const info = router.prepared.get(stmtId);
        if (cmd === COM_STMT_CLOSE) router.prepared.delete(stmtId);
        else if (info && cmd === COM_STMT_SEND_LONG_DATA) info.longData = true;
        else if (info && cmd === COM_STMT_RESET) info.longData = false;
      },
      contextCommand: (cmd: number) => {
        router.contextDirty = true;
        if (cmd === COM_RESET_CONNECTION) {
          router.prepared.clear();
          router.tempTables.clear();
          router.consistency = router.defaultConsistency;
          router.lidStale = false;
          router.lastInsertId = 0;
        }
      },
    };
  }

  /** A command the router took over: run it, then hand the session back to the relay. */
  private async routed(held: Buffer): Promise<void> {
    const router = this.router!;
    const channel = new PacketChannel(this.client, this.ctx.opts.maxPacketBytes, held);
    const relay = this.relay!;
    let action: Action | undefined = router.last?.action;
    router.last = null;
    let first: Packet | undefined;
    if (!action) {
      // a command of 16 MiB or more: the relay could not see it whole; decide on the whole payload
      first = await channel.read();
      const f = relay.statusFlags;
      router.decide(first.payload[0]!, first.payload, (f & 0x0001) !== 0 || (f & 0x0002) === 0);
      const decided = router.last as { action: Action } | null;
      action = decided?.action ?? { do: 'local' };
      router.last = null;
    }
    const backend = this.backend!;
    const rs: RoutedSession = {
      key: this.key,
      client: this.client,
      backendSocket: backend.socket,
      backendCapabilities: backend.capabilities,
      capabilities: this.capabilities,
      mariadbCapabilities: this.mariadbCaps,
      charset: this.charset,
      user: this.username,
      stage1: this.stage1,
      payloadBytesMax: this.ctx.opts.maxPacketBytes,
      router,
      svc: this.ctx.writes!,
      statusFlags: relay.statusFlags,
      ctx: this.routedCtx,
    };
    const out = await runRouted(rs, channel, action ?? { do: 'local' }, first);
    this.routedCtx = rs.ctx;
    relay.statusFlags = rs.statusFlags;
    if (this.isClosing()) return;
    this.phase = 'relay';
    relay.resume(channel.detach(), Buffer.alloc(0), out.bypass);
  }

  /** COM_CHANGE_USER or an unknown command, with nothing pending on the backend. */
  private async intercepted(held: Buffer): Promise<void> {
    if (this.router && held.length > 4 && (held[4] === COM_QUERY || held[4] === COM_STMT_EXECUTE || held[4] === COM_STMT_PREPARE || held[4] === COM_INIT_DB)) return this.routed(held);
    const channel = new PacketChannel(this.client, this.ctx.opts.maxPacketBytes, held);
    const p = await channel.read();
    if (p.payload[0] !== COM_CHANGE_USER) {
      channel.write(
        encodeErr({ errno: ER_UNKNOWN_COM_ERROR, sqlState: '08S01', message: 'Unknown command' }),
        p.lastSeq + 1,
      );
      protocolErrors.inc();
      this.phase = 'relay';
      this.relay!.resume(channel.detach(), Buffer.alloc(0));
      return;
    }
    let cu;
    try {
      cu = decodeChangeUser(p.payload, this.capabilities);
    } catch {
      throw new ProtocolError('Bad handshake', ER_HANDSHAKE_ERROR);
    }
    // MariaDB checks a native token against the handshake's scramble first, and clients rely on
    // that (mysql2 computes the auth-switch answer for an empty new password from the old one).
    // Anything else gets an auth switch with a fresh scramble.
    let outcome =
      cu.authPluginName === null || cu.authPluginName === '' || cu.authPluginName === AUTH_NATIVE
        ? await authenticateClient(this.authContext(channel, this.scramble, AUTH_NATIVE), cu.username, AUTH_NATIVE, cu.authResponse, p.lastSeq + 1)
        : null;
    if (!outcome || !outcome.ok) {
      const scramble = newScramble();
      const plugin = cu.authPluginName === AUTH_CACHING_SHA2 ? AUTH_CACHING_SHA2 : AUTH_NATIVE;
      channel.write(encodeAuthSwitchRequest({ pluginName: plugin, pluginData: scramble }), p.lastSeq + 1);
      const answer = await channel.readSeq(p.lastSeq + 2);
      outcome = await authenticateClient(this.authContext(channel, scramble, plugin), cu.username, plugin, answer.payload, answer.lastSeq + 1);
    }
    if (!outcome.ok) {
      recallErrors.inc();
      return this.sendAndClose(outcome.errno, outcome.sqlState, outcome.message, outcome.nextSeq);
    }
    const result = await this.backend!.changeUser({
      capabilities: this.capabilities,
      maxPacketSize: 0,
      charset: cu.charset ?? 45,
      username: cu.username,
      stage1: outcome.stage1,
      database: cu.database || null,
      attributes: [...cu.attributes, ['_recall_client_addr', this.clientHost]],
    });
    if (!result.ok) {
      this.client.end(withSeq(result.payload, outcome.nextSeq));
      return this.close(false);
    }
    this.username = cu.username;
    this.stage1 = outcome.stage1;
    if (this.router) {
      this.router.prepared.clear();
      this.router.tempTables.clear();
      this.router.contextDirty = true;
      this.router.lidStale = false;
      this.router.consistency = this.router.defaultConsistency;
    }
    channel.write(result.payload, outcome.nextSeq);
    this.phase = 'relay';
    this.relay!.resume(channel.detach(), this.backend!.detach());
  }

  private onBackendClosed(): void {
    if (this.phase === 'closing') return;
    if (this.relay && this.phase === 'relay') this.relay.backendClosed();
    else this.close();
  }

  private backendGone(pending: number, responseStarted: boolean): void {
    recallErrors.inc();
    this.ctx.log.warn('backend connection lost', { user: this.username, pending });
    // Mid-response an error packet would be misread; closing makes the client report 2013 itself.
    if (pending > 0 && !responseStarted) {
      return this.sendAndClose(
        ER_SERVER_SHUTDOWN,
        '08S01',
        'Recall lost its connection to the local database; the outcome of the statement is unknown, reconnect and retry',
        1,
      );
    }
    this.client.end();
    this.close(false);
  }

  private isClosing(): boolean {
    return this.phase === 'closing';
  }

  /** Close both sides (idempotent). */
  close(destroyClient = true): void {
    if (this.phase === 'closing') return;
    this.phase = 'closing';
    if (this.connectTimer) clearTimeout(this.connectTimer);
    if (this.router && this.ctx.writes) this.ctx.writes.endSession(this.key);
    const quitBackend = this.relay !== null && this.relay.idle();
    this.relay?.close();
    if (quitBackend && this.backend && !this.backend.socket.destroyed) {
      // a COM_QUIT spares the database an "Aborted connection" warning for a client that just left
      this.backend.socket.end(COM_QUIT_PACKET);
      const b = this.backend;
      setTimeout(() => b.destroy(), 1000).unref();
    } else this.backend?.destroy();
    if (destroyClient) this.client.destroy();
    else setTimeout(() => this.client.destroy(), 1000).unref();
    this.onClosed(this);
  }
}

const COM_QUIT_PACKET = Buffer.from([1, 0, 0, 0, 0x01]);

function encodePacketErr(errno: number, sqlState: string, message: string, seq: number): Buffer {
  return withSeq(encodeErr({ errno, sqlState, message }), seq);
}

/** Frame a payload as one packet with the given sequence id. */
function withSeq(payload: Buffer, seq: number): Buffer {
  const out = Buffer.allocUnsafe(payload.length + 4);
  out.writeUIntLE(payload.length, 0, 3);
  out[3] = seq & 0xff;
  payload.copy(out, 4);
  return out;
}
