// Connection phase packets.
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase.html
// HandshakeV10:         .../page_protocol_connection_phase_packets_protocol_handshake_v10.html
// HandshakeResponse41:  .../page_protocol_connection_phase_packets_protocol_handshake_response.html
// SSLRequest:           .../page_protocol_connection_phase_packets_protocol_ssl_request.html
// AuthSwitchRequest:    .../page_protocol_connection_phase_packets_protocol_auth_switch_request.html
// AuthMoreData:         .../page_protocol_connection_phase_packets_protocol_auth_more_data.html
// COM_CHANGE_USER:      .../page_protocol_com_change_user.html
import {
  AUTH_MORE_DATA_HEADER,
  AUTH_SWITCH_HEADER,
  CLIENT_CONNECT_ATTRS,
  CLIENT_CONNECT_WITH_DB,
  CLIENT_MYSQL,
  CLIENT_PLUGIN_AUTH,
  CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA,
  CLIENT_PROTOCOL_41,
  CLIENT_SECURE_CONNECTION,
  CLIENT_SSL,
  COM_CHANGE_USER,
} from './constants.js';
import { ProtocolError } from './errors.js';
import { PacketReader } from './reader.js';
import { PacketWriter } from './writer.js';

export interface HandshakeV10 {
  protocolVersion: number;
  serverVersion: string;
  connectionId: number;
  /** The full scramble (part 1 + part 2, without the trailing NUL), 20 bytes for the usual plugins. */
  authPluginData: Buffer;
  capabilities: number;
  charset: number;
  statusFlags: number;
  authPluginName: string;
  /** MariaDB extended capabilities; sent only when `capabilities` lacks CLIENT_MYSQL. */
  mariadbCapabilities?: number;
}

export function encodeHandshakeV10(h: HandshakeV10): Buffer {
  const w = new PacketWriter(128);
  w.int1(h.protocolVersion).nullTerminated(h.serverVersion).int4(h.connectionId);
  w.fixed(h.authPluginData.subarray(0, 8)).int1(0);
  w.int2(h.capabilities & 0xffff).int1(h.charset).int2(h.statusFlags).int2((h.capabilities >>> 16) & 0xffff);
  w.int1(h.capabilities & CLIENT_PLUGIN_AUTH ? h.authPluginData.length + 1 : 0);
  w.zeros(6);
  if (h.capabilities & CLIENT_MYSQL) w.zeros(4);
  else w.int4(h.mariadbCapabilities ?? 0);
  if (h.capabilities & CLIENT_SECURE_CONNECTION) {
    const part2 = h.authPluginData.subarray(8);
    w.fixed(part2);
    // part 2 is max(13, len - 8) bytes including the terminating NUL
    w.zeros(Math.max(13 - part2.length, 1));
  }
  if (h.capabilities & CLIENT_PLUGIN_AUTH) w.nullTerminated(h.authPluginName);
  return Buffer.from(w.payload());
}

export function decodeHandshakeV10(payload: Buffer): HandshakeV10 {
  const r = new PacketReader(payload);
  const protocolVersion = r.int1();
  if (protocolVersion !== 10) throw new ProtocolError(`unsupported handshake protocol version ${protocolVersion}`);
  const serverVersion = r.nullTerminatedString();
  const connectionId = r.int4();
  const part1 = r.fixed(8);
  r.skip(1);
  let capabilities = r.int2();
  let charset = 0;
  let statusFlags = 0;
  let authDataLen = 0;
  let part2: Buffer = Buffer.alloc(0);
  let authPluginName = '';
  let mariadbCapabilities = 0;
  if (!r.atEnd()) {
    charset = r.int1();
    statusFlags = r.int2();
    capabilities = (capabilities | (r.int2() << 16)) >>> 0;
    authDataLen = r.int1();
    r.skip(6);
    const ext = r.int4();
    if (!(capabilities & CLIENT_MYSQL)) mariadbCapabilities = ext;
    if (capabilities & CLIENT_SECURE_CONNECTION) {
      const n = Math.max(13, authDataLen - 8);
      part2 = r.fixed(Math.min(n, r.remaining()));
      // drop the trailing NUL of part 2
      if (part2.length > 0 && part2[part2.length - 1] === 0) part2 = part2.subarray(0, part2.length - 1);
    }
    if (capabilities & CLIENT_PLUGIN_AUTH) authPluginName = r.nullTerminatedOrRest().toString('utf8');
  }
  return {
    protocolVersion,
    serverVersion,
    connectionId,
    authPluginData: Buffer.concat([part1, part2]),
    capabilities,
    charset,
    statusFlags,
    authPluginName,
    mariadbCapabilities,
  };
}

