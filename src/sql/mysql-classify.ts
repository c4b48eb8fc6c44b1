// Sort each statement of a (multi-statement) MySQL string into read, write,
// DDL, transaction control, session state, locking read, unsafe or other,
// from its leading keywords and a few keywords further in. See DESIGN.md.

import type { LexOptions, Token } from './mysql-lexer.js';
import { lexMysql, stringValue } from './mysql-lexer.js';
import { splitMysql } from './mysql-split.js';
import type { ObjectRef } from './mysql-tokens.js';
import { ddlObject, isOp, nameAt, readName, skipIfExists, skipParens, skipWords, w } from './mysql-tokens.js';
import { analyzeSet, type SetVariable } from './mysql-set.js';
import { scanReferences } from './mysql-refs.js';

export type { ObjectRef } from './mysql-tokens.js';
export type { SetVariable } from './mysql-set.js';

export type StatementKind = 'read' | 'write' | 'ddl' | 'transaction' | 'session' | 'locking-read' | 'unsafe' | 'other';

export interface TransactionDetail {
  action: 'begin' | 'commit' | 'rollback' | 'savepoint' | 'release-savepoint' | 'rollback-to-savepoint' | 'autocommit' | 'xa';
  readOnly?: boolean; // START TRANSACTION READ ONLY (false for READ WRITE)
  consistentSnapshot?: boolean;
  chain?: boolean; // COMMIT AND CHAIN
  release?: boolean; // COMMIT RELEASE
  savepoint?: string;
  /** SET autocommit = value: true / false, null when not a literal (e.g. @v) */
  autocommit?: boolean | null;
  /** XA verb: START, END, PREPARE, COMMIT, ROLLBACK, RECOVER */
  xa?: string;
}

export interface PreparedDetail {
  action: 'prepare' | 'execute' | 'deallocate' | 'execute-immediate';
  name?: string;
  /** statement text when given as a string literal */
  text?: string;
  /** user variable holding the text (PREPARE s FROM @sql) */
  fromVariable?: string;
}

export interface ClassifiedStatement {
  kind: StatementKind;
  /** leading keywords, normalised: SELECT, INSERT, CREATE TABLE, START TRANSACTION, SET, ... */
  command: string;
  start: number;
  end: number;
  text: string;
  /** code tokens (executable-comment contents included, comments excluded) */
  tokens: Token[];
  /** MySQL commits an open transaction before running it */
  implicitCommit: boolean;
  /** cannot run inside the write transaction: replicate first, execute after commit */
  nonTransactional: boolean;
  /** CREATE / DROP TEMPORARY TABLE: session-local */
  temporary: boolean;
  /** first written table, or the object a DDL statement creates/changes, or the routine CALLed */
  target?: ObjectRef;
  /** USE db */
  database?: string;
  transaction?: TransactionDetail;
  /** SET: variables with scope */
  variables?: SetVariable[];
  prepared?: PreparedDetail;
  /** EXECUTE of an SQL-level prepared statement: its kind is that of the prepared text */
  needsLookup?: boolean;
  /** LOAD DATA LOCAL INFILE: the client sends the file */
  localInfile?: boolean;
  /** user variables whose value the statement reads (lower-case) */
  userVariablesRead: string[];
  /** user variables it assigns (SET @x, SELECT ... INTO @x, @x := ...) */
  userVariablesAssigned: string[];
  /** functions whose result depends on this session's earlier statements or on server-local state:
   * LAST_INSERT_ID, FOUND_ROWS, ROW_COUNT, CONNECTION_ID, GET_LOCK, ... (upper-case) */
  sessionFunctions: string[];
  /** stored functions called (names not built in, or qualified db.f): a SELECT, DO or SET calling
   * one is classified as a write, since the function may write (unless listed in readOnlyFunctions) */
  routineCalls: string[];
  /** a client-side command (DELIMITER) that the server does not understand */
  clientCommand?: boolean;
  /** first lexical error (unterminated string/comment): the server will reject the statement */
  lexError?: string;
  /** why it is unsafe or other, when that needs saying */
  note?: string;
}

