// Per-session routing (DESIGN.md "Data flow", "Reads"): which commands the raw relay passes to
// the local database as they are, and which the session takes over — writes, DDL, locking
// reads and everything inside a transaction that has written go to the leader's write lane;
// reads that must wait for this replica to catch up wait first. The decision is made from the
// statement text with the src/sql classifier, synchronously, before a byte is forwarded.
import { classifyMysql, type ClassifiedStatement } from '../../sql/mysql-classify.js';
import { checkDeterminism } from '../../sql/mysql-determinism.js';
import { COM_INIT_DB, COM_QUERY, COM_STMT_EXECUTE, COM_STMT_PREPARE } from '../../protocol/mysql/constants.js';
import type { SqlError } from '../../backend/mysql/client.js';
import type { LaneRequest, LaneResult } from '../../replication/lane.js';
import { RecallErrors } from '../../replication/errors.js';
import type { StatementKind } from './classify.js';

export interface WriteService {
  write(req: LaneRequest): Promise<LaneResult>;
  endSession(session: string): void;
  linearizableIndex(): Promise<number>;
  waitApplied(index: number): Promise<void>;
  readonly applied: number;
  readonly diverged: string | null;
}

export type Consistency = 'local' | 'session' | 'linearizable';

export type Action =
  | { do: 'local' }
  /** run on the local session, but answer as inside the client's transaction (which is open on the leader) */
  | { do: 'here-in-txn' }
  | { do: 'error'; error: SqlError }
  /** wait for the replica to apply what the session needs, then run locally */
  | { do: 'wait'; linearizable: boolean; syncLid: boolean }
  | { do: 'lane'; mode: 'write' | 'ddl' | 'txn-read' | 'commit' | 'rollback' | 'end-then-local'; stmt: ClassifiedStatement | null; stmts: ClassifiedStatement[] }
  /** several statements in one COM_QUERY: each is routed on its own, in order, as the server would run them */
  | { do: 'multi'; stmts: ClassifiedStatement[] }
  /** SHOW WARNINGS right after a statement that ran in the write lane: its warnings are replayed */
  | { do: 'warnings'; packets: Buffer[] };

export interface PreparedInfo {
  text: Buffer;
  params: number;
  stmts: ClassifiedStatement[];
  /** parameter types of the last execute that bound them (2 bytes each) */
  types: Buffer | null;
  longData: boolean;
}

const WRITE_KINDS: ReadonlySet<string> = new Set(['write', 'ddl', 'locking-read', 'unsafe']);

export class Router {
  /** a transaction holds the write lane on the leader */
  pinned = false;
  /** while pinned: the epoch of the lane that holds the transaction, sent with its statements */
  laneTxn: string | undefined = undefined;
  lastWriteIndex = 0;
  consistency: Consistency;
  lastInsertId = 0;
  /** the local session's LAST_INSERT_ID() is behind lastInsertId */
  lidStale = false;
  /** the cached session context must be read again from the local session */
  contextDirty = true;
  readonly prepared = new Map<number, PreparedInfo>();
  /** this session's temporary tables (lower-case names) */
  readonly tempTables = new Set<string>();
  /** SHOW WARNINGS result of the last statement run in the lane (raw packets), when it had warnings */
  laneWarnings: Buffer[] | null = null;
  /** the last decision, for the command the session is about to take over */
  last: { payload: Buffer; action: Action } | null = null;

  constructor(
    private readonly svc: WriteService,
    readonly defaultConsistency: Consistency = 'session',
  ) {
    this.consistency = defaultConsistency;
  }

  /** Decide for one complete command payload; returns the metrics kind and whether to take it over. */
  decide(cmd: number, payload: Buffer, localInTxn: boolean): { intercept: boolean; kind: StatementKind } {
    let action: Action;
    let kind: StatementKind = 'other';
    if (cmd === COM_QUERY) {
      const text = payload.toString('latin1', 1);
      const stmts = classifyMysql(text);
      kind = metricsKind(stmts);
      action = this.forStatements(stmts, localInTxn);
    } else if (cmd === COM_STMT_EXECUTE && payload.length >= 5) {
      const info = this.prepared.get(payload.readUInt32LE(1));
      if (!info) action = { do: 'local' }; // unknown id: the database answers with its own error
      else {
        kind = metricsKind(info.stmts);
        action = this.forStatements(info.stmts, localInTxn);
        if (action.do === 'lane' && info.longData) action = { do: 'error', error: RecallErrors.unsupported('COM_STMT_SEND_LONG_DATA for statements that write') };
      }
    } else if (cmd === COM_INIT_DB) {
      this.contextDirty = true;
      action = this.consistency === 'session' && this.lastWriteIndex > this.svc.applied ? { do: 'wait', linearizable: false, syncLid: false } : this.consistency === 'linearizable' ? { do: 'wait', linearizable: true, syncLid: false } : { do: 'local' };
    } else if (cmd === COM_STMT_PREPARE) {
      kind = metricsKind(classifyMysql(payload.toString('latin1', 1)));
      // the statement's tables must exist here as the session's consistency level promises
      if (this.consistency === 'linearizable') action = { do: 'wait', linearizable: true, syncLid: false };
      else if (this.consistency === 'session' && this.lastWriteIndex > this.svc.applied) action = { do: 'wait', linearizable: false, syncLid: false };
      else action = { do: 'local' };
    } else action = { do: 'local' };
    if (action.do === 'local') {
      this.last = null;
      return { intercept: false, kind };
    }
    this.last = { payload, action };
    return { intercept: true, kind };
  }

