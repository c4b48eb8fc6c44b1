// The startup phase: the untyped packets a client opens with (StartupMessage, SSLRequest,
// GSSENCRequest, CancelRequest) and NegotiateProtocolVersion.
// https://www.postgresql.org/docs/current/protocol-message-formats.html
// https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP
import {
  CANCEL_REQUEST_CODE,
  GSSENC_REQUEST_CODE,
  MSG_NEGOTIATE_PROTOCOL_VERSION,
  SSL_REQUEST_CODE,
} from './constants.js';
import { PgProtocolError } from './errors.js';
import { Reader } from './reader.js';
import { Writer } from './writer.js';

export type StartupPacket =
  | { kind: 'SSLRequest' }
  | { kind: 'GSSENCRequest' }
  | { kind: 'CancelRequest'; processId: number; secretKey: number }
  | { kind: 'StartupMessage'; major: number; minor: number; parameters: Map<string, string> };

/** One whole startup packet, starting at its Int32 length. */
export function decodeStartupPacket(packet: Buffer): StartupPacket {
  const r = new Reader(packet);
  const len = r.int32();
  if (len !== packet.length) throw new PgProtocolError('invalid length of startup packet');
  const code = r.int32();
  if (code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE) {
    if (len !== 8) throw new PgProtocolError('invalid length of startup packet');
    return { kind: code === SSL_REQUEST_CODE ? 'SSLRequest' : 'GSSENCRequest' };
  }
  if (code === CANCEL_REQUEST_CODE) {
    if (len !== 16) throw new PgProtocolError('invalid length of startup packet');
    return { kind: 'CancelRequest', processId: r.int32(), secretKey: r.int32() };
  }
  const major = code >>> 16;
  const minor = code & 0xffff;
  const parameters = new Map<string, string>();
  // postgres' wording for a packet that does not end in the list terminator
  if (packet[packet.length - 1] !== 0) throw new PgProtocolError('invalid startup packet layout: expected terminator as last byte');
  while (r.remaining() > 1) {
    const name = r.cstring();
    if (r.remaining() < 1) throw new PgProtocolError('invalid startup packet layout: expected terminator as last byte');
    parameters.set(name, r.cstring());
  }
  if (r.remaining() !== 1) throw new PgProtocolError('invalid startup packet layout: expected terminator as last byte');
  return { kind: 'StartupMessage', major, minor, parameters };
}

export function encodeStartupMessage(parameters: Iterable<[string, string]>, major = 3, minor = 0): Buffer {
  const w = new Writer(128).int32((major << 16) | minor);
  for (const [k, v] of parameters) w.cstring(k).cstring(v);
  return w.int8(0).startup();
}

export function encodeSSLRequest(): Buffer {
  return new Writer(8).int32(SSL_REQUEST_CODE).startup();
}

export function encodeGSSENCRequest(): Buffer {
  return new Writer(8).int32(GSSENC_REQUEST_CODE).startup();
}

export function encodeCancelRequest(processId: number, secretKey: number): Buffer {
  return new Writer(16).int32(CANCEL_REQUEST_CODE).int32(processId).int32(secretKey).startup();
}

/** The newest minor version the server supports and the `_pq_.` options it did not recognise. */
export function encodeNegotiateProtocolVersion(minorSupported: number, unrecognized: string[]): Buffer {
  const w = new Writer(32).int32(minorSupported).int32(unrecognized.length);
  for (const o of unrecognized) w.cstring(o);
  return w.message(MSG_NEGOTIATE_PROTOCOL_VERSION);
}
