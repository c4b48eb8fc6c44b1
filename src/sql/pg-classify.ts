// Sort each statement of a (multi-statement) PostgreSQL text into read, write, DDL, transaction
// control, session state, maintenance or other, from postgres' own parse tree (libpg-query).
// See DESIGN.md "PostgreSQL".
import type { Node } from 'libpg-query';
import { parsePg, type PgRawStatement, type PgSyntaxError, type TextOffsets } from './pg-parse.js';
import { type Fields, defOption, defOptionText, funcName, nodeType, rangeVarName, some, unwrap, walk } from './pg-tree.js';
import { PG_STABLE_FUNCTIONS, PG_VOLATILE_FUNCTIONS } from './pg-builtins.js';
import { READ_SAFE_VOLATILE, SESSION_FUNCTIONS } from './pg-volatile.js';
import { classifyDdl } from './pg-ddl.js';

export type PgKind =
  | 'read' // runs on the local database
  | 'write' // through the leader's write lane, replicated
  | 'ddl' // through the write lane; transactional in postgres unless noTransactionBlock
  | 'transaction' // BEGIN, COMMIT, SAVEPOINT, SET TRANSACTION, ...
  | 'session' // state of this client session only: SET, SHOW, PREPARE, cursors, LISTEN, ...
  | 'execute' // EXECUTE of a prepared statement: its kind is that of the prepared one (look it up by name)
  | 'maintenance' // VACUUM, ANALYZE, CLUSTER, REINDEX, CHECKPOINT: no logical change to the data
  | 'other' // ALTER SYSTEM, LOAD: one server's configuration or process
  | 'invalid'; // the parser rejects the text: postgres would too

export interface PgRefusal {
  sqlstate: string;
  message: string;
}

export interface PgTransactionDetail {
  action: 'begin' | 'commit' | 'rollback' | 'savepoint' | 'release' | 'rollback-to' | 'prepare' | 'commit-prepared' | 'rollback-prepared' | 'set';
  isolation?: string;
  readOnly?: boolean;
  deferrable?: boolean;
  chain?: boolean;
  savepoint?: string;
  gid?: string;
}

export interface PgSetting {
  /** lower-case setting name (`timezone`, `search_path`, `recall.consistency`); null for RESET ALL */
  name: string | null;
  action: 'set' | 'reset' | 'default';
  /** SET LOCAL: until the end of the transaction */
  local: boolean;
  /** the values as text (a list for search_path); undefined for RESET / DEFAULT */
  values?: string[];
}

export interface PgStatement {
  kind: PgKind;
  /** what postgres would call it: SELECT, INSERT, CREATE TABLE, BEGIN, SET, ... */
  command: string;
  /** text.slice(start, end): the statement without surrounding comments or ';' */
  start: number;
  end: number;
  /** the statement with the comments before it and its ';' (chunks tile the whole text) */
  chunkStart: number;
  chunkEnd: number;
  text: string;
  /** postgres refuses to run it inside a transaction block (BEGIN ... COMMIT, or any implicit one) */
  noTransactionBlock: boolean;
  /** tables a write changes (also through data-modifying CTEs), schema-qualified when written so */
  tables: string[];
  /** SELECT ... FOR UPDATE/SHARE: a write because it locks rows on the leader */
  lockingRead?: boolean;
  /** CREATE TEMP TABLE, SELECT INTO TEMP: only this session sees it */
  temporary?: boolean;
  transaction?: PgTransactionDetail;
  settings?: PgSetting[];
  prepared?: { action: 'prepare' | 'execute' | 'deallocate'; name: string | null; bodyKind?: PgKind };
  cursor?: { action: 'declare' | 'fetch' | 'move' | 'close'; name: string | null; hold?: boolean };
  copy?: { direction: 'from' | 'to'; stdio: boolean };
  /** LISTEN / UNLISTEN / NOTIFY: served by the local node only */
  notification?: { action: 'listen' | 'unlisten' | 'notify'; channel: string | null };
  /** functions whose value lives in this client's server session (currval, lastval, set_config, ...):
   * route the statement to the backend session that ran the earlier ones */
  sessionFunctions: string[];
  /** functions that are not built in (`schema.name` when qualified) */
  userFunctions: string[];
  /** functions that may change the database: user functions not listed as read-only, and volatile
   * built-ins such as nextval, setval, pg_advisory_lock, lo_import; a SELECT calling one is a write */
  writingFunctions: string[];
  /** Recall refuses it (SQLSTATE and a message that names the way round) */
  refuse?: PgRefusal;
  /** the parser's error for kind 'invalid' */
  error?: PgSyntaxError;
  note?: string;
  /** the parse tree, for rewritePgWrite */
  node?: Node;
  offsets?: TextOffsets;
}

