// Routing of PostgreSQL client batches (DESIGN.md "Data flow", "Reads"): the `decide` and
// `intercept` hooks of startPostgresFrontend. Reads and session statements go to the local
// database through the relay; writes, DDL, locking reads and every statement of a transaction
// after its first write are taken over and run on the leader's write lane (here or forwarded),
// and the client gets the leader's own messages. A session's reads wait until its last write is
// applied locally (`SET recall.consistency = 'local' | 'session' | 'linearizable'`).
//
// BEGIN is local: a transaction's reads run on this node until its first write; from then on the
// whole transaction runs on the leader, and the local one is rolled back when it ends.
import type { Socket } from 'node:net';
import { SqlError } from '../../backend/mysql/client.js';
import {
  MSG_BIND_COMPLETE,
  MSG_COPY_DATA,
  MSG_COPY_DONE,
  MSG_COPY_FAIL,
  MSG_COPY_IN_RESPONSE,
  MSG_FLUSH,
  MSG_SYNC,
  MSG_CLOSE_COMPLETE,
  MSG_ERROR_RESPONSE,
  MSG_NO_DATA,
  MSG_PARSE_COMPLETE,
  MSG_READY_FOR_QUERY,
  MSG_ROW_DESCRIPTION,
  TX_FAILED,
  TX_IDLE,
  TX_IN_TRANSACTION,
} from '../../protocol/postgres/constants.js';
import { encodeErrorResponse, encodeQuery, encodeReadyForQuery } from '../../protocol/postgres/messages.js';
import { Writer } from '../../protocol/postgres/writer.js';
import type { PgStatement } from '../../sql/pg-classify.js';
import { PgClassifyCache } from '../../sql/pg-classify-cache.js';
import type { Logger } from '../../util/log.js';
import { decodeBatch, type ClientMessage } from '../../replication/pg/batch.js';
import { encodeCommandComplete, encodeSync, replyError, replyRows, type PgReply } from '../../replication/pg/conn.js';
import { PG_ENTRY_SETTINGS } from '../../replication/pg/entry.js';
import { PgRecallErrors, pgSqlState } from '../../replication/pg/errors.js';
import type { PgLaneKind, PgLaneRequest, PgLaneResult, PgLaneStatement } from '../../replication/pg/types.js';
import { scanBatch, type ScannedMessage } from './batch-scan.js';
import { SqlPreparedTracker, expandExecute, explainedExecute, isPreparedStatementCommand, preparedQuery, preparedRows, preparedWrites } from './prepared.js';
import type { QueryBatch } from './relay.js';
import type { Session } from './session.js';

/** What the router needs from the Replicator. */
export interface PgWriteService {
  write(req: PgLaneRequest): Promise<PgLaneResult>;
  endSession(session: string): void;
  linearizableIndex(): Promise<number>;
  /** resolves once the local database applied `index`; SqlError after its own timeout */
  waitApplied(index: number): Promise<void>;
  readonly applied: number;
  /** why this replica refuses reads, or null */
  readonly diverged: string | null;
}

export type Consistency = 'local' | 'session' | 'linearizable';

export interface PgRouterOptions {
  nodeId: number;
  service: PgWriteService;
  log: Logger;
  consistency?: Consistency;
  /** COPY FROM STDIN data per statement (default 64 MiB); deflated and base64 it must fit the log's entryBytesMax */
  copyBytesMax?: number;
}

interface Prepared {
  sql: string;
  types: number[];
  st: PgStatement | null;
}

interface RouteState {
  id: string;
  prepared: Map<string, Prepared>;
  /** SQL-level PREPARE names and what their body does */
  sqlPrepared: SqlPreparedTracker;
  settings: Record<string, string> | null;
  lastIndex: number;
  consistency: Consistency;
  /** `SET recall.optimistic = on|off` (undefined: the cluster's pgOptimistic) */
  optimistic: boolean | undefined;
  /** the session's transaction runs on the lane ('aborted': the lane lost it; answer 25P02 until it ends) */
  lane: 'none' | 'held' | 'aborted';
  begin: string | null;
  /** the local backend's transaction status when the relay has not seen its latest ReadyForQuery */
  localStatus: number | null;
  /** relay the next batch as it is (it was held back to wait for consistency) */
  passNext: boolean;
  /** the statements decide found in the batch it took */
  units: Unit[];
  /** transaction status of the lane connection while the lane is held */
  laneStatus: number;
  /** the epoch of the lane holding the transaction (PgLaneResult.txn), sent with its statements */
  laneTxn: string | null;
  /** SETs run in the lane transaction: the local session gets them when it commits */
  txnSets: string[];
  portals: Map<string, Portal>;
}

