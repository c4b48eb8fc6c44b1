// Split a multi-statement string into statements at top-level ';'.
//
// A ';' inside a compound statement (the BEGIN ... END body of CREATE
// PROCEDURE / FUNCTION / TRIGGER / EVENT, MariaDB's BEGIN NOT ATOMIC and
// top-level IF / CASE / LOOP / WHILE / REPEAT / FOR blocks) does not end the
// statement. Block depth is counted the way the server's grammar nests blocks:
// BEGIN and CASE always open one (a CASE expression also ends with END), IF,
// LOOP, WHILE, REPEAT and FOR open one only where a statement starts, and END
// closes one and swallows the IF/CASE/LOOP/... that names it.

import type { Token } from './mysql-lexer.js';
import { isTrivia } from './mysql-lexer.js';
import { ddlObject, hasTopLevelComma, isOp, w } from './mysql-tokens.js';

export interface RawStatement {
  /** span in the input: first token (leading comments included) to last token before ';' */
  start: number;
  end: number;
  /** code tokens: no comments, hints, whitespace or executable-comment markers */
  tokens: Token[];
  /** message of the first error token (unterminated string, comment, ...) */
  lexError?: string;
}

const COMPOUND_OBJECTS = new Set(['PROCEDURE', 'FUNCTION', 'TRIGGER', 'EVENT', 'PACKAGE', 'PACKAGE BODY']);
const BLOCK_WORDS = new Set(['IF', 'CASE', 'LOOP', 'WHILE', 'REPEAT', 'FOR']);
// Words after which a new statement starts inside a compound body.
const STATEMENT_START_AFTER = new Set(['BEGIN', 'THEN', 'ELSE', 'DO', 'LOOP', 'REPEAT', 'ROW']);

/** Block depth the statement starts with when it is compound, or -1 when it is not. */
function compoundDepth(ts: readonly Token[]): number {
  const first = w(ts, 0);
  if (first === 'BEGIN') return w(ts, 1) === 'NOT' ? 0 : -1;
  if (BLOCK_WORDS.has(first)) return first === 'IF' && isOp(ts, 1, '(') && ifIsFunction(ts, 0) ? -1 : 0;
  const afterLabel = w(ts, 2);
  if (isOp(ts, 1, ':') && (afterLabel === 'BEGIN' || BLOCK_WORDS.has(afterLabel))) return 0; // label: BEGIN
  if (first === 'CREATE' || first === 'ALTER') {
    const obj = ddlObject(ts, 1);
    if (!COMPOUND_OBJECTS.has(obj.type)) return -1;
    // A package specification or body is a list of routines closed by END.
    return obj.type.startsWith('PACKAGE') && first === 'CREATE' ? 1 : 0;
  }
  return -1;
}

/** IF at i followed by '(' is the IF(a, b, c) function when its parentheses hold a
 * top-level comma; IF (cond) THEN never does. */
function ifIsFunction(ts: readonly Token[], i: number): boolean {
  return hasTopLevelComma(ts, i + 1);
}

class BlockTracker {
  depth: number;
  private fed = 0;
  private afterEnd = false;
  constructor(depth: number) {
    this.depth = depth;
  }

  /** Feed code tokens [fed, ts.length). */
  feed(ts: readonly Token[]): void {
    for (let i = this.fed; i < ts.length; i++) this.step(ts, i);
    this.fed = ts.length;
  }

  private step(ts: readonly Token[], i: number): void {
    const t = ts[i];
    if (t.type !== 'word') {
      this.afterEnd = false;
      return;
    }
    const word = t.text;
    if (this.afterEnd) {
      this.afterEnd = false;
      if (BLOCK_WORDS.has(word)) return; // END IF, END LOOP, ...
    }
    if (word === 'BEGIN' || word === 'CASE') {
      this.depth++;
    } else if (word === 'END') {
      if (this.depth > 0) this.depth--;
      this.afterEnd = true;
    } else if (BLOCK_WORDS.has(word) && statementStarts(ts, i)) {
      if (word === 'IF' && isOp(ts, i + 1, '(') && ifIsFunction(ts, i)) return;
      if (word === 'REPEAT' && isOp(ts, i + 1, '(')) return;
      this.depth++;
    }
  }
}

function statementStarts(ts: readonly Token[], i: number): boolean {
  if (i === 0) return true;
  const prev = ts[i - 1];
  if (prev.type === 'semicolon') return true;
  if (prev.type === 'op') return prev.text === ':';
  return prev.type === 'word' && STATEMENT_START_AFTER.has(prev.text);
}

export function splitMysql(tokens: readonly Token[]): RawStatement[] {
  const out: RawStatement[] = [];
  let code: Token[] = [];
  let start = -1;
  let end = -1;
  let lexError: string | undefined;
  let tracker: BlockTracker | null = null;
  let decided = false;

  const finish = (): void => {
    if (code.length > 0) {
      const s: RawStatement = { start, end, tokens: code };
      if (lexError !== undefined) s.lexError = lexError;
      out.push(s);
    }
    code = [];
    start = -1;
    end = -1;
    lexError = undefined;
    tracker = null;
    decided = false;
  };

  for (const t of tokens) {
    if (t.type === 'whitespace') continue;
    if (t.type === 'semicolon') {
      if (code.length > 0 && !decided) {
        decided = true;
        const depth = compoundDepth(code);
        if (depth >= 0) tracker = new BlockTracker(depth);
      }
      if (tracker !== null) {
        tracker.feed(code);
        if (tracker.depth > 0) {
          code.push(t);
          end = t.end;
          continue;
        }
      }
      finish();
      continue;
    }
    if (start < 0) start = t.start;
    end = t.end;
    if (t.type === 'error') {
      lexError ??= t.message;
      continue;
    }
    if (!isTrivia(t)) code.push(t);
  }
  finish();
  return out;
}
