// The leader's write lane (DESIGN.md "Writes", src/replication/DESIGN.md): at most one write
// transaction open on the local database. Concurrent autocommit writes of one account share a transaction and an entry
// (group commit); an interactive transaction holds the lane until COMMIT/ROLLBACK or the lane
// timeout; DDL is replicated first and executed after commit. Statements run with the client's
// own account on a connection per (account, capabilities); the client gets its answer only
// after the entry is committed by a majority and the local transaction committed.
import { SqlClient, SqlError } from '../backend/mysql/client.js';
import { CLIENT_FOUND_ROWS, SERVER_STATUS_AUTOCOMMIT, SERVER_STATUS_IN_TRANS } from '../protocol/mysql/constants.js';
import type { ResponseAssembler } from '../protocol/mysql/response.js';
import { ContextTracker, randomSeeds, StatementClock, statementSet } from './context.js';
import { encodeEntry, entryChecksum, hasEffect, type Outcome, type SqlEntry, type StatementItem, type SysContext } from './entry.js';
import { RecallErrors } from './errors.js';
import { withAccount } from './account-rewrite.js';
import type { Account, Expectation, LaneDeps, LaneMode, LaneRequest, LaneResult } from './lane-types.js';
import { LOST_TXN, appliedUpdate, asSqlError, connKey, laneEpoch, outcomeOf, plain, proposalFailure, sameCtx, sqlHex, stmtKey } from './lane-util.js';

export type { Account, Expectation, LaneDeps, LaneMode, LaneRequest, LaneResult };
export { appliedUpdate, outcomeOf, sqlHex, stmtKey } from './lane-util.js';
import { laneBatchStatements, laneStepSeconds } from './metrics.js';
import { LaneSteps, rejectExpired } from './lane-queue.js';

const stepExecute = laneStepSeconds.labels('execute');
const stepReplicate = laneStepSeconds.labels('replicate');
const stepCommit = laneStepSeconds.labels('commit');

interface LaneConn {
  key: string;
  /** CURRENT_USER() of the connection: the account as the server matched it */
  account: string;
  client: SqlClient;
  stage1: string;
  ctx: ContextTracker;
  stmts: Map<string, { id: number; params: number }>;
}

interface Waiter {
  req: LaneRequest;
  resolve: (r: LaneResult) => void;
  reject: (e: Error) => void;
  deadline: number;
}

interface Holder {
  session: string;
  conn: LaneConn;
  items: StatementItem[];
  ctxs: SysContext[];
  fr: 0 | 1;
  timer: NodeJS.Timeout;
  busy: boolean;
  /** stop requested while a request was in flight */
  stop?: { replicate: boolean };
}

interface GroupBatch {
  waiters: Waiter[];
  ctxs: SysContext[];
  items: StatementItem[];
  answers: Array<ResponseAssembler | SqlError>;
  warnings: Array<Buffer[] | undefined>;
  proposal?: Promise<{ index: number; term: number } | Error>;
  expectation?: Expectation;
  data?: Buffer;
}

/** Batches that may join one group transaction while its first entry replicates. */
const GROUP_BATCHES_MAX = 8;

/** CALL [db.]proc — the routine's name, for the checks a CALL needs. */
const CALL_RE = /^\s*CALL\s+(`(?:[^`]|``)+`|[A-Za-z0-9_$]+)(?:\s*\.\s*(`(?:[^`]|``)+`|[A-Za-z0-9_$]+))?/i;

const KEEP_AUTO = ~(SERVER_STATUS_IN_TRANS | SERVER_STATUS_AUTOCOMMIT) & 0xffff;
const KEEP_TXN = ~SERVER_STATUS_AUTOCOMMIT & 0xffff;

export class WriteLane {
  private readonly conns = new Map<string, LaneConn>();
  private readonly queue: Waiter[] = [];
  private holder: Holder | null = null;
  private readonly steps: LaneSteps;
  private readonly expired = new Map<string, SqlError>();
  private readonly clock = new StatementClock();
  private seq: number;
  private readonly sweep: NodeJS.Timeout;
  private closed = false;
  private arrived: Promise<void> | null = null;
  private onArrival: (() => void) | null = null;
  /** names the transactions this lane opens until leadership is lost (see laneEpoch) */
  private epoch: string;

  constructor(private readonly d: LaneDeps) {
    this.epoch = laneEpoch(d.nodeId);
    // unique across restarts of this node: a random high part
    this.seq = Math.floor(Math.random() * 2 ** 20) * 2 ** 30;
    this.steps = new LaneSteps(this.d.log, () => this.pump());
    this.sweep = setInterval(() => this.expireWaiters(), 100);
    this.sweep.unref();
  }