/** A portal bound by the client: its statement and its Bind message (own copy), decoded only for the lane. */
interface Portal {
  prep: Prepared;
  bindRaw: Buffer;
}

/** One statement of a batch: its classification and, for an Execute, the execution. */
interface Unit {
  st: PgStatement | null;
  /** what the lane runs; for an Execute made from `exec` when the batch is taken (laneOf) */
  lane: PgLaneStatement | null;
  exec?: { portal: Portal; describe: boolean };
}

/** The unit's lane statement, decoding the portal's Bind values the first time. */
function laneOf(u: Unit): PgLaneStatement {
  if (u.lane) return u.lane;
  const { portal, describe } = u.exec!;
  const bind = decodeBatch(portal.bindRaw)[0];
  if (bind?.t !== 'Bind') throw new Error('a portal without its Bind message');
  const st = portal.prep.st;
  u.lane = {
    kind: st ? laneKind(st) : 'read',
    sql: portal.prep.sql,
    x: { types: portal.prep.types, formats: bind.formats, values: bind.values, resultFormats: bind.resultFormats, describe },
  };
  return u.lane;
}

const WRITE_KINDS = new Set(['write', 'ddl']);
/** open portals remembered per session (postgres closes them at the end of their transaction) */
const PORTALS_MAX = 64;
const CONSISTENCIES = new Set(['local', 'session', 'linearizable']);

function errorMessage(code: string, message: string): Buffer {
  return encodeErrorResponse({ severity: 'ERROR', code, message });
}

function sqlErrorMessage(e: unknown): Buffer {
  if (e instanceof SqlError) return errorMessage(pgSqlState(e), e.message);
  return errorMessage('XX000', `Recall: ${(e as Error).message}`);
}

function simple(type: number): Buffer {
  return new Writer(8).message(type);
}

/** COPY data kept in memory for one statement (it travels in one log entry, deflated). */
const COPY_BYTES_MAX = 64 * 1024 * 1024;

/** The client's CopyData up to CopyDone or CopyFail (the relay is detached; the socket paused). */
function readCopy(sock: Socket, first: Buffer, limit: number): Promise<{ data: Buffer[]; failed: string | null; code: string; tooBig: boolean; rest: Buffer }> {
  return new Promise((resolve) => {
    let buf: Buffer = first;
    const data: Buffer[] = [];
    let size = 0;
    let tooBig = false;
    const finish = (failed: string | null, code: string, pos: number) => {
      sock.off('data', onData);
      sock.off('close', onClose);
      sock.pause();
      resolve({ data, failed, code, tooBig, rest: Buffer.from(buf.subarray(pos)) });
    };
    const onClose = () => finish('the client closed the connection during COPY', '08006', buf.length);
    const scan = (): boolean => {
      let pos = 0;
      while (buf.length - pos >= 5) {
        const type = buf[pos]!;
        const len = buf.readInt32BE(pos + 1);
        if (len < 4 || len > 0x3fffffff) {
          finish(`invalid message length ${len} during COPY from stdin`, '08P01', buf.length);
          return true;
        }
        if (buf.length - pos < len + 1) break;
        const body = buf.subarray(pos + 5, pos + len + 1);
        pos += len + 1;
        if (type === MSG_COPY_DATA) {
          size += body.length;
          if (size > limit) tooBig = true;
          else data.push(Buffer.from(body));
        } else if (type === MSG_COPY_DONE) {
          finish(null, '', pos);
          return true;
        } else if (type === MSG_COPY_FAIL) {
          finish(`COPY from stdin failed: ${body.subarray(0, Math.max(0, body.indexOf(0))).toString('utf8')}`, '57014', pos);
          return true;
        } else if (type !== MSG_FLUSH && type !== MSG_SYNC) {
          finish(`unexpected message type 0x${type.toString(16)} during COPY from stdin`, '08P01', pos);
          return true;
        }
      }
      buf = buf.subarray(pos);
      return false;
    };
    const onData = (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      scan();
    };
    if (scan()) return;
    sock.on('data', onData);
    sock.once('close', onClose);
    sock.resume();
  });
}