export interface ClassifyOptions extends LexOptions {
  /** stored functions (upper-case names, `db.f` or `f`) known not to write: calling them keeps a read a read */
  readOnlyFunctions?: ReadonlySet<string>;
}

// Words between a verb and its table.
const INSERT_MODIFIERS: ReadonlySet<string> = new Set(['LOW_PRIORITY', 'DELAYED', 'HIGH_PRIORITY', 'IGNORE', 'INTO']);
const UPDATE_MODIFIERS: ReadonlySet<string> = new Set(['LOW_PRIORITY', 'IGNORE']);
const DELETE_MODIFIERS: ReadonlySet<string> = new Set(['LOW_PRIORITY', 'QUICK', 'IGNORE', 'FROM']);
const ADMIN_MODIFIERS: ReadonlySet<string> = new Set(['NO_WRITE_TO_BINLOG', 'LOCAL', 'TABLE', 'TABLES']);
const LOAD_MODIFIERS: ReadonlySet<string> = new Set(['LOW_PRIORITY', 'CONCURRENT']);

export function classifyMysql(sql: string, opts: ClassifyOptions = {}): ClassifiedStatement[] {
  const tokens = lexMysql(sql, { ...opts, keepWhitespace: false });
  return splitMysql(tokens).map((raw) => {
    const st = blank(sql, raw.start, raw.end, raw.tokens);
    if (raw.lexError !== undefined) st.lexError = raw.lexError;
    classifyInto(sql, st, 0, opts);
    scanReferences(st, opts);
    return st;
  });
}

function blank(sql: string, start: number, end: number, tokens: Token[]): ClassifiedStatement {
  return {
    kind: 'other', command: '', start, end, text: sql.slice(start, end), tokens,
    implicitCommit: false, nonTransactional: false, temporary: false,
    userVariablesRead: [], userVariablesAssigned: [], sessionFunctions: [], routineCalls: [],
  };
}

function set(st: ClassifiedStatement, kind: StatementKind, command: string): void {
  st.kind = kind;
  st.command = command;
}

