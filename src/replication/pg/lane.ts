// The leader's PostgreSQL write lane (DESIGN.md "Writes"; src/replication/DESIGN.md for the MySQL
// one it mirrors): one write transaction at a time on the local postgres, so execution order is log
// order. Statements run as the client's role on a connection logged in with the client's
// credential (privileges, ownership and RLS hold on the leader as they would without Recall),
// rewritten to literals fixed here (time, random, uuid, volatile column defaults), inside a
// transaction that also records the applied index; the entry is proposed, and only once the
// majority has it does the transaction commit and the client get the backend's own messages.
// Autocommit writes are one entry each; a transaction holds the lane from its first write to
// COMMIT/ROLLBACK, at most laneTimeoutMs.
import { createHash, randomUUID } from 'node:crypto';
import { deflateRawSync } from 'node:zlib';
import { SqlError } from '../../backend/mysql/client.js';
import { MSG_BIND_COMPLETE, MSG_COMMAND_COMPLETE, MSG_COPY_IN_RESPONSE, MSG_PARSE_COMPLETE, MSG_READY_FOR_QUERY, TX_FAILED, TX_IDLE, TX_IN_TRANSACTION } from '../../protocol/postgres/constants.js';
import { encodeErrorResponse, encodeQuery } from '../../protocol/postgres/messages.js';
import { classifyPg, type PgStatement } from '../../sql/pg-classify.js';
import { PG_COLUMNS_SQL, volatileDefaults, type PgColumnRow, type PgTableDefaults } from '../../sql/pg-defaults.js';
import { pgTimestamp, rewritePgStatement, rewritePgWrite } from '../../sql/pg-rewrite.js';
import { hashRolePasswords } from './role-password.js';
import { bodyCalls, bodyInsertTargets, routineBody } from '../../sql/pg-bodies.js';
import { parsePg } from '../../sql/pg-parse.js';
import { pgShape } from '../../sql/pg-shape.js';
import { NotLeaderError, ProposalDroppedError } from '../../engine/errors.js';
import type { LaneBaseDeps, ReplicaLane } from '../dialect.js';
import { NO_FSYNC, appliedUpdate, contextSql, outcomeOf, type PgApplier, type PgExpectation } from './applier.js';
import { PgConn, PgConnError, encodeCommandComplete, encodeExtended, literal, replyError, replyRows, type PgReply } from './conn.js';
import { encodePgEntry, nondeterministicError, pgEntryChecksum, type PgEntry, type PgItem, type PgOutcome } from './entry.js';
import { PgRecallErrors } from './errors.js';
import type { PgLaneRequest, PgLaneResult, PgLaneStatement } from './types.js';
import type { BackendTarget } from '../../frontend/postgres/backend-login.js';
import { laneBatchStatements, laneConflicts, laneStepSeconds } from '../metrics.js';
import { LaneSteps, rejectExpired } from '../lane-queue.js';
import { LOST_TXN, laneEpoch } from '../lane-util.js';

// The MySQL lane's steps (execute, replicate, commit) and the PostgreSQL lane's own, each once per
// transaction (an observation costs microseconds): wait (for the lane, in the queue), begin
// (connection, BEGIN, settings, sequences; with the first statement when pipelined), execute (the
// statements), rewrite (determinism rewrite and column default lookups, part of execute),
// constraints (SET CONSTRAINTS ALL IMMEDIATE at COMMIT), prepare (sequences after, the entry),
// held (a transaction's lane time from BEGIN to COMMIT, client round trips included).
const step = {
  wait: laneStepSeconds.labels('wait'),
  begin: laneStepSeconds.labels('begin'),
  execute: laneStepSeconds.labels('execute'),
  rewrite: laneStepSeconds.labels('rewrite'),
  prepare: laneStepSeconds.labels('prepare'),
  replicate: laneStepSeconds.labels('replicate'),
  commit: laneStepSeconds.labels('commit'),
  held: laneStepSeconds.labels('held'),
  constraints: laneStepSeconds.labels('constraints'),
};
const since = (t0: number): number => (performance.now() - t0) / 1000;

export interface PgLaneOptions {
  target: BackendTarget;
  connectTimeoutMs: number;
  /** idle lane connections kept per (role, database) */
  connsMax?: number;
  /** run transactions optimistically (see Spec; config pgOptimistic); default false */
  optimistic?: boolean;
}

/**
 * A transaction run optimistically (src/replication/DESIGN.md "Optimistic transactions"): its statements
 * run on a connection of its own, concurrently with other sessions' and without the lane, and the
 * client gets their results at once; what it got is remembered (a digest per statement). At COMMIT,
 * or at the first statement that cannot run this way, the speculative transaction is rolled back
 * and the lane runs the same statements again, serially as always, and checks that every result
 * equals what the client got. Equal: the transaction goes on (or commits) on the lane exactly as if
 * it had held the lane from the start, its statements replicated as usual; the client saw results
 * that the serial execution produced. Different (a concurrent transaction changed what it read):
 * the lane rolls back and the client gets 40001, as a serializable transaction would. The lane is
 * then held for one pipelined round trip per transaction instead of for every client round trip.
 * Only row statements without user functions (plain, see Holder) that cannot move a sequence
 * (nextval cannot be undone by a rollback; see sequenceFree): the rest promotes the transaction
 * to the lane.
 */
interface Spec {
  session: string;
  req: PgLaneRequest;
  conn: PgConn;
  txTs: string;
  /** statements as they ran (rewritten), each with the digest of the client's messages and its entry item */
  runs: Array<{ st: PgLaneStatement; digest: string; item: PgItem | null }>;
  /** the applied index when it began: while nothing else has committed since, its statements saw
   * what the lane would see now, and it commits as it is, without a replay */
  applied0: number;
  /** still open (not rolled back) when handed to the lane: the lane was idle */
  open: boolean;
  /** every statement was a row statement without user functions (Holder's plain) */
  plain: boolean;
  /** a statement failed: the transaction can only end, and nothing of it is replicated */
  failed: boolean;
  /** BEGIN and the settings, pipelined with the first statement (awaited after its answer) */
  begun: Promise<void> | null;
  status: number;
  /** the rewrite caches' generation at the first rewrite (see `generation`) */
  generation: number;
  timer: NodeJS.Timeout;
  busy: boolean;
  expired: boolean;
}

/** speculative transactions at once (more wait for the lane as before) */
const SPECS_MAX = 64;
/**
 * A speculative statement waits this long for a row lock (another speculative transaction's, or the
 * lane's until its COMMIT): longer waits queue ahead of the lane's own transactions for hot rows.
 * Past it, the transaction moves onto the lane (see speculate).
 */
const SPEC_LOCK_TIMEOUT_SQL = "SET LOCAL lock_timeout = '10ms'";

/** Whether a table can take a speculative write in a database with sequences (see sequenceFree). */
const SEQUENCE_FREE_SQL =
  "SELECT c.relkind = 'r' AND NOT c.relhastriggers AND NOT c.relhasrules " +
  "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attidentity <> '') " +
  "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attrdef d WHERE d.adrelid = c.oid AND pg_catalog.pg_get_expr(d.adbin, d.adrelid) " +
  "~* '(^|[^a-z0-9_$])(?!(now|clock_timestamp|statement_timestamp|transaction_timestamp|timeofday|random|gen_random_uuid)\\s*\\()[a-z_][a-z0-9_$.]*\\s*\\(') " +
  'FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass($1)';

/** COMMITs replayed in one lane transaction at most (each has a savepoint: postgres keeps 64 subtransactions in shared memory) */
const GROUP_MAX = 32;
/** idle speculative connections kept per (role, database) */
const SPEC_IDLE_MAX = 16;

/** A table's key in the lane's per-table caches: an unqualified name resolves through the session's search_path. */
function tableKey(req: PgLaneRequest, table: string): string {
  return `${req.database}\u0000${req.settings.search_path ?? ''}\u0000${table}`;
}

/** The answer to a COMMIT whose transaction did not pass its replay: the error, the session out of its transaction. */
function conflictAnswer(err: SqlError): PgLaneResult {
  return { replies: [[encodeErrorResponse({ severity: 'ERROR', code: err.sqlState, message: err.message })]], index: 0, status: TX_IDLE };
}

function digestOf(messages: Buffer[]): string {
  const h = createHash('md5');
  for (const m of messages) h.update(m);
  return h.digest('base64');
}

interface Waiter {
  req: PgLaneRequest;
  resolve: (r: PgLaneResult) => void;
  reject: (e: Error) => void;
  deadline: number;
  queuedAt: number;
}

type Sequences = Map<string, [string, boolean]>;

/** The sequences that moved, with their values before (what replicas set before applying). */
function seqBefore(before: Sequences, after: Sequences): Array<[string, string, boolean]> | undefined {
  const out: Array<[string, string, boolean]> = [];
  for (const [name, [v, called]] of after) {
    const b = before.get(name);
    if (b && (b[0] !== v || b[1] !== called)) out.push([name, b[0], b[1]]);
  }
  return out.length ? out : undefined;
}

