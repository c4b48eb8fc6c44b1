// Wire codec of the hook-mode full resync (CHANNEL_RSYNC), carried in the peer transport's
// request/response frames (src/transport/transport.ts), and the checks on the paths and hosts
// that end up in rsync's argv. The copy itself does not travel here: rsync moves the files over
// the operator's SyncCmd (ssh); this channel only asks the donor to hold still meanwhile.
//
//   Info    ('I')  u8 op, u8 version
//     reply        u8 state (0 idle, 1 busy), u64 nowMs (the donor's clock), str syncPath
//   Quiesce ('Q')  u8 op, u8 version, u64 session, u64 minIndex
//     reply        u64 index, u32 leaseMs, str syncPath
//   Renew   ('N')  u8 op, u64 session
//     reply        u32 leaseMs
//   Release ('R')  u8 op, u64 session
//     reply        u8 held (1: the donor stayed quiesced for this session until now), str restartError
//
// str is u16 length + UTF-8. The joiner picks the 64-bit random session id itself, so it can
// release a quiesce whose reply it never got (timed out, link lost). Errors travel as the
// transport's RemoteError (a text message), never in these bodies.
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { ByteReader } from './byte-reader.js';

export const RSYNC_PROTOCOL_VERSION = 1;

export const OP_INFO = 0x49; // 'I'
export const OP_QUIESCE = 0x51; // 'Q'
export const OP_RENEW = 0x4e; // 'N'
export const OP_RELEASE = 0x52; // 'R'

const strBytesMax = 4096;

export type SessionId = bigint;

export type RsyncRequest =
  | { op: 'info'; version: number }
  | { op: 'quiesce'; version: number; session: SessionId; minIndex: number }
  | { op: 'renew'; session: SessionId }
  | { op: 'release'; session: SessionId };

export interface InfoReply {
  busy: boolean;
  /** The donor's wall clock (ms since the epoch): file times it copies are on this clock. */
  nowMs: number;
  syncPath: string;
}
export interface QuiesceReply {
  /** The index the donor's stopped database holds. */
  index: number;
  /** The donor releases on its own unless renewed within this time. */
  leaseMs: number;
  syncPath: string;
}
export interface ReleaseReply {
  /** False: the donor had released this session on its own (lease, disconnect) before. */
  held: boolean;
  /** Non-empty when the donor could not start its server again (its problem, not the joiner's). */
  restartError: string;
}

/** A fresh random session id (64 bits). */
export function newRsyncSession(): SessionId {
  return randomBytes(8).readBigUInt64BE(0);
}

export class RsyncProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RsyncProtocolError';
  }
}

const reader = (payload: Uint8Array, what: string) => new ByteReader(payload, what, (m) => new RsyncProtocolError(m));

class ByteWriter {
  private readonly parts: Buffer[] = [];
  u8(v: number): this {
    const b = Buffer.allocUnsafe(1);
    b.writeUInt8(v, 0);
    this.parts.push(b);
    return this;
  }
  u32(v: number): this {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(v >>> 0, 0);
    this.parts.push(b);
    return this;
  }
  u64(v: number | bigint): this {
    const b = Buffer.allocUnsafe(8);
    b.writeBigUInt64BE(BigInt(v), 0);
    this.parts.push(b);
    return this;
  }
  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    if (b.length > strBytesMax) throw new RsyncProtocolError(`string of ${b.length} bytes exceeds ${strBytesMax}`);
    const len = Buffer.allocUnsafe(2);
    len.writeUInt16BE(b.length, 0);
    this.parts.push(len, b);
    return this;
  }
  done(): Buffer {
    return Buffer.concat(this.parts);
  }
}


export function encodeInfo(): Buffer {
  return new ByteWriter().u8(OP_INFO).u8(RSYNC_PROTOCOL_VERSION).done();
}
export function encodeQuiesce(session: SessionId, minIndex: number): Buffer {
  return new ByteWriter().u8(OP_QUIESCE).u8(RSYNC_PROTOCOL_VERSION).u64(session).u64(minIndex).done();
}
export function encodeRenew(session: SessionId): Buffer {
  return new ByteWriter().u8(OP_RENEW).u64(session).done();
}
export function encodeRelease(session: SessionId): Buffer {
  return new ByteWriter().u8(OP_RELEASE).u64(session).done();
}