/** Classify the statement whose first keyword is at index i (i > 0 for EXPLAIN ANALYZE x, SET STATEMENT ... FOR x). */
function classifyInto(sql: string, st: ClassifiedStatement, i: number, opts: ClassifyOptions): void {
  const ts = st.tokens;
  const first = w(ts, i);
  switch (first) {
    case 'SELECT':
      return classifySelect(st, i, 'SELECT');
    case 'WITH':
      return classifyWith(sql, st, i, opts);
    case 'TABLE':
    case 'VALUES':
      return set(st, 'read', first);
    case 'SHOW':
    case 'DESCRIBE':
    case 'DESC':
    case 'HELP':
      return set(st, 'read', first);
    case 'CHECKSUM':
      return set(st, 'read', 'CHECKSUM TABLE');
    case 'CHECK':
      st.implicitCommit = true;
      return set(st, 'read', 'CHECK TABLE');
    case 'EXPLAIN':
      return classifyExplain(sql, st, i, opts);
    case 'ANALYZE': {
      // MariaDB's ANALYZE SELECT/UPDATE/... runs the statement; ANALYZE TABLE updates statistics.
      let k = i + 1;
      if (w(ts, k) === 'FORMAT' && isOp(ts, k + 1, '=')) k += 3;
      const next = w(ts, k);
      if (next === 'TABLE' || next === 'TABLES' || next === 'NO_WRITE_TO_BINLOG' || next === 'LOCAL') {
        return adminTable(sql, st, i, 'ANALYZE TABLE');
      }
      classifyInto(sql, st, k, opts);
      st.command = `ANALYZE ${st.command}`;
      return;
    }
    case 'OPTIMIZE':
    case 'REPAIR':
      return adminTable(sql, st, i, `${first} TABLE`);
    case 'INSERT':
    case 'REPLACE': {
      const k = skipWords(ts, i + 1, INSERT_MODIFIERS);
      st.target = readName(sql, ts, k, 'TABLE').ref;
      return set(st, 'write', first);
    }
    case 'UPDATE': {
      const k = skipWords(ts, i + 1, UPDATE_MODIFIERS);
      st.target = readName(sql, ts, k, 'TABLE').ref;
      return set(st, 'write', 'UPDATE');
    }
    case 'DELETE': {
      const k = skipWords(ts, i + 1, DELETE_MODIFIERS);
      st.target = readName(sql, ts, k, 'TABLE').ref;
      return set(st, 'write', 'DELETE');
    }
    case 'LOAD':
      return classifyLoad(sql, st, i);
    case 'CALL':
      st.target = readName(sql, ts, i + 1, 'PROCEDURE').ref;
      return set(st, 'write', 'CALL');
    case 'DO':
      return set(st, 'read', 'DO'); // refined by scanVariables (assignments, lock functions)
    case 'BEGIN':
      if (w(ts, i + 1) === 'NOT') return set(st, 'write', 'BEGIN NOT ATOMIC'); // compound block: may do anything
      st.transaction = { action: 'begin' };
      st.implicitCommit = true;
      return set(st, 'transaction', 'BEGIN');
    case 'START':
      if (w(ts, i + 1) === 'TRANSACTION') return startTransaction(st, i + 2);
      st.implicitCommit = true;
      return set(st, 'other', `START ${w(ts, i + 1)}`.trim()); // START SLAVE / REPLICA
    case 'COMMIT':
    case 'ROLLBACK':
      return endTransaction(sql, st, i);
    case 'SAVEPOINT':
      st.transaction = { action: 'savepoint', savepoint: nameAt(sql, ts, i + 1) };
      return set(st, 'transaction', 'SAVEPOINT');
    case 'RELEASE':
      st.transaction = { action: 'release-savepoint', savepoint: nameAt(sql, ts, i + 2) };
      return set(st, 'transaction', 'RELEASE SAVEPOINT');
    case 'XA':
      st.transaction = { action: 'xa', xa: w(ts, i + 1) === 'BEGIN' ? 'START' : w(ts, i + 1) };
      return set(st, 'transaction', `XA ${st.transaction.xa}`);
    case 'SET':
      return classifySet(sql, st, i, opts);
    case 'USE':
      st.database = nameAt(sql, ts, i + 1);
      return set(st, 'session', 'USE');
    case 'CREATE':
    case 'ALTER':
    case 'DROP':
      return classifyDdl(sql, st, i);
    case 'RENAME': {
      const type = w(ts, i + 1) === 'USER' ? 'USER' : 'TABLE';
      st.target = readName(sql, ts, i + 2, type).ref;
      return ddl(st, `RENAME ${type}`);
    }
    case 'TRUNCATE': {
      const k = w(ts, i + 1) === 'TABLE' ? i + 2 : i + 1;
      st.target = readName(sql, ts, k, 'TABLE').ref;
      return ddl(st, 'TRUNCATE TABLE');
    }
    case 'GRANT':
    case 'REVOKE':
      return ddl(st, first);
    case 'PREPARE': {
      const p: PreparedDetail = { action: 'prepare', name: nameAt(sql, ts, i + 1) };
      const src = ts[i + 3];
      if (src?.type === 'string') p.text = stringValue(sql, src, opts);
      else if (src?.type === 'uservar') p.fromVariable = src.text;
      st.prepared = p;
      return set(st, 'other', 'PREPARE');
    }
    case 'EXECUTE': {
      if (w(ts, i + 1) === 'IMMEDIATE') {
        const p: PreparedDetail = { action: 'execute-immediate' };
        const src = ts[i + 2];
        if (src?.type === 'string') p.text = stringValue(sql, src, opts);
        else if (src?.type === 'uservar') p.fromVariable = src.text;
        st.prepared = p;
      } else {
        st.prepared = { action: 'execute', name: nameAt(sql, ts, i + 1) };
      }
      st.needsLookup = true;
      st.note = 'the kind is that of the prepared statement text';
      return set(st, 'other', st.prepared.action === 'execute' ? 'EXECUTE' : 'EXECUTE IMMEDIATE');
    }
    case 'DEALLOCATE':
      st.prepared = { action: 'deallocate', name: nameAt(sql, ts, i + 2) };
      return set(st, 'other', 'DEALLOCATE PREPARE');
    case 'LOCK':
      st.implicitCommit = true;
      return set(st, 'other', w(ts, i + 1) === 'TABLE' || w(ts, i + 1) === 'TABLES' ? 'LOCK TABLES' : `LOCK ${w(ts, i + 1)}`.trim());
    case 'UNLOCK':
      st.implicitCommit = true;
      return set(st, 'other', w(ts, i + 1) === 'TABLE' || w(ts, i + 1) === 'TABLES' ? 'UNLOCK TABLES' : `UNLOCK ${w(ts, i + 1)}`.trim());
    case 'FLUSH':
    case 'RESET':
    case 'CACHE':
    case 'INSTALL':
    case 'UNINSTALL':
    case 'PURGE':
    case 'CHANGE':
    case 'STOP':
      st.implicitCommit = true;
      return set(st, 'other', first);
    case 'DELIMITER':
      st.clientCommand = true;
      st.note = 'DELIMITER is a command of the mysql/mariadb client, not server SQL';
      return set(st, 'other', 'DELIMITER');
    case 'IF':
    case 'CASE':
    case 'LOOP':
    case 'WHILE':
    case 'REPEAT':
    case 'FOR':
      return set(st, 'write', first); // MariaDB compound statement outside a routine: may do anything
    case '':
      if (isOp(ts, i, '(')) return classifyParenthesised(sql, st, i, opts);
      return set(st, 'other', '');
    default:
      if (isOp(ts, i + 1, ':') && (w(ts, i + 2) === 'BEGIN' || w(ts, i + 2) === 'LOOP' || w(ts, i + 2) === 'WHILE' || w(ts, i + 2) === 'REPEAT')) {
        return set(st, 'write', w(ts, i + 2)); // labelled compound statement
      }
      return set(st, 'other', first); // KILL, HANDLER, SHUTDOWN, BINLOG, SIGNAL, GET DIAGNOSTICS, ...
  }
}

