// A command the router took over, run while the session's relay is suspended: wait for this
// replica to catch up and hand the command back to the relay, or send it to the write lane
// (here or on the leader) with the session's context and answer the client with the result.
import crypto from 'node:crypto';
import type { Socket } from 'node:net';
import { SqlClient, SqlError } from '../../backend/mysql/client.js';
import type { PacketChannel } from '../../backend/mysql/channel.js';
import type { Packet } from '../../protocol/mysql/packets.js';
import { COM_QUERY, COM_STMT_EXECUTE, SERVER_MORE_RESULTS_EXISTS, SERVER_STATUS_AUTOCOMMIT, SERVER_STATUS_IN_TRANS } from '../../protocol/mysql/constants.js';
import { ResponseAssembler } from '../../protocol/mysql/response.js';
import { encodeErr } from '../../protocol/mysql/generic.js';
import { encodePacket } from '../../protocol/mysql/packets.js';
import { stringValue } from '../../sql/mysql-lexer.js';
import type { ClassifiedStatement } from '../../sql/mysql-classify.js';
import { contextFromRow, READ_CONTEXT_SQL } from '../../replication/context.js';
import type { SysContext } from '../../replication/entry.js';
import type { LaneMode, LaneRequest, LaneResult } from '../../replication/lane.js';
import { ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT, RecallErrors } from '../../replication/errors.js';
import type { Action, Router, WriteService } from './router.js';

export interface RoutedSession {
  readonly key: string;
  readonly client: Socket;
  readonly backendSocket: Socket;
  readonly backendCapabilities: number;
  readonly capabilities: number;
  readonly mariadbCapabilities: number;
  readonly charset: number;
  readonly user: string;
  readonly stage1: Buffer | null;
  readonly payloadBytesMax: number;
  readonly router: Router;
  readonly svc: WriteService;
  /** status flags of the local session's last response */
  statusFlags: number;
  ctx: { sys: SysContext; isolation: string } | null;
}

/** What the session does afterwards: resume the relay, optionally re-running the held command locally. */
export interface RoutedOutcome {
  bypass: boolean;
}

export async function runRouted(s: RoutedSession, channel: PacketChannel, action: Action, first?: Packet): Promise<RoutedOutcome> {
  if (first && (action.do === 'local' || action.do === 'wait')) {
    // a command of 16 MiB or more was read whole to be routed: it cannot go back to the relay
    const out = await runOne(s, channel, action, first.payload, first.lastSeq + 1);
    write(s, out.packets, out.seq);
    return { bypass: false };
  }
  if (action.do === 'local') return { bypass: true };
  if (action.do === 'wait') {
    try {
      await waitFor(s, action);
    } catch (e) {
      const p = await channel.read();
      writeErr(s, asSqlError(e), p.lastSeq + 1);
      return { bypass: false };
    }
    return { bypass: true };
  }
  const p = first ?? (await channel.read());
  let seq = p.lastSeq + 1;
  if (action.do !== 'multi') {
    const out = await runOne(s, channel, action, p.payload, seq);
    write(s, out.packets, out.seq);
    return { bypass: false };
  }
  // Several statements: each routed on its own; every result but the last says more follow.
  const stmts = action.stmts;
  for (let i = 0; i < stmts.length; i++) {
    const st = stmts[i]!;
    const payload = Buffer.concat([Buffer.from([COM_QUERY]), Buffer.from(st.text, 'latin1')]);
    const localInTxn = (s.statusFlags & SERVER_STATUS_IN_TRANS) !== 0 || (s.statusFlags & SERVER_STATUS_AUTOCOMMIT) === 0;
    const a = s.router.decideOne([st], localInTxn);
    const out = await runOne(s, channel, a.do === 'multi' ? { do: 'local' } : a, payload, seq);
    const last = i === stmts.length - 1 || out.failed;
    if (!last) markMore(s, out.packets);
    seq = write(s, out.packets, out.seq);
    if (last) break;
  }
  return { bypass: false };
}

type OneAction = Exclude<Action, { do: 'multi' }>;

