// A small PostgreSQL client for the lane and the applier: raw messages in, raw messages out.
// The write lane hands the backend's own messages to the client (errors, notices and command tags
// exactly as postgres wrote them), so a driver that decodes rows (pg) would be in the way. Login
// is H4's loginBackend (SCRAM ClientKey, md5 hash or trust), so the lane runs as the client's role
// without its password. Each request ends with one Query or Sync and is answered up to its
// ReadyForQuery; requests are pipelined.
// https://www.postgresql.org/docs/current/protocol-message-formats.html
import type { Socket } from 'node:net';
import {
  MSG_BIND,
  MSG_COMMAND_COMPLETE,
  MSG_DESCRIBE,
  MSG_ERROR_RESPONSE,
  MSG_EXECUTE,
  MSG_PARSE,
  MSG_READY_FOR_QUERY,
  MSG_SYNC,
  MSG_DATA_ROW,
  MSG_COPY_IN_RESPONSE,
  MSG_COPY_FAIL,
  MSG_COPY_DATA,
  MSG_COPY_DONE,
} from '../../protocol/postgres/constants.js';
import { decodeErrorFields, encodeQuery, encodeTerminate } from '../../protocol/postgres/messages.js';
import { Reader } from '../../protocol/postgres/reader.js';
import { Writer } from '../../protocol/postgres/writer.js';
import { loginBackend, type BackendTarget } from '../../frontend/postgres/backend-login.js';
import type { Credential } from '../../frontend/postgres/authenticate.js';
import { TickCork } from '../../util/cork.js';

/** CopyData messages the data of a COPY is cut into */
const COPY_CHUNK_BYTES = 256 * 1024;

/** A backend message bigger than this is broken input (postgres' own limit is 1 GiB). */
const BACKEND_MESSAGE_BYTES_MAX = 0x3fffffff;

/** The answer to one request: every message up to and including ReadyForQuery. */
export interface PgReply {
  messages: Buffer[];
  /** transaction status of the ReadyForQuery: 'I', 'T' or 'E' as a byte */
  status: number;
}

export class PgConnError extends Error {}

/** The SQLSTATE and message of an ErrorResponse. */
export function errorOf(msg: Buffer): { code: string; message: string } {
  const f = decodeErrorFields(msg);
  return { code: f.get('C') ?? 'XX000', message: f.get('M') ?? '' };
}

/** The first error of a reply, if any. */
export function replyError(r: PgReply): { code: string; message: string } | null {
  const m = r.messages.find((x) => x[0] === MSG_ERROR_RESPONSE);
  return m ? errorOf(m) : null;
}

/** The command tag of a CommandComplete message. */
export function commandTag(msg: Buffer): string {
  return new Reader(msg, 5).cstring();
}

/** Text rows of a simple-query reply (text format). */
export function replyRows(r: PgReply): Array<Array<string | null>> {
  const rows: Array<Array<string | null>> = [];
  for (const m of r.messages) {
    if (m[0] !== MSG_DATA_ROW) continue;
    const rd = new Reader(m, 5);
    const n = rd.int16();
    const row: Array<string | null> = [];
    for (let i = 0; i < n; i++) {
      const len = rd.int32();
      row.push(len < 0 ? null : rd.bytes(len).toString('utf8'));
    }
    rows.push(row);
  }
  return rows;
}

export function replyTags(r: PgReply): string[] {
  return r.messages.filter((m) => m[0] === MSG_COMMAND_COMPLETE).map(commandTag);
}

export function encodeParse(name: string, sql: string, types: number[]): Buffer {
  const w = new Writer(16 + Buffer.byteLength(sql)).cstring(name).cstring(sql).int16(types.length);
  for (const t of types) w.int32(t | 0);
  return w.message(MSG_PARSE);
}

export function encodeBind(portal: string, stmt: string, formats: number[], values: Array<Buffer | null>, resultFormats: number[]): Buffer {
  const w = new Writer(64).cstring(portal).cstring(stmt).int16(formats.length);
  for (const f of formats) w.int16(f);
  w.int16(values.length);
  for (const v of values) {
    if (v === null) w.int32(-1);
    else w.int32(v.length).bytes(v);
  }
  w.int16(resultFormats.length);
  for (const f of resultFormats) w.int16(f);
  return w.message(MSG_BIND);
}

export function encodeDescribe(kind: 'S' | 'P', name: string): Buffer {
  return new Writer(16).int8(kind.charCodeAt(0)).cstring(name).message(MSG_DESCRIBE);
}

export function encodeExecute(portal: string, maxRows: number): Buffer {
  return new Writer(16).cstring(portal).int32(maxRows).message(MSG_EXECUTE);
}

export function encodeSync(): Buffer {
  return new Writer(8).message(MSG_SYNC);
}

/** Parse, Bind, (Describe portal), Execute, Sync of the unnamed statement and portal. */
export function encodeExtended(sql: string, x: { types: number[]; formats: number[]; values: Array<Buffer | null> }, resultFormats: number[], describe: boolean): Buffer[] {
  const out = [encodeParse('', sql, x.types), encodeBind('', '', x.formats, x.values, resultFormats)];
  if (describe) out.push(encodeDescribe('P', ''));
  out.push(encodeExecute('', 0), encodeSync());
  return out;
}