function ddl(st: ClassifiedStatement, command: string): void {
  st.implicitCommit = true;
  st.nonTransactional = true;
  set(st, 'ddl', command);
}

function adminTable(sql: string, st: ClassifiedStatement, i: number, command: string): void {
  const ts = st.tokens;
  const k = skipWords(ts, i + 1, ADMIN_MODIFIERS);
  st.target = readName(sql, ts, k, 'TABLE').ref;
  ddl(st, command);
}

/** SELECT at i: read, or locking read, or session (INTO @var, @x := ...), or unsafe (INTO OUTFILE). */
function classifySelect(st: ClassifiedStatement, i: number, command: string): void {
  const ts = st.tokens;
  let depth = 0;
  let locking = false;
  let intoVars = false;
  for (let k = i; k < ts.length; k++) {
    const t = ts[k];
    if (t.type === 'op') {
      if (t.text === '(') depth++;
      else if (t.text === ')') depth--;
      continue;
    }
    if (t.type !== 'word') continue;
    const word = t.text;
    if (word === 'FOR' && (w(ts, k + 1) === 'UPDATE' || w(ts, k + 1) === 'SHARE')) locking = true;
    else if (word === 'LOCK' && w(ts, k + 1) === 'IN' && w(ts, k + 2) === 'SHARE') locking = true;
    else if (word === 'INTO' && depth === 0) {
      const next = w(ts, k + 1);
      if (next === 'OUTFILE' || next === 'DUMPFILE') {
        st.note = `SELECT ... INTO ${next} writes a file on the server that runs it, which is one replica`;
        return set(st, 'unsafe', `SELECT INTO ${next}`);
      }
      intoVars = true;
    }
  }
  if (locking) return set(st, 'locking-read', command);
  set(st, intoVars ? 'session' : 'read', command);
}

