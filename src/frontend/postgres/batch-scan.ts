// What the router's `decide` needs from a batch, read with as little work as it can: for every
// batch (most are relayed untouched) it needs the SQL of Query and Parse, the names in Bind,
// Describe, Execute and Close, and nothing of Bind's parameter values. Those stay in the raw
// Bind message and are decoded (decodeBatch) only when an Execute is taken to the lane.
// Malformed messages throw, as decodeBatch does; the router then lets postgres answer them.
// https://www.postgresql.org/docs/current/protocol-message-formats.html
import { MSG_BIND, MSG_CLOSE, MSG_DESCRIBE, MSG_EXECUTE, MSG_FLUSH, MSG_PARSE, MSG_QUERY, MSG_SYNC } from '../../protocol/postgres/constants.js';
import { PgProtocolError } from '../../protocol/postgres/errors.js';

export type ScannedMessage =
  | { t: 'Query'; sql: string }
  | { t: 'Parse'; name: string; sql: string; types: number[] }
  /** `raw`: the whole message (type byte, length, body) in the caller's buffer */
  | { t: 'Bind'; portal: string; stmt: string; raw: Buffer }
  | { t: 'Describe' | 'Close'; kind: 'S' | 'P'; name: string }
  | { t: 'Execute'; portal: string }
  | { t: 'Sync' }
  | { t: 'Flush' };

const SYNC: ScannedMessage = Object.freeze({ t: 'Sync' });
const FLUSH: ScannedMessage = Object.freeze({ t: 'Flush' });

/** The NUL-terminated string at pos (UTF-8) and the position after its NUL, within [pos, end). */
function cstring(b: Buffer, pos: number, end: number): [string, number] {
  if (b[pos] === 0 && pos < end) return ['', pos + 1]; // the unnamed statement or portal: most batches
  const nul = b.indexOf(0, pos);
  if (nul < 0 || nul >= end) throw new PgProtocolError('invalid string in message');
  return [b.toString('utf8', pos, nul), nul + 1];
}

/**
 * Bind's format codes, values and result formats fit the message (what decodeBatch reads), so
 * that decoding the kept raw message later cannot fail; nothing is copied.
 */
function checkBindLayout(b: Buffer, pos: number, end: number): void {
  const bad = (): never => {
    throw new PgProtocolError('invalid message format');
  };
  if (pos + 2 > end) bad();
  const nf = b.readInt16BE(pos);
  pos += 2 + 2 * nf;
  if (nf < 0 || pos + 2 > end) bad();
  const nv = b.readInt16BE(pos);
  pos += 2;
  if (nv < 0) bad();
  for (let i = 0; i < nv; i++) {
    if (pos + 4 > end) bad();
    const len = b.readInt32BE(pos);
    pos += 4 + (len < 0 ? 0 : len);
    if (pos > end) bad();
  }
  if (pos + 2 > end) bad();
  const nr = b.readInt16BE(pos);
  if (nr < 0 || pos + 2 + 2 * nr > end) bad();
}

function scanOne(b: Buffer, start: number, end: number): ScannedMessage {
  const type = b[start]!;
  const body = start + 5;
  switch (type) {
    case MSG_QUERY:
      return { t: 'Query', sql: cstring(b, body, end)[0] };
    case MSG_PARSE: {
      const [name, p1] = cstring(b, body, end);
      const [sql, p2] = cstring(b, p1, end);
      if (p2 + 2 > end) throw new PgProtocolError('invalid message format');
      const n = b.readInt16BE(p2);
      if (n < 0 || p2 + 2 + 4 * n > end) throw new PgProtocolError('invalid message format');
      const types: number[] = [];
      for (let i = 0; i < n; i++) types.push(b.readUInt32BE(p2 + 2 + 4 * i));
      return { t: 'Parse', name, sql, types };
    }
    case MSG_BIND: {
      const [portal, p1] = cstring(b, body, end);
      const [stmt, p2] = cstring(b, p1, end);
      checkBindLayout(b, p2, end);
      return { t: 'Bind', portal, stmt, raw: b.subarray(start, end) };
    }
    case MSG_DESCRIBE:
    case MSG_CLOSE: {
      if (body >= end) throw new PgProtocolError('invalid message format');
      const k = String.fromCharCode(b[body]!);
      if (k !== 'S' && k !== 'P') throw new PgProtocolError(`invalid ${type === MSG_CLOSE ? 'CLOSE' : 'DESCRIBE'} message subtype ${k}`);
      return { t: type === MSG_CLOSE ? 'Close' : 'Describe', kind: k, name: cstring(b, body + 1, end)[0] };
    }
    case MSG_EXECUTE:
      return { t: 'Execute', portal: cstring(b, body, end)[0] };
    case MSG_SYNC:
      return SYNC;
    case MSG_FLUSH:
      return FLUSH;
    default:
      throw new PgProtocolError(`unexpected message type ${type} in a batch`);
  }
}

/** Every message of a batch (whole messages, as the relay hands them over), in order. */
export function scanBatch(bytes: Buffer): ScannedMessage[] {
  const out: ScannedMessage[] = [];
  for (let p = 0; p < bytes.length; ) {
    if (bytes.length - p < 5) throw new PgProtocolError('invalid message format');
    const len = bytes.readInt32BE(p + 1);
    if (len < 4 || p + len + 1 > bytes.length) throw new PgProtocolError('invalid message format');
    out.push(scanOne(bytes, p, p + len + 1));
    p += len + 1;
  }
  return out;
}
