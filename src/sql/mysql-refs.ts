// References a statement makes beyond its verb: user variables read and assigned,
// functions whose value lives in one server session, sequence writes, stored
// function calls. One pass over the code tokens, after the verb has set the kind.

import type { Token } from './mysql-lexer.js';
import type { ClassifiedStatement, ClassifyOptions } from './mysql-classify.js';
import { BUILTIN_NAMES } from './mysql-builtins.js';
import { isCall, isOp, w } from './mysql-tokens.js';

const SESSION_FUNCTIONS = new Set([
  'LAST_INSERT_ID', 'FOUND_ROWS', 'ROW_COUNT', 'CONNECTION_ID', 'GET_LOCK', 'RELEASE_LOCK', 'RELEASE_ALL_LOCKS',
  'IS_FREE_LOCK', 'IS_USED_LOCK', 'LASTVAL',
]);

// MariaDB sequence functions that advance or set a sequence: a SELECT or DO using them writes.
const SEQUENCE_WRITES = new Set(['NEXTVAL', 'SETVAL']);

/** One pass over the tokens: user variables read/assigned, session-dependent functions;
 * refines DO and SELECT @x := ... into session statements. */
export function scanReferences(st: ClassifiedStatement, opts: ClassifyOptions): void {
  const ts = st.tokens;
  const read = new Set<string>();
  const assigned = new Set<string>();
  const funcs = new Set<string>();
  const setTargets = new Set<number>();
  for (const v of st.variables ?? []) if (v.scope === 'user' && v.tokenIndex !== undefined) setTargets.add(v.tokenIndex);
  let into = false;
  let sequenceWrite = '';
  const routines = new Set<string>();
  // Only a read or a session statement turns into a write by calling a stored function.
  const lookForRoutines = st.kind === 'read' || st.kind === 'locking-read' || st.kind === 'session';
  let closeOf: Int32Array | undefined;
  for (let k = 0; k < ts.length; k++) {
    const t = ts[k];
    if (lookForRoutines && (t.type === 'word' || t.type === 'quoted') && isOp(ts, k + 1, '(')) {
      closeOf ??= matchingParens(ts);
      const routine = routineName(ts, k, closeOf);
      if (routine && !opts.readOnlyFunctions?.has(routine)) routines.add(routine);
    }
    if (t.type === 'uservar') {
      if (setTargets.has(k) || isOp(ts, k + 1, ':=') || into) assigned.add(t.text);
      else read.add(t.text);
      continue;
    }
    if (into && !(t.type === 'op' && t.text === ',')) into = false;
    if (t.type === 'word') {
      if (t.text === 'INTO' && ts[k + 1]?.type === 'uservar') into = true;
      else if (SESSION_FUNCTIONS.has(t.text) && isCall(ts, k)) funcs.add(t.text);
      else if (SEQUENCE_WRITES.has(t.text) && isCall(ts, k)) sequenceWrite = `${t.text}()`;
      else if (t.text === 'NEXT' && w(ts, k + 1) === 'VALUE' && w(ts, k + 2) === 'FOR') sequenceWrite = 'NEXT VALUE FOR';
      else if (t.text === 'PREVIOUS' && w(ts, k + 1) === 'VALUE' && w(ts, k + 2) === 'FOR') funcs.add('PREVIOUS VALUE FOR');
    }
  }
  st.userVariablesRead = [...read];
  st.userVariablesAssigned = [...assigned];
  st.sessionFunctions = [...funcs];
  st.routineCalls = [...routines];
  if (sequenceWrite && (st.kind === 'read' || st.kind === 'locking-read' || st.kind === 'session')) {
    st.kind = 'write';
    st.note = `${sequenceWrite} advances a sequence`;
    return;
  }
  if (routines.size > 0 && (st.kind === 'read' || st.kind === 'locking-read' || st.kind === 'session')) {
    st.kind = 'write';
    st.note = `calls stored function ${[...routines].join(', ')}, which may write`;
    return;
  }
  // SELECT @x := ..., DO @x := ...: they change session state.
  if (st.kind === 'read' && assigned.size > 0) st.kind = 'session';
  if (st.command === 'DO' && funcs.size > 0 && [...funcs].some((f) => f.endsWith('LOCK'))) {
    st.kind = 'other';
    st.note = 'user-level locks live on one server';
  }
}

/** For each '(' the index after its matching ')' (ts.length when unclosed), in one pass,
 * so that nested calls cost linear time. */
function matchingParens(ts: readonly Token[]): Int32Array {
  const closeOf = new Int32Array(ts.length).fill(ts.length);
  const open: number[] = [];
  for (let k = 0; k < ts.length; k++) {
    const t = ts[k];
    if (t.type !== 'op') continue;
    if (t.text === '(') open.push(k);
    else if (t.text === ')' && open.length > 0) closeOf[open.pop()!] = k + 1;
  }
  return closeOf;
}

/** Name of the stored function called at k (followed by '('), or '' for a built-in. */
function routineName(ts: readonly Token[], k: number, closeOf: Int32Array): string {
  const t = ts[k];
  const name = t.type === 'quoted' ? t.text.toUpperCase() : t.text;
  if (isOp(ts, k - 1, '.')) {
    const q = ts[k - 2];
    if (q !== undefined && (q.type === 'word' || q.type === 'quoted')) return `${q.type === 'quoted' ? q.text.toUpperCase() : q.text}.${name}`;
    return '';
  }
  if (t.type === 'word' && (BUILTIN_NAMES.has(name) || name.startsWith('ST_') || name.startsWith('MBR'))) return '';
  // WITH cte (a, b) AS (...): a column list, not a call.
  const after = closeOf[k + 1];
  if (w(ts, after) === 'AS' && isOp(ts, after + 1, '(')) return '';
  return name;
}