function classifyParenthesised(sql: string, st: ClassifiedStatement, i: number, opts: ClassifyOptions): void {
  let k = i;
  while (isOp(st.tokens, k, '(')) k++;
  const word = w(st.tokens, k);
  if (word === 'SELECT') return classifySelect(st, k, 'SELECT');
  if (word === 'WITH' || word === 'VALUES' || word === 'TABLE') return classifyInto(sql, st, k, opts);
  set(st, 'other', '');
}

/** WITH [RECURSIVE] cte [(cols)] AS (...) [, ...] then SELECT / UPDATE / DELETE / INSERT. */
function classifyWith(sql: string, st: ClassifiedStatement, i: number, opts: ClassifyOptions): void {
  const ts = st.tokens;
  let k = i + 1;
  if (w(ts, k) === 'RECURSIVE') k++;
  while (k < ts.length) {
    k++; // name
    if (isOp(ts, k, '(')) k = skipParens(ts, k);
    if (w(ts, k) === 'AS') k++;
    if (isOp(ts, k, '(')) k = skipParens(ts, k);
    if (!isOp(ts, k, ',')) break;
    k++;
  }
  const main = w(ts, k);
  if (main === 'SELECT' || main === '' || main === 'TABLE' || main === 'VALUES') {
    classifySelect(st, k, 'SELECT');
  } else {
    classifyInto(sql, st, k, opts);
  }
  st.command = `WITH ${st.command}`;
}

function classifyExplain(sql: string, st: ClassifiedStatement, i: number, opts: ClassifyOptions): void {
  const ts = st.tokens;
  let k = i + 1;
  if (w(ts, k) === 'ANALYZE') {
    // MySQL's EXPLAIN ANALYZE executes the statement.
    k++;
    if (w(ts, k) === 'FORMAT' && isOp(ts, k + 1, '=')) k += 3;
    classifyInto(sql, st, k, opts);
    st.command = `EXPLAIN ANALYZE ${st.command}`;
    return;
  }
  set(st, 'read', 'EXPLAIN'); // plain EXPLAIN of a write only plans it
}

function classifyLoad(sql: string, st: ClassifiedStatement, i: number): void {
  const ts = st.tokens;
  const what = w(ts, i + 1); // DATA, XML, INDEX
  if (what !== 'DATA' && what !== 'XML') {
    st.implicitCommit = true;
    return set(st, 'other', `LOAD ${what}`.trim()); // LOAD INDEX INTO CACHE
  }
  let k = skipWords(ts, i + 2, LOAD_MODIFIERS);
  const local = w(ts, k) === 'LOCAL';
  if (local) k++;
  for (; k < ts.length; k++) {
    if (w(ts, k) === 'INTO' && w(ts, k + 1) === 'TABLE') {
      st.target = readName(sql, ts, k + 2, 'TABLE').ref;
      break;
    }
  }
  if (local) {
    st.localInfile = true;
    return set(st, 'write', `LOAD ${what}`);
  }
  st.note = `LOAD ${what} INFILE reads a file on the server that runs it, which exists on one replica only`;
  set(st, 'unsafe', `LOAD ${what}`);
}

function startTransaction(st: ClassifiedStatement, k: number): void {
  const ts = st.tokens;
  const tx: TransactionDetail = { action: 'begin' };
  for (; k < ts.length; k++) {
    const word = w(ts, k);
    if (word === 'READ') tx.readOnly = w(ts, k + 1) === 'ONLY';
    else if (word === 'CONSISTENT') tx.consistentSnapshot = true;
  }
  st.transaction = tx;
  st.implicitCommit = true;
  set(st, 'transaction', 'START TRANSACTION');
}

function endTransaction(sql: string, st: ClassifiedStatement, i: number): void {
  const ts = st.tokens;
  const verb = w(ts, i);
  let k = i + 1;
  if (w(ts, k) === 'WORK') k++;
  if (verb === 'ROLLBACK' && w(ts, k) === 'TO') {
    k++;
    if (w(ts, k) === 'SAVEPOINT') k++;
    st.transaction = { action: 'rollback-to-savepoint', savepoint: nameAt(sql, ts, k) };
    return set(st, 'transaction', 'ROLLBACK TO SAVEPOINT');
  }
  const tx: TransactionDetail = { action: verb === 'COMMIT' ? 'commit' : 'rollback' };
  for (; k < ts.length; k++) {
    const word = w(ts, k);
    if (word === 'CHAIN') tx.chain = w(ts, k - 1) !== 'NO';
    else if (word === 'RELEASE') tx.release = w(ts, k - 1) !== 'NO';
  }
  st.transaction = tx;
  set(st, 'transaction', verb);
}