/** Run one statement; the response packets are returned, to be written from sequence id `seq`. */
async function runOne(s: RoutedSession, channel: PacketChannel, action: OneAction, payload: Buffer, seq: number): Promise<{ packets: Buffer[]; failed: boolean; seq: number }> {
  const r = s.router;
  const err = (e: SqlError) => ({ packets: [errPayload(e)], failed: true, seq });
  try {
    switch (action.do) {
      case 'error':
        return err(action.error);
      case 'warnings':
        return { packets: action.packets, failed: false, seq };
      case 'local':
        return await localRun(s, payload, seq);
      case 'here-in-txn': {
        const out = await localRun(s, payload, seq);
        markInTxn(s, out.packets);
        return out;
      }
      case 'wait':
        await waitFor(s, action);
        return await localRun(s, payload, seq);
      case 'lane':
        break;
    }
    if (action.mode === 'end-then-local') {
      // BEGIN or SET autocommit=1 inside a lane transaction commits it first (as MySQL does)
      await laneCall(s, 'commit', null, payload);
      r.pinned = false;
      await endLocalTxn(s, 'COMMIT');
      return await localRun(s, payload, seq);
    }
    if (action.mode === 'ddl' && r.pinned) {
      await laneCall(s, 'commit', null, payload);
      r.pinned = false;
      await endLocalTxn(s, 'COMMIT');
    }
    const localInTxn = (s.statusFlags & SERVER_STATUS_IN_TRANS) !== 0 || (s.statusFlags & SERVER_STATUS_AUTOCOMMIT) === 0;
    let mode: LaneMode;
    if (action.mode === 'commit' || action.mode === 'rollback') mode = action.mode;
    else if (action.mode === 'ddl') mode = 'ddl';
    else mode = r.pinned || localInTxn ? 'txn' : 'auto';
    let infile: Buffer | undefined;
    if (action.stmt?.localInfile && payload[0] === COM_QUERY) {
      const got = await readInfile(s, channel, action.stmt, seq);
      infile = got.content;
      seq = got.nextSeq;
    }
    const result = await laneCall(s, mode, action, payload, infile);
    if (result.index > 0) r.lastWriteIndex = Math.max(r.lastWriteIndex, result.index);
    if (result.insertId > 0) {
      r.lastInsertId = result.insertId;
      r.lidStale = true;
    }
    r.laneWarnings = result.warnings ?? null;
    const wasPinned = r.pinned;
    r.pinned = result.inTxn;
    r.laneTxn = result.inTxn ? result.txn : undefined;
    if (wasPinned && !r.pinned && (s.statusFlags & SERVER_STATUS_IN_TRANS) !== 0) await endLocalTxn(s, mode === 'rollback' ? 'ROLLBACK' : 'COMMIT');
    if (mode === 'ddl') r.contextDirty = true; // USE-like effects (CREATE DATABASE) and implicit commits
    return { packets: result.packets, failed: result.packets.length > 0 && result.packets[result.packets.length - 1]![0] === 0xff, seq };
  } catch (e) {
    const error = asSqlError(e);
    if (r.pinned && (error.errno === ER_LOCK_DEADLOCK || error.errno === ER_LOCK_WAIT_TIMEOUT || (action.do === 'lane' && (action.mode === 'commit' || action.mode === 'rollback')))) {
      r.pinned = false;
      await endLocalTxn(s, 'ROLLBACK').catch(() => undefined);
    }
    return err(error);
  }
}

async function waitFor(s: RoutedSession, action: Extract<Action, { do: 'wait' }>): Promise<void> {
  if (action.linearizable) await s.svc.waitApplied(await s.svc.linearizableIndex());
  else await s.svc.waitApplied(s.router.lastWriteIndex);
  if (action.syncLid) {
    await local(s, `SET last_insert_id = ${s.router.lastInsertId}`);
    s.router.lidStale = false;
  }
}

/** Write response packets from sequence id `seq`; returns the next sequence id. */
function write(s: RoutedSession, packets: Buffer[], seq: number): number {
  s.client.cork(); // one write for the whole response
  for (const pk of packets) {
    s.client.write(encodePacket(pk, seq));
    seq += Math.floor(pk.length / 0xffffff) + 1;
  }
  s.client.uncork();
  return seq;
}