  async submit(req: LaneRequest): Promise<LaneResult> {
    const refused = req.sql && CALL_RE.test(req.sql.toString('latin1', 0, 64)) ? await this.invokerRefusal(req) : null;
    if (refused) throw refused;
    const epoch = this.epoch;
    const r = await this.enqueue(req, epoch);
    if (r.inTxn) r.txn = epoch;
    return r;
  }

  /**
   * Replicas apply as the admin account: a SQL SECURITY INVOKER procedure whose body reads the
   * account (CURRENT_USER(), USER()) would give the admin account there. Refused, with the way out.
   */
  private async invokerRefusal(req: LaneRequest): Promise<SqlError | null> {
    const m = CALL_RE.exec(req.sql!.toString('latin1'));
    if (!m) return null;
    const unq = (x: string | undefined) => (x === undefined ? undefined : x.replace(/^`|`$/g, '').replace(/``/g, '`'));
    const schema = unq(m[2] ? m[1] : undefined) ?? req.sys.db;
    const name = unq(m[2] ?? m[1]);
    if (!schema || !name) return null;
    const lit = (x: string) => `X'${Buffer.from(x, 'latin1').toString('hex')}'`;
    let rows: Array<Array<string | null>>;
    try {
      rows = await this.d.adminRows(
        `SELECT SECURITY_TYPE, ROUTINE_DEFINITION FROM information_schema.ROUTINES WHERE ROUTINE_TYPE = 'PROCEDURE' AND ROUTINE_SCHEMA = CONVERT(${lit(schema)} USING utf8mb4) AND ROUTINE_NAME = CONVERT(${lit(name)} USING utf8mb4)`,
      );
    } catch {
      return null; // the CALL itself will say what is wrong
    }
    const [security, body] = rows[0] ?? [];
    if (security === 'INVOKER' && body && /\b(CURRENT_USER|USER|SESSION_USER|SYSTEM_USER)\b/i.test(body)) {
      return RecallErrors.unsafe(
        `CALL ${schema}.${name}: an SQL SECURITY INVOKER procedure that reads the calling account (CURRENT_USER(), USER()) would see Recall's admin account on the other replicas; instead, make it SQL SECURITY DEFINER or pass the account as a parameter`,
      );
    }
    return null;
  }