export interface PgClassifyOptions {
  /** functions (lower-case `name` or `schema.name`) known not to write: calling them keeps a read a read */
  readOnlyFunctions?: ReadonlySet<string>;
}

export function classifyPg(sql: string, opts: PgClassifyOptions = {}): PgStatement[] {
  const parsed = parsePg(sql);
  if (!parsed.ok) {
    return [{
      kind: 'invalid', command: '', start: 0, end: sql.length, chunkStart: 0, chunkEnd: sql.length, text: sql,
      noTransactionBlock: false, tables: [], sessionFunctions: [], userFunctions: [], writingFunctions: [], error: parsed.error,
    }];
  }
  return parsed.statements.map((raw) => classifyRaw(sql, raw, parsed.offsets, opts));
}

function classifyRaw(sql: string, raw: PgRawStatement, offsets: TextOffsets, opts: PgClassifyOptions): PgStatement {
  const st: PgStatement = {
    kind: 'ddl', command: '', start: raw.start, end: raw.end, chunkStart: raw.chunkStart, chunkEnd: raw.chunkEnd,
    text: sql.slice(raw.start, raw.end), noTransactionBlock: false, tables: [], sessionFunctions: [], userFunctions: [], writingFunctions: [],
    node: raw.node, offsets,
  };
  classifyNode(st, raw.node, opts);
  return st;
}

const refuse = (message: string): PgRefusal => ({ sqlstate: '0A000', message });

