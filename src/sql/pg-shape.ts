// The shape of a PostgreSQL statement text: the text with the values of its literals blanked
// out, so that `SELECT abalance FROM pgbench_accounts WHERE aid = 123` and `... = 456` share
// one key and one classification (pg-classify-cache.ts). Clients that send literal values
// (`pgbench -M simple`, most ORMs' simple-query mode) would otherwise never hit a cache keyed
// by the exact text, and postgres' parser costs tens of microseconds per statement.
//
// Safety rests on one property: two texts with the same key have the same characters outside
// their literals and literals at the same places, so postgres' lexer cuts them into the same
// tokens and the grammar builds the same tree, up to the literals' values. The scanner
// therefore recognises a literal only where scan.l would start the same token, and gives up
// (returns null: no cache) wherever it could disagree with scan.l: dollar quotes, E'' / B'' /
// X'' / N'' / U&'' strings (any quote glued to a word or '&'), numbers glued to letters, '.' or
// '_' (hex, octal, binary, 1_000, trailing junk), $n glued to letters, unterminated strings,
// identifiers or comments, control characters. Everything else — words, quoted identifiers,
// operators, comments, whitespace — is kept in the key exactly as written.
// https://www.postgresql.org/docs/current/sql-syntax-lexical.html

/** Texts longer than this are not shaped (a key is as long as its text). */
export const SHAPE_TEXT_CHARS_MAX = 4096;

export interface PgShape {
  /** the text with each literal replaced by a placeholder naming its class */
  key: string;
  /** where the first literal starts and the last one ends in the text (-1 when none) */
  firstLiteral: number;
  lastLiteralEnd: number;
}

// Placeholders: \u0001 never appears outside a literal in a shaped text (control characters
// there make the scanner give up), so a placeholder cannot collide with written text.
/** an integer of at most 9 digits: always ICONST (the grammar accepts only ICONST in places) */
const SMALL_INT = '\u0001i';
/** any other number: FCONST, or ICONST beyond 9 digits */
const NUMBER = '\u0001n';
/** a '' string (SCONST) */
const STRING = '\u0001s';
/** a parameter $n (PARAM) */
const PARAM = '\u0001p';