  private forStatements(stmts: ClassifiedStatement[], localInTxn: boolean): Action {
    if (stmts.length === 0) return { do: 'local' };
    const warnings = this.laneWarnings;
    this.laneWarnings = null;
    if (stmts.length === 1 && warnings && /^SHOW\s+WARNINGS\s*;?\s*$/i.test(stmts[0]!.text.trim())) return { do: 'warnings', packets: warnings };
    if (stmts.length > 1) {
      const plain = stmts.every((s) => s.kind === 'read' || s.kind === 'session' || s.kind === 'other');
      if (this.pinned || !plain || this.svc.diverged) return { do: 'multi', stmts };
    }
    return this.decideOne(stmts, localInTxn);
  }

  /** The route of one statement (or of a multi-statement text that only reads). */
  decideOne(stmts: ClassifiedStatement[], localInTxn: boolean): Action {
    for (const st of stmts) this.observe(st);
    const writes = stmts.filter((s) => WRITE_KINDS.has(s.kind));
    const st = stmts[0]!;
    if (this.svc.diverged && stmts.some((s) => s.kind !== 'session')) return { do: 'error', error: RecallErrors.diverged(this.svc.diverged) };
    for (const s of writes) {
      const refused = this.refusal(s);
      if (refused) return { do: 'error', error: refused };
    }
    if (this.pinned) {
      if (st.kind === 'transaction') {
        const a = st.transaction?.action;
        if (a === 'commit') return { do: 'lane', mode: 'commit', stmt: st, stmts };
        if (a === 'rollback') return { do: 'lane', mode: 'rollback', stmt: st, stmts };
        if (a === 'begin') return { do: 'lane', mode: 'end-then-local', stmt: st, stmts };
        if (a === 'autocommit' && st.transaction?.autocommit) return { do: 'lane', mode: 'end-then-local', stmt: st, stmts };
        if (a === 'xa') return { do: 'error', error: RecallErrors.unsupported('XA transactions') };
        return { do: 'lane', mode: 'txn-read', stmt: st, stmts }; // SAVEPOINT and friends run in the lane transaction
      }
      if ((st.kind === 'session' && !st.implicitCommit) || this.isTemporary(st)) return { do: 'here-in-txn' };
      if (st.kind === 'ddl') return { do: 'lane', mode: 'ddl', stmt: st, stmts };
      // LOCK TABLES, FLUSH and the like commit the transaction first, then run here
      if (st.implicitCommit) return { do: 'lane', mode: 'end-then-local', stmt: st, stmts };
      if (writes.length > 0) return { do: 'lane', mode: 'write', stmt: st, stmts };
      return { do: 'lane', mode: 'txn-read', stmt: st, stmts };
    }
    if (st.kind === 'transaction' && st.transaction?.action === 'xa') return { do: 'error', error: RecallErrors.unsupported('XA transactions') };
    // temporary tables belong to this session on this replica: created, written and read here
    if (writes.length > 0 && writes.every((w) => this.isTemporary(w))) return { do: 'local' };
    if (writes.length > 0) {
      const ddl = writes.find((s) => s.kind === 'ddl' || (s.nonTransactional && !s.temporary));
      if (ddl) return { do: 'lane', mode: 'ddl', stmt: ddl, stmts };
      return { do: 'lane', mode: 'write', stmt: writes[0]!, stmts };
    }
    // reads, session statements, transaction control, other: here (USE and SET may name what the
    // session just created, so they wait like reads)
    const reads = stmts.some((s) => s.kind === 'read' || s.kind === 'other' || s.kind === 'session');
    const level = statementConsistency(st.text) ?? this.consistency;
    if (!reads || level === 'local') return this.lidAction(stmts);
    if (level === 'linearizable') return { do: 'wait', linearizable: true, syncLid: this.needsLid(stmts) };
    if (this.lastWriteIndex > this.svc.applied) return { do: 'wait', linearizable: false, syncLid: this.needsLid(stmts) };
    return this.lidAction(stmts);
  }

