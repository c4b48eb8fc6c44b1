// Generic response packets: OK_Packet, ERR_Packet, EOF_Packet.
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_ok_packet.html
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_err_packet.html
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_eof_packet.html
import { CLIENT_PROTOCOL_41, CLIENT_SESSION_TRACK, EOF_HEADER, ERR_HEADER, OK_HEADER, SERVER_SESSION_STATE_CHANGED } from './constants.js';
import { ProtocolError } from './errors.js';
import { PacketReader } from './reader.js';
import { PacketWriter } from './writer.js';

export interface OkPacket {
  header: number; // 0x00, or 0xFE when it ends a result set under CLIENT_DEPRECATE_EOF
  affectedRows: number;
  lastInsertId: number;
  statusFlags: number;
  warnings: number;
  info: string;
  /** Raw session state change bytes (SESSION_TRACK with SERVER_SESSION_STATE_CHANGED), kept opaque. */
  sessionStateChanges: Buffer | null;
}

export interface ErrPacket {
  errno: number;
  sqlState: string;
  message: string;
}

export interface EofPacket {
  warnings: number;
  statusFlags: number;
}

export function decodeOk(payload: Buffer, capabilities: number): OkPacket {
  const r = new PacketReader(payload);
  const header = r.int1();
  if (header !== OK_HEADER && header !== EOF_HEADER) throw new ProtocolError(`not an OK packet: header 0x${header.toString(16)}`);
  const affectedRows = r.lenencLength();
  const lastInsertId = r.lenencLength();
  let statusFlags = 0;
  let warnings = 0;
  if (capabilities & CLIENT_PROTOCOL_41) {
    statusFlags = r.int2();
    warnings = r.int2();
  }
  let info = '';
  let sessionStateChanges: Buffer | null = null;
  if (capabilities & CLIENT_SESSION_TRACK) {
    if (!r.atEnd()) info = r.lenencString() ?? '';
    if (statusFlags & SERVER_SESSION_STATE_CHANGED) sessionStateChanges = r.lenencBytes();
  } else {
    info = r.restString();
  }
  return { header, affectedRows, lastInsertId, statusFlags, warnings, info, sessionStateChanges };
}

export function encodeOk(ok: Partial<OkPacket>, capabilities: number): Buffer {
  const w = new PacketWriter(32);
  w.int1(ok.header ?? OK_HEADER)
    .lenencInt(ok.affectedRows ?? 0)
    .lenencInt(ok.lastInsertId ?? 0);
  const statusFlags = ok.statusFlags ?? 0;
  if (capabilities & CLIENT_PROTOCOL_41) w.int2(statusFlags).int2(ok.warnings ?? 0);
  if (capabilities & CLIENT_SESSION_TRACK) {
    if (ok.info || ok.sessionStateChanges || statusFlags & SERVER_SESSION_STATE_CHANGED) w.lenencString(ok.info ?? '');
    if (statusFlags & SERVER_SESSION_STATE_CHANGED) w.lenencBytes(ok.sessionStateChanges ?? Buffer.alloc(0));
  } else if (ok.info) {
    w.fixedString(ok.info);
  }
  return Buffer.from(w.payload());
}

export function decodeErr(payload: Buffer, capabilities: number): ErrPacket {
  const r = new PacketReader(payload);
  const header = r.int1();
  if (header !== ERR_HEADER) throw new ProtocolError(`not an ERR packet: header 0x${header.toString(16)}`);
  const errno = r.int2();
  let sqlState = 'HY000';
  // The '#' marker is present with PROTOCOL_41, except in errors sent before the handshake completes.
  if (capabilities & CLIENT_PROTOCOL_41 && r.remaining() > 0 && payload[r.offset] === 0x23) {
    r.skip(1);
    sqlState = r.fixedString(5);
  }
  return { errno, sqlState, message: r.restString() };
}

export function encodeErr(err: ErrPacket, capabilities = CLIENT_PROTOCOL_41): Buffer {
  const w = new PacketWriter(32 + err.message.length);
  w.int1(ERR_HEADER).int2(err.errno);
  if (capabilities & CLIENT_PROTOCOL_41) w.int1(0x23).fixedString(err.sqlState.padEnd(5, '0').slice(0, 5));
  w.fixedString(err.message);
  return Buffer.from(w.payload());
}

/** EOF packets are 0xFE with a payload shorter than 9 bytes (a longer 0xFE packet is a row or an OK). */
export function isEofPayload(payload: Buffer): boolean {
  return payload.length > 0 && payload.length < 9 && payload[0] === EOF_HEADER;
}

export function decodeEof(payload: Buffer, capabilities: number): EofPacket {
  const r = new PacketReader(payload);
  const header = r.int1();
  if (header !== EOF_HEADER) throw new ProtocolError(`not an EOF packet: header 0x${header.toString(16)}`);
  if (capabilities & CLIENT_PROTOCOL_41) return { warnings: r.int2(), statusFlags: r.int2() };
  return { warnings: 0, statusFlags: 0 };
}

export function encodeEof(eof: EofPacket, capabilities: number): Buffer {
  const w = new PacketWriter(5);
  w.int1(EOF_HEADER);
  if (capabilities & CLIENT_PROTOCOL_41) w.int2(eof.warnings).int2(eof.statusFlags);
  return Buffer.from(w.payload());
}