/** Set SERVER_STATUS_IN_TRANS on every terminator of a response. */
function markInTxn(s: RoutedSession, packets: Buffer[]): void {
  const asm = new ResponseAssembler(s.capabilities);
  for (const p of packets) if (!asm.done) asm.push(p);
  asm.patchStatus(0xffff, SERVER_STATUS_IN_TRANS);
  packets.splice(0, packets.length, ...asm.packets);
}

/** Set SERVER_MORE_RESULTS_EXISTS on the final terminator of a response. */
function markMore(s: RoutedSession, packets: Buffer[]): void {
  const asm = new ResponseAssembler(s.capabilities);
  for (const p of packets) if (!asm.done) asm.push(p);
  const last = asm.statusAt[asm.statusAt.length - 1];
  if (!last) return;
  const [i, off] = last;
  const p = Buffer.from(packets[i]!);
  p.writeUInt16LE(p.readUInt16LE(off) | SERVER_MORE_RESULTS_EXISTS, off);
  packets[i] = p;
}

async function laneCall(s: RoutedSession, mode: LaneMode, action: Extract<Action, { do: 'lane' }> | null, payload: Buffer, infile?: Buffer): Promise<LaneResult> {
  const r = s.router;
  if (!s.ctx || r.contextDirty) {
    const rows = SqlClient.rows(await local(s, READ_CONTEXT_SQL));
    if (!rows[0]) throw new SqlError(1105, 'HY000', 'Recall could not read the session context');
    const c = contextFromRow(rows[0]);
    s.ctx = { sys: c.ctx, isolation: c.isolation };
    r.contextDirty = false;
  }
  const stmts = action?.stmts ?? [];
  const req: LaneRequest = {
    session: s.key,
    account: { user: s.user, stage1: s.stage1 },
    caps: s.capabilities,
    mcaps: s.mariadbCapabilities,
    charset: s.charset,
    sys: s.ctx.sys,
    mode,
    clientStatus: s.statusFlags,
  };
  if (r.pinned && r.laneTxn !== undefined) req.txn = r.laneTxn;
  if (mode === 'commit' || mode === 'rollback') return s.svc.write(req);
  if (mode === 'txn') req.record = action?.mode === 'write' || action?.mode === 'ddl' || stmts.some((x) => x.kind === 'transaction');
  const varNames = [...new Set(stmts.flatMap((x) => x.userVariablesRead))];
  if (varNames.length > 0) req.vars = await userVariables(s, varNames);
  if (stmts.some((x) => x.sessionFunctions.includes('LAST_INSERT_ID'))) req.lid = r.lastInsertId;
  if (stmts.some((x) => /\bRAND\s*\(\s*\)/i.test(x.text))) req.rand = true;
  if (infile) req.infile = infile;
  if (stmts.length === 1 && generatesInsertId(stmts[0]!)) req.pinInsertId = true;
  if (payload[0] === COM_STMT_EXECUTE) {
    const info = r.prepared.get(payload.readUInt32LE(1));
    if (!info) throw new SqlError(1243, 'HY000', 'Unknown prepared statement handler given to mysqld_stmt_execute');
    req.sql = info.text;
    req.params = executeBody(payload, info);
  } else req.sql = stmts.length === 1 ? withPasswordHashes(payload.subarray(1), stmts[0]!) : payload.subarray(1);
  return s.svc.write(req);
}

/** The COM_STMT_EXECUTE body after the statement id, with no cursor and the parameter types always bound. */
function executeBody(payload: Buffer, info: { params: number; types: Buffer | null }): Buffer {
  const body = Buffer.from(payload.subarray(5));
  body[0] = 0; // CURSOR_TYPE_NO_CURSOR: the lane reads the whole result
  const n = info.params;
  if (n === 0) return body.subarray(0, 5);
  const nb = (n + 7) >> 3;
  const boundAt = 5 + nb;
  if (body[boundAt] === 1) {
    info.types = Buffer.from(body.subarray(boundAt + 1, boundAt + 1 + 2 * n));
    return body;
  }
  if (!info.types) throw new SqlError(1210, 'HY000', 'Incorrect arguments to mysqld_stmt_execute (no parameter types bound)');
  return Buffer.concat([body.subarray(0, boundAt), Buffer.from([1]), info.types, body.subarray(boundAt + 1)]);
}