/** Decodes a joiner's request; anything malformed throws RsyncProtocolError. */
export function decodeRequest(payload: Uint8Array): RsyncRequest {
  const r = reader(payload, 'rsync request');
  const op = r.u8();
  let req: RsyncRequest;
  switch (op) {
    case OP_INFO:
      req = { op: 'info', version: r.u8() };
      break;
    case OP_QUIESCE:
      req = { op: 'quiesce', version: r.u8(), session: r.u64big(), minIndex: r.u64() };
      break;
    case OP_RENEW:
      req = { op: 'renew', session: r.u64big() };
      break;
    case OP_RELEASE:
      req = { op: 'release', session: r.u64big() };
      break;
    default:
      throw new RsyncProtocolError(`rsync request: unknown op 0x${op.toString(16)}`);
  }
  r.end();
  if ('version' in req && req.version !== RSYNC_PROTOCOL_VERSION) {
    throw new RsyncProtocolError(`rsync request: protocol version ${req.version}, this donor speaks ${RSYNC_PROTOCOL_VERSION}`);
  }
  return req;
}

export function encodeInfoReply(rep: InfoReply): Buffer {
  return new ByteWriter().u8(rep.busy ? 1 : 0).u64(rep.nowMs).str(rep.syncPath).done();
}
export function decodeInfoReply(payload: Uint8Array): InfoReply {
  const r = reader(payload, 'rsync info reply');
  const rep = { busy: r.u8() !== 0, nowMs: r.u64(), syncPath: r.str(strBytesMax) };
  r.end();
  return rep;
}

export function encodeQuiesceReply(rep: QuiesceReply): Buffer {
  return new ByteWriter().u64(rep.index).u32(rep.leaseMs).str(rep.syncPath).done();
}
export function decodeQuiesceReply(payload: Uint8Array): QuiesceReply {
  const r = reader(payload, 'rsync quiesce reply');
  const rep = { index: r.u64(), leaseMs: r.u32(), syncPath: r.str(strBytesMax) };
  r.end();
  return rep;
}

export function encodeRenewReply(leaseMs: number): Buffer {
  return new ByteWriter().u32(leaseMs).done();
}
export function decodeRenewReply(payload: Uint8Array): number {
  const r = reader(payload, 'rsync renew reply');
  const leaseMs = r.u32();
  r.end();
  return leaseMs;
}

export function encodeReleaseReply(rep: ReleaseReply): Buffer {
  return new ByteWriter().u8(rep.held ? 1 : 0).str(rep.restartError).done();
}
export function decodeReleaseReply(payload: Uint8Array): ReleaseReply {
  const r = reader(payload, 'rsync release reply');
  const rep = { held: r.u8() !== 0, restartError: r.str(strBytesMax) };
  r.end();
  return rep;
}

/**
 * A data directory that rsync may copy from or --delete into: absolute, not the root, no
 * control characters. Returns it without trailing slashes; throws with the reason otherwise.
 * `what` names the setting in the message (e.g. "syncPath").
 */
export function checkSyncPath(p: unknown, what: string): string {
  if (typeof p !== 'string' || p.trim() === '') throw new Error(`${what} is empty: set it to the database's data directory, e.g. /var/lib/mysql`);
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(p)) throw new Error(`${what} ${JSON.stringify(p)} contains control characters`);
  if (!path.isAbsolute(p)) throw new Error(`${what} "${p}" is not an absolute path`);
  const norm = path.normalize(p).replace(/\/+$/, '');
  if (norm === '') throw new Error(`${what} "${p}" is the root directory`);
  if (norm !== p.replace(/\/+$/, '')) throw new Error(`${what} "${p}" is not in normal form (it would be ${norm})`);
  return norm;
}

/**
 * `--delete` into syncPath removes whatever the donor does not have: a directory of Recall's
 * own (its log and state in dataDir) must not be syncPath or lie inside it.
 */
export function checkProtected(syncPath: string, protect: readonly string[]): void {
  for (const p of protect) {
    const dir = path.resolve(p).replace(/\/+$/, '');
    if (dir === syncPath || dir.startsWith(syncPath + '/')) {
      throw new Error(`syncPath ${syncPath} holds ${dir}, which a resync would delete: point syncPath at the database's own data directory`);
    }
  }
}

/**
 * The host part of rsync's "host:path" source. It comes from the configuration (the donor's
 * peer address); checked so that no value is read as an rsync option or a second path.
 */
export function checkRsyncHost(h: string): string {
  if (!/^[A-Za-z0-9._@:%\[\]-]+$/.test(h) || h.startsWith('-')) throw new Error(`donor host "${h}" is not a host name or address`);
  // An IPv6 literal needs brackets, or rsync reads its first colon as the path separator.
  return h.includes(':') && !h.startsWith('[') ? `[${h}]` : h;
}