/** Send messages to the local backend (the relay is detached) and read up to ReadyForQuery. */
function backendRequest(sock: Socket, msgs: Buffer[]): Promise<PgReply> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    const messages: Buffer[] = [];
    const done = (e: Error | null, r?: PgReply) => {
      sock.off('data', onData);
      sock.off('close', onClose);
      if (e) reject(e);
      else resolve(r!);
    };
    const onClose = () => done(new Error('the local database closed the session'));
    const onData = (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      let pos = 0;
      while (buf.length - pos >= 5) {
        const len = buf.readInt32BE(pos + 1);
        if (buf.length - pos < len + 1) break;
        const m = Buffer.from(buf.subarray(pos, pos + len + 1));
        pos += len + 1;
        messages.push(m);
        if (m[0] === MSG_READY_FOR_QUERY) return done(null, { messages, status: m[5]! });
      }
      buf = buf.subarray(pos);
    };
    sock.on('data', onData);
    sock.once('close', onClose);
    for (const m of msgs) sock.write(m);
  });
}

export class PgRouter {
  private readonly states = new WeakMap<Session, RouteState>();
  private sessions = 0;
  /** one parse per statement shape, not per statement (`pgbench -M simple` sends a new text each time) */
  private readonly classifier = new PgClassifyCache();

  constructor(private readonly o: PgRouterOptions) {}

  /** The options to pass to startPostgresFrontend. */
  hooks(): { decide: (s: Session, b: QueryBatch) => boolean; intercept: (s: Session, b: QueryBatch, leftover: Buffer) => void } {
    return { decide: (s, b) => this.decide(s, b), intercept: (s, b, l) => this.intercept(s, b, l) };
  }

  private state(session: Session): RouteState {
    let s = this.states.get(session);
    if (!s) {
      const st: RouteState = {
        id: `${this.o.nodeId}:${++this.sessions}`,
        prepared: new Map(),
        sqlPrepared: new SqlPreparedTracker(),
        settings: null,
        lastIndex: 0,
        consistency: this.o.consistency ?? 'session',
        optimistic: undefined,
        lane: 'none',
        begin: null,
        localStatus: null,
        passNext: false,
        units: [],
        laneStatus: TX_IN_TRANSACTION,
        laneTxn: null,
        txnSets: [],
        portals: new Map(),
      };
      session.socket.once('close', () => this.o.service.endSession(st.id));
      this.startupSettings(st, session.parameters.get('options'));
      this.states.set(session, st);
      s = st;
    }
    return s;
  }

  // ---- decide: synchronous, on every batch ----

  decide(session: Session, batch: QueryBatch): boolean {
    const s = this.state(session);
    if (s.passNext) {
      s.passNext = false;
      s.localStatus = null;
      return false;
    }
    let msgs: ScannedMessage[];
    try {
      msgs = scanBatch(batch.bytes);
    } catch {
      s.localStatus = null;
      return false; // postgres answers malformed messages itself
    }
    const units = this.units(s, msgs);
    s.units = units;
    if (s.lane !== 'none' || this.o.service.diverged) return true;
    const local = s.localStatus ?? batch.txStatus;
    let take = false;
    let reads = false;
    for (const u of units) {
      const st = u.st;
      if (!st) continue;
      // an EXECUTE is looked up on the local session unless it certainly reads (prepared.ts)
      if (st.refuse || WRITE_KINDS.has(st.kind) || (st.kind === 'execute' && !s.sqlPrepared.relayable(st.prepared?.name ?? ''))) take = true;
      const explained = explainedExecute(st);
      if (explained !== null && !s.sqlPrepared.relayable(explained)) take = true;
      if (st.kind === 'read' || st.kind === 'execute') reads = true;
      if (st.kind === 'transaction' && st.transaction?.action === 'begin') s.begin = st.text;
      if (st.kind === 'session') this.sessionStatement(s, st);
    }
    // a failed local transaction answers 25P02 to anything: postgres says it best
    if (take && local === TX_FAILED) take = false;
    if (!take && reads && this.mustWait(s)) take = true;
    if (!take) s.localStatus = null;
    return take;
  }

