// Typed messages Recall encodes or decodes itself (the relay passes all others as bytes):
// ErrorResponse/NoticeResponse fields, ReadyForQuery, BackendKeyData, ParameterStatus, Terminate,
// and the Authentication family with the client's PasswordMessage/SASL answers.
// https://www.postgresql.org/docs/current/protocol-message-formats.html
// https://www.postgresql.org/docs/current/protocol-error-fields.html
import {
  AUTH_MD5_PASSWORD,
  AUTH_OK,
  AUTH_SASL,
  AUTH_SASL_CONTINUE,
  AUTH_SASL_FINAL,
  MSG_AUTHENTICATION,
  MSG_BACKEND_KEY_DATA,
  MSG_ERROR_RESPONSE,
  MSG_PARAMETER_STATUS,
  MSG_PASSWORD,
  MSG_QUERY,
  MSG_READY_FOR_QUERY,
  MSG_TERMINATE,
} from './constants.js';
import { PgProtocolError } from './errors.js';
import { Reader } from './reader.js';
import { Writer } from './writer.js';

/** ErrorResponse / NoticeResponse fields by their one-letter codes (S, V, C, M, D, H, P, ...). */
export type ErrorFields = Map<string, string>;

export interface PgError {
  severity: 'ERROR' | 'FATAL' | 'PANIC' | 'WARNING' | 'NOTICE';
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

export function encodeErrorResponse(e: PgError, type = MSG_ERROR_RESPONSE): Buffer {
  const w = new Writer(64 + e.message.length);
  w.int8(0x53).cstring(e.severity); // 'S' localized severity
  w.int8(0x56).cstring(e.severity); // 'V' severity, never localized
  w.int8(0x43).cstring(e.code); // 'C' SQLSTATE
  w.int8(0x4d).cstring(e.message); // 'M'
  if (e.detail) w.int8(0x44).cstring(e.detail); // 'D'
  if (e.hint) w.int8(0x48).cstring(e.hint); // 'H'
  return w.int8(0).message(type);
}

/** The fields of an ErrorResponse or NoticeResponse, given the whole message. */
export function decodeErrorFields(msg: Buffer): ErrorFields {
  const r = new Reader(msg, 5);
  const fields: ErrorFields = new Map();
  for (;;) {
    const t = r.int8();
    if (t === 0) return fields;
    fields.set(String.fromCharCode(t), r.cstring());
  }
}

export function encodeReadyForQuery(status: number): Buffer {
  return new Writer(6).int8(status).message(MSG_READY_FOR_QUERY);
}

export function encodeBackendKeyData(processId: number, secretKey: number): Buffer {
  return new Writer(13).int32(processId).int32(secretKey).message(MSG_BACKEND_KEY_DATA);
}

export function decodeBackendKeyData(msg: Buffer): { processId: number; secretKey: number } {
  const r = new Reader(msg, 5);
  return { processId: r.int32(), secretKey: r.int32() };
}

export function encodeParameterStatus(name: string, value: string): Buffer {
  return new Writer(32).cstring(name).cstring(value).message(MSG_PARAMETER_STATUS);
}

export function decodeParameterStatus(msg: Buffer): { name: string; value: string } {
  const r = new Reader(msg, 5);
  return { name: r.cstring(), value: r.cstring() };
}

export function encodeQuery(sql: string): Buffer {
  return new Writer(sql.length + 8).cstring(sql).message(MSG_QUERY);
}

export function encodeTerminate(): Buffer {
  return new Writer(5).message(MSG_TERMINATE);
}

// ---- Authentication ('R') -------------------------------------------------------------

export function encodeAuthenticationOk(): Buffer {
  return new Writer(9).int32(AUTH_OK).message(MSG_AUTHENTICATION);
}

export function encodeAuthenticationMD5Password(salt: Buffer): Buffer {
  return new Writer(13).int32(AUTH_MD5_PASSWORD).bytes(salt).message(MSG_AUTHENTICATION);
}

export function encodeAuthenticationSASL(mechanisms: string[]): Buffer {
  const w = new Writer(32).int32(AUTH_SASL);
  for (const m of mechanisms) w.cstring(m);
  return w.int8(0).message(MSG_AUTHENTICATION);
}

export function encodeAuthenticationSASLContinue(data: string): Buffer {
  return new Writer(16 + data.length).int32(AUTH_SASL_CONTINUE).bytes(Buffer.from(data)).message(MSG_AUTHENTICATION);
}

export function encodeAuthenticationSASLFinal(data: string): Buffer {
  return new Writer(16 + data.length).int32(AUTH_SASL_FINAL).bytes(Buffer.from(data)).message(MSG_AUTHENTICATION);
}

export type Authentication =
  | { code: typeof AUTH_OK }
  | { code: typeof AUTH_MD5_PASSWORD; salt: Buffer }
  | { code: typeof AUTH_SASL; mechanisms: string[] }
  | { code: typeof AUTH_SASL_CONTINUE | typeof AUTH_SASL_FINAL; data: string }
  | { code: number };

/** An Authentication request from a server (whole message). */
export function decodeAuthentication(msg: Buffer): Authentication {
  const r = new Reader(msg, 5);
  const code = r.int32();
  switch (code) {
    case AUTH_MD5_PASSWORD:
      return { code, salt: Buffer.from(r.bytes(4)) };
    case AUTH_SASL: {
      const mechanisms: string[] = [];
      for (;;) {
        const m = r.cstring();
        if (m === '') return { code, mechanisms };
        mechanisms.push(m);
      }
    }
    case AUTH_SASL_CONTINUE:
    case AUTH_SASL_FINAL:
      return { code, data: r.rest().toString('utf8') };
    default:
      return { code };
  }
}

/** PasswordMessage: the md5 (or cleartext) password, a String. */
export function encodePasswordMessage(password: string): Buffer {
  return new Writer(48).cstring(password).message(MSG_PASSWORD);
}

export function decodePasswordMessage(msg: Buffer): string {
  const r = new Reader(msg, 5);
  const s = r.cstring();
  if (r.remaining() !== 0) throw new PgProtocolError('invalid password packet size');
  return s;
}

export function encodeSASLInitialResponse(mechanism: string, data: string): Buffer {
  const b = Buffer.from(data);
  return new Writer(32 + b.length).cstring(mechanism).int32(b.length).bytes(b).message(MSG_PASSWORD);
}

export function decodeSASLInitialResponse(msg: Buffer): { mechanism: string; data: string | null } {
  const r = new Reader(msg, 5);
  const mechanism = r.cstring();
  const n = r.int32();
  const data = n === -1 ? null : r.bytes(n).toString('utf8');
  return { mechanism, data };
}

export function encodeSASLResponse(data: string): Buffer {
  const b = Buffer.from(data);
  return new Writer(8 + b.length).bytes(b).message(MSG_PASSWORD);
}

export function decodeSASLResponse(msg: Buffer): string {
  return msg.toString('utf8', 5);
}
