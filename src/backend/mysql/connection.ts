// A raw protocol connection to the local database, opened per client session and
// authenticated as the client's own account with stage1 = SHA1(password), so Recall never
// needs the plaintext. After authentication the frontend relay owns the socket.
import net from 'node:net';
import {
  AUTH_NATIVE,
  CLIENT_CONNECT_ATTRS,
  CLIENT_CONNECT_WITH_DB,
  CLIENT_PLUGIN_AUTH,
  CLIENT_PROTOCOL_41,
  CLIENT_SECURE_CONNECTION,
  CLIENT_SSL,
  ERR_HEADER,
  OK_HEADER,
  AUTH_SWITCH_HEADER,
} from '../../protocol/mysql/constants.js';
import {
  decodeAuthSwitchRequest,
  decodeHandshakeV10,
  encodeChangeUser,
  encodeHandshakeResponse41,
  type HandshakeV10,
} from '../../protocol/mysql/handshake.js';
import { nativeTokenFromStage1 } from '../../protocol/mysql/auth.js';
import { PacketChannel } from './channel.js';
import { ProtocolError } from '../../protocol/mysql/errors.js';

export interface BackendTarget {
  socketPath?: string;
  host?: string;
  port?: number;
}

export interface BackendLogin {
  capabilities: number;
  maxPacketSize: number;
  charset: number;
  /** MariaDB extended capabilities the client chose (sent when the login lacks CLIENT_MYSQL). */
  mariadbCapabilities?: number;
  username: string;
  /** SHA1(password), or null for the empty password. */
  stage1: Buffer | null;
  database: string | null;
  attributes: Array<[string, string]>;
}

/** The backend's final answer to a login: the raw OK or ERR payload, relayed to the client as is. */
export interface BackendLoginResult {
  ok: boolean;
  payload: Buffer;
}

/** Capabilities Recall always asks of the backend for its own login, whatever the client asked. */
const LOGIN_CAPABILITIES = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH | CLIENT_CONNECT_ATTRS;

export class BackendConnection {
  private channel: PacketChannel | null;
  /** Capabilities in force after login (the client's, minus SSL, plus what Recall's login needs). */
  capabilities = 0;

  private constructor(
    readonly socket: net.Socket,
    readonly handshake: HandshakeV10,
    channel: PacketChannel,
    private readonly payloadBytesMax: number,
  ) {
    this.channel = channel;
  }

  /** Connect and read the server's HandshakeV10 (its thread id and scramble). */
  static open(target: BackendTarget, payloadBytesMax: number, timeoutMs: number): Promise<BackendConnection> {
    return new Promise((resolve, reject) => {
      const socket = target.socketPath
        ? net.connect({ path: target.socketPath })
        : net.connect({ host: target.host ?? '127.0.0.1', port: target.port ?? 3306 });
      socket.setNoDelay(true);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`backend did not greet within ${timeoutMs} ms`));
      }, timeoutMs);
      const onConnectError = (e: Error): void => {
        clearTimeout(timer);
        reject(e);
      };
      socket.once('error', onConnectError);
      socket.once('connect', () => {
        const channel = new PacketChannel(socket, payloadBytesMax);
        channel
          .read()
          .then((p) => {
            clearTimeout(timer);
            socket.off('error', onConnectError);
            if (p.payload[0] === ERR_HEADER) {
              // e.g. "Too many connections" or "Host is blocked": surfaced as is
              socket.destroy();
              reject(new BackendRefusedError(p.payload));
              return;
            }
            resolve(new BackendConnection(socket, decodeHandshakeV10(p.payload), channel, payloadBytesMax));
          })
          .catch((e: Error) => {
            clearTimeout(timer);
            socket.destroy();
            reject(e);
          });
      });
    });
  }

  private requireChannel(): PacketChannel {
    if (!this.channel) this.channel = new PacketChannel(this.socket, this.payloadBytesMax);
    return this.channel;
  }

  /** Send HandshakeResponse41 with a native token computed from stage1; follow an auth switch to native. */
  async login(l: BackendLogin): Promise<BackendLoginResult> {
    const ch = this.requireChannel();
    const caps =
      ((l.capabilities & ~CLIENT_SSL & ~CLIENT_CONNECT_WITH_DB) | LOGIN_CAPABILITIES | (l.database ? CLIENT_CONNECT_WITH_DB : 0)) &
      (this.handshake.capabilities | CLIENT_CONNECT_WITH_DB);
    this.capabilities = caps;
    const payload = encodeHandshakeResponse41({
      capabilities: caps,
      maxPacketSize: l.maxPacketSize,
      charset: l.charset,
      mariadbCapabilities: (l.mariadbCapabilities ?? 0) & (this.handshake.mariadbCapabilities ?? 0),
      username: l.username,
      authResponse: nativeTokenFromStage1(l.stage1, this.handshake.authPluginData),
      database: l.database,
      authPluginName: AUTH_NATIVE,
      attributes: l.attributes,
    });
    ch.write(payload, 1);
    return this.finishAuth(ch, 2, l.stage1);
  }

  /** COM_CHANGE_USER on the backend session (resets its state, logs in as another account). */
  async changeUser(l: BackendLogin): Promise<BackendLoginResult> {
    const ch = this.requireChannel();
    const payload = encodeChangeUser(
      {
        username: l.username,
        authResponse: nativeTokenFromStage1(l.stage1, this.handshake.authPluginData),
        database: l.database ?? '',
        charset: l.charset,
        authPluginName: AUTH_NATIVE,
        attributes: l.attributes,
      },
      this.capabilities,
    );
    ch.write(payload, 0);
    return this.finishAuth(ch, 1, l.stage1);
  }

  private async finishAuth(ch: PacketChannel, seq: number, stage1: Buffer | null): Promise<BackendLoginResult> {
    for (let round = 0; round < 4; round++) {
      const p = await ch.readSeq(seq);
      const head = p.payload[0];
      if (head === OK_HEADER) return { ok: true, payload: p.payload };
      if (head === ERR_HEADER) return { ok: false, payload: p.payload };
      if (head === AUTH_SWITCH_HEADER) {
        const sw = decodeAuthSwitchRequest(p.payload);
        if (sw.pluginName !== AUTH_NATIVE) {
          throw new ProtocolError(`backend asked for auth plugin ${sw.pluginName}, which Recall cannot proxy`, 1045, '28000');
        }
        ch.write(nativeTokenFromStage1(stage1, sw.pluginData), p.lastSeq + 1);
        seq = p.lastSeq + 2;
        continue;
      }
      throw new ProtocolError(`unexpected packet 0x${(head ?? 0).toString(16)} from the backend during authentication`);
    }
    throw new ProtocolError('backend authentication did not finish');
  }

  /** Hand the socket over to the relay: unread bytes are returned. */
  detach(): Buffer {
    const ch = this.channel;
    this.channel = null;
    return ch ? ch.detach() : Buffer.alloc(0);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export class BackendRefusedError extends Error {
  constructor(readonly errPayload: Buffer) {
    super('backend refused the connection');
    this.name = 'BackendRefusedError';
  }
}