  private mustWait(s: RouteState): boolean {
    if (s.consistency === 'linearizable') return true;
    return s.consistency === 'session' && s.lastIndex > this.o.service.applied;
  }

  /** `-c recall.consistency=…` / `-c recall.optimistic=…` in the startup options (PGOPTIONS), as SET would. */
  private startupSettings(s: RouteState, options: string | undefined): void {
    if (!options) return;
    for (const m of options.matchAll(/(?:^|\s)(?:-c\s*|--)recall\.(consistency|optimistic)=(\S+)/gi)) {
      this.sessionStatement(s, { settings: [{ name: `recall.${m[1]!.toLowerCase()}`, action: 'set', local: false, values: [m[2]!] }] } as unknown as PgStatement);
    }
  }

  private sessionStatement(s: RouteState, st: PgStatement): void {
    for (const set of st.settings ?? []) {
      s.settings = null; // read again before the next write
      if (set.name === 'recall.consistency' || set.name === null) {
        const v = set.values?.[0]?.toLowerCase();
        s.consistency = v && CONSISTENCIES.has(v) ? (v as Consistency) : (this.o.consistency ?? 'session');
      }
      if (set.name === 'recall.optimistic' || set.name === null) {
        const v = set.values?.[0]?.toLowerCase();
        s.optimistic = v === undefined ? undefined : ['on', 'true', 'yes', '1'].includes(v) ? true : ['off', 'false', 'no', '0'].includes(v) ? false : s.optimistic;
      }
    }
  }

  /** The statements of a batch (recording Parse and Close of named statements on the way). */
  private units(s: RouteState, msgs: ScannedMessage[]): Unit[] {
    const units: Unit[] = [];
    // portals live on across batches (Bind … Flush, then Execute … Sync): an Execute of a portal
    // bound in a relayed batch must still reach the lane when its statement writes
    const portals = s.portals;
    let described: Set<string> | null = null;
    for (const m of msgs) {
      if (m.t === 'Describe' && m.kind === 'P') (described ??= new Set()).add(m.name);
      if (m.t === 'Query') {
        for (const st of this.classifier.classify(m.sql)) {
          if (st.prepared || st.command === 'DISCARD') s.sqlPrepared.note(st);
          units.push({ st, lane: { kind: laneKind(st), sql: st.kind === 'invalid' ? m.sql : st.text } });
        }
      } else if (m.t === 'Parse') {
        const sts = m.sql.trim() ? this.classifier.classify(m.sql) : [];
        s.prepared.set(m.name, { sql: m.sql, types: m.types, st: sts.length === 1 ? sts[0]! : (sts[0] ?? null) });
        if (m.name) s.sqlPrepared.parsed(m.name);
      } else if (m.t === 'Close') {
        if (m.kind === 'S') {
          s.prepared.delete(m.name);
          s.sqlPrepared.closed(m.name);
        } else portals.delete(m.name);
      } else if (m.t === 'Bind') {
        const prep = s.prepared.get(m.stmt);
        if (portals.size >= PORTALS_MAX && !portals.has(m.portal)) portals.clear();
        // the batch's bytes may be the socket's chunk: keep a copy of the one message
        if (prep) portals.set(m.portal, { prep, bindRaw: Buffer.from(m.raw) });
        else portals.delete(m.portal);
      } else if (m.t === 'Execute') {
        const p = portals.get(m.portal);
        if (!p) continue;
        if (p.prep.st?.prepared || p.prep.st?.command === 'DISCARD') s.sqlPrepared.note(p.prep.st);
        units.push({ st: p.prep.st, lane: null, exec: { portal: p, describe: described?.has(m.portal) ?? false } });
      }
    }
    return units;
  }

  // ---- intercept: a batch decide took ----

  intercept(session: Session, batch: QueryBatch, leftover: Buffer): void {
    const s = this.state(session);
    const rest = { leftover };
    this.handle(session, s, batch, rest).then(
      (pass) => {
        if (pass) s.passNext = true;
        session.resume(pass ? Buffer.concat([batch.bytes, rest.leftover]) : rest.leftover);
      },
      (e: unknown) => {
        this.o.log.warn('routing a batch failed; closing the session', { error: (e as Error).message });
        session.sendAndClose({ severity: 'FATAL', code: 'XX000', message: `Recall: ${(e as Error).message}` });
      },
    );
  }