/** Sets kind, command and details of `st` from one statement node. */
function classifyNode(st: PgStatement, node: Node, opts: PgClassifyOptions): void {
  const type = nodeType(node);
  const f = (node as unknown as Record<string, Fields>)[type]!;
  scanFunctions(st, f, opts);
  switch (type) {
    case 'SelectStmt':
      return classifySelect(st, f);
    case 'InsertStmt':
    case 'UpdateStmt':
    case 'DeleteStmt':
    case 'MergeStmt':
      st.kind = 'write';
      st.command = type.slice(0, -4).toUpperCase();
      addWrittenTables(st, f, rangeVarName(f.relation as Fields));
      return;
    case 'CopyStmt':
      return classifyCopy(st, f, opts);
    case 'ExplainStmt': {
      st.command = 'EXPLAIN';
      // EXPLAIN only plans, unless ANALYZE, which runs the statement
      if (defOption(f.options, 'analyze')) {
        const inner = { ...st, tables: [], sessionFunctions: [], userFunctions: [], writingFunctions: [] };
        classifyNode(inner, f.query as Node, opts);
        st.kind = inner.kind === 'write' || inner.kind === 'ddl' ? 'write' : 'read';
        st.tables = inner.tables;
        st.refuse = inner.refuse;
      } else st.kind = 'read';
      return;
    }
    case 'TransactionStmt':
      return classifyTransaction(st, f);
    case 'VariableSetStmt':
      return classifySet(st, f);
    case 'VariableShowStmt':
      st.kind = 'session';
      st.command = 'SHOW';
      return;
    case 'DiscardStmt':
      st.kind = 'session';
      st.command = 'DISCARD';
      st.noTransactionBlock = f.target === 'DISCARD_ALL';
      return;
    case 'ListenStmt':
    case 'UnlistenStmt':
    case 'NotifyStmt': {
      const action = type === 'ListenStmt' ? 'listen' : type === 'UnlistenStmt' ? 'unlisten' : 'notify';
      st.kind = 'session';
      st.command = action.toUpperCase();
      st.notification = { action, channel: typeof f.conditionname === 'string' ? f.conditionname : null };
      return;
    }
    case 'PrepareStmt': {
      const inner = { ...st, tables: [], sessionFunctions: [], userFunctions: [], writingFunctions: [] };
      classifyNode(inner, f.query as Node, opts);
      st.kind = 'session';
      st.command = 'PREPARE';
      st.prepared = { action: 'prepare', name: String(f.name ?? ''), bodyKind: inner.kind };
      st.tables = inner.tables;
      if (inner.refuse) st.refuse = inner.refuse;
      return;
    }
    case 'ExecuteStmt':
      st.kind = 'execute';
      st.command = 'EXECUTE';
      st.prepared = { action: 'execute', name: String(f.name ?? '') };
      return;
    case 'DeallocateStmt':
      st.kind = 'session';
      st.command = 'DEALLOCATE';
      st.prepared = { action: 'deallocate', name: f.isall ? null : String(f.name ?? '') };
      return;
    case 'DeclareCursorStmt': {
      const inner = { ...st, tables: [], sessionFunctions: [], userFunctions: [], writingFunctions: [] };
      classifyNode(inner, f.query as Node, opts);
      // CURSOR_OPT_HOLD = 0x0020
      st.cursor = { action: 'declare', name: String(f.portalname ?? ''), hold: ((f.options as number) & 0x20) !== 0 };
      st.kind = inner.kind === 'write' ? 'write' : 'session';
      st.command = 'DECLARE CURSOR';
      st.tables = inner.tables;
      st.lockingRead = inner.lockingRead;
      return;
    }
    case 'FetchStmt':
      st.kind = 'session';
      st.command = f.ismove ? 'MOVE' : 'FETCH';
      st.cursor = { action: f.ismove ? 'move' : 'fetch', name: typeof f.portalname === 'string' ? f.portalname : null };
      return;
    case 'ClosePortalStmt':
      st.kind = 'session';
      st.command = 'CLOSE CURSOR';
      st.cursor = { action: 'close', name: typeof f.portalname === 'string' ? f.portalname : null };
      return;
    case 'CallStmt':
    case 'DoStmt':
      st.kind = 'write';
      st.command = type === 'CallStmt' ? 'CALL' : 'DO';
      return;
    case 'LockStmt':
      // A lock only matters where the transaction's writes run: on the leader, in the lane.
      st.kind = 'write';
      st.command = 'LOCK TABLE';
      st.note = 'takes table locks for the transaction: runs on the leader';
      return;
    case 'VacuumStmt':
      st.kind = 'maintenance';
      st.command = f.is_vacuumcmd ? 'VACUUM' : 'ANALYZE';
      st.noTransactionBlock = !!f.is_vacuumcmd;
      return;
    case 'ClusterStmt':
      st.kind = 'maintenance';
      st.command = 'CLUSTER';
      st.noTransactionBlock = !f.relation; // CLUSTER of every table runs a transaction per table
      return;
    case 'ReindexStmt':
      st.kind = 'maintenance';
      st.command = 'REINDEX';
      st.noTransactionBlock = !!defOption(f.params, 'concurrently')
        || f.kind === 'REINDEX_OBJECT_SCHEMA' || f.kind === 'REINDEX_OBJECT_DATABASE' || f.kind === 'REINDEX_OBJECT_SYSTEM';
      return;
    case 'CheckPointStmt':
      st.kind = 'maintenance';
      st.command = 'CHECKPOINT';
      return;
    case 'AlterSystemStmt':
      st.kind = 'other';
      st.command = 'ALTER SYSTEM';
      st.noTransactionBlock = true;
      st.refuse = refuse('ALTER SYSTEM changes the configuration file of one server; run it on each server directly (psql to its own port)');
      return;
    case 'LoadStmt':
      st.kind = 'other';
      st.command = 'LOAD';
      st.note = 'loads a library into this server session';
      return;
    default:
      return classifyDdl(st, type, f);
  }
}

function classifySelect(st: PgStatement, f: Fields): void {
  st.command = 'SELECT';
  st.kind = 'read';
  const into = f.intoClause as Fields | undefined;
  if (into) {
    st.kind = 'write';
    st.command = 'SELECT INTO';
    const rel = into.rel as Fields | undefined;
    const name = rangeVarName(rel);
    if (name) st.tables.push(name);
    if (rel?.relpersistence === 't') st.temporary = true;
  }
  if (some(f, (t, x) => t === 'SelectStmt' && Array.isArray(x.lockingClause)) || Array.isArray(f.lockingClause)) {
    st.kind = 'write';
    st.lockingRead = true;
  }
  addWrittenTables(st, f, undefined);
  if (st.tables.length > 0 && !into) st.kind = 'write';
  if (st.writingFunctions.length > 0) st.kind = 'write';
}