const isDigit = (c: number): boolean => c >= 48 && c <= 57;
/** letters, '_' and non-ASCII start an identifier or keyword (scan.l ident_start) */
const isIdentStart = (c: number): boolean => (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 95 || c >= 128;
/** and digits and '$' continue one (scan.l ident_cont) */
const isIdentCont = (c: number): boolean => isIdentStart(c) || isDigit(c) || c === 36;
const isSpace = (c: number): boolean => c === 32 || c === 9 || c === 10 || c === 13 || c === 12 || c === 11;

/** Shape of `sql`, or null when the scanner cannot vouch for it (see the file comment). */
export function pgShape(sql: string): PgShape | null {
  const n = sql.length;
  if (n > SHAPE_TEXT_CHARS_MAX) return null;
  let key = '';
  let copied = 0; // text before this index is in the key already
  let firstLiteral = -1;
  let lastLiteralEnd = -1;
  let i = 0;
  // a literal [i, end) was found: the next turn puts its placeholder into the key (no closure: this runs per statement)
  let end = -1;
  let placeholder = '';
  while (i < n) {
    if (end >= 0) {
      key += sql.slice(copied, i) + placeholder;
      copied = end;
      if (firstLiteral < 0) firstLiteral = i;
      lastLiteralEnd = end;
      i = end;
      end = -1;
      continue;
    }
    const c = sql.charCodeAt(i);
    if (isSpace(c)) {
      i++;
    } else if (c < 32 || c === 127) {
      return null; // NUL, \u0001 and other control characters: not SQL outside literals
    } else if (isIdentStart(c)) {
      i++;
      while (i < n && isIdentCont(sql.charCodeAt(i))) i++;
    } else if (isDigit(c) || (c === 46 && isDigit(sql.charCodeAt(i + 1)))) {
      end = numberEnd(sql, i);
      if (end < 0) return null;
      placeholder = end - i <= 9 && allDigits(sql, i, end) ? SMALL_INT : NUMBER;
    } else if (c === 39) {
      // ' : a plain string, unless glued to a word (E'', B'', X'', N'', typed 'date'-less forms) or U&
      const prev = i > 0 ? sql.charCodeAt(i - 1) : 32;
      if (isIdentCont(prev) || prev === 38) return null;
      end = quotedEnd(sql, i, 39);
      if (end < 0) return null;
      placeholder = STRING;
    } else if (c === 34) {
      // "quoted identifier": kept as written
      const close = quotedEnd(sql, i, 34);
      if (close < 0) return null;
      i = close;
    } else if (c === 36) {
      // $n parameter; anything else starting with '$' is a dollar quote: give up
      let j = i + 1;
      while (j < n && isDigit(sql.charCodeAt(j))) j++;
      if (j === i + 1 || (j < n && isIdentCont(sql.charCodeAt(j)))) return null;
      end = j;
      placeholder = PARAM;
    } else if (c === 45 && sql.charCodeAt(i + 1) === 45) {
      // -- comment to the end of the line
      const nl = sql.indexOf('\n', i + 2);
      i = nl < 0 ? n : nl + 1;
    } else if (c === 47 && sql.charCodeAt(i + 1) === 42) {
      const close = blockCommentEnd(sql, i);
      if (close < 0) return null;
      i = close;
    } else {
      i++; // operators and punctuation, kept as written
    }
  }
  if (copied === 0) return { key: sql, firstLiteral, lastLiteralEnd };
  return { key: key + sql.slice(copied), firstLiteral, lastLiteralEnd };
}

function allDigits(s: string, from: number, to: number): boolean {
  for (let k = from; k < to; k++) if (!isDigit(s.charCodeAt(k))) return false;
  return true;
}

/**
 * End of the number at i: `digits[.digits*]` or `.digits`, then an optional exponent
 * `e[+-]digits`. -1 when a letter, digit, '_', '$' or '.' follows, which scan.l reads as a
 * longer or different token (0x1f, 1_000, 1e, 1..2) or as trailing junk.
 */
function numberEnd(s: string, i: number): number {
  const n = s.length;
  let j = i;
  while (j < n && isDigit(s.charCodeAt(j))) j++;
  if (j < n && s.charCodeAt(j) === 46) {
    j++;
    while (j < n && isDigit(s.charCodeAt(j))) j++;
  }
  const e = s.charCodeAt(j);
  if (e === 101 || e === 69) {
    let k = j + 1;
    const sign = s.charCodeAt(k);
    if (sign === 43 || sign === 45) k++;
    if (isDigit(s.charCodeAt(k))) {
      while (k < n && isDigit(s.charCodeAt(k))) k++;
      j = k;
    }
  }
  if (j < n) {
    const next = s.charCodeAt(j);
    if (isIdentCont(next) || next === 46) return -1;
  }
  return j;
}

/** Past the closing quote of a '' string or "" identifier at i (a doubled quote is part of it); -1 if unterminated. */
function quotedEnd(s: string, i: number, quote: number): number {
  let j = i + 1;
  for (;;) {
    const k = s.indexOf(quote === 39 ? "'" : '"', j);
    if (k < 0) return -1;
    if (s.charCodeAt(k + 1) === quote) {
      j = k + 2;
      continue;
    }
    return k + 1;
  }
}

/** Past a (nested, as in postgres) block comment at i; -1 if unterminated. */
function blockCommentEnd(s: string, i: number): number {
  const n = s.length;
  let depth = 0;
  let j = i;
  while (j < n) {
    const c = s.charCodeAt(j);
    if (c === 47 && s.charCodeAt(j + 1) === 42) {
      depth++;
      j += 2;
    } else if (c === 42 && s.charCodeAt(j + 1) === 47) {
      j += 2;
      if (--depth === 0) return j;
    } else j++;
  }
  return -1;
}