  /** Returns true when the batch is to be relayed after all (a read that waited). */
  private async handle(session: Session, s: RouteState, batch: QueryBatch, rest: { leftover: Buffer }): Promise<boolean> {
    const msgs = decodeBatch(batch.bytes);
    const extended = msgs[0]?.t !== 'Query';
    const units = s.units;
    s.units = [];
    const local = s.localStatus ?? batch.txStatus;
    if (s.lane === 'held' && units.some((u) => isPreparedStatementCommand(u.st))) return this.preparedInLane(session, s, msgs, units);
    await this.expandExecutes(session, s, units);
    const refusal = units.find((u) => u.st?.refuse || (u.st?.copy?.direction === 'from' && (extended || units.length > 1)));
    const writes = units.some((u) => u.st && WRITE_KINDS.has(u.st.kind));
    if (refusal || (s.lane === 'none' && !writes)) {
      let err: Buffer | null = null;
      if (refusal?.st?.refuse) err = errorMessage(refusal.st.refuse.sqlstate, refusal.st.refuse.message);
      else if (refusal?.st?.copy) err = errorMessage('0A000', 'Recall runs COPY FROM STDIN only as the one statement of a simple query; send it on its own');
      else if (this.o.service.diverged) err = sqlErrorMessage(PgRecallErrors.diverged(this.o.service.diverged));
      if (!err) {
        try {
          if (s.consistency === 'linearizable') await this.o.service.waitApplied(await this.o.service.linearizableIndex());
          else if (s.consistency === 'session') await this.o.service.waitApplied(s.lastIndex);
          return true;
        } catch (e) {
          err = sqlErrorMessage(e);
        }
      }
      this.answerError(session, msgs, err, s.lane === 'none' ? local : this.status(s, session));
      return false;
    }
    const copy = units.length === 1 && units[0]!.st?.copy?.direction === 'from' ? units[0]! : null;
    if (copy) {
      // the client sends the data only after CopyInResponse: read it all, then run the COPY on the lane
      const binary = /\bbinary\b/i.test(laneOf(copy).sql);
      session.socket.write(new Writer(8).int8(binary ? 1 : 0).int16(0).message(MSG_COPY_IN_RESPONSE));
      const got = await readCopy(session.socket, rest.leftover, this.o.copyBytesMax ?? COPY_BYTES_MAX);
      rest.leftover = got.rest;
      const err = got.failed
        ? errorMessage(got.code, got.failed)
        : got.tooBig
          ? errorMessage('54000', `Recall replicates at most ${this.o.copyBytesMax ?? COPY_BYTES_MAX} bytes of COPY data per statement (one log entry); split the data into several COPY statements`)
          : null;
      if (err) {
        this.answerError(session, msgs, err, s.lane === 'none' ? local : this.status(s, session));
        if (s.lane === 'held') s.lane = 'aborted'; // postgres would have failed the transaction
        return false;
      }
      laneOf(copy).copy = Buffer.concat(got.data);
    }
    if (!s.settings) s.settings = await this.readSettings(session, s);
    // named statements parsed in a taken batch exist on the leader's connection only for the
    // execution; the local session gets them too, so later relayed Binds find them
    const localParse = msgs.filter((m): m is Extract<ClientMessage, { t: 'Parse' | 'Close' | 'Describe' }> => m.t === 'Parse' || m.t === 'Close' || (m.t === 'Describe' && m.kind === 'S'));
    let described: Buffer[][] = [];
    if (localParse.length) described = await this.localParse(session, localParse.map((m) => m.raw), s);
    const replies = await this.run(session, s, units, local);
    const out = extended ? this.assembleExtended(msgs, units, replies, described) : this.assembleSimple(replies.map((r) => r ?? []));
    if (msgs[msgs.length - 1]!.t !== 'Flush') out.push(encodeReadyForQuery(this.status(s, session)));
    session.socket.write(Buffer.concat(out));
    return false;
  }