  private lidAction(stmts: ClassifiedStatement[]): Action {
    return this.needsLid(stmts) ? { do: 'wait', linearizable: false, syncLid: true } : { do: 'local' };
  }

  private needsLid(stmts: ClassifiedStatement[]): boolean {
    return this.lidStale && stmts.some((s) => s.sessionFunctions.includes('LAST_INSERT_ID'));
  }

  /** Session state the router follows: the consistency level, and when the context changes. */
  /** CREATE/DROP TEMPORARY TABLE, or a write whose target is one of this session's temporary tables. */
  isTemporary(st: ClassifiedStatement): boolean {
    if (st.temporary) return true;
    // DROP TABLE t drops the session's temporary t first, as MySQL does
    if (st.command === 'DROP TABLE' && st.target && this.tempTables.has(st.target.name.toLowerCase())) return true;
    return st.kind === 'write' && st.target !== undefined && st.target.type === 'TABLE' && this.tempTables.has(st.target.name.toLowerCase());
  }

  private readsTemporary(st: ClassifiedStatement): string | null {
    if (this.tempTables.size === 0) return null;
    for (const t of st.tokens) {
      const name = t.text.replace(/`/g, '').toLowerCase();
      if (this.tempTables.has(name)) return name;
    }
    return null;
  }

  private observe(st: ClassifiedStatement): void {
    if (st.target && (st.temporary || st.command === 'DROP TABLE')) {
      const name = st.target.name.toLowerCase();
      if (st.temporary && st.command.startsWith('CREATE')) this.tempTables.add(name);
      else if (st.command.startsWith('DROP') && this.tempTables.has(name)) {
        // decided before forgetting it: the statement itself still goes to the session
        queueMicrotask(() => this.tempTables.delete(name));
      }
    }
    if (st.kind === 'session' || st.kind === 'other' || st.database !== undefined || st.command === 'CALL') this.contextDirty = true;
    for (const v of st.variables ?? []) {
      if (v.scope === 'user' && v.name.toLowerCase() === 'recall_consistency') {
        const m = /^\s*['"]?\s*(local|session|linearizable)\s*['"]?\s*$/i.exec(v.value ?? '');
        if (m) this.consistency = m[1]!.toLowerCase() as Consistency;
      }
    }
  }

  /** Why a write cannot be replicated, if it cannot. */
  private refusal(st: ClassifiedStatement): SqlError | null {
    if (st.kind === 'unsafe') return RecallErrors.unsafe(st.note ?? `${st.command} cannot be replicated`);
    if (mentionsRecallSchema(st)) return RecallErrors.reserved();
    if (!this.isTemporary(st)) {
      const tmp = this.readsTemporary(st);
      if (tmp) {
        return RecallErrors.unsafe(
          `the write reads the temporary table ${tmp}, which exists only in this session on this replica; instead, copy what it needs into a regular table first, or send the values as literals`,
        );
      }
    }
    const report = checkDeterminism(st);
    // UUID() could be rewritten to a literal fixed by the leader; until then it is refused too
    const unsafe = report.unsafe;
    if (unsafe.length > 0) {
      return RecallErrors.unsafe(unsafe.map((f) => `${f.construct}: ${f.reason}; instead, ${f.workaround}`).join('; '));
    }
    return null;
  }
}

function mentionsRecallSchema(st: ClassifiedStatement): boolean {
  if (st.target?.schema?.toLowerCase() === 'recall') return true;
  if (st.target?.type === 'DATABASE' && st.target.name.toLowerCase() === 'recall') return true;
  // recall.x anywhere in the code tokens
  const ts = st.tokens;
  for (let i = 0; i + 1 < ts.length; i++) {
    if (ts[i]!.text.replace(/`/g, '').toLowerCase() === 'recall' && ts[i + 1]!.text === '.') return true;
  }
  return false;
}

// A leading comment picks the consistency of one statement, e.g.
//   /*recall_consistency=linearizable*/ SELECT ...
const STATEMENT_CONSISTENCY = /^\s*\/\*\s*recall[_.]consistency\s*[=:]\s*(local|session|linearizable)\s*\*\//i;

function statementConsistency(text: string): Consistency | null {
  const m = STATEMENT_CONSISTENCY.exec(text);
  return m ? (m[1]!.toLowerCase() as Consistency) : null;
}

function metricsKind(stmts: ClassifiedStatement[]): StatementKind {
  const k = stmts[0]?.kind ?? 'other';
  if (k === 'locking-read') return 'read';
  if (k === 'unsafe') return 'write';
  return k;
}