export interface SslRequest {
  capabilities: number;
  maxPacketSize: number;
  charset: number;
  /** MariaDB extended capabilities (offset 28), present only when `capabilities` lacks CLIENT_MYSQL. */
  mariadbCapabilities?: number;
}

export interface HandshakeResponse41 extends SslRequest {
  username: string;
  authResponse: Buffer;
  database: string | null;
  authPluginName: string | null;
  /** Connection attributes in the order sent. */
  attributes: Array<[string, string]>;
}

/** An SSLRequest is a HandshakeResponse41 truncated after the filler, with CLIENT_SSL set. */
export function isSslRequest(payload: Buffer): boolean {
  return payload.length === 32 && (payload.readUInt32LE(0) & CLIENT_SSL) !== 0;
}

export function decodeSslRequest(payload: Buffer): SslRequest {
  const r = new PacketReader(payload);
  const capabilities = r.int4();
  const maxPacketSize = r.int4();
  const charset = r.int1();
  r.skip(19);
  const ext = r.int4();
  return { capabilities, maxPacketSize, charset, mariadbCapabilities: capabilities & CLIENT_MYSQL ? 0 : ext };
}

export function encodeSslRequest(s: SslRequest): Buffer {
  const w = new PacketWriter(32).int4(s.capabilities | CLIENT_SSL).int4(s.maxPacketSize).int1(s.charset).zeros(19);
  w.int4(s.capabilities & CLIENT_MYSQL ? 0 : (s.mariadbCapabilities ?? 0));
  return Buffer.from(w.payload());
}

function readAuthResponse(r: PacketReader, capabilities: number): Buffer {
  if (capabilities & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA) return r.lenencBytes() ?? Buffer.alloc(0);
  if (capabilities & CLIENT_SECURE_CONNECTION) return r.fixed(r.int1());
  return r.nullTerminatedOrRest();
}

function readAttributes(r: PacketReader): Array<[string, string]> {
  const total = r.lenencLength();
  const end = r.offset + total;
  if (end > r.buf.length) throw new ProtocolError('connection attributes overrun the packet');
  const attrs: Array<[string, string]> = [];
  while (r.offset < end) {
    const k = r.lenencString() ?? '';
    const v = r.lenencString() ?? '';
    attrs.push([k, v]);
  }
  if (r.offset !== end) throw new ProtocolError('connection attributes length mismatch');
  return attrs;
}

function writeAttributes(w: PacketWriter, attrs: Array<[string, string]>): void {
  const inner = new PacketWriter(64);
  for (const [k, v] of attrs) inner.lenencString(k).lenencString(v);
  w.lenencBytes(inner.payload());
}

export function decodeHandshakeResponse41(payload: Buffer): HandshakeResponse41 {
  const r = new PacketReader(payload);
  const capabilities = r.int4();
  if (!(capabilities & CLIENT_PROTOCOL_41)) throw new ProtocolError('client does not speak protocol 4.1');
  const maxPacketSize = r.int4();
  const charset = r.int1();
  r.skip(19);
  const ext = r.int4();
  const mariadbCapabilities = capabilities & CLIENT_MYSQL ? 0 : ext;
  const username = r.nullTerminatedString();
  const authResponse = readAuthResponse(r, capabilities);
  // Trailing fields are optional in practice (old clients set the flag and omit them): be lenient as MySQL is.
  let database: string | null = null;
  if (capabilities & CLIENT_CONNECT_WITH_DB && !r.atEnd()) database = r.nullTerminatedOrRest().toString('utf8');
  let authPluginName: string | null = null;
  if (capabilities & CLIENT_PLUGIN_AUTH && !r.atEnd()) authPluginName = r.nullTerminatedOrRest().toString('utf8');
  let attributes: Array<[string, string]> = [];
  if (capabilities & CLIENT_CONNECT_ATTRS && !r.atEnd()) attributes = readAttributes(r);
  return { capabilities, maxPacketSize, charset, mariadbCapabilities, username, authResponse, database, authPluginName, attributes };
}