  private status(s: RouteState, session: Session): number {
    if (s.lane === 'aborted') return TX_FAILED;
    if (s.lane === 'held') return s.laneStatus;
    return s.localStatus ?? session.txStatus;
  }

  private answerError(session: Session, msgs: ClientMessage[], err: Buffer, local: number): void {
    const out = [err];
    if (msgs[msgs.length - 1]!.t !== 'Flush') out.push(encodeReadyForQuery(local));
    session.socket.write(Buffer.concat(out));
  }

  /** Run the units on the lane, in groups: autocommit runs, and the transaction from its first write. */
  private async run(session: Session, s: RouteState, units: Unit[], local: number): Promise<Array<Buffer[] | null>> {
    const replies: Array<Buffer[] | null> = units.map(() => null);
    let localTxn = local === TX_IN_TRANSACTION;
    let i = 0;
    const endTxn = async (committed: boolean) => {
      s.lane = 'none';
      s.begin = null;
      s.laneTxn = null;
      const sets = committed ? s.txnSets : [];
      s.txnSets = [];
      if (localTxn || sets.length) {
        const sql = [...(localTxn ? ['ROLLBACK'] : []), ...sets].join(';\n');
        const r = await backendRequest(session.backend!, [encodeQuery(sql)]);
        s.localStatus = r.status;
        s.settings = null;
        localTxn = false;
      } else s.localStatus = TX_IDLE;
    };
    while (i < units.length) {
      const u = units[i]!;
      const action = u.st?.kind === 'transaction' ? u.st.transaction?.action : undefined;
      const inTxn = s.lane !== 'none' || localTxn;
      if (s.lane === 'aborted') {
        if (action === 'commit' || action === 'rollback') {
          replies[i] = [encodeCommandComplete('ROLLBACK')];
          await endTxn(false);
          i++;
          continue;
        }
        replies[i] = [errorMessage('25P02', 'current transaction is aborted, commands ignored until end of transaction block')];
        break;
      }
      if (!inTxn && action === 'begin') {
        replies[i] = [encodeCommandComplete('BEGIN')];
        s.begin = u.st!.text;
        localTxn = false;
        s.lane = 'held'; // opened on the lane with the next request
        s.laneStatus = TX_IN_TRANSACTION;
        s.laneTxn = null;
        i++;
        continue;
      }
      // the group: in a transaction up to its end; otherwise up to the next transaction statement
      let j = i;
      const group: PgLaneStatement[] = [];
      while (j < units.length) {
        const v = units[j]!;
        const a = v.st?.kind === 'transaction' ? v.st.transaction?.action : undefined;
        if (!inTxn && (a || v.st?.kind === 'session')) break;
        group.push(laneOf(v));
        if (inTxn && v.st?.kind === 'session' && v.st.settings?.length && !v.st.settings.some((x) => x.local)) s.txnSets.push(v.st.text);
        j++;
        if (inTxn && (a === 'commit' || a === 'rollback')) break;
      }
      if (group.length === 0) {
        // a transaction or session statement outside a transaction, next to writes
        replies[i] = [errorMessage('0A000', `Recall runs ${u.st?.command ?? 'this statement'} in a text with writes only inside a transaction; send it on its own`)];
        break;
      }
      const req: PgLaneRequest = {
        session: s.id,
        role: session.user,
        database: session.database,
        credential: session.credential!,
        settings: s.settings ?? {},
        mode: inTxn ? 'txn' : 'auto',
        ...(inTxn ? { begin: s.begin ?? 'BEGIN' } : {}),
        ...(inTxn && s.laneTxn !== null ? { txn: s.laneTxn } : {}),
        ...(s.optimistic !== undefined ? { optimistic: s.optimistic } : {}),
        stmts: group,
      };
      let res: PgLaneResult;
      try {
        res = await this.o.service.write(req);
      } catch (e) {
        replies[i] = [sqlErrorMessage(e)];
        // A failed COMMIT or ROLLBACK on its own ends the transaction, as in postgres; any other
        // failure leaves it failed until the client ends it.
        const ends = group.length === 1 && (action === 'commit' || action === 'rollback');
        if (ends) await endTxn(false);
        else if (inTxn) s.lane = 'aborted';
        break;
      }
      s.lastIndex = Math.max(s.lastIndex, res.index);
      res.replies.forEach((r, k) => (replies[i + k] = r));
      if (inTxn) {
        if (res.status === TX_IDLE) {
          const last = res.replies[res.replies.length - 1] ?? [];
          await endTxn(last.some((m) => m[0] === 0x43 && m.toString('latin1', 5, 11) === 'COMMIT'));
        }
        else {
          s.lane = 'held';
          s.laneStatus = res.status;
          s.laneTxn = res.txn ?? null;
        }
      }
      if (res.replies.length < group.length || res.replies.some((r) => r.some((m) => m[0] === MSG_ERROR_RESPONSE))) break;
      i = j;
    }
    return replies;
  }

