// The client messages of one routed batch (a Query, or extended-query messages up to Sync or
// Flush), decoded for the router. Bad input throws PgProtocolError (the router answers it).
// https://www.postgresql.org/docs/current/protocol-message-formats.html
import { MSG_BIND, MSG_CLOSE, MSG_DESCRIBE, MSG_EXECUTE, MSG_FLUSH, MSG_PARSE, MSG_QUERY, MSG_SYNC } from '../../protocol/postgres/constants.js';
import { Reader } from '../../protocol/postgres/reader.js';

export type ClientMessage =
  | { t: 'Query'; sql: string }
  | { t: 'Parse'; name: string; sql: string; types: number[]; raw: Buffer }
  | { t: 'Bind'; portal: string; stmt: string; formats: number[]; values: Array<Buffer | null>; resultFormats: number[] }
  | { t: 'Describe'; kind: 'S' | 'P'; name: string; raw: Buffer }
  | { t: 'Execute'; portal: string; maxRows: number }
  | { t: 'Close'; kind: 'S' | 'P'; name: string; raw: Buffer }
  | { t: 'Sync' }
  | { t: 'Flush' };

function decodeOne(type: number, m: Buffer): ClientMessage {
  const r = new Reader(m, 5);
  switch (type) {
    case MSG_QUERY:
      return { t: 'Query', sql: r.cstring() };
    case MSG_PARSE: {
      const name = r.cstring();
      const sql = r.cstring();
      const n = r.int16();
      const types: number[] = [];
      for (let i = 0; i < n; i++) types.push(r.int32() >>> 0);
      return { t: 'Parse', name, sql, types, raw: m };
    }
    case MSG_BIND: {
      const portal = r.cstring();
      const stmt = r.cstring();
      const nf = r.int16();
      const formats: number[] = [];
      for (let i = 0; i < nf; i++) formats.push(r.int16());
      const nv = r.int16();
      const values: Array<Buffer | null> = [];
      for (let i = 0; i < nv; i++) {
        const len = r.int32();
        values.push(len < 0 ? null : Buffer.from(r.bytes(len)));
      }
      const nr = r.int16();
      const resultFormats: number[] = [];
      for (let i = 0; i < nr; i++) resultFormats.push(r.int16());
      return { t: 'Bind', portal, stmt, formats, values, resultFormats };
    }
    case MSG_DESCRIBE:
    case MSG_CLOSE: {
      const k = String.fromCharCode(r.int8());
      if (k !== 'S' && k !== 'P') throw new Error(`invalid ${type === MSG_CLOSE ? 'CLOSE' : 'DESCRIBE'} message subtype ${k}`);
      const name = r.cstring();
      return type === MSG_CLOSE ? { t: 'Close', kind: k, name, raw: m } : { t: 'Describe', kind: k, name, raw: m };
    }
    case MSG_EXECUTE:
      return { t: 'Execute', portal: r.cstring(), maxRows: r.int32() };
    case MSG_SYNC:
      return { t: 'Sync' };
    case MSG_FLUSH:
      return { t: 'Flush' };
    default:
      throw new Error(`unexpected message type ${type} in a batch`);
  }
}

/** Every message of a batch, in order. */
export function decodeBatch(bytes: Buffer): ClientMessage[] {
  const out: ClientMessage[] = [];
  for (let p = 0; p < bytes.length; ) {
    const type = bytes[p]!;
    const len = bytes.readInt32BE(p + 1);
    out.push(decodeOne(type, bytes.subarray(p, p + len + 1)));
    p += len + 1;
  }
  return out;
}
