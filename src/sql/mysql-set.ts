// The assignment list of SET: which variables, in which scope.
// https://dev.mysql.com/doc/refman/8.0/en/set-variable.html
// A scope keyword (GLOBAL, SESSION, ...) applies to the assignments after it
// until another one appears, as in the server's grammar.

import type { Token } from './mysql-lexer.js';
import { isOp, w } from './mysql-tokens.js';

export type SetScope = 'user' | 'session' | 'global' | 'persist' | 'persist_only' | 'next-transaction';

export interface SetVariable {
  /** lower-case; 'names' for SET NAMES, 'character set' for SET CHARACTER SET, 'transaction' for SET TRANSACTION */
  name: string;
  scope: SetScope;
  /** source text of the value expression */
  value: string;
  /** index of the variable's token in the statement's code tokens */
  tokenIndex?: number;
}

const SCOPES: Record<string, SetScope> = {
  GLOBAL: 'global', SESSION: 'session', LOCAL: 'session', PERSIST: 'persist', PERSIST_ONLY: 'persist_only',
};

/** Parse assignments from index i; stops at the end, or at FOR (SET STATEMENT ... FOR). */
export function analyzeSet(sql: string, ts: readonly Token[], i: number): { variables: SetVariable[]; next: number } {
  const vars: SetVariable[] = [];
  let scope: SetScope = 'session';
  let explicitScope = false;
  let k = i;
  while (k < ts.length) {
    const word = w(ts, k);
    if (word in SCOPES && !isOp(ts, k + 1, '=') && !isOp(ts, k + 1, ':=')) {
      scope = SCOPES[word];
      explicitScope = true;
      k++;
      continue;
    }
    if (word === 'FOR') break;
    if (word === 'TRANSACTION') {
      // SET TRANSACTION ISOLATION LEVEL x, READ ONLY: commas separate characteristics.
      const value = textOf(sql, ts, k + 1, ts.length);
      vars.push({ name: 'transaction', scope: explicitScope ? scope : 'next-transaction', value, tokenIndex: k });
      return { variables: vars, next: ts.length };
    }
    let name: string;
    let varScope: SetScope = scope;
    const t = ts[k];
    let valueStart: number;
    if (word === 'NAMES' || word === 'CHARSET' || (word === 'CHARACTER' && w(ts, k + 1) === 'SET')) {
      name = word === 'NAMES' ? 'names' : 'character set';
      valueStart = word === 'CHARACTER' ? k + 2 : k + 1;
    } else {
      if (t === undefined) break;
      if (t.type === 'uservar') {
        name = t.text;
        varScope = 'user';
      } else if (t.type === 'sysvar') {
        name = t.text;
        if (t.scope === 'global') varScope = 'global';
        else if (t.scope === 'session' || t.scope === 'local') varScope = 'session';
      } else if (t.type === 'word' || t.type === 'quoted') {
        name = t.type === 'word' ? t.text.toLowerCase() : t.text.toLowerCase();
        // structured variable: default.key_buffer_size
        while (isOp(ts, k + 1, '.') && (ts[k + 2]?.type === 'word' || ts[k + 2]?.type === 'quoted')) {
          k += 2;
          name += `.${ts[k].text.toLowerCase()}`;
        }
      } else {
        break; // not an assignment: leave the rest alone
      }
      valueStart = k + 1;
      if (isOp(ts, valueStart, '=') || isOp(ts, valueStart, ':=')) valueStart++;
    }
    const tokenIndex = k;
    let end = valueStart;
    let depth = 0;
    for (; end < ts.length; end++) {
      const v = ts[end];
      if (v.type === 'op') {
        if (v.text === '(') depth++;
        else if (v.text === ')') depth--;
        else if (v.text === ',' && depth === 0) break;
      } else if (depth === 0 && v.type === 'word' && v.text === 'FOR') {
        break;
      }
    }
    vars.push({ name, scope: varScope, value: textOf(sql, ts, valueStart, end), tokenIndex });
    k = end;
    if (isOp(ts, k, ',')) k++;
  }
  return { variables: vars, next: k };
}

function textOf(sql: string, ts: readonly Token[], from: number, to: number): string {
  if (from >= to || from >= ts.length) return '';
  return sql.slice(ts[from].start, ts[Math.min(to, ts.length) - 1].end);
}