  private assembleSimple(replies: Buffer[][]): Buffer[] {
    return replies.flat();
  }

  /** The client's answer to extended-query messages, with the lane's replies at their Executes. */
  private assembleExtended(msgs: ClientMessage[], units: Unit[], replies: Array<Buffer[] | null>, described: Buffer[][]): Buffer[] {
    const out: Buffer[] = [];
    let u = 0;
    let d = 0;
    let failed = false;
    const bound = new Set<string>();
    for (const m of msgs) {
      if (m.t === 'Sync') {
        failed = false;
        continue;
      }
      if (failed) continue;
      switch (m.t) {
        case 'Parse':
          out.push(simple(MSG_PARSE_COMPLETE));
          break;
        case 'Bind':
          bound.add(m.portal);
          out.push(simple(MSG_BIND_COMPLETE));
          break;
        case 'Close':
          out.push(simple(MSG_CLOSE_COMPLETE));
          break;
        case 'Describe':
          if (m.kind === 'S') out.push(...(described[d++] ?? []));
          else {
            // the lane's execution of a described portal starts with RowDescription or NoData
            const r = replies[u];
            const rd = r?.find((x) => x[0] === MSG_ROW_DESCRIPTION || x[0] === MSG_NO_DATA);
            out.push(rd ?? simple(MSG_NO_DATA));
            if (rd && r) replies[u] = r.filter((x) => x !== rd);
          }
          break;
        case 'Execute': {
          const r = replies[u++];
          if (!r) {
            failed = true;
            break;
          }
          out.push(...r);
          if (r.some((x) => x[0] === MSG_ERROR_RESPONSE)) failed = true;
          break;
        }
        default:
          break;
      }
    }
    void units;
    return out;
  }

  /** Parse, Close and Describe of statements on the local session too; the Describe answers. */
  private async localParse(session: Session, raws: Buffer[], s: RouteState): Promise<Buffer[][]> {
    const r = await backendRequest(session.backend!, [...raws, encodeSync()]);
    s.localStatus = r.status;
    const described: Buffer[][] = [];
    let cur: Buffer[] | null = null;
    for (const m of r.messages) {
      if (m[0] === 0x74) cur = [m]; // ParameterDescription 't' opens a statement's description
      else if (cur && (m[0] === MSG_ROW_DESCRIPTION || m[0] === MSG_NO_DATA)) {
        cur.push(m);
        described.push(cur);
        cur = null;
      }
    }
    return described;
  }

  // ---- SQL-level PREPARE / EXECUTE (prepared.ts) ----