/** Tables written by the statement itself (`own`) and by data-modifying CTEs anywhere in it. */
function addWrittenTables(st: PgStatement, f: Fields, own: string | undefined): void {
  if (own) st.tables.push(own);
  walk(f.withClause, (t, x) => {
    if (t === 'InsertStmt' || t === 'UpdateStmt' || t === 'DeleteStmt' || t === 'MergeStmt') {
      const name = rangeVarName(x.relation as Fields);
      if (name && !st.tables.includes(name)) st.tables.push(name);
    }
  });
  // a data-modifying CTE may also sit in a nested WITH (in a subquery's WITH, PG rejects it, but
  // a top-level INSERT ... SELECT with WITH is common): the walk above covers withClause only
  if (f.selectStmt) addWrittenTables(st, unwrap(f.selectStmt)?.[1] ?? {}, undefined);
}

/**
 * Function calls anywhere in the statement: user functions (may write), volatile built-ins that
 * change state (nextval, advisory locks, ...), and those that depend on this session.
 */
function scanFunctions(st: PgStatement, f: Fields, opts: PgClassifyOptions): void {
  walk(f, (t, x) => {
    if (t !== 'FuncCall') return;
    const { schema, name } = funcName(x);
    const qualified = schema ? `${schema}.${name}` : name;
    const builtin = (!schema || schema === 'pg_catalog') && (PG_STABLE_FUNCTIONS.has(name) || PG_VOLATILE_FUNCTIONS.has(name));
    const add = (list: string[], n: string) => {
      if (!list.includes(n)) list.push(n);
    };
    if (SESSION_FUNCTIONS.has(name) && builtin) add(st.sessionFunctions, name);
    if (!builtin) {
      add(st.userFunctions, qualified);
      if (!opts.readOnlyFunctions?.has(qualified) && !(!schema && opts.readOnlyFunctions?.has(name))) add(st.writingFunctions, qualified);
    } else if (PG_VOLATILE_FUNCTIONS.has(name) && !READ_SAFE_VOLATILE.has(name)) {
      add(st.writingFunctions, name);
    }
  });
}

function classifyCopy(st: PgStatement, f: Fields, opts: PgClassifyOptions): void {
  st.command = 'COPY';
  const from = !!f.is_from;
  const stdio = !f.filename && !f.is_program;
  st.copy = { direction: from ? 'from' : 'to', stdio };
  if (from) {
    st.kind = 'write';
    const name = rangeVarName(f.relation as Fields);
    if (name) st.tables.push(name);
  } else if (f.query) {
    const inner = { ...st, tables: [], sessionFunctions: [], userFunctions: [], writingFunctions: [] };
    classifyNode(inner, f.query as Node, opts);
    st.kind = inner.kind === 'write' ? 'write' : 'read';
    st.tables = inner.tables;
  } else st.kind = 'read';
  if (!stdio) {
    st.refuse = refuse(from
      ? 'COPY FROM a server file or program reads it on one server only; use COPY ... FROM STDIN (psql: \\copy), which sends the data through Recall to every replica'
      : 'COPY TO a server file or program writes it on one server only; use COPY ... TO STDOUT (psql: \\copy)');
  }
}

const TRANSACTION_ACTIONS: Record<string, PgTransactionDetail['action']> = {
  TRANS_STMT_BEGIN: 'begin', TRANS_STMT_START: 'begin', TRANS_STMT_COMMIT: 'commit', TRANS_STMT_ROLLBACK: 'rollback',
  TRANS_STMT_SAVEPOINT: 'savepoint', TRANS_STMT_RELEASE: 'release', TRANS_STMT_ROLLBACK_TO: 'rollback-to',
  TRANS_STMT_PREPARE: 'prepare', TRANS_STMT_COMMIT_PREPARED: 'commit-prepared', TRANS_STMT_ROLLBACK_PREPARED: 'rollback-prepared',
};