/** `@name = literal` for each user variable, with its type, charset and collation. */
async function userVariables(s: RoutedSession, names: string[]): Promise<string[]> {
  const id = (n: string) => '@`' + n.replace(/`/g, '``') + '`';
  const cols = names.map((n) => `${id(n)}, HEX(${id(n)}), CHARSET(${id(n)}), COLLATION(${id(n)}), ${id(n)} IS NULL, COERCIBILITY(${id(n)})`).join(', ');
  const r = await local(s, `SELECT ${cols}`);
  const row = SqlClient.rows(r)[0] ?? [];
  const types = columnTypes(r);
  return names.map((n, i) => {
    const [value, hex, cs, coll, isNull] = row.slice(i * 6, i * 6 + 5);
    const t = types[i * 6] ?? 0;
    let lit: string;
    if (isNull === '1' || value === null) lit = 'NULL';
    else if (t === 8 || t === 3) lit = value!; // integers
    else if (t === 0xf6 || t === 0) lit = value!; // DECIMAL keeps its type as a literal
    else if (t === 5 || t === 4) lit = `CAST(${JSON.stringify(value)} AS DOUBLE)`;
    else if (cs === 'binary') lit = `X'${hex}'`;
    else lit = `CONVERT(X'${hex}' USING ${cs}) COLLATE ${coll}`;
    return `${id(n)} = ${lit}`;
  });
}

/** Column types of a text result (the type byte of each column definition). */
function columnTypes(r: { packets: Buffer[]; hadRows: boolean }): number[] {
  if (!r.hadRows) return [];
  const n = r.packets[0]![0]!;
  const out: number[] = [];
  for (let i = 1; i <= n; i++) {
    const p = r.packets[i]!;
    let off = 0;
    for (let k = 0; k < 6; k++) off += lenencStringBytes(p, off);
    // MariaDB's extended metadata adds one more string before the fixed fields (0x0c long)
    if (p[off] !== 0x0c) off += lenencStringBytes(p, off);
    off += 1;
    out.push(p[off + 2 + 4]!);
  }
  return out;
}

function lenencStringBytes(p: Buffer, off: number): number {
  const first = p[off]!;
  if (first < 0xfb) return 1 + first;
  if (first === 0xfc) return 3 + p.readUInt16LE(off + 1);
  if (first === 0xfd) return 4 + p.readUIntLE(off + 1, 3);
  return 9 + Number(p.readBigUInt64LE(off + 1));
}

/** LOAD DATA LOCAL INFILE: ask the client for the file, as the server would, and read it. */
async function readInfile(s: RoutedSession, channel: PacketChannel, st: ClassifiedStatement, seq: number): Promise<{ content: Buffer; nextSeq: number }> {
  const ts = st.tokens;
  const at = ts.findIndex((t) => t.text.toUpperCase() === 'INFILE');
  const nameTok = at >= 0 ? ts[at + 1] : undefined;
  const name = nameTok && nameTok.type === 'string' ? stringValue(st.text, { ...nameTok, start: nameTok.start - st.start, end: nameTok.end - st.start }) : '';
  s.client.write(encodePacket(Buffer.concat([Buffer.from([0xfb]), Buffer.from(name, 'utf8')]), seq));
  const parts: Buffer[] = [];
  let total = 0;
  for (;;) {
    const p = await channel.readSeq(seq + 1);
    seq = p.lastSeq;
    if (p.payload.length === 0) break;
    total += p.payload.length;
    if (total > s.payloadBytesMax * 4) throw new SqlError(1153, '08S01', "Got a packet bigger than 'max_allowed_packet' bytes (LOCAL INFILE content)");
    parts.push(p.payload);
  }
  return { content: Buffer.concat(parts), nextSeq: seq + 1 };
}

/** One command on the session's own backend session (the relay is suspended meanwhile). */
async function onLocal(s: RoutedSession, payload: Buffer): Promise<ResponseAssembler> {
  const c = SqlClient.wrap(s.backendSocket, s.backendCapabilities, s.payloadBytesMax, Buffer.alloc(0));
  try {
    const r = await c.command(payload);
    if (r.ok || r.status) s.statusFlags = r.status;
    return r;
  } finally {
    const left = c.detach();
    if (left.length) s.backendSocket.unshift(left);
  }
}

/** Run one of Recall's own statements on the session's local backend session; it must succeed. */
async function local(s: RoutedSession, sql: string): Promise<ResponseAssembler> {
  const r = await onLocal(s, Buffer.concat([Buffer.from([COM_QUERY]), Buffer.from(sql, 'utf8')]));
  if (r.err) throw new SqlError(r.err.errno, r.err.sqlState, r.err.message);
  return r;
}

async function endLocalTxn(s: RoutedSession, how: 'COMMIT' | 'ROLLBACK'): Promise<void> {
  await local(s, how);
}

/** Run a client's command on the local session; its response packets are returned. */
async function localRun(s: RoutedSession, payload: Buffer, seq: number): Promise<{ packets: Buffer[]; failed: boolean; seq: number }> {
  const r = await onLocal(s, payload);
  return { packets: r.packets, failed: r.err !== null, seq };
}

function errPayload(e: SqlError): Buffer {
  return encodeErr({ errno: e.errno, sqlState: e.sqlState, message: e.message });
}

function writeErr(s: RoutedSession, e: SqlError, seq: number): void {
  s.client.write(encodePacket(errPayload(e), seq));
}

function asSqlError(e: unknown): SqlError {
  if (e instanceof SqlError) return e;
  return RecallErrors.outcomeUnknown((e as Error).message);
}

/** An INSERT/REPLACE/LOAD whose OK carries its own first AUTO_INCREMENT value (not LAST_INSERT_ID(expr)). */
function generatesInsertId(st: ClassifiedStatement): boolean {
  if (!/^(INSERT|REPLACE|LOAD)/.test(st.command)) return false;
  const ts = st.tokens;
  for (let i = 0; i + 2 < ts.length; i++) {
    if (ts[i]!.text.toUpperCase() === 'LAST_INSERT_ID' && ts[i + 1]!.text === '(' && ts[i + 2]!.text !== ')') return false;
  }
  return true;
}

/**
 * `IDENTIFIED BY 'password'` becomes `IDENTIFIED BY PASSWORD '*hash'` (mysql_native_password's
 * stored form, the same account afterwards), so no plaintext password is written to the
 * replicated log on every replica's disk.
 */
export function withPasswordHashes(sqlBytes: Buffer, st: ClassifiedStatement): Buffer {
  const text = sqlBytes.toString('latin1');
  const base = text.slice(st.start, st.end) === st.text ? 0 : st.start;
  const ts = st.tokens;
  const edits: Array<[number, number, string]> = [];
  const hashOf = (t: (typeof ts)[number]): string => {
    const pw = Buffer.from(stringValue(text, { ...t, start: t.start - base, end: t.end - base }), 'latin1');
    return '*' + crypto.createHash('sha1').update(crypto.createHash('sha1').update(pw).digest()).digest('hex').toUpperCase();
  };
  for (let i = 0; i + 2 < ts.length; i++) {
    // CREATE/ALTER USER, GRANT: IDENTIFIED BY 'pw' -> IDENTIFIED BY PASSWORD '*hash'
    if (ts[i]!.text === 'IDENTIFIED' && ts[i + 1]!.text === 'BY' && ts[i + 2]!.type === 'string') {
      const t = ts[i + 2]!;
      edits.push([t.start - base, t.end - base, `PASSWORD '${hashOf(t)}'`]);
    }
    // SET PASSWORD ... = PASSWORD('pw') -> '*hash'
    if (st.command.startsWith('SET PASSWORD') && ts[i]!.text === 'PASSWORD' && ts[i + 1]!.text === '(' && ts[i + 2]!.type === 'string' && ts[i + 3]?.text === ')') {
      edits.push([ts[i]!.start - base, ts[i + 3]!.end - base, `'${hashOf(ts[i + 2]!)}'`]);
    }
  }
  if (edits.length === 0) return sqlBytes;
  let out = text;
  for (const [a, b, r] of edits.reverse()) out = out.slice(0, a) + r + out.slice(b);
  return Buffer.from(out, 'latin1');
}