  /** EXECUTE units become the prepared statement's text with the arguments in place, or its error. */
  private async expandExecutes(session: Session, s: RouteState, units: Unit[]): Promise<void> {
    const execs = units.filter((u) => u.st?.kind === 'execute' && u.st.prepared?.name);
    const explains = units.filter((u) => explainedExecute(u.st) !== null);
    if (!execs.length && !explains.length) return;
    const names = [...new Set([...execs.map((u) => u.st!.prepared!.name!), ...explains.map((u) => explainedExecute(u.st)!)])];
    const r = await backendRequest(session.backend!, [encodeQuery(preparedQuery(names))]);
    s.localStatus = r.status;
    const failed = replyError(r);
    const rows = preparedRows(failed ? [] : replyRows(r));
    const preparing = units.some((u) => isPreparedStatementCommand(u.st));
    for (const u of explains) {
      // EXPLAIN ANALYZE runs the statement: a write would run on this replica only
      const row = rows.get(explainedExecute(u.st)!);
      if (failed || (row && preparedWrites(row, (q) => this.classifier.classify(q)))) {
        u.st = { ...u.st!, refuse: { sqlstate: '0A000', message: 'Recall cannot replicate EXPLAIN ANALYZE of EXECUTE of a statement that writes (it would run on this replica only); EXPLAIN ANALYZE the statement itself' } };
      }
    }
    for (const u of execs) {
      const st = u.st!;
      const row = rows.get(st.prepared!.name!);
      let error: { sqlstate: string; message: string } | null = null;
      if (failed) error = { sqlstate: failed.code, message: `Recall could not read the session's prepared statements: ${failed.message}` };
      // PREPARE p …; EXECUTE p in one text: p does not exist yet, and postgres would run a write here
      else if (!row && preparing) error = { sqlstate: '0A000', message: 'Recall runs EXECUTE of a statement prepared in the same query text only after the PREPARE: send PREPARE on its own first' };
      if (!row && !error) continue; // postgres answers 26000 itself (here, or on the lane)
      const x = error ? { error } : expandExecute(st.text, row!, (q) => this.classifier.classify(q));
      if ('error' in x) {
        u.st = { ...st, refuse: x.error };
        continue;
      }
      const body = this.classifier.classify(x.sql);
      if (body.length !== 1) {
        u.st = { ...st, refuse: { sqlstate: '0A000', message: `Recall replicates EXECUTE of a prepared statement of one statement only` } };
        continue;
      }
      const base = laneOf(u);
      u.st = body[0]!;
      u.lane = { ...base, kind: laneKind(body[0]!), sql: x.sql };
    }
  }

  /** PREPARE / DEALLOCATE inside a lane transaction run on the local session, never on the lane's. */
  private async preparedInLane(session: Session, s: RouteState, msgs: ClientMessage[], units: Unit[]): Promise<false> {
    const q = msgs[0];
    if (msgs.length !== 1 || q?.t !== 'Query' || !units.every((u) => isPreparedStatementCommand(u.st))) {
      this.answerError(session, msgs, errorMessage('0A000', 'Recall runs PREPARE and DEALLOCATE inside a transaction that writes only as a query text of their own; send them on their own'), this.status(s, session));
      return false;
    }
    const r = await backendRequest(session.backend!, [encodeQuery(q.sql)]);
    s.localStatus = r.status;
    const out = r.messages.filter((m) => m[0] !== MSG_READY_FOR_QUERY);
    out.push(encodeReadyForQuery(this.status(s, session)));
    session.socket.write(Buffer.concat(out));
    return false;
  }

  /** The session's settings that change how statements read, from its own backend session. */
  private async readSettings(session: Session, s: RouteState): Promise<Record<string, string>> {
    const sql = `SELECT ${PG_ENTRY_SETTINGS.map((n) => `pg_catalog.current_setting('${n}')`).join(', ')}`;
    const r = await backendRequest(session.backend!, [encodeQuery(sql)]);
    s.localStatus = r.status;
    const row = replyRows(r)[0];
    if (!row) {
      this.o.log.warn('could not read the session settings; writes use the role defaults', { user: session.user });
      return {};
    }
    const out: Record<string, string> = {};
    PG_ENTRY_SETTINGS.forEach((n, i) => {
      if (row[i] !== null && row[i] !== undefined) out[n] = row[i]!;
    });
    return out;
  }
}

function laneKind(st: PgStatement): PgLaneKind {
  if (st.kind === 'transaction') {
    const a = st.transaction?.action;
    if (a === 'commit') return 'commit';
    if (a === 'rollback') return 'rollback';
    return 'session';
  }
  if (st.kind === 'write' || st.kind === 'ddl' || st.kind === 'invalid' || st.kind === 'other') return st.noTransactionBlock ? 'alone' : 'write';
  if (st.kind === 'session' || st.kind === 'maintenance') return st.noTransactionBlock ? 'alone' : 'session';
  return 'read';
}

/** The decide/intercept options of startPostgresFrontend for a Replicator-like service. */
export function postgresRouting(o: PgRouterOptions): { decide: (s: Session, b: QueryBatch) => boolean; intercept: (s: Session, b: QueryBatch, leftover: Buffer) => void } {
  return new PgRouter(o).hooks();
}