  private enqueue(req: LaneRequest, epoch: string): Promise<LaneResult> {
    if (this.closed) return Promise.reject(RecallErrors.noLeader('this node is shutting down'));
    const h = this.holder;
    if (req.txn === undefined) {
      // No transaction named: the request starts one, or is autocommit. Whatever the lane still
      // holds or remembers for the session belongs to an earlier transaction whose first answer
      // was lost on the way (its client was told it failed): end it, or this would continue it.
      // A COMMIT of it is refused: it may come from a session that cannot name its transaction
      // (a follower of an older version), and OK would acknowledge rows just rolled back.
      const orphan = h?.session === req.session;
      if (orphan || this.expired.has(req.session)) this.endSession(req.session);
      if (orphan && req.mode === 'commit') return Promise.reject(RecallErrors.txnAborted('the write lane held a transaction of this session that its statements did not name; it was rolled back'));
    } else if (req.mode !== 'auto') {
      // the transaction this statement continues: ended by this lane, opened under another epoch
      // (another leader, or this one before it lost leadership), or not held at all
      const held = h?.session === req.session;
      const gone = this.expired.get(req.session) ?? (req.txn !== epoch ? RecallErrors.txnAborted(LOST_TXN) : held ? undefined : RecallErrors.txnAborted('the write lane no longer holds this transaction'));
      if (gone) {
        this.expired.delete(req.session);
        return req.mode === 'rollback' ? Promise.resolve(this.plainOk(req)) : Promise.reject(gone);
      }
      return this.holderRequest(h!, req);
    }
    if (req.mode === 'commit' || req.mode === 'rollback') {
      // nothing held for this session (e.g. a transaction that never wrote): nothing to replicate
      return Promise.resolve(this.plainOk(req));
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ req, resolve, reject, deadline: performance.now() + this.d.laneTimeoutMs });
      if (this.onArrival) {
        const f = this.onArrival;
        this.onArrival = null;
        this.arrived = null;
        f();
      }
      this.pump();
    });
  }

  /** The client session ended: roll back what it holds, drop what it queued. */
  endSession(session: string): void {
    this.expired.delete(session);
    for (let i = this.queue.length - 1; i >= 0; i--) {
      if (this.queue[i]!.req.session === session) this.queue.splice(i, 1)[0]!.reject(new SqlError(1053, '08S01', 'session ended'));
    }
    const h = this.holder;
    if (h && h.session === session) this.stopHolder(h, null, true);
  }

  /**
   * End a held transaction from outside (session gone, lane timeout, leadership lost). A request
   * of it in flight finishes first: a ROLLBACK sent in the middle of its COMMIT could undo the
   * data and keep the applied index, or the other way round.
   */
  private stopHolder(h: Holder, reason: SqlError | null, replicate: boolean): void {
    if (reason) this.expired.set(h.session, reason);
    if (h.busy) {
      h.stop = { replicate };
      return;
    }
    if (replicate) void this.abandon(h);
    else void this.release(h, 'ROLLBACK');
  }

  /** Roll back a held transaction the client will not finish; replicate it when it had effects. */
  private async abandon(h: Holder): Promise<void> {
    if (!hasEffect(h.items)) {
      await this.release(h, 'ROLLBACK');
      return;
    }
    try {
      await h.conn.client.run('ROLLBACK');
      await h.conn.client.run('BEGIN');
      const done = await this.replicate(h.conn, { t: 'w', o: { n: this.d.nodeId, s: 0 }, fr: h.fr, ctxs: h.ctxs, items: h.items, rollback: 1 }, 'COMMIT');
      if (done instanceof SqlError) this.d.log.warn('replicating an abandoned transaction failed', { error: done.message });
    } catch (e) {
      this.dropConn(h.conn);
      this.d.log.warn('rolling back an abandoned transaction failed', { error: (e as Error).message });
    } finally {
      this.unhold(h);
    }
  }

  /** Leadership lost (or the database went away): roll back the held transaction. */
  abort(reason: SqlError): void {
    this.epoch = laneEpoch(this.d.nodeId);
    const h = this.holder;
    if (h) this.stopHolder(h, reason, false);
    for (const w of this.queue.splice(0)) w.reject(reason);
  }

  holderSession(): string | null {
    return this.holder?.session ?? null;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweep);
    this.abort(RecallErrors.noLeader('this node is shutting down'));
    for (const c of this.conns.values()) c.client.close();
    this.conns.clear();
  }

  // ---- scheduling ----

  private pump(): void {
    if (this.steps.busy || this.holder || this.queue.length === 0 || this.closed) return;
    const head = this.queue[0]!;
    if (head.req.mode === 'auto') {
      const batch = this.takeBatch(connKey(head.req));
      this.steps.run(() => this.runBatch(batch));
    } else {
      this.queue.shift();
      if (head.req.mode === 'ddl') this.steps.run(() => this.runDdl(head));
      else this.steps.run(() => this.acquire(head));
    }
  }

  private expireWaiters(): void {
    rejectExpired(this.queue, performance.now(), () => RecallErrors.laneWait(this.d.laneTimeoutMs));
  }

  // ---- connections ----

  private async conn(req: LaneRequest): Promise<LaneConn> {
    const key = connKey(req);
    const stage1 = req.account.stage1?.toString('hex') ?? '';
    let c = this.conns.get(key);
    if (c && (c.client.broken || c.stage1 !== stage1)) {
      c.client.close();
      this.conns.delete(key);
      c = undefined;
    }
    if (c) return c;
    const client = await SqlClient.connect(
      this.d.target,
      {
        capabilities: req.caps,
        maxPacketSize: this.d.payloadBytesMax,
        charset: req.charset,
        mariadbCapabilities: req.mcaps,
        username: req.account.user,
        stage1: req.account.stage1,
        database: null,
        attributes: [['_recall', 'write-lane']],
      },
      this.d.payloadBytesMax,
      this.d.connectTimeoutMs,
    );
    const who = SqlClient.rows(await client.run('SELECT CURRENT_USER()'))[0]?.[0] ?? `${req.account.user}@%`;
    c = { key, client, stage1, account: who, ctx: new ContextTracker(), stmts: new Map() };
    this.conns.set(key, c);
    return c;
  }

  private dropConn(c: LaneConn): void {
    if (c.client.broken) this.d.databaseFailed('a write lane connection to the local database broke');
    c.client.close();
    if (this.conns.get(c.key) === c) this.conns.delete(c.key);
  }

  // ---- statements ----

  private newItem(c: LaneConn, req: LaneRequest, ctxs: SysContext[], ts?: string): StatementItem {
    let ci = ctxs.findIndex((x) => sameCtx(x, req.sys));
    if (ci < 0) ci = ctxs.push(req.sys) - 1;
    // replicas run it as Recall's admin account: what the client's account gives it is written in
    const sql = withAccount(req.sql!.toString('latin1'), c.account);
    const item: StatementItem = { sql, c: ci, ts: ts ?? this.clock.next(), out: {} };
    if (req.rand) item.seeds = randomSeeds();
    if (req.lid !== undefined) item.lid = req.lid;
    if (req.vars && req.vars.length) item.vars = req.vars;
    if (req.params) item.params = req.params.toString('base64');
    if (req.infile) item.infile = req.infile.toString('base64');
    if (req.pinInsertId) item.pin = 1;
    return item;
  }

  /** Send the context and the statement (pipelined); resolves with the statement's response. */
  /**
   * Send the context and the statement (pipelined); resolves with the statement's response.
   * Inside a transaction each statement runs under a savepoint: if its context could not be set,
   * whatever it did is rolled back before the error goes to the client, so nothing outside the
   * log ever commits.
   */
  private async send(c: LaneConn, req: LaneRequest, item: StatementItem, inTxn = true): Promise<ResponseAssembler> {
    // Database and session variables first (a prepared statement resolves its tables in the
    // current database), then the prepare, then the per-statement SET: a COM_STMT_PREPARE
    // between SET insert_id and the execute would consume it.
    const pre = c.ctx.apply(c.client, req.sys);
    let ps: { id: number; params: number } | undefined;
    if (req.params) {
      const key = stmtKey(req.sys.db, item.sql);
      ps = c.stmts.get(key);
      if (!ps) {
        const pr = await c.client.prepare(Buffer.from(item.sql, 'latin1'));
        if (pr.err || !pr.prepared) {
          await this.checkPre(c, null, pre, null);
          return pr; // the ERR packet answers the execute
        }
        ps = { id: pr.prepared.stmtId, params: pr.prepared.params };
        c.stmts.set(key, ps);
      }
    }
    // Only a context that can fail (session variables, user variables) needs the savepoint.
    const sp = inTxn && (pre.length > 0 || (item.vars?.length ?? 0) > 0) ? c.client.query('SAVEPOINT recall_stmt') : null;
    const set = statementSet(item, null, c.ctx.ts);
    c.ctx.ts = item.ts;
    if (set) pre.push(c.client.query(set));
    // outside a transaction (DDL) nothing could undo the statement: the context must be in place first
    if (!inTxn) await this.checkPre(c, null, pre.splice(0), null);
    const stmt = ps ? c.client.execute(ps.id, req.params!) : c.client.query(Buffer.from(item.sql, 'latin1'), { infile: req.infile });
    await this.checkPre(c, sp, pre, stmt);
    return stmt;
  }

  private async checkPre(c: LaneConn, sp: Promise<ResponseAssembler> | null, pre: Array<Promise<ResponseAssembler>>, stmt: Promise<ResponseAssembler> | null): Promise<void> {
    const s = sp ? await sp : null;
    if (s?.err) throw new SqlError(s.err.errno, s.err.sqlState, `Recall could not set a savepoint on the leader: ${s.err.message}`);
    for (const r of await Promise.all(pre)) {
      if (!r.err) continue;
      c.ctx.reset();
      if (stmt) await stmt; // it ran with the wrong context: undo it
      if (sp) {
        const rb = await c.client.query('ROLLBACK TO SAVEPOINT recall_stmt');
        if (rb.err) throw new Error(`rolling back a statement failed: ${rb.err.message}`);
      } else if (stmt) throw new Error('a statement ran outside a transaction with the wrong context');
      throw new SqlError(r.err.errno, r.err.sqlState, `Recall could not set the session context on the leader: ${r.err.message}`);
    }
  }

  /** The statement's SHOW WARNINGS, for a client that asks next (the warnings live on this connection). */
  private async warnings(c: LaneConn, r: ResponseAssembler): Promise<Buffer[] | undefined> {
    if (!r.ok?.warnings) return undefined;
    const w = await c.client.query('SHOW WARNINGS');
    return w.err ? undefined : w.packets;
  }

  /**
   * Rolling group commit: execute a batch of autocommit writes in the open transaction and
   * propose its entry; while that first entry is being replicated, keep executing the batches
   * that arrive (same transaction, so each sees the ones before it, in log order) and propose
   * them too. Once the first entry is committed no batch joins; when every entry of the group is
   * committed, the applied index (the group's last entry) and the transaction commit together
   * and every client of the group is answered.
   */
  private async runBatch(first: Waiter[]): Promise<void> {
    let c: LaneConn;
    try {
      await this.d.ready();
      c = await this.conn(first[0]!.req);
    } catch (e) {
      for (const w of first) w.reject(asSqlError(e));
      return;
    }
    const key = connKey(first[0]!.req);
    const fr: 0 | 1 = first[0]!.req.caps & CLIENT_FOUND_ROWS ? 1 : 0;
    const begin = c.client.query('BEGIN');
    const group: GroupBatch[] = [];
    let firstDone = false;
    let firstSettled: Promise<unknown> | null = null;
    let pending = 0;
    let batch: Waiter[] = first;
    try {
      for (;;) {
        const b = await this.executeBatch(c, batch);
        if (group.length === 0) {
          const br = await begin;
          if (br.err) throw new SqlError(br.err.errno, br.err.sqlState, br.err.message);
        }
        if (hasEffect(b.items)) {
          const seq = ++this.seq;
          const data = encodeEntry({ t: 'w', o: { n: this.d.nodeId, s: seq }, fr, ctxs: b.ctxs, items: b.items });
          b.expectation = this.d.expect(seq);
          b.data = data;
          const t0 = performance.now();
          b.proposal = this.d.propose(data).then(
            (r) => {
              stepReplicate.observe((performance.now() - t0) / 1000);
              return r;
            },
            (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
          );
          // the group stays open while any of its entries is still replicating
          pending++;
          const settledNow = b.proposal.then(() => {
            if (--pending === 0) firstDone = true;
          });
          firstSettled = firstSettled ? Promise.all([firstSettled, settledNow]) : settledNow;
        }
        group.push(b);
        if (firstDone || !firstSettled || group.length >= GROUP_BATCHES_MAX) break;
        let next = this.takeBatch(key);
        if (next.length === 0) {
          await Promise.race([firstSettled, this.arrival()]);
          if (firstDone) break;
          next = this.takeBatch(key);
          if (next.length === 0) {
            await firstSettled;
            break;
          }
        }
        batch = next;
      }
    } catch (e) {
      // The connection failed while executing: nothing of the group is committed locally.
      this.dropConn(c);
      await this.failGroup(group, batch, e as Error);
      return;
    }
    await this.commitGroup(c, group);
  }

  /** Same-key autocommit writes waiting in the queue, up to the batch limit. */
  private takeBatch(key: string): Waiter[] {
    const out: Waiter[] = [];
    for (let i = 0; i < this.queue.length && out.length < this.d.batchStatementsMax; ) {
      const w = this.queue[i]!;
      if (w.req.mode === 'auto' && connKey(w.req) === key) {
        out.push(w);
        this.queue.splice(i, 1);
      } else i++;
    }
    return out;
  }

  /** Resolves when the next request is queued. */
  private arrival(): Promise<void> {
    if (!this.arrived) this.arrived = new Promise<void>((r) => (this.onArrival = r));
    return this.arrived;
  }

  private async executeBatch(c: LaneConn, batch: Waiter[]): Promise<GroupBatch> {
    laneBatchStatements.observe(batch.length);
    const t0 = performance.now();
    const b: GroupBatch = { waiters: batch, ctxs: [], items: [], answers: [], warnings: [] };
    // One clock for the batch: its statements commit together, at one instant.
    const ts = this.clock.next();
    if (batch.length > 1 && batch.every((w) => plain(w.req, c.ctx.ctx))) {
      await this.executePipelined(c, batch, b, ts);
      stepExecute.observe((performance.now() - t0) / 1000);
      return b;
    }
    for (const w of batch) {
      const item = this.newItem(c, w.req, b.ctxs, ts);
      try {
        const r = await this.send(c, w.req, item);
        item.out = outcomeOf(r);
        b.items.push(item);
        b.answers.push(r);
        b.warnings.push(await this.warnings(c, r));
      } catch (e) {
        if (!(e instanceof SqlError)) throw e;
        b.answers.push(e);
        b.warnings.push(undefined);
      }
    }
    stepExecute.observe((performance.now() - t0) / 1000);
    return b;
  }

  /**
   * Statements whose context cannot fail (same session variables as the connection has, no user
   * variables) go out back to back and their answers are read in order: one round trip for the
   * batch. Warnings can then be fetched for the last statement only (the connection keeps the
   * last statement's); the others keep their warning count.
   */
  private async executePipelined(c: LaneConn, batch: Waiter[], b: GroupBatch, ts: string): Promise<void> {
    const items = batch.map((w) => this.newItem(c, w.req, b.ctxs, ts));
    const ids: Array<number | ResponseAssembler | null> = [];
    for (const w of batch) {
      if (!w.req.params) {
        ids.push(null);
        continue;
      }
      const key = stmtKey(w.req.sys.db, items[ids.length]!.sql);
      let ps = c.stmts.get(key);
      if (!ps) {
        const pr = await c.client.prepare(Buffer.from(items[ids.length]!.sql, 'latin1'));
        if (pr.err || !pr.prepared) {
          ids.push(pr);
          continue;
        }
        ps = { id: pr.prepared.stmtId, params: pr.prepared.params };
        c.stmts.set(key, ps);
      }
      ids.push(ps.id);
    }
    const sent: Array<Promise<ResponseAssembler>> = batch.map((w, i) => {
      const id = ids[i];
      if (id !== null && typeof id === 'object') return Promise.resolve(id);
      const set = statementSet(items[i]!, null, c.ctx.ts);
      c.ctx.ts = items[i]!.ts;
      if (set) void c.client.query(set);
      return typeof id === 'number' ? c.client.execute(id, w.req.params!) : c.client.query(Buffer.from(items[i]!.sql, 'latin1'), { infile: w.req.infile });
    });
    for (let i = 0; i < batch.length; i++) {
      const r = await sent[i]!;
      items[i]!.out = outcomeOf(r);
      b.items.push(items[i]!);
      b.answers.push(r);
      b.warnings.push(i === batch.length - 1 ? await this.warnings(c, r) : undefined);
    }
  }

  private async commitGroup(c: LaneConn, group: GroupBatch[]): Promise<void> {
    const t0 = performance.now();
    const results = await Promise.all(group.map((b) => b.proposal ?? Promise.resolve(null)));
    const failure = results.find((r): r is Error => r instanceof Error);
    const last = [...group.keys()].reverse().find((i) => results[i] && !(results[i] instanceof Error));
    if (failure || last === undefined) {
      await c.client.query('ROLLBACK').catch(() => this.dropConn(c));
      if (failure) return this.failGroup(group, null, failure, results);
      // nothing had an effect: the statements' own answers (errors) stand
      for (const b of group) this.answer(b, 0);
      return;
    }
    const lastResult = results[last] as { index: number; term: number };
    try {
      const upd = c.client.query(appliedUpdate(lastResult.index, lastResult.term, entryChecksum(group[last]!.data!)));
      const fin = c.client.query('COMMIT');
      const u = await upd;
      const f = await fin;
      if (u.err) throw new SqlError(u.err.errno, u.err.sqlState, `recording the applied index: ${u.err.message}`);
      if (f.err) throw new SqlError(f.err.errno, f.err.sqlState, f.err.message);
    } catch (e) {
      // Committed in the log but not in the local database: the applier replays the entries.
      this.d.log.warn('local commit after quorum failed; the applier will replay the entries', { index: lastResult.index, error: (e as Error).message });
      this.dropConn(c);
      return this.failGroup(group, null, e as Error, results);
    }
    stepCommit.observe((performance.now() - t0) / 1000);
    group.forEach((b, i) => {
      const r = results[i];
      if (r && !(r instanceof Error)) b.expectation!.committed(r.index);
    });
    group.forEach((b, i) => {
      const r = results[i];
      this.answer(b, r && !(r instanceof Error) ? r.index : 0);
    });
  }

  private answer(b: GroupBatch, index: number): void {
    b.waiters.forEach((w, i) => {
      const a = b.answers[i]!;
      if (a instanceof SqlError) return w.reject(a);
      a.patchStatus(KEEP_AUTO, w.req.clientStatus & SERVER_STATUS_AUTOCOMMIT);
      const wr = b.warnings[i];
      w.resolve({ packets: a.packets, index: a.err ? 0 : index, insertId: a.ok?.lastInsertId ?? 0, inTxn: false, ...(wr ? { warnings: wr } : {}) });
    });
  }

  /** The group's transaction is gone: tell every client what may have happened to its write. */
  private async failGroup(group: GroupBatch[], unproposed: Waiter[] | null, e: Error, results?: Array<{ index: number; term: number } | Error | null>): Promise<void> {
    const settled = results ?? (await Promise.all(group.map((b) => b.proposal ?? Promise.resolve(null))));
    group.forEach((b, i) => {
      b.expectation?.failed();
      const r = settled[i];
      let err: SqlError;
      if (!b.proposal) err = RecallErrors.notApplied(e.message);
      else err = proposalFailure(r instanceof Error ? r : e);
      for (const w of b.waiters) w.reject(err);
    });
    if (unproposed && !group.some((b) => b.waiters === unproposed)) for (const w of unproposed) w.reject(RecallErrors.notApplied(e.message));
  }

  /**
   * Propose the entry, and once a majority has it, record the applied index and end the local
   * transaction with `finish` (COMMIT). Returns the finishing response, or the error for the client.
   */
  private async replicate(c: LaneConn, entry: SqlEntry, finish: string): Promise<{ index: number; response: ResponseAssembler } | SqlError> {
    const t0 = performance.now();
    const p = await this.proposeEntry(entry);
    if (p instanceof SqlError) {
      await c.client.query('ROLLBACK').catch(() => this.dropConn(c));
      return p;
    }
    stepReplicate.observe((performance.now() - t0) / 1000);
    const { index, term, data, expectation } = p;
    try {
      const upd = c.client.query(appliedUpdate(index, term, entryChecksum(data)));
      const fin = c.client.query(finish);
      const u = await upd;
      const f = await fin;
      if (u.err) throw new SqlError(u.err.errno, u.err.sqlState, `recording the applied index: ${u.err.message}`);
      if (f.err) throw new SqlError(f.err.errno, f.err.sqlState, f.err.message);
      stepCommit.observe((performance.now() - t0) / 1000);
      expectation.committed(index);
      return { index, response: f };
    } catch (e) {
      // Committed in the log but not in the local database: the applier replays it from the log.
      this.d.log.warn('local commit after quorum failed; the applier will replay the entry', { index, error: (e as Error).message });
      this.dropConn(c);
      expectation.failed();
      return RecallErrors.outcomeUnknown(`the entry is committed at index ${index} but the local commit failed: ${(e as Error).message}`);
    }
  }

  // ---- interactive transactions ----

  private async acquire(w: Waiter): Promise<void> {
    let c: LaneConn;
    try {
      await this.d.ready();
      c = await this.conn(w.req);
      const b = await c.client.query('BEGIN');
      if (b.err) throw new SqlError(b.err.errno, b.err.sqlState, b.err.message);
    } catch (e) {
      w.reject(asSqlError(e));
      return;
    }
    const h: Holder = {
      session: w.req.session,
      conn: c,
      items: [],
      ctxs: [],
      fr: w.req.caps & CLIENT_FOUND_ROWS ? 1 : 0,
      busy: false,
      timer: setTimeout(() => {
        if (this.holder !== h) return;
        this.d.log.info('transaction held the write lane too long; rolled back', { session: h.session, laneTimeoutMs: this.d.laneTimeoutMs });
        this.stopHolder(h, RecallErrors.laneHeld(this.d.laneTimeoutMs), true);
      }, this.d.laneTimeoutMs),
    };
    this.holder = h;
    this.holderRequest(h, w.req).then(w.resolve, w.reject);
  }

  private async holderRequest(h: Holder, req: LaneRequest): Promise<LaneResult> {
    if (h.busy) throw new SqlError(2014, 'HY000', 'Commands out of sync; you can\'t run this command now');
    h.busy = true;
    try {
      if (req.mode === 'rollback') {
        if (!hasEffect(h.items)) {
          const r = await this.release(h, 'ROLLBACK');
          return this.result(r, req, 0, false);
        }
        // Replicas replay the rolled-back transaction and roll it back too: a rollback does not give
        // AUTO_INCREMENT values back, and later inserts (in triggers too) must get the same ones.
        const rb = await h.conn.client.query('ROLLBACK');
        await h.conn.client.run('BEGIN');
        const done = await this.replicate(h.conn, { t: 'w', o: { n: this.d.nodeId, s: 0 }, fr: h.fr, ctxs: h.ctxs, items: h.items, rollback: 1 }, 'COMMIT');
        this.unhold(h);
        if (done instanceof SqlError) throw done;
        return this.result(rb, req, done.index, false);
      }
      if (req.mode === 'commit') {
        if (h.items.length === 0) {
          const r = await this.release(h, 'COMMIT');
          return this.result(r, req, 0, false);
        }
        const done = await this.replicate(h.conn, { t: 'w', o: { n: this.d.nodeId, s: 0 }, fr: h.fr, ctxs: h.ctxs, items: h.items }, 'COMMIT');
        this.unhold(h);
        if (done instanceof SqlError) throw done;
        return this.result(done.response, req, done.index, false);
      }
      const item = this.newItem(h.conn, req, h.ctxs);
      const r = await this.send(h.conn, req, item);
      item.out = outcomeOf(r);
      if (req.record !== false) h.items.push(item);
      const wr = await this.warnings(h.conn, r);
      return { ...this.result(r, req, 0, true), ...(wr ? { warnings: wr } : {}) };
    } catch (e) {
      if (this.holder === h && !(e instanceof SqlError)) {
        this.expired.set(h.session, RecallErrors.txnAborted((e as Error).message));
        void this.release(h, 'ROLLBACK');
      }
      throw asSqlError(e);
    } finally {
      h.busy = false;
      const stop = h.stop;
      h.stop = undefined;
      if (stop && this.holder === h) {
        if (stop.replicate) void this.abandon(h);
        else void this.release(h, 'ROLLBACK');
      }
    }
  }

  private result(r: ResponseAssembler | null, req: LaneRequest, index: number, inTxn: boolean): LaneResult {
    if (!r) return this.plainOk(req);
    r.patchStatus(KEEP_TXN, req.clientStatus & SERVER_STATUS_AUTOCOMMIT);
    return { packets: r.packets, index, insertId: r.ok?.lastInsertId ?? 0, inTxn };
  }

  private plainOk(req: LaneRequest): LaneResult {
    // an OK with the session's autocommit bit: encoded like the server's (no info)
    const ok = Buffer.from([0x00, 0x00, 0x00, req.clientStatus & SERVER_STATUS_AUTOCOMMIT, 0x00, 0x00, 0x00]);
    return { packets: [ok], index: 0, insertId: 0, inTxn: false };
  }

  private unhold(h: Holder): void {
    clearTimeout(h.timer);
    if (this.holder === h) {
      this.holder = null;
      setImmediate(() => this.pump());
    }
  }

  private async release(h: Holder, how: 'COMMIT' | 'ROLLBACK'): Promise<ResponseAssembler | null> {
    this.unhold(h);
    try {
      const r = await h.conn.client.query(how);
      return r;
    } catch {
      this.dropConn(h.conn);
      return null;
    }
  }

  // ---- DDL: replicated first, executed after commit, with intent and completion records ----

  private async runDdl(w: Waiter): Promise<void> {
    const req = w.req;
    let c: LaneConn;
    try {
      await this.d.ready();
      c = await this.conn(req);
    } catch (e) {
      w.reject(asSqlError(e));
      return;
    }
    const ctxs: SysContext[] = [];
    const item = this.newItem(c, req, ctxs);
    const fr: 0 | 1 = req.caps & CLIENT_FOUND_ROWS ? 1 : 0;
    const intent = await this.proposeOwn({ t: 'ddl', o: { n: this.d.nodeId, s: 0 }, fr, ctxs, item }, (index) => [
      `INSERT INTO recall.ddl (idx, state, stmt) VALUES (${index}, 'started', ${sqlHex(item.sql)})`,
    ]);
    if (intent instanceof SqlError) return w.reject(intent);
    let r: ResponseAssembler;
    try {
      r = await this.send(c, req, item, false);
    } catch (e) {
      this.dropConn(c);
      r = null as unknown as ResponseAssembler;
      this.d.log.error('DDL execution failed on the leader', { index: intent, error: (e as Error).message });
    }
    const out: Outcome = r ? outcomeOf(r) : { e: 2013 };
    const done = await this.proposeOwn({ t: 'ddlx', o: { n: this.d.nodeId, s: 0 }, at: intent, out }, () => [
      `UPDATE recall.ddl SET state = 'done', errno = ${out.e ?? 0} WHERE idx = ${intent}`,
    ]);
    if (done instanceof SqlError) return w.reject(done);
    if (!r) return w.reject(RecallErrors.outcomeUnknown('the local database connection was lost during DDL'));
    r.patchStatus(KEEP_AUTO, req.clientStatus & SERVER_STATUS_AUTOCOMMIT);
    w.resolve({ packets: r.packets, index: done, insertId: 0, inTxn: false });
  }

  /** Propose an entry of the lane's own (the applier waits for the lane on it); the error for the client when it fails. */
  private async proposeEntry(entry: SqlEntry): Promise<{ index: number; term: number; data: Buffer; expectation: Expectation } | SqlError> {
    const seq = ++this.seq;
    entry.o.s = seq;
    const data = encodeEntry(entry);
    const expectation = this.d.expect(seq);
    try {
      const { index, term } = await this.d.propose(data);
      return { index, term, data, expectation };
    } catch (e) {
      expectation.failed();
      return proposalFailure(e);
    }
  }

  /** Propose an entry that the lane itself applies with bookkeeping statements (admin account). */
  private async proposeOwn(entry: SqlEntry, statements: (index: number) => string[]): Promise<number | SqlError> {
    const p = await this.proposeEntry(entry);
    if (p instanceof SqlError) return p;
    const { index, term, data, expectation } = p;
    try {
      await this.d.bookkeep([...statements(index), appliedUpdate(index, term, entryChecksum(data))]);
      expectation.committed(index);
      return index;
    } catch (e) {
      expectation.failed();
      return RecallErrors.outcomeUnknown(`bookkeeping for index ${index} failed: ${(e as Error).message}`);
    }
  }
}