function classifySet(sql: string, st: ClassifiedStatement, i: number, opts: ClassifyOptions): void {
  const ts = st.tokens;
  const next = w(ts, i + 1);
  if (next === 'PASSWORD') return ddl(st, 'SET PASSWORD');
  if (next === 'DEFAULT' && w(ts, i + 2) === 'ROLE') return ddl(st, 'SET DEFAULT ROLE');
  if (next === 'ROLE') return set(st, 'session', 'SET ROLE');
  if (next === 'STATEMENT') {
    // MariaDB: SET STATEMENT var = value [, ...] FOR statement
    const r = analyzeSet(sql, ts, i + 2);
    let k = r.next;
    if (w(ts, k) === 'FOR') k++;
    classifyInto(sql, st, k, opts);
    st.variables = r.variables;
    st.command = `SET STATEMENT ${st.command}`;
    return;
  }
  const r = analyzeSet(sql, ts, i + 1);
  st.variables = r.variables;
  const autocommit = r.variables.find((v) => v.name === 'autocommit' && v.scope !== 'user');
  if (r.variables.some((v) => v.scope === 'global' || v.scope === 'persist' || v.scope === 'persist_only')) {
    st.note = 'SET GLOBAL / PERSIST changes the configuration of one server';
    return set(st, 'other', 'SET GLOBAL');
  }
  if (autocommit !== undefined && autocommit.scope === 'session') {
    const v = autocommit.value.toUpperCase();
    const on = v === '1' || v === 'ON' || v === 'TRUE' ? true : v === '0' || v === 'OFF' || v === 'FALSE' ? false : null;
    st.transaction = { action: 'autocommit', autocommit: on };
    st.implicitCommit = on !== false; // SET autocommit = 1 commits an open transaction
    return set(st, 'transaction', 'SET autocommit');
  }
  const tx = r.variables.find((v) => v.name === 'transaction');
  set(st, 'session', tx !== undefined ? 'SET TRANSACTION' : r.variables[0]?.name === 'names' ? 'SET NAMES' : 'SET');
}

const DDL_TYPES_WITH_TABLE_AFTER_ON = new Set(['INDEX']);

function classifyDdl(sql: string, st: ClassifiedStatement, i: number): void {
  const ts = st.tokens;
  const verb = w(ts, i);
  if (verb === 'DROP' && w(ts, i + 1) === 'PREPARE') {
    st.prepared = { action: 'deallocate', name: nameAt(sql, ts, i + 2) };
    return set(st, 'other', 'DEALLOCATE PREPARE');
  }
  const obj = ddlObject(ts, i + 1);
  const type = obj.type || 'UNKNOWN';
  let k = skipIfExists(ts, obj.at + 1);
  if (DDL_TYPES_WITH_TABLE_AFTER_ON.has(type)) {
    // CREATE INDEX i ON t / DROP INDEX i ON t: the table is what changes.
    while (k < ts.length && w(ts, k) !== 'ON') k++;
    st.target = readName(sql, ts, k + 1, 'TABLE').ref;
  } else if (type === 'USER' || type === 'ROLE') {
    const user = ts[k];
    if (user !== undefined) st.target = { type, name: user.type === 'string' ? stringValue(sql, user) : nameAt(sql, ts, k) };
  } else {
    st.target = readName(sql, ts, k, type).ref;
  }
  ddl(st, `${verb} ${type}`);
  if (obj.temporary && type === 'TABLE') {
    // Session-local: no implicit commit, runs inside the session's transaction.
    st.temporary = true;
    st.implicitCommit = false;
    st.nonTransactional = false;
    st.command = `${verb} TEMPORARY TABLE`;
  }
}