interface Holder {
  heldAt: number;
  /** every statement so far changed rows only (INSERT/UPDATE/DELETE/SELECT without user or
   * writing functions): it created no sequence and no deferrable constraint */
  plain: boolean;
  session: string;
  seqs: Sequences;
  conn: PgConn;
  req: PgLaneRequest;
  items: PgItem[];
  txTs: string;
  status: number;
  timer: NodeJS.Timeout;
  busy: boolean;
  /** the lane timeout fired while a request of the holder ran */
  expired: boolean;
  /** a SET/RESET/DISCARD changed the connection's session: not reused by others */
  dirty: boolean;
}

/** Errors postgres raises before a statement runs (syntax, names, privileges): nothing happened, no sequence moved. */
function refusedBeforeRunning(o: PgOutcome): boolean {
  return o.e !== undefined && (o.e.startsWith('42') || o.e === '25P02' || o.e === '25001' || o.e === '0A000');
}

function proposalFailure(e: unknown): SqlError {
  if (e instanceof NotLeaderError || e instanceof ProposalDroppedError) return PgRecallErrors.notApplied(`not the leader any more (${e.message})`);
  return PgRecallErrors.outcomeUnknown(e instanceof Error ? e.message : String(e));
}

function nowTs(): string {
  return pgTimestamp(BigInt(Math.floor((performance.timeOrigin + performance.now()) * 1000)));
}

/** A statement's messages for the client: ParseComplete/BindComplete (the router answers those) and ReadyForQuery left out. */
function clientMessages(r: PgReply): Buffer[] {
  // CopyInResponse: the router gave the client its own before it read the data
  return r.messages.filter((m) => m[0] !== MSG_READY_FOR_QUERY && m[0] !== MSG_PARSE_COMPLETE && m[0] !== MSG_BIND_COMPLETE && m[0] !== MSG_COPY_IN_RESPONSE);
}

/**
 * How many sequences the database has, as the lane connection sees it inside its transaction
 * (pg_class is readable by every role; pg_sequences hides the values of sequences the role may not
 * use, so the values themselves are read on the applier's admin connection), and how many
 * constraints and constraint triggers can be deferred (SET CONSTRAINTS has nothing to check
 * without them).
 */
const STATE_SQL =
  "SELECT (SELECT count(*) FROM pg_catalog.pg_class WHERE relkind = 'S'), " +
  '(SELECT count(*) FROM pg_catalog.pg_constraint WHERE condeferrable) + (SELECT count(*) FROM pg_catalog.pg_trigger WHERE tgdeferrable)';

/** Outcome tags of statements that change rows only: no sequence or deferrable constraint can come of them (triggers aside). */
const ROW_TAG_RE = /^(INSERT|UPDATE|DELETE|SELECT)\b/;

const EMPTY_SEQUENCES: Sequences = new Map();

/** A BEGIN without options: it cannot fail, so a statement may be pipelined behind it. */
const PLAIN_BEGIN_RE = /^\s*(BEGIN|START\s+TRANSACTION)(\s+(WORK|TRANSACTION))?\s*;?\s*$/i;

/** A statement as the leader runs it (`plain`: see Holder), or Recall's refusal. */
type Rewritten = { sql: string; plain: boolean } | { refusal: Buffer };

/** A statement's run: the item to record (null when nothing needs replaying), the client's messages, the transaction status after it (null: refused before running). */
interface Exec {
  /** a row statement calling no user or writing function (see `plain` in Holder) */
  plain: boolean;
  item: PgItem | null;
  messages: Buffer[];
  status: number | null;
}

/** statement texts whose classification is kept (cleared when full) */
const PARSES_MAX = 512;

/** statement shapes known to need no rewrite (cleared when full) */
const UNCHANGED_MAX = 2048;
/** Commands whose rewrite depends on the statement's structure, the functions it names and the
 * tables' defaults, never on the values of its numbers (see `unchanged`). */
const SHAPE_VERDICT_COMMANDS = new Set(['INSERT', 'UPDATE', 'DELETE', 'SELECT']);

/** DDL changes column defaults: any tag other than a plain data statement drops the cache. */
const DATA_TAG_RE = /^(INSERT|UPDATE|DELETE|MERGE|SELECT|COPY|FETCH|MOVE|SAVEPOINT|RELEASE|ROLLBACK|SET|BEGIN|COMMIT)\b/;

export class PgLane implements ReplicaLane<PgLaneRequest, PgLaneResult> {
  private readonly queue: Waiter[] = [];
  private holder: Holder | null = null;
  private readonly steps: LaneSteps;
  private closed = false;
  private readonly expired = new Map<string, SqlError>();
  /** names the transactions this lane opens until leadership is lost (see laneEpoch) */
  private epoch: string;
  private readonly idle = new Map<string, PgConn[]>();
  private readonly defaults = new Map<string, PgTableDefaults>();
  private readonly parses = new Map<string, PgStatement[]>();
  /**
   * Shapes (sql/pg-shape.ts: literals blanked) of statements the rewrite left as they were, per
   * database and search_path: another text of the same shape has the same tokens and tree up to
   * its literals, so it needs no rewrite either, and is neither parsed nor rewritten again
   * (pgbench -M simple sends a new text for every statement). Only texts without string literals
   * (a quote anywhere: current_setting('…'), '…'::timestamptz are decided by their value) and
   * only when every table's defaults were known; dropped with the defaults after DDL.
   */
  private readonly unchanged = new Set<string>();
  /** The applied index after the lane's last own write: anything else applied since (another
   * leader's DDL while this node followed) may have changed the defaults the caches hold. */
  private ownApplied = -1;
  /** seconds the current transaction spent in its statements, observed when it ends */
  private readonly spent = { execute: 0, rewrite: 0 };
  /**
   * Databases that had no sequence when the lane's last transaction there ended, with the applied
   * index that transaction committed at: while nothing else has been applied since, nothing can
   * have created one (writes on the leader run on this lane, one at a time), and the picture of
   * the sequences before the next transaction there is empty without reading it.
   */
  private readonly seqless = new Map<string, number>();
  /** Databases without deferrable constraints, likewise (the applied index of the lane's last transaction there). */
  private readonly undeferrable = new Map<string, number>();
  private seq: number;
  private readonly sweep: NodeJS.Timeout;
  private readonly specs = new Map<string, Spec>();
  /** a woundBlockers check is running */
  private watching = false;
  /** lane backend, blocking backend and session seen blocking at the last check */
  private suspects = new Set<string>();
  private readonly specIdle = new Map<string, PgConn[]>();
  /** tables a speculative write may touch in a database with sequences (see sequenceFree), dropped with the defaults */
  private readonly seqFree = new Map<string, boolean>();
  /** speculative transactions to replay, by the queued request that carries them on (see Spec);
   * dropped with the request when it is rejected unserved */
  private readonly replays = new Map<PgLaneRequest, Spec>();
  /** bumped whenever the rewrite caches (defaults, unchanged shapes) are dropped: a speculative
   * statement rewritten under an older generation may miss a volatile default added since */
  private generation = 0;

  constructor(
    private readonly d: LaneBaseDeps,
    private readonly applier: PgApplier,
    private readonly o: PgLaneOptions,
  ) {
    this.epoch = laneEpoch(d.nodeId);
    // unique across restarts of this node: a random high part
    this.seq = Math.floor(Math.random() * 2 ** 20) * 2 ** 30;
    this.steps = new LaneSteps(this.d.log, () => {
      // whatever the step applied was the lane's own (a timed-out holder's rollback entry too)
      this.ownApplied = this.applier.applied;
      this.pump();
    });
    this.sweep = setInterval(() => this.expireWaiters(), 100);
    this.sweep.unref();
  }

  submit(req: PgLaneRequest): Promise<PgLaneResult> {
    if (this.closed) return Promise.reject(PgRecallErrors.notApplied('the write lane is closed'));
    const epoch = this.epoch;
    const s = req.session;
    if (req.txn === undefined) {
      // No transaction named: the request starts one, or is autocommit. Whatever the lane still
      // holds or remembers for the session belongs to an earlier transaction whose first answer
      // was lost on the way (its client was told it failed): end it, or this would continue it.
      const sp = this.specs.get(s);
      const h = this.holder?.session === s ? this.holder : undefined;
      if (sp?.busy || h?.busy) return Promise.reject(PgRecallErrors.txnAborted('an earlier transaction of this session is still running on the leader'));
      if (sp || h || this.expired.has(s)) this.endSession(s);
      // A COMMIT after it is refused: it may come from a session that cannot name its transaction
      // (a follower of an older version), and COMMIT complete would acknowledge rows just rolled back.
      if ((sp || h) && req.stmts.some((x) => x.kind === 'commit')) return Promise.reject(PgRecallErrors.txnAborted('the write lane held a transaction of this session that its statements did not name; it was rolled back'));
    } else if (req.mode === 'txn' && req.txn !== epoch && !this.expired.has(s)) {
      // opened under another epoch (another leader, or this one before it lost leadership): gone
      // with it. (One this lane ended itself is answered from `expired`.)
      if (req.stmts.length === 1 && req.stmts[0]!.kind === 'rollback') return Promise.resolve({ replies: [[encodeCommandComplete('ROLLBACK')]], index: 0, status: TX_IDLE });
      return Promise.reject(PgRecallErrors.txnAborted(LOST_TXN));
    }
    const sp = req.txn === undefined ? undefined : this.specs.get(s);
    const run = sp || this.canSpeculate(req) ? this.speculate(req, sp) : this.queued(req);
    return run.then((r) => (r.status === TX_IDLE ? r : { ...r, txn: epoch }));
  }