export function encodeHandshakeResponse41(h: HandshakeResponse41): Buffer {
  let caps = h.capabilities;
  if (h.database === null) caps &= ~CLIENT_CONNECT_WITH_DB;
  const w = new PacketWriter(128);
  w.int4(caps).int4(h.maxPacketSize).int1(h.charset).zeros(19);
  w.int4(caps & CLIENT_MYSQL ? 0 : (h.mariadbCapabilities ?? 0)).nullTerminated(h.username);
  if (caps & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA) w.lenencBytes(h.authResponse);
  else if (caps & CLIENT_SECURE_CONNECTION) w.int1(h.authResponse.length).fixed(h.authResponse);
  else w.nullTerminated(h.authResponse);
  if (caps & CLIENT_CONNECT_WITH_DB) w.nullTerminated(h.database ?? '');
  if (caps & CLIENT_PLUGIN_AUTH) w.nullTerminated(h.authPluginName ?? '');
  if (caps & CLIENT_CONNECT_ATTRS) writeAttributes(w, h.attributes);
  return Buffer.from(w.payload());
}

export interface AuthSwitchRequest {
  pluginName: string;
  pluginData: Buffer;
}

export function encodeAuthSwitchRequest(a: AuthSwitchRequest): Buffer {
  // The native and sha2 plugins send their 20-byte scramble followed by a NUL.
  return Buffer.from(new PacketWriter(64).int1(AUTH_SWITCH_HEADER).nullTerminated(a.pluginName).nullTerminated(a.pluginData).payload());
}

export function decodeAuthSwitchRequest(payload: Buffer): AuthSwitchRequest {
  const r = new PacketReader(payload);
  if (r.int1() !== AUTH_SWITCH_HEADER) throw new ProtocolError('not an AuthSwitchRequest');
  const pluginName = r.nullTerminatedOrRest().toString('utf8');
  let pluginData = r.rest();
  if (pluginData.length > 0 && pluginData[pluginData.length - 1] === 0) pluginData = pluginData.subarray(0, pluginData.length - 1);
  return { pluginName, pluginData };
}

export function encodeAuthMoreData(data: Buffer): Buffer {
  return Buffer.from(new PacketWriter(data.length + 1).int1(AUTH_MORE_DATA_HEADER).fixed(data).payload());
}

export function decodeAuthMoreData(payload: Buffer): Buffer {
  const r = new PacketReader(payload);
  if (r.int1() !== AUTH_MORE_DATA_HEADER) throw new ProtocolError('not an AuthMoreData packet');
  return r.rest();
}

export interface ChangeUser {
  username: string;
  authResponse: Buffer;
  database: string;
  charset: number | null;
  authPluginName: string | null;
  attributes: Array<[string, string]>;
}

export function decodeChangeUser(payload: Buffer, capabilities: number): ChangeUser {
  const r = new PacketReader(payload);
  if (r.int1() !== COM_CHANGE_USER) throw new ProtocolError('not a COM_CHANGE_USER packet');
  const username = r.nullTerminatedString();
  const authResponse = capabilities & CLIENT_SECURE_CONNECTION ? r.fixed(r.int1()) : r.nullTerminated();
  const database = r.atEnd() ? '' : r.nullTerminatedOrRest().toString('utf8');
  let charset: number | null = null;
  let authPluginName: string | null = null;
  let attributes: Array<[string, string]> = [];
  if (r.remaining() >= 2) {
    charset = r.int2();
    if (capabilities & CLIENT_PLUGIN_AUTH && !r.atEnd()) authPluginName = r.nullTerminatedOrRest().toString('utf8');
    if (capabilities & CLIENT_CONNECT_ATTRS && !r.atEnd()) attributes = readAttributes(r);
  }
  return { username, authResponse, database, charset, authPluginName, attributes };
}

export function encodeChangeUser(c: ChangeUser, capabilities: number): Buffer {
  const w = new PacketWriter(128);
  w.int1(COM_CHANGE_USER).nullTerminated(c.username);
  if (capabilities & CLIENT_SECURE_CONNECTION) w.int1(c.authResponse.length).fixed(c.authResponse);
  else w.nullTerminated(c.authResponse);
  w.nullTerminated(c.database);
  if (c.charset !== null) {
    w.int2(c.charset);
    if (capabilities & CLIENT_PLUGIN_AUTH) w.nullTerminated(c.authPluginName ?? '');
    if (capabilities & CLIENT_CONNECT_ATTRS) writeAttributes(w, c.attributes);
  }
  return Buffer.from(w.payload());
}
