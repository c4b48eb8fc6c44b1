// Small token-walking helpers shared by the splitter, the classifier and the
// determinism check. They work on code tokens only (no comments/whitespace).

import type { Token } from './mysql-lexer.js';

export interface ObjectRef {
  /** TABLE, VIEW, INDEX, DATABASE, PROCEDURE, FUNCTION, TRIGGER, EVENT, USER, ... */
  type: string;
  schema?: string;
  name: string;
}

/** Upper-cased text of the word at i, '' when it is not a word. */
export function w(ts: readonly Token[], i: number): string {
  const t = ts[i];
  return t !== undefined && t.type === 'word' ? t.text : '';
}

export function isOp(ts: readonly Token[], i: number, op: string): boolean {
  const t = ts[i];
  return t !== undefined && t.type === 'op' && t.text === op;
}

/** ts[i] is '('; returns the index after its matching ')' (or ts.length). */
export function skipParens(ts: readonly Token[], i: number): number {
  let depth = 0;
  for (; i < ts.length; i++) {
    const t = ts[i];
    if (t.type !== 'op') continue;
    if (t.text === '(') depth++;
    else if (t.text === ')' && --depth === 0) return i + 1;
  }
  return ts.length;
}

/** Skip consecutive words in `words` starting at i. */
/** Whether the parenthesised group opening at `open` holds a comma at its own top level. */
export function hasTopLevelComma(ts: readonly Token[], open: number): boolean {
  const end = skipParens(ts, open);
  let depth = 0;
  for (let k = open; k < end; k++) {
    const t = ts[k];
    if (t.type !== 'op') continue;
    if (t.text === '(') depth++;
    else if (t.text === ')') depth--;
    else if (t.text === ',' && depth === 1) return true;
  }
  return false;
}

export function skipWords(ts: readonly Token[], i: number, words: ReadonlySet<string>): number {
  while (i < ts.length && words.has(w(ts, i))) i++;
  return i;
}

/** Name text of a word or quoted identifier token ('' otherwise). Unquoted names keep their case. */
export function nameAt(sql: string, ts: readonly Token[], i: number): string {
  const t = ts[i];
  if (t === undefined) return '';
  if (t.type === 'quoted') return t.text;
  if (t.type === 'word') return sql.slice(t.start, t.end);
  return '';
}

/** Read `name` or `schema.name` at i. */
export function readName(sql: string, ts: readonly Token[], i: number, type: string): { ref?: ObjectRef; next: number } {
  const first = nameAt(sql, ts, i);
  if (!first) return { next: i };
  if (isOp(ts, i + 1, '.') && nameAt(sql, ts, i + 2)) {
    return { ref: { type, schema: first, name: nameAt(sql, ts, i + 2) }, next: i + 3 };
  }
  return { ref: { type, name: first }, next: i + 1 };
}

/** Skip an account name: 'u'@'h', `u`@`h`, u@h, u, CURRENT_USER[()] . */
export function skipUser(ts: readonly Token[], i: number): number {
  if (w(ts, i) === 'CURRENT_USER') {
    i++;
    if (isOp(ts, i, '(') && isOp(ts, i + 1, ')')) i += 2;
    return i;
  }
  const t = ts[i];
  if (t === undefined || !(t.type === 'word' || t.type === 'quoted' || t.type === 'string')) return i;
  i++;
  if (isOp(ts, i, '@')) i += 2;
  return i;
}

/** Skip IF [NOT] EXISTS. */
export function skipIfExists(ts: readonly Token[], i: number): number {
  if (w(ts, i) !== 'IF') return i;
  if (w(ts, i + 1) === 'EXISTS') return i + 2;
  if (w(ts, i + 1) === 'NOT' && w(ts, i + 2) === 'EXISTS') return i + 3;
  return i;
}

const CREATE_MODIFIERS = new Set([
  'OR', 'REPLACE', 'AGGREGATE', 'TEMPORARY', 'UNIQUE', 'FULLTEXT', 'SPATIAL', 'ONLINE', 'OFFLINE', 'IGNORE',
  'NONATOMIC', 'UNDEFINED', 'MERGE', 'TEMPTABLE', 'INVOKER', 'DEFINER',
]);

/** After CREATE / ALTER / DROP at i: skip OR REPLACE, DEFINER = user, ALGORITHM = x,
 * SQL SECURITY x and similar modifiers; return the object-type word and its index. */
export function ddlObject(ts: readonly Token[], i: number): { type: string; at: number; temporary: boolean } {
  let temporary = false;
  while (i < ts.length) {
    const word = w(ts, i);
    if (word === 'DEFINER' && isOp(ts, i + 1, '=')) {
      i = skipUser(ts, i + 2);
    } else if (word === 'ALGORITHM' && isOp(ts, i + 1, '=')) {
      i += 3;
    } else if (word === 'SQL' && w(ts, i + 1) === 'SECURITY') {
      i += 3;
    } else if (word === 'TEMPORARY') {
      temporary = true;
      i++;
    } else if (CREATE_MODIFIERS.has(word) && word !== 'DEFINER') {
      i++;
    } else {
      break;
    }
  }
  let type = w(ts, i);
  if (type === 'SCHEMA') type = 'DATABASE';
  if (type === 'PACKAGE' && w(ts, i + 1) === 'BODY') return { type: 'PACKAGE BODY', at: i + 1, temporary };
  if ((type === 'LOGFILE' && w(ts, i + 1) === 'GROUP') || (type === 'RESOURCE' && w(ts, i + 1) === 'GROUP')) {
    return { type: `${type} GROUP`, at: i + 1, temporary };
  }
  if (type === 'SPATIAL' || type === 'KEY') type = 'INDEX';
  return { type, at: i, temporary };
}

/** Function call at i: a word followed by '(' and not qualified (db.f() is a stored function). */
export function isCall(ts: readonly Token[], i: number): boolean {
  return ts[i]?.type === 'word' && isOp(ts, i + 1, '(') && !isOp(ts, i - 1, '.');
}