  private queued(req: PgLaneRequest): Promise<PgLaneResult> {
    return new Promise((resolve, reject) => {
      const rejected = (e: Error) => {
        this.dropReplay(req); // not served: nothing may replay it later
        reject(e);
      };
      this.queue.push({ req, resolve, reject: rejected, deadline: Date.now() + this.d.laneTimeoutMs, queuedAt: performance.now() });
      this.pump();
    });
  }

  endSession(session: string): void {
    for (let i = this.queue.length - 1; i >= 0; i--) {
      if (this.queue[i]!.req.session === session) this.queue.splice(i, 1)[0]!.reject(PgRecallErrors.txnAborted('the session ended'));
    }
    this.expired.delete(session);
    for (const [r, sp] of [...this.replays]) if (sp.session === session) this.dropReplay(r);
    const sp = this.specs.get(session);
    if (sp) {
      if (sp.busy) sp.expired = true;
      else this.endSpec(sp, false);
    }
    const h = this.holder;
    if (h && h.session === session) {
      if (h.busy) h.expired = true;
      else this.steps.run(() => this.rollbackHolder(h, null));
    }
  }

  abort(err: Error): void {
    this.epoch = laneEpoch(this.d.nodeId);
    this.seqless.clear();
    this.undeferrable.clear();
    for (const w of this.queue.splice(0)) w.reject(err);
    for (const r of [...this.replays.keys()]) this.dropReplay(r);
    for (const sp of [...this.specs.values()]) {
      this.endSpec(sp, false);
      this.expired.set(sp.session, PgRecallErrors.txnAborted(`leadership changed: ${err.message}`));
    }
    const h = this.holder;
    if (h) {
      // not the leader any more: nothing can be replicated; the transaction is simply gone
      this.holder = null;
      clearTimeout(h.timer);
      this.expired.set(h.session, PgRecallErrors.txnAborted(`leadership changed: ${err.message}`));
      h.conn.close();
    }
  }