const TRANSACTION_COMMANDS: Record<PgTransactionDetail['action'], string> = {
  begin: 'BEGIN', commit: 'COMMIT', rollback: 'ROLLBACK', savepoint: 'SAVEPOINT', release: 'RELEASE', 'rollback-to': 'ROLLBACK',
  prepare: 'PREPARE TRANSACTION', 'commit-prepared': 'COMMIT PREPARED', 'rollback-prepared': 'ROLLBACK PREPARED', set: 'SET',
};

function classifyTransaction(st: PgStatement, f: Fields): void {
  const action = TRANSACTION_ACTIONS[String(f.kind)];
  if (!action) throw new Error(`unknown TransactionStmt kind ${String(f.kind)}`);
  st.kind = 'transaction';
  st.command = f.kind === 'TRANS_STMT_START' ? 'START TRANSACTION' : TRANSACTION_COMMANDS[action];
  const d: PgTransactionDetail = { action, ...transactionModes(f.options) };
  if (f.chain) d.chain = true;
  if (typeof f.savepoint_name === 'string') d.savepoint = f.savepoint_name;
  if (typeof f.gid === 'string') d.gid = f.gid;
  st.transaction = d;
  if (action === 'prepare') {
    st.refuse = refuse('PREPARE TRANSACTION (two-phase commit) is not supported through Recall: a prepared transaction would live on one server only; commit or roll back instead');
  } else if (action === 'commit-prepared' || action === 'rollback-prepared') {
    st.noTransactionBlock = true;
    st.refuse = refuse(`${st.command} is not supported through Recall: a prepared transaction exists on one server only (Recall refuses PREPARE TRANSACTION); run it on that server directly`);
  }
}

function transactionModes(options: unknown): Pick<PgTransactionDetail, 'isolation' | 'readOnly' | 'deferrable'> {
  const out: Pick<PgTransactionDetail, 'isolation' | 'readOnly' | 'deferrable'> = {};
  const iso = defOptionText(options, 'transaction_isolation');
  if (iso !== undefined) out.isolation = iso;
  const ro = defOption(options, 'transaction_read_only');
  if (ro !== undefined) out.readOnly = ro;
  const def = defOption(options, 'transaction_deferrable');
  if (def !== undefined) out.deferrable = def;
  return out;
}

function classifySet(st: PgStatement, f: Fields): void {
  st.kind = 'session';
  const name = typeof f.name === 'string' ? f.name.toLowerCase() : null;
  if (f.kind === 'VAR_SET_MULTI' && name === 'transaction') {
    st.kind = 'transaction';
    st.command = 'SET TRANSACTION';
    st.transaction = { action: 'set', ...transactionModes(f.args) };
    return;
  }
  if (f.kind === 'VAR_SET_MULTI' && name === 'transaction snapshot') {
    st.kind = 'transaction';
    st.command = 'SET TRANSACTION';
    st.transaction = { action: 'set' };
    st.refuse = refuse('SET TRANSACTION SNAPSHOT imports a snapshot of one server; it cannot be replicated');
    return;
  }
  const local = !!f.is_local;
  switch (f.kind) {
    case 'VAR_RESET':
    case 'VAR_RESET_ALL':
      st.command = 'RESET';
      st.settings = [{ name: f.kind === 'VAR_RESET_ALL' ? null : name, action: 'reset', local }];
      return;
    case 'VAR_SET_DEFAULT':
      st.command = 'SET';
      st.settings = [{ name, action: 'default', local }];
      return;
    default: {
      st.command = 'SET';
      const values: string[] = [];
      if (Array.isArray(f.args)) {
        for (const a of f.args) {
          const u = unwrap(a);
          if (u?.[0] === 'A_Const') values.push(constTextOrEmpty(u[1]));
          else if (u?.[0] === 'TypeCast') values.push(constTextOrEmpty((unwrap(u[1].arg)?.[1] ?? {}) as Fields));
        }
      }
      st.settings = [{ name, action: 'set', local, values }];
    }
  }
}

function constTextOrEmpty(c: Fields): string {
  if (c.ival) return String((c.ival as Fields).ival ?? 0);
  if (c.fval) return String((c.fval as Fields).fval ?? '');
  if (c.sval) return String((c.sval as Fields).sval ?? '');
  if (c.boolval) return (c.boolval as Fields).boolval ? 'true' : 'false';
  return '';
}