interface Pending {
  messages: Buffer[];
  /** the data of a COPY FROM STDIN the request runs (absent: such a COPY is refused) */
  copy?: Buffer;
  resolve: (r: PgReply) => void;
  reject: (e: Error) => void;
}

export class PgConn {
  private buf: Buffer = Buffer.alloc(0);
  private readonly pending: Pending[] = [];
  broken = false;
  private why = '';
  // requests made in the same tick (BEGIN, settings and a statement; the applied update and
  // COMMIT) leave in one write: one system call instead of one each
  private readonly cork: TickCork;

  private constructor(
    private readonly socket: Socket,
    readonly processId: number,
  ) {
    this.cork = new TickCork(socket);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('close', () => this.fail('the connection to the database closed'));
    socket.on('error', (e) => this.fail(e.message));
  }

  /** Log in as `params.user` to `params.database`; throws PgConnError with the server's refusal. */
  static async login(target: BackendTarget, params: Map<string, string>, credential: Credential, timeoutMs: number): Promise<PgConn> {
    const r = await loginBackend(target, params, credential, timeoutMs);
    if (!r.ok) {
      const why = r.message ? errorOf(r.message) : { code: r.error?.code ?? '28000', message: r.error?.message ?? 'refused' };
      throw new PgConnError(`login as ${params.get('user')} to ${params.get('database')} refused: ${why.code} ${why.message}`);
    }
    const c = new PgConn(r.session.socket, r.session.processId);
    if (r.session.leftover.length) c.onData(r.session.leftover);
    return c;
  }

  /** Send the messages (ending with one Query or Sync) and collect the answer. */
  request(msgs: Buffer[], copy?: Buffer): Promise<PgReply> {
    if (this.broken) return Promise.reject(new PgConnError(this.why));
    return new Promise((resolve, reject) => {
      this.pending.push({ messages: [], resolve, reject, ...(copy ? { copy } : {}) });
      this.cork.hold();
      for (const m of msgs) this.socket.write(m);
    });
  }

  query(sql: string): Promise<PgReply> {
    return this.request([encodeQuery(sql)]);
  }

  /** A query that must succeed (Recall's own statements). */
  async run(sql: string): Promise<PgReply> {
    const r = await this.query(sql);
    const e = replyError(r);
    if (e) throw new PgConnError(`${e.code} ${e.message} (in: ${sql.slice(0, 200)})`);
    return r;
  }

  close(): void {
    if (!this.broken) {
      this.broken = true;
      this.why = 'closed';
      try {
        this.socket.end(encodeTerminate());
      } catch {
        /* gone */
      }
      setTimeout(() => this.socket.destroy(), 1000).unref();
    }
    this.failPending('closed');
  }

  private fail(why: string): void {
    if (!this.broken) {
      this.broken = true;
      this.why = why;
    }
    this.socket.destroy();
    this.failPending(why);
  }

  private failPending(why: string): void {
    for (const p of this.pending.splice(0)) p.reject(new PgConnError(why));
  }

  /** The data of the COPY FROM STDIN the server now waits for; without data it fails the COPY. */
  private sendCopy(data: Buffer | undefined): void {
    if (!data) {
      this.socket.write(new Writer(64).cstring('Recall: COPY FROM STDIN without its data').message(MSG_COPY_FAIL));
      return;
    }
    this.socket.cork();
    for (let at = 0; at < data.length; at += COPY_CHUNK_BYTES) {
      this.socket.write(new Writer(16).bytes(data.subarray(at, Math.min(data.length, at + COPY_CHUNK_BYTES))).message(MSG_COPY_DATA));
    }
    this.socket.write(new Writer(8).message(MSG_COPY_DONE));
    this.socket.uncork();
  }

  private onData(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    let pos = 0;
    while (this.buf.length - pos >= 5) {
      const len = this.buf.readInt32BE(pos + 1);
      if (len < 4 || len > BACKEND_MESSAGE_BYTES_MAX) return this.fail(`invalid message length ${len} from the database`);
      if (this.buf.length - pos < len + 1) break;
      const m = Buffer.from(this.buf.subarray(pos, pos + len + 1));
      pos += len + 1;
      const head = this.pending[0];
      if (!head) {
        // a FATAL error (shutdown, terminated) or a notice between requests
        if (m[0] === MSG_ERROR_RESPONSE) return this.fail(`the database ended the session: ${errorOf(m).message}`);
        continue;
      }
      head.messages.push(m);
      if (m[0] === MSG_COPY_IN_RESPONSE) this.sendCopy(head.copy);
      if (m[0] === MSG_READY_FOR_QUERY) {
        this.pending.shift();
        head.resolve({ messages: head.messages, status: m[5]! });
      }
    }
    this.buf = pos === this.buf.length ? Buffer.alloc(0) : this.buf.subarray(pos);
  }
}

/** A string literal that reads the same whatever standard_conforming_strings says. */
export function literal(s: string): string {
  return `E'${s.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

export function ident(s: string): string {
  return `"${s.replace(/"/g, '""')}"`;
}

export function encodeCommandComplete(tag: string): Buffer {
  return new Writer(16 + tag.length).cstring(tag).message(MSG_COMMAND_COMPLETE);
}