  holderSession(): string | null {
    return this.holder?.session ?? null;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweep);
    this.abort(PgRecallErrors.notApplied('the write lane closed'));
    while (this.steps.busy) await new Promise((r) => setTimeout(r, 5));
    for (const cs of [...this.idle.values(), ...this.specIdle.values()]) for (const c of cs) c.close();
    this.idle.clear();
    this.specIdle.clear();
  }

  // ---- scheduling ----

  private pump(): void {
    if (this.steps.busy || this.closed) return;
    const h = this.holder;
    const i = this.queue.findIndex((w) => !h || w.req.session === h.session);
    if (i < 0) return;
    const group = h ? null : this.commitGroup(i);
    if (group) {
      this.steps.run(() => this.serveGroup(group));
      return;
    }
    const w = this.queue.splice(i, 1)[0]!;
    if (!h) step.wait.observe(since(w.queuedAt));
    this.steps.run(() => this.serve(w));
  }

  /** A COMMIT of a speculative transaction whose replay can share a lane transaction with others (see serveGroup): its group key. */
  private groupKey(w: Waiter): string | null {
    const st = w.req.stmts[0];
    const sp = this.replays.get(w.req);
    if (w.req.stmts.length !== 1 || st?.kind !== 'commit' || /\bchain\b/i.test(st.sql) || !sp || sp.open || this.expired.has(w.req.session)) return null;
    if (!this.knownSimple(w.req.database)) return null;
    return `${this.connKey(w.req)}\u0000${JSON.stringify(w.req.settings)}`;
  }

  /** The waiters, from queue position i, whose COMMITs run as one group (two or more), taken out of the queue; null otherwise. */
  private commitGroup(i: number): Waiter[] | null {
    const key = this.groupKey(this.queue[i]!);
    if (key === null) return null;
    const at: number[] = [];
    for (let j = i; j < this.queue.length && at.length < GROUP_MAX; j++) if (this.groupKey(this.queue[j]!) === key) at.push(j);
    if (at.length < 2) return null;
    const group = at.map((j) => this.queue[j]!);
    for (let k = at.length - 1; k >= 0; k--) this.queue.splice(at[k]!, 1);
    return group;
  }

  /**
   * Group commit of optimistic transactions: the COMMITs waiting for the lane (same role, database
   * and settings, in a database without sequences or deferrable constraints) are replayed in one
   * lane transaction, each behind a savepoint of its own, all pipelined in one round trip, and
   * replicated as one entry that replicas apply as one transaction; one proposal, one log sync
   * and one COMMIT for all. A transaction whose results differ from what its client got is
   * rolled back to its savepoint (with those after it, which run again) and gets 40001.
   */
  private async serveGroup(ws: Waiter[]): Promise<void> {
    const t0 = performance.now();
    for (const w of ws) step.wait.observe(since(w.queuedAt));
    const specs = ws.map((w) => {
      const sp = this.replays.get(w.req)!;
      this.replays.delete(w.req);
      return sp;
    });
    const req = ws[0]!.req;
    let c: PgConn | null = null;
    try {
      await this.d.ready();
      if (this.applier.applied !== this.ownApplied) this.dropCaches();
      const conn = (c = await this.conn(req));
      const begun = this.begin(conn, req, 'BEGIN');
      begun.catch(() => undefined);
      const ok: number[] = [];
      const conflicted = new Set<number>();
      const items: PgItem[][] = ws.map(() => []);
      let pending = ws.map((_, k) => k);
      let first = true;
      while (pending.length) {
        const sent = pending.map((k) => {
          const sp = specs[k]!;
          const sv = conn.query(`SAVEPOINT recall_${k}`);
          const ex = this.runAgain(conn, ws[k]!.req, sp);
          for (const x of [sv, ...ex]) (x as Promise<unknown>).catch(() => undefined);
          return { k, sv, ex };
        });
        if (first) {
          await begun;
          first = false;
        }
        let bad = -1;
        for (const [n, s] of sent.entries()) {
          const sv = await s.sv;
          const ex = await Promise.all(s.ex);
          const sp = specs[s.k]!;
          if (replyError(sv) || !this.sameAsSpec(sp, ex)) {
            bad = n;
            break;
          }
          items[s.k] = ex.flatMap((x) => (x.item ? [x.item] : []));
          ok.push(s.k);
        }
        if (bad < 0) break;
        // undo it and everything after it (already sent), which runs again
        await Promise.all(sent.slice(bad + 1).flatMap((s) => [s.sv, ...s.ex]).map((x) => (x as Promise<unknown>).catch(() => undefined)));
        await conn.run(`ROLLBACK TO SAVEPOINT recall_${sent[bad]!.k}`);
        conflicted.add(sent[bad]!.k);
        laneConflicts.inc();
        pending = sent.slice(bad + 1).map((s) => s.k);
      }
      this.observeSpent();
      const all = ok.flatMap((k) => items[k]!);
      let index = 0;
      let done: Buffer[] = [encodeCommandComplete('COMMIT')];
      if (all.length === 0) {
        await conn.run('ROLLBACK'); // reads only: nothing to keep
        this.giveBack(req, conn);
      } else {
        const { data, seq } = await this.entry(req, all, false, EMPTY_SEQUENCES, 0);
        const p = await this.propose(conn, data, seq);
        done = clientMessages(await this.finish(conn, p, data, false, 'COMMIT'));
        index = p.index;
        this.noteSequences(req.database, 0, p.index, 0);
        this.giveBack(req, conn);
      }
      this.ownApplied = this.applier.applied;
      step.held.observe(since(t0));
      const conflict = conflictAnswer(PgRecallErrors.txnAborted('a concurrent transaction changed what it read; nothing of it was committed'));
      ws.forEach((w, k) => w.resolve(conflicted.has(k) ? conflict : { replies: [done], index, status: TX_IDLE }));
    } catch (e) {
      c?.close();
      let err: SqlError;
      if (e instanceof SqlError) err = e;
      else {
        const why = (e as Error).message;
        if (e instanceof PgConnError && !this.closed) this.d.databaseFailed(why);
        err = PgRecallErrors.txnAborted(`the leader's database connection failed: ${why}`);
      }
      for (const w of ws) w.reject(err);
    }
  }

  private expireWaiters(): void {
    rejectExpired(this.queue, Date.now(), () => PgRecallErrors.laneWait(this.d.laneTimeoutMs));
    if (!this.steps.busy || this.specs.size === 0) this.suspects.clear();
    else if (!this.watching) {
      this.watching = true;
      this.woundBlockers().finally(() => (this.watching = false));
    }
  }

  /**
   * Wound-wait: a lane connection waiting for a row lock that a speculative transaction holds
   * (taken after the lane's own transaction rolled its speculative copy back) would wait for that
   * transaction's client, idle perhaps, with every write of the cluster queued behind it. The
   * blocker is rolled back instead (its backend terminated) and its session gets 40001: it ran on
   * rows the lane's transaction changes first, so its COMMIT would most likely have failed anyway.
   * Checked on the lane's sweep (every 100 ms) while the lane is busy; a blocker is rolled back
   * when two checks in a row found it blocking.
   */
  private async woundBlockers(): Promise<void> {
    const byPid = new Map([...this.specs.values()].map((sp) => [sp.conn.processId, sp]));
    let rows: Array<Array<string | null>>;
    try {
      rows = replyRows(await this.applier.sideQuery(this.applier.bookkeepingDatabase,
        "SELECT pid, pg_catalog.array_to_string(pg_catalog.pg_blocking_pids(pid), ',') FROM pg_catalog.pg_stat_activity WHERE wait_event_type = 'Lock' AND application_name = 'recall-lane'"));
    } catch {
      return; // the next sweep tries again
    }
    const seen = new Set<string>();
    for (const [pid, blockers] of rows) {
      if (byPid.has(Number(pid))) continue; // a speculative transaction waiting: as without Recall
      for (const b of (blockers ?? '').split(',')) {
        const sp = byPid.get(Number(b));
        if (!sp || this.specs.get(sp.session) !== sp) continue;
        // only a blocker seen at the sweep before too: most finish within a client round trip
        const pair = `${pid}:${b}:${sp.session}`;
        seen.add(pair);
        if (!this.suspects.has(pair)) continue;
        this.d.log.debug('a speculative transaction held rows the write lane needs: rolled back', { session: sp.session, pid: b });
        laneConflicts.inc();
        this.endSpec(sp, false);
        this.expired.set(sp.session, PgRecallErrors.txnAborted('a transaction committed first needed rows this one had changed; nothing of it was committed'));
        await this.applier.sideQuery(this.applier.bookkeepingDatabase, `SELECT pg_catalog.pg_terminate_backend(${sp.conn.processId})`).catch(() => undefined);
      }
    }
    this.suspects = seen;
  }

  private async serve(w: Waiter): Promise<void> {
    const req = w.req;
    const gone = this.expired.get(req.session);
    if (gone && req.mode === 'txn') {
      this.expired.delete(req.session);
      return w.reject(gone);
    }
    try {
      await this.d.ready();
      if (this.applier.applied !== this.ownApplied) this.dropCaches();
      const r = req.mode === 'auto' ? await this.auto(req) : await this.txn(req);
      this.ownApplied = this.applier.applied;
      w.resolve(r);
    } catch (e) {
      if (e instanceof SqlError) return w.reject(e);
      const aborted = this.expired.get(req.session);
      if (aborted) {
        // abort() closed the connection under it: leadership was lost, the database is fine
        this.expired.delete(req.session);
        return w.reject(aborted);
      }
      // the connection to the local database failed under the statement: nothing was proposed
      // (proposal and commit failures are SqlErrors), but whether the leader can go on is doubtful
      const why = (e as Error).message;
      if (e instanceof PgConnError && !this.closed) this.d.databaseFailed(why);
      w.reject(req.mode === 'txn' ? PgRecallErrors.txnAborted(`the leader's database connection failed: ${why}`) : PgRecallErrors.notApplied(`the leader's database connection failed: ${why}`));
    }
  }

  // ---- connections ----

  private connKey(req: PgLaneRequest): string {
    return `${req.role}\u0000${req.database}`;
  }

  private async conn(req: PgLaneRequest): Promise<PgConn> {
    const pool = this.idle.get(this.connKey(req));
    while (pool && pool.length) {
      const c = pool.pop()!;
      if (!c.broken) return c;
    }
    await this.applier.ensureSchema(req.database);
    const params = new Map([
      ['user', req.role],
      ['database', req.database],
      ['application_name', 'recall-lane'],
      ['client_encoding', 'UTF8'],
    ]);
    try {
      return await PgConn.login(this.o.target, params, req.credential, this.o.connectTimeoutMs);
    } catch (e) {
      if (e instanceof PgConnError) throw PgRecallErrors.refused('28000', `Recall could not log in to the leader's database as ${req.role}: ${e.message}`);
      this.d.databaseFailed((e as Error).message);
      throw PgRecallErrors.notApplied(`the leader's database is unreachable (${(e as Error).message})`);
    }
  }

  private giveBackHolder(h: Holder): void {
    if (h.dirty) h.conn.close();
    else this.giveBack(h.req, h.conn);
  }

  private giveBack(req: PgLaneRequest, c: PgConn): void {
    if (c.broken || this.closed) return c.close();
    const key = this.connKey(req);
    const pool = this.idle.get(key) ?? [];
    if (pool.length >= (this.o.connsMax ?? 4)) return c.close();
    pool.push(c);
    this.idle.set(key, pool);
  }

  /** BEGIN and the session's settings; throws SqlError when they cannot be set. */
  private async begin(c: PgConn, req: PgLaneRequest, text: string, extra?: string): Promise<void> {
    const set = contextSql(null, req.settings, true);
    const rs = await Promise.all([c.query(text), ...(set ? [c.query(set)] : []), ...(extra ? [c.query(extra)] : [])]);
    for (const r of rs) {
      const e = replyError(r);
      if (e) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw PgRecallErrors.refused(e.code, e.message);
      }
    }
  }

  // ---- statements ----

  /** The statement with the leader's values in place of time/random/uuid calls, or the refusal. */
  private async rewrite(c: PgConn, req: PgLaneRequest, st: PgLaneStatement, txTs: string): Promise<Rewritten> {
    // a read, to the router, calls no function that may write
    if (st.kind === 'read') return { sql: st.sql, plain: true };
    if (st.kind === 'commit' || st.kind === 'rollback') return { sql: st.sql, plain: false };
    const shape = st.sql.includes("'") ? null : pgShape(st.sql);
    const verdictKey = shape ? `${req.database}\u0000${req.settings.search_path ?? ''}\u0000${shape.key}` : null;
    if (verdictKey && this.unchanged.has(verdictKey)) return { sql: st.sql, plain: true };
    const parsed = this.classified(st.sql);
    if (parsed.some((p) => p.kind === 'invalid')) return { sql: st.sql, plain: false }; // postgres gives its own syntax error
    const plain = parsed.every((p) => SHAPE_VERDICT_COMMANDS.has(p.command) && p.userFunctions.length === 0 && p.writingFunctions.length === 0);
    const tables = new Map<string, PgTableDefaults>();
    let tablesKnown = true;
    const bodyRefusal = (await this.bodyDefaults(c, req, st.sql, parsed)) ?? (await this.laterDefaults(c, st.sql, parsed));
    if (bodyRefusal) return { refusal: encodeErrorResponse({ severity: 'ERROR', code: '0A000', message: bodyRefusal }) };
    for (const p of parsed) {
      for (const t of p.tables) {
        // an unqualified name resolves through the session's search_path
        const key = tableKey(req, t);
        let def = this.defaults.get(key);
        if (!def) {
          const r = await c.query(PG_COLUMNS_SQL.replace('$1', literal(t)));
          const rows = replyError(r) ? [] : replyRows(r).map(([name, expr]) => ({ name: name!, default_expr: expr ?? null }) as PgColumnRow);
          if (rows.length === 0) {
            tablesKnown = false; // the statement itself will say what is wrong with the name
            continue;
          }
          def = volatileDefaults(rows);
          this.defaults.set(key, def);
        }
        tables.set(t, def);
      }
    }
    const ts = nowTs();
    const ctx = {
      transactionTimestamp: txTs,
      statementTimestamp: ts,
      clockTimestamp: ts,
      random: Math.random,
      uuid: randomUUID,
      tables,
      settings: new Map(Object.entries(req.settings)),
    };
    // one statement (the router splits texts): rewrite the cached parse instead of parsing again
    const rw = parsed.length === 1 ? rewritePgStatement(parsed[0]!, ctx) : rewritePgWrite(st.sql, ctx);
    if (!rw.ok) return { refusal: encodeErrorResponse({ severity: 'ERROR', code: rw.refusal.sqlstate, message: rw.refusal.message }) };
    if (verdictKey && !rw.changed && tablesKnown && parsed.length === 1 && plain) {
      if (this.unchanged.size >= UNCHANGED_MAX) this.unchanged.clear();
      this.unchanged.add(verdictKey);
    }
    // a role's password: one verifier, salted here, for every replica (role-password.ts)
    return { sql: parsed.some((p) => p.command.includes('ROLE') || p.command.includes('USER')) ? hashRolePasswords(rw.sql) : rw.sql, plain };
  }

  /**
   * A function or DO body that inserts into a table whose column defaults call now(), random() or
   * gen_random_uuid(): those defaults are evaluated inside the body, on every replica with its own
   * clock or random source (a trigger's audit row would differ everywhere). Refused at CREATE time;
   * the reason, or null. (A default set later on a table such a body writes: laterDefaults.)
   */
  private async bodyDefaults(c: PgConn, req: PgLaneRequest, sql: string, parsed: PgStatement[]): Promise<string | null> {
    if (!parsed.some((p) => p.command === 'CREATE FUNCTION' || p.command === 'DO')) return null;
    const r = parsePg(sql);
    if (!r.ok) return null;
    for (const stmt of r.statements) {
      const node = stmt.node as Record<string, { options?: unknown; args?: unknown }>;
      const f = node.CreateFunctionStmt ?? node.DoStmt;
      if (!f) continue;
      const { language, body } = routineBody(node.DoStmt ? f.args : f.options);
      const lang = language ?? (node.DoStmt ? 'plpgsql' : 'sql');
      if (body === undefined || (lang !== 'sql' && lang !== 'plpgsql')) continue;
      for (const t of bodyInsertTargets(body)) {
        const key = tableKey(req, t);
        let def = this.defaults.get(key);
        if (!def) {
          const q = await c.query(PG_COLUMNS_SQL.replace('$1', literal(t)));
          if (replyError(q)) continue; // a table created later: not checked
          const rows = replyRows(q).map(([name, expr]) => ({ name: name!, default_expr: expr ?? null }) as PgColumnRow);
          if (rows.length === 0) continue;
          def = volatileDefaults(rows);
          this.defaults.set(key, def);
        }
        if (def.volatile.size > 0) {
          const cols = [...def.volatile.keys()].join(', ');
          return `the body inserts into ${t}, whose column default of ${cols} calls a time, random or uuid function: inside a function that default is evaluated on every replica with its own clock or random source; give those columns values in the body's INSERT (from the row, e.g. NEW.created_at, or an argument), or drop the DEFAULT`;
        }
      }
    }
    return null;
  }

  /**
   * The other way round: ALTER TABLE … ALTER COLUMN … SET DEFAULT with a time, random or uuid
   * call on a table that an existing SQL or PL/pgSQL function inserts into (a trigger's audit row):
   * from then on that body's inserts would take the default on every replica with its own clock.
   * Refused, naming the function; the reason, or null.
   */
  private async laterDefaults(c: PgConn, sql: string, parsed: PgStatement[]): Promise<string | null> {
    if (!parsed.some((p) => p.command === 'ALTER TABLE') || bodyCalls(sql).length === 0) return null;
    const r = parsePg(sql);
    if (!r.ok) return null;
    for (const stmt of r.statements) {
      const alter = (stmt.node as Record<string, { relation?: { relname?: string }; cmds?: unknown[] }>).AlterTableStmt;
      const table = alter?.relation?.relname?.toLowerCase();
      if (!alter || !table) continue;
      const setsDefault = (alter.cmds ?? []).some((x) => {
        const cmd = (x as { AlterTableCmd?: { subtype?: string; def?: unknown } }).AlterTableCmd;
        // the call itself was found in the statement's text (bodyCalls above)
        return cmd?.subtype === 'AT_ColumnDefault' && cmd.def !== undefined;
      });
      if (!setsDefault) continue;
      const q = await c.query(
        "SELECT p.oid::pg_catalog.regprocedure::text, p.prosrc FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang " +
          `WHERE l.lanname IN ('sql', 'plpgsql') AND p.prosrc ILIKE ${literal(`%${table}%`)}`,
      );
      if (replyError(q)) continue;
      for (const [fn, src] of replyRows(q)) {
        const hit = bodyInsertTargets(src ?? '').some((t) => t.toLowerCase().split('.').pop() === table);
        if (hit) {
          return `the function ${fn} inserts into ${table}: a DEFAULT that calls a time, random or uuid function would be evaluated inside that body on every replica with its own clock or random source; give the column a value in the function's INSERT first (e.g. from NEW or an argument), or keep such a default off ${table}`;
        }
      }
    }
    return null;
  }

  /** classifyPg, cached by text (prepared statements come back with the same text). */
  private classified(sql: string): PgStatement[] {
    let p = this.parses.get(sql);
    if (!p) {
      if (this.parses.size >= PARSES_MAX) this.parses.clear();
      p = classifyPg(sql);
      this.parses.set(sql, p);
    }
    return p;
  }

  /** Run one statement; the item to record (null when nothing needs replaying) and the client's messages. */
  /** `pre`: the statement rewritten already (then its request leaves in this tick, with whatever was sent just before). */
  private async exec(c: PgConn, req: PgLaneRequest, st: PgLaneStatement, txTs: string, pre?: Rewritten, spent = this.spent): Promise<Exec> {
    const t0 = performance.now();
    const rw = pre ?? (await this.rewrite(c, req, st, txTs));
    spent.rewrite += since(t0);
    if ('refusal' in rw) return { plain: true, item: null, messages: [rw.refusal], status: null };
    const r = st.x
      ? await c.request(encodeExtended(rw.sql, st.x, st.x.resultFormats, st.x.describe))
      : await c.request([encodeQuery(rw.sql)], st.copy);
    const out = outcomeOf(r);
    if (out.e && nondeterministicError(out.e)) out.nd = 1;
    if (out.tag !== undefined && !DATA_TAG_RE.test(out.tag)) this.dropDefaults(req.database);
    // a read that failed aborted the transaction: replicas must fail it too
    const record = st.kind !== 'read' || out.e !== undefined;
    const item: PgItem | null = record
      ? { q: rw.sql, ...(st.copy ? { copy: deflateRawSync(st.copy, { level: 1 }).toString('base64') } : {}), ...(st.x ? { x: { types: st.x.types, formats: st.x.formats, values: st.x.values.map((v) => (v === null ? null : v.toString('base64'))) } } : {}), out }
      : null;
    spent.execute += since(t0);
    return { plain: rw.plain && out.tag !== undefined && ROW_TAG_RE.test(out.tag), item, messages: clientMessages(r), status: r.status };
  }

  /** The database has no sequence and nothing deferrable (see `seqless`). */
  private knownSimple(db: string): boolean {
    return this.knownSeqless(db) && this.undeferrable.get(db) === this.applier.applied;
  }

  /** The database has no sequence (see `seqless`). */
  private knownSeqless(db: string): boolean {
    return this.seqless.get(db) === this.applier.applied;
  }

  /** The sequences before a transaction (read on another connection: nothing may run on the lane's meanwhile). */
  private sequencesBefore(db: string): Promise<Sequences> {
    return this.knownSeqless(db) ? Promise.resolve(EMPTY_SEQUENCES) : this.applier.sequences(db);
  }

  /** How many sequences the database has, asked on the lane connection (null: the query failed, e.g. in a failed transaction). */
  private static seqCount(r: PgReply, column = 0): number | null {
    if (replyError(r)) return null;
    const n = Number(replyRows(r)[0]?.[column]);
    return Number.isInteger(n) ? n : null;
  }

  /** After the lane committed a transaction that saw `count` sequences (and `deferrable` deferrable constraints, when asked) at its end. */
  private noteSequences(db: string, count: number | null, index: number, deferrable: number | null = null): void {
    if (count === 0) this.seqless.set(db, index);
    else this.seqless.delete(db);
    if (deferrable === 0) this.undeferrable.set(db, index);
    else this.undeferrable.delete(db);
  }

  /** Something was applied that the lane did not run (another leader's DDL): every cached default may be stale. */
  private dropCaches(): void {
    this.generation++;
    this.seqFree.clear();
    this.defaults.clear();
    this.unchanged.clear();
  }

  private dropDefaults(db: string): void {
    this.generation++;
    this.seqFree.clear();
    this.seqless.delete(db);
    this.undeferrable.delete(db);
    this.unchanged.clear();
    for (const k of [...this.defaults.keys()]) if (k.startsWith(`${db}\u0000`)) this.defaults.delete(k);
  }

  /** The entry; `seqCount` 0: the database has no sequence now (as the lane connection saw it after the statements), none moved. */
  private async entry(req: PgLaneRequest, items: PgItem[], rollback: boolean, seqs: Sequences, seqCount: number | null = null): Promise<{ data: Buffer; seq: number }> {
    const t0 = performance.now();
    laneBatchStatements.observe(items.length);
    const seq = ++this.seq;
    const moved = seqCount === 0 ? undefined : seqBefore(seqs, await this.applier.sequences(req.database));
    const e: PgEntry = {
      t: 'w', o: { n: this.d.nodeId, s: seq }, db: req.database, role: req.role, set: req.settings, items,
      ...(moved ? { seq: moved } : {}),
      ...(rollback ? { rollback: 1 as const } : {}),
    };
    const data = encodePgEntry(e);
    step.prepare.observe(since(t0));
    return { data, seq };
  }

  /** Propose; on failure the transaction is rolled back and the error says whether it may still apply. */
  private async propose(c: PgConn, data: Buffer, seq: number): Promise<{ index: number; term: number; exp: PgExpectation }> {
    const exp = this.applier.expect(seq);
    const t0 = performance.now();
    try {
      const { index, term } = await this.d.propose(data);
      step.replicate.observe(since(t0));
      return { index, term, exp };
    } catch (e) {
      await c.query('ROLLBACK').catch(() => undefined);
      exp.failed();
      throw proposalFailure(e);
    }
  }

  /** After the entry committed: the applied index and COMMIT (`final`: the client's own statement). */
  private async finish(c: PgConn, p: { index: number; term: number; exp: PgExpectation }, data: Buffer, failed: boolean, final = 'COMMIT'): Promise<PgReply> {
    const update = appliedUpdate(p.index, p.term, pgEntryChecksum(data));
    const sqls = failed ? [final, 'BEGIN', NO_FSYNC, update, 'COMMIT'] : [update, final];
    const t0 = performance.now();
    try {
      const rs = await Promise.all(sqls.map((s) => c.query(s)));
      step.commit.observe(since(t0));
      const bad = rs.map(replyError).find((e, i) => e && !(failed && i === 0));
      if (bad) throw new PgConnError(`${bad.code} ${bad.message}`);
      p.exp.committed(p.index);
      return rs[failed ? 0 : sqls.length - 1]!;
    } catch (e) {
      // the entry is committed in the log: the applier applies it once the database is back
      p.exp.failed();
      c.close();
      this.d.databaseFailed((e as Error).message);
      throw PgRecallErrors.outcomeUnknown(`the leader's database failed at commit: ${(e as Error).message}`);
    }
  }

  // ---- autocommit ----

  private async auto(req: PgLaneRequest): Promise<PgLaneResult> {
    if (req.stmts.length === 1 && req.stmts[0]!.kind === 'alone') return this.alone(req, req.stmts[0]!);
    const t0 = performance.now();
    const c = await this.conn(req);
    try {
      // nothing has run yet: the sequences are read while the transaction opens; without sequences
      // to read, the first statement follows BEGIN in the same round trip (see txn)
      const txTs = nowTs();
      const st0 = req.stmts[0]!;
      const pipelined = this.knownSeqless(req.database) && (st0.kind === 'write' || st0.kind === 'read');
      // rewritten first (its default lookups are catalog reads), so BEGIN, settings and statement leave in one write
      const rw0 = pipelined ? await this.rewrite(c, req, st0, txTs) : undefined;
      const begun = this.begin(c, req, 'BEGIN');
      begun.catch(() => undefined);
      const first = pipelined ? this.exec(c, req, st0, txTs, rw0) : undefined;
      first?.catch(() => undefined);
      const [seqs] = await Promise.all([this.sequencesBefore(req.database), begun]);
      step.begin.observe(since(t0));
      const replies: Buffer[][] = [];
      const items: PgItem[] = [];
      let failed = false;
      let plain = true;
      for (const [k, st] of req.stmts.entries()) {
        const r = k === 0 && first ? await first : await this.exec(c, req, st, txTs);
        if (!r.plain) plain = false;
        replies.push(r.messages);
        if (r.item) items.push(r.item);
        if (r.status !== TX_IN_TRANSACTION || r.item?.out.e) {
          failed = true;
          break; // postgres skips the rest of a failed implicit transaction
        }
      }
      this.observeSpent();
      if (items.length === 0 || (failed && items.every((i) => refusedBeforeRunning(i.out)))) {
        await c.run('ROLLBACK');
        this.giveBack(req, c);
        return { replies, index: 0, status: TX_IDLE };
      }
      const simple = !failed && plain && this.knownSimple(req.database);
      let state: PgReply | null = null;
      if (!failed && !simple) {
        // deferred constraints are checked now, as in end(): the implicit COMMIT must not fail
        // after the majority has the entry (the leader would count its database failed)
        const [r, cr] = await Promise.all([c.query('SET CONSTRAINTS ALL IMMEDIATE'), c.query(STATE_SQL)]);
        const e = replyError(r);
        if (e) {
          items.push({ q: 'SET CONSTRAINTS ALL IMMEDIATE', out: { e: e.code } });
          failed = true;
          // postgres fails the implicit COMMIT in place of the last statement's CommandComplete
          const k = replies.length - 1;
          replies[k] = [...replies[k]!.filter((m) => m[0] !== MSG_COMMAND_COMPLETE), ...clientMessages(r)];
        } else state = cr;
      }
      const count = simple ? 0 : state ? PgLane.seqCount(state) : null;
      const deferrable = simple ? 0 : state ? PgLane.seqCount(state, 1) : null;
      const { data, seq } = await this.entry(req, items, failed, seqs, count);
      const p = await this.propose(c, data, seq);
      await this.finish(c, p, data, failed, failed ? 'ROLLBACK' : 'COMMIT');
      this.noteSequences(req.database, count, p.index, deferrable);
      this.giveBack(req, c);
      return { replies, index: p.index, status: TX_IDLE };
    } catch (e) {
      c.close();
      throw e;
    }
  }

  /** CREATE DATABASE, CREATE INDEX CONCURRENTLY...: replicated first, run after the commit, alone. */
  private async alone(req: PgLaneRequest, st: PgLaneStatement): Promise<PgLaneResult> {
    const c = await this.conn(req);
    const seq = ++this.seq;
    const data = encodePgEntry({ t: 'ntb', o: { n: this.d.nodeId, s: seq }, db: req.database, role: req.role, set: req.settings, item: { q: st.sql, out: {} } });
    const exp = this.applier.expect(seq);
    let p: { index: number; term: number };
    try {
      p = await this.d.propose(data);
    } catch (e) {
      exp.failed();
      this.giveBack(req, c);
      throw proposalFailure(e);
    }
    try {
      await this.applier.recordAlone(p.index, p.term, pgEntryChecksum(data));
      exp.committed(p.index);
    } catch (e) {
      exp.failed();
      c.close();
      throw PgRecallErrors.outcomeUnknown(`the leader's database failed: ${(e as Error).message}`);
    }
    const set = contextSql(null, req.settings, false);
    if (set) await c.query(set);
    const r = await c.request(st.x ? encodeExtended(st.sql, st.x, st.x.resultFormats, st.x.describe) : [encodeQuery(st.sql)]);
    // its outcome follows in an entry of its own, for the replicas to compare (entry.ts 'ntbo')
    const outcome = encodePgEntry({ t: 'ntbo', o: { n: this.d.nodeId, s: ++this.seq }, of: p.index, out: outcomeOf(r) });
    await this.d.propose(outcome).catch((e: unknown) => this.d.log.warn('the outcome of a statement run outside a transaction was not replicated', { index: p.index, error: (e as Error).message }));
    this.dropDefaults(req.database);
    this.seqless.clear(); // CREATE DATABASE … TEMPLATE: another database's sequences
    this.undeferrable.clear();
    this.giveBack(req, c);
    return { replies: [clientMessages(r)], index: p.index, status: TX_IDLE };
  }

  // ---- transactions ----

  private async txn(req: PgLaneRequest): Promise<PgLaneResult> {
    let h = this.holder;
    let first: Promise<Exec> | undefined;
    if (h && h.session !== req.session) throw new Error('lane invariant: a request of another session ran while the lane was held');
    const spec = h ? undefined : this.replays.get(req);
    if (spec) {
      this.replays.delete(req);
      let opened: Holder | PgLaneResult;
      if (spec.open && spec.applied0 === this.applier.applied && spec.generation === this.generation) opened = await this.adopt(req, spec);
      else {
        if (spec.open) {
          const r = await spec.conn.query('ROLLBACK').catch(() => null);
          if (r?.status === TX_IDLE) this.giveBack(spec.req, spec.conn);
          else spec.conn.close();
        }
        opened = await this.replay(req, spec);
      }
      if (!('conn' in opened)) return opened;
      this.holder = h = opened;
    }
    if (!h) {
      const t0 = performance.now();
      const c = await this.conn(req);
      const text = req.begin ?? 'BEGIN';
      const txTs = nowTs();
      let seqs: Sequences;
      try {
        // The first statement follows BEGIN and the settings in the same round trip. Only after a
        // BEGIN that cannot fail: after a failed one it would run, and commit, outside the lane's
        // transaction. Failed settings leave the transaction aborted, so the statement does nothing.
        // Nor while the sequences are being read on the side: they must be read before it runs.
        // Rewritten first (default lookups are catalog reads), so all three leave in one write.
        const st0 = req.stmts[0];
        const pipelined = st0 && (st0.kind === 'write' || st0.kind === 'read') && PLAIN_BEGIN_RE.test(text) && this.knownSeqless(req.database);
        const rw0 = pipelined ? await this.rewrite(c, req, st0, txTs) : undefined;
        const begun = this.begin(c, req, text);
        begun.catch(() => undefined); // awaited below; the statement may fail first
        if (pipelined) {
          first = this.exec(c, req, st0, txTs, rw0);
          first.catch(() => undefined);
        }
        [seqs] = await Promise.all([this.sequencesBefore(req.database), begun]);
        if (first) await first;
      } catch (e) {
        c.close();
        throw e;
      }
      step.begin.observe(since(t0));
      const holder: Holder = { heldAt: t0, plain: true, session: req.session, seqs, conn: c, req, items: [], txTs, status: TX_IN_TRANSACTION, busy: false, expired: false, dirty: false, timer: setTimeout(() => this.holderTimeout(holder), Math.max(0, this.d.laneTimeoutMs - (performance.now() - t0))) };
      holder.timer.unref();
      this.holder = h = holder;
    }
    h.busy = true;
    const replies: Buffer[][] = [];
    try {
      for (const [k, st] of req.stmts.entries()) {
        if (st.kind === 'commit' || st.kind === 'rollback') {
          const r = await this.end(h, st);
          replies.push(r.messages);
          return { replies, index: r.index, status: TX_IDLE };
        }
        if (st.kind === 'session' && !/^\s*(savepoint|release|rollback)\b/i.test(st.sql)) h.dirty = true;
        const r = k === 0 && first ? await first : await this.exec(h.conn, req, st, h.txTs);
        if (!r.plain) h.plain = false;
        replies.push(r.messages);
        if (r.item) h.items.push(r.item);
        if (r.status !== null) h.status = r.status;
        if (r.status === null || r.item?.out.e) break;
      }
    } catch (e) {
      if (this.holder === h) await this.rollbackHolder(h, null).catch(() => undefined);
      throw e;
    } finally {
      h.busy = false;
    }
    if (h.expired && this.holder === h) {
      await this.rollbackHolder(h, PgRecallErrors.laneHeld(this.d.laneTimeoutMs));
      throw PgRecallErrors.laneHeld(this.d.laneTimeoutMs);
    }
    return { replies, index: 0, status: h.status };
  }

  // ---- optimistic transactions (see Spec) ----

  private canSpeculate(req: PgLaneRequest): boolean {
    if (req.mode !== 'txn' || !(req.optimistic ?? this.o.optimistic) || this.specs.size >= SPECS_MAX) return false;
    if (this.holder?.session === req.session || this.expired.has(req.session) || [...this.replays.values()].some((x) => x.session === req.session)) return false;
    if (!PLAIN_BEGIN_RE.test(req.begin ?? 'BEGIN')) return false;
    const st = req.stmts[0];
    return st !== undefined && (st.kind === 'write' || st.kind === 'read') && !st.copy;
  }

  private async openSpec(req: PgLaneRequest): Promise<Spec> {
    await this.d.ready();
    // the caches may be a follower's (the lane's own checks run when it serves; see serve)
    if (!this.steps.busy && this.applier.applied !== this.ownApplied) {
      this.dropCaches();
      this.ownApplied = this.applier.applied;
    }
    const c = await this.specConn(req);
    // a plain BEGIN cannot fail; failed settings leave the transaction aborted, so the first
    // statement behind them does nothing (see txn)
    const begun = this.begin(c, req, req.begin ?? 'BEGIN', SPEC_LOCK_TIMEOUT_SQL);
    begun.catch(() => undefined);
    const spec: Spec = {
      session: req.session, req, conn: c, txTs: nowTs(), runs: [], failed: false, begun, status: TX_IN_TRANSACTION, generation: this.generation, applied0: this.applier.applied, open: false, plain: true,
      busy: false, expired: false, timer: setTimeout(() => this.specTimeout(spec), this.d.laneTimeoutMs),
    };
    spec.timer.unref();
    this.specs.set(req.session, spec);
    return spec;
  }

  private async speculate(req: PgLaneRequest, existing: Spec | undefined): Promise<PgLaneResult> {
    const sp = existing ?? (await this.openSpec(req));
    sp.busy = true;
    const replies: Buffer[][] = [];
    try {
      for (const [k, st] of req.stmts.entries()) {
        const chain = (st.kind === 'commit' || st.kind === 'rollback') && /\bchain\b/i.test(st.sql);
        // only reads ran: a COMMIT has nothing to replicate (its reads saw committed data, as
        // reads before a transaction's first write always do); a failed transaction or a ROLLBACK
        // leaves nothing either (no sequences here): it ends where it ran
        if (!chain && (st.kind === 'rollback' || (st.kind === 'commit' && (sp.failed || sp.runs.every((x) => x.st.kind === 'read'))))) {
          await this.begun(sp);
          const r = await sp.conn.query(st.sql);
          replies.push(clientMessages(r));
          this.endSpec(sp, r.status === TX_IDLE);
          return { replies, index: 0, status: TX_IDLE };
        }
        if (sp.failed) {
          // postgres answers 25P02 itself
          const r = await sp.conn.query(st.sql);
          replies.push(clientMessages(r));
          sp.status = r.status;
          break;
        }
        let rw: Rewritten | null = null;
        if ((st.kind === 'write' || st.kind === 'read') && !st.copy) {
          rw = await this.rewrite(sp.conn, sp.req, st, sp.txTs);
          if ('refusal' in rw) {
            replies.push([rw.refusal]);
            break;
          }
          if (!rw.plain) rw = null;
          else if (st.kind === 'write' && !this.knownSeqless(req.database) && !(await this.sequenceFree(sp.conn, sp.req, st.sql))) rw = null;
        }
        if (!rw) {
          // COMMIT, or a statement that cannot run optimistically: the lane replays and goes on
          const rest = await this.promote(sp, { ...req, stmts: req.stmts.slice(k) });
          return { replies: [...replies, ...rest.replies], index: rest.index, status: rest.status };
        }
        const x = await this.exec(sp.conn, req, st, sp.txTs, rw, { execute: 0, rewrite: 0 });
        await this.begun(sp);
        if (x.item?.out.e === '55P03' && !/\bnowait\b/i.test(st.sql)) {
          // it waited SPEC_LOCK_TIMEOUT_SQL for a row another transaction holds: the lane runs it
          // (after replaying the rest), waiting as long as it takes; the client saw nothing of this run
          sp.failed = true; // never adopted as it is: the lock timeout aborted it
          const rest = await this.promote(sp, { ...req, stmts: req.stmts.slice(k) });
          return { replies: [...replies, ...rest.replies], index: rest.index, status: rest.status };
        }
        replies.push(x.messages);
        if (x.status !== null) sp.status = x.status;
        if (x.status !== TX_IN_TRANSACTION || x.item?.out.e) {
          sp.failed = true;
          break;
        }
        if (!x.plain) sp.plain = false;
        sp.runs.push({ st: { ...st, sql: rw.sql }, digest: digestOf(x.messages), item: x.item });
      }
      await this.begun(sp); // a refusal may have come before anything was sent
    } catch (e) {
      this.endSpec(sp, false);
      if (e instanceof SqlError) throw e;
      const wounded = this.expired.get(sp.session);
      if (wounded) {
        this.expired.delete(sp.session);
        throw wounded;
      }
      throw PgRecallErrors.txnAborted(`the leader's database connection failed: ${(e as Error).message}`);
    } finally {
      sp.busy = false;
    }
    if (sp.expired && this.specs.get(sp.session) === sp) {
      this.endSpec(sp, false);
      throw PgRecallErrors.laneHeld(this.d.laneTimeoutMs);
    }
    return { replies, index: 0, status: sp.status };
  }

  /** Roll the speculative transaction back (its row locks would block the replay) and queue the rest for the lane, which replays it first. */
  private async promote(sp: Spec, req: PgLaneRequest): Promise<PgLaneResult> {
    await this.begun(sp);
    if (!sp.failed && !this.steps.busy && !this.holder && this.queue.length === 0) {
      // the lane is idle and serves it at once: it stays open, and commits as it is if nothing
      // else commits first (see applied0); its locks can hold up no lane transaction before it
      sp.open = true;
      this.specs.delete(sp.session);
      clearTimeout(sp.timer);
    } else {
      const r = await sp.conn.query('ROLLBACK');
      this.endSpec(sp, r.status === TX_IDLE);
    }
    this.replays.set(req, sp);
    return this.queued(req);
  }

  /**
   * Open the lane transaction by running a speculative transaction's statements again, pipelined
   * behind BEGIN; the holder when every result equals what the client got, otherwise the
   * transaction is rolled back: 40001 (as COMMIT's answer, the session out of its transaction).
   */
  private async replay(req: PgLaneRequest, sp: Spec): Promise<Holder | PgLaneResult> {
    const t0 = performance.now();
    const c = await this.conn(req);
    let seqs: Sequences;
    let execs: Exec[];
    try {
      const begun = this.begin(c, req, req.begin ?? 'BEGIN');
      begun.catch(() => undefined);
      // the sequences are read before the statements run (see txn)
      const early = this.knownSeqless(req.database) ? this.runAgain(c, req, sp) : undefined;
      early?.forEach((p) => p.catch(() => undefined));
      [seqs] = await Promise.all([this.sequencesBefore(req.database), begun]);
      execs = await Promise.all(early ?? this.runAgain(c, req, sp));
    } catch (e) {
      c.close();
      throw e;
    }
    if (!this.sameAsSpec(sp, execs)) {
      const stale = sp.generation !== this.generation;
      this.observeSpent();
      await c.query('ROLLBACK').catch(() => undefined);
      this.giveBack(req, c);
      laneConflicts.inc();
      const err = PgRecallErrors.txnAborted(stale
        ? 'a schema change committed while it ran; nothing of it was committed'
        : 'a concurrent transaction changed what it read; nothing of it was committed');
      if (req.stmts[0]?.kind !== 'commit') throw err;
      return conflictAnswer(err);
    }
    step.begin.observe(since(t0));
    return this.specHolder(req, sp, c, seqs, execs.flatMap((x) => (x.item ? [x.item] : [])), execs.every((x) => x.plain), t0);
  }

  /** Run a speculative transaction's statements again on `c` (pipelined: nothing awaited in between). */
  private runAgain(c: PgConn, req: PgLaneRequest, sp: Spec): Array<Promise<Exec>> {
    return sp.runs.map((r) => this.exec(c, req, r.st, sp.txTs, { sql: r.st.sql, plain: true }));
  }

  /** The second run gave the client's results, under the rewrite caches the first one used. */
  private sameAsSpec(sp: Spec, execs: Exec[]): boolean {
    return sp.generation === this.generation && execs.every((x, k) => x.status === TX_IN_TRANSACTION && digestOf(x.messages) === sp.runs[k]!.digest);
  }

  /** The lane's holder for a speculative transaction taken over on `conn` (replayed there, or adopted as it is). */
  private specHolder(req: PgLaneRequest, sp: Spec, conn: PgConn, seqs: Sequences, items: PgItem[], plain: boolean, heldAt: number): Holder {
    const holder: Holder = {
      heldAt, plain, session: req.session, seqs, conn, req: { ...sp.req, settings: req.settings }, txTs: sp.txTs,
      items, status: TX_IN_TRANSACTION, busy: false, expired: false, dirty: false,
      timer: setTimeout(() => this.holderTimeout(holder), this.d.laneTimeoutMs),
    };
    holder.timer.unref();
    return holder;
  }

  /** Forget a session's replay; one handed over open (see promote) gives its connection up. */
  private dropReplay(req: PgLaneRequest): void {
    const sp = this.replays.get(req);
    if (!sp) return;
    this.replays.delete(req);
    if (sp.open) sp.conn.close();
  }

  /** The speculative transaction's BEGIN succeeded (SqlError otherwise). */
  private async begun(sp: Spec): Promise<void> {
    const b = sp.begun;
    sp.begun = null;
    if (b) await b;
  }

  /** The lane takes the speculative transaction over as it is (nothing committed since it began): the holder. */
  private async adopt(req: PgLaneRequest, sp: Spec): Promise<Holder> {
    // the lane waits for locks as long as it takes (SPEC_LOCK_TIMEOUT_SQL was the speculative run's);
    // pipelined ahead of whatever the holder runs next
    sp.conn.query('SET LOCAL lock_timeout = DEFAULT').catch(() => undefined);
    // the speculative statements moved no sequence (sequenceFree): their values now are the
    // entry's before-values for whatever the holder runs next
    let seqs: Sequences;
    try {
      seqs = await this.sequencesBefore(req.database);
    } catch (e) {
      sp.conn.close();
      throw e;
    }
    return this.specHolder(req, sp, sp.conn, seqs, sp.runs.flatMap((r) => (r.item ? [r.item] : [])), sp.plain, performance.now());
  }

  /**
   * A write in a database with sequences runs speculatively only when it cannot move one: none of
   * its tables is anything but a plain table, or has triggers, rules, identity columns, or a
   * column default that calls a function other than the time, random and uuid ones the rewrite
   * writes out (nextval, or a user function that might call it). Otherwise the transaction moves
   * onto the lane at this statement (a rollback cannot give a sequence's numbers back).
   */
  private async sequenceFree(c: PgConn, req: PgLaneRequest, sql: string): Promise<boolean> {
    for (const p of this.classified(sql)) {
      for (const t of p.tables) {
        const key = tableKey(req, t);
        let free = this.seqFree.get(key);
        if (free === undefined) {
          const r = await c.query(SEQUENCE_FREE_SQL.replace('$1', literal(t)));
          free = !replyError(r) && replyRows(r)[0]?.[0] === 't';
          if (this.seqFree.size >= UNCHANGED_MAX) this.seqFree.clear();
          this.seqFree.set(key, free);
        }
        if (!free) return false;
      }
    }
    return true;
  }

  private async specConn(req: PgLaneRequest): Promise<PgConn> {
    const pool = this.specIdle.get(this.connKey(req));
    while (pool && pool.length) {
      const c = pool.pop()!;
      if (!c.broken) return c;
    }
    return this.conn(req);
  }

  private endSpec(sp: Spec, reuse: boolean): void {
    if (this.specs.get(sp.session) !== sp) return;
    this.specs.delete(sp.session);
    clearTimeout(sp.timer);
    const key = this.connKey(sp.req);
    const pool = this.specIdle.get(key) ?? [];
    if (!reuse || sp.conn.broken || this.closed || pool.length >= SPEC_IDLE_MAX) return sp.conn.close();
    pool.push(sp.conn);
    this.specIdle.set(key, pool);
  }

  private specTimeout(sp: Spec): void {
    if (this.specs.get(sp.session) !== sp) return;
    if (sp.busy) {
      sp.expired = true;
      return;
    }
    this.d.log.warn('a transaction ran longer than the lane timeout: rolled back', { session: sp.session, laneTimeoutMs: this.d.laneTimeoutMs });
    this.endSpec(sp, false);
    this.expired.set(sp.session, PgRecallErrors.laneHeld(this.d.laneTimeoutMs));
  }

  /** COMMIT or ROLLBACK of the lane transaction. */
  private async end(h: Holder, st: PgLaneStatement): Promise<{ messages: Buffer[]; index: number }> {
    this.unhold(h);
    const c = h.conn;
    let count: number | null = null;
    let deferrable: number | null = null;
    if (st.kind === 'commit' && h.status === TX_IN_TRANSACTION && h.items.length && h.plain && this.knownSimple(h.req.database)) {
      // no sequence, nothing deferrable, and this transaction only changed rows: nothing to check or read
      count = deferrable = 0;
    } else if (st.kind === 'commit' && h.status === TX_IN_TRANSACTION && h.items.length) {
      // deferred constraints are checked now, so the entry never holds a transaction whose COMMIT fails
      const t0 = performance.now();
      // pipelined: after the deferred constraints ran (their triggers may take sequence numbers)
      const [r, cr] = await Promise.all([c.query('SET CONSTRAINTS ALL IMMEDIATE'), c.query(STATE_SQL)]);
      count = PgLane.seqCount(cr);
      deferrable = PgLane.seqCount(cr, 1);
      step.constraints.observe(since(t0));
      const e = replyError(r);
      if (e) {
        h.items.push({ q: 'SET CONSTRAINTS ALL IMMEDIATE', out: { e: e.code } });
        h.status = TX_FAILED;
        // postgres would have failed the COMMIT itself with this error
        await c.query('ROLLBACK');
        const { data, seq } = await this.entry(h.req, h.items, true, h.seqs);
        const p = await this.propose(c, data, seq).catch((err: Error) => err);
        if (!(p instanceof Error)) await this.finish(c, p, data, true, 'SELECT 1');
        this.giveBackHolder(h);
        return { messages: clientMessages(r), index: p instanceof Error ? 0 : p.index };
      }
    }
    const failed = st.kind === 'rollback' || h.status !== TX_IN_TRANSACTION;
    if (h.items.length === 0 || h.items.every((i) => refusedBeforeRunning(i.out))) {
      const r = await c.query(st.sql);
      this.giveBackHolder(h);
      return { messages: clientMessages(r), index: 0 };
    }
    const { data, seq } = await this.entry(h.req, h.items, failed, h.seqs, failed ? null : count);
    let p;
    try {
      p = await this.propose(c, data, seq);
    } catch (e) {
      c.close();
      if (st.kind === 'rollback') return { messages: clientMessages(await this.fakeRollback()), index: 0 };
      throw e;
    }
    const r = await this.finish(c, p, data, failed, st.sql);
    this.noteSequences(h.req.database, failed ? null : count, p.index, failed ? null : deferrable);
    this.giveBackHolder(h);
    return { messages: clientMessages(r), index: p.index };
  }

  /** The reply a ROLLBACK gets when the lane's own rollback already happened. */
  private async fakeRollback(): Promise<PgReply> {
    return { messages: [encodeCommandComplete('ROLLBACK')], status: TX_IDLE };
  }

  private observeSpent(): void {
    step.execute.observe(this.spent.execute);
    step.rewrite.observe(this.spent.rewrite);
    this.spent.execute = this.spent.rewrite = 0;
  }

  private unhold(h: Holder): void {
    if (this.holder === h) {
      step.held.observe(since(h.heldAt));
      this.observeSpent();
    }
    clearTimeout(h.timer);
    if (this.holder === h) this.holder = null;
  }

  private holderTimeout(h: Holder): void {
    if (this.holder !== h) return;
    if (h.busy) {
      h.expired = true;
      return;
    }
    this.d.log.warn('a transaction held the write lane too long: rolled back', { session: h.session, laneTimeoutMs: this.d.laneTimeoutMs });
    this.steps.run(() => this.rollbackHolder(h, PgRecallErrors.laneHeld(this.d.laneTimeoutMs)));
  }

  /** Roll the holder back; writes it ran are replicated as a rolled-back entry (sequences moved). */
  private async rollbackHolder(h: Holder, reason: SqlError | null): Promise<void> {
    if (this.holder !== h) return;
    this.unhold(h);
    if (reason) this.expired.set(h.session, reason);
    const c = h.conn;
    if (h.items.length === 0 || h.items.every((i) => refusedBeforeRunning(i.out))) {
      await c.query('ROLLBACK').catch(() => undefined);
      return this.giveBackHolder(h);
    }
    const { data, seq } = await this.entry(h.req, h.items, true, h.seqs);
    try {
      const p = await this.propose(c, data, seq);
      await this.finish(c, p, data, true, 'ROLLBACK');
      this.giveBackHolder(h);
    } catch {
      c.close();
    }
  }
}
