// A minimal PostgreSQL token scanner, used only after libpg-query has accepted the text, to find
// where a node ends (the tree gives start locations only): the ')' closing a call, the rows of
// a VALUES list. It must agree with scan.l on where strings, quoted identifiers, dollar quotes
// and comments begin and end; it need not classify anything else. standard_conforming_strings
// is on (the server default since 9.1, and what the parser assumes): '' strings have no
// backslash escapes, E'' strings do.

export type PgTokenKind = 'word' | 'qident' | 'string' | 'number' | 'param' | 'punct' | 'op';

export interface PgToken {
  kind: PgTokenKind;
  start: number;
  end: number;
  /** words lower-cased; punctuation and operators as written */
  value: string;
}

const isWordStart = (c: number): boolean => (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 95 || c >= 128;
const isWordPart = (c: number): boolean => isWordStart(c) || (c >= 48 && c <= 57) || c === 36;
const isDigit = (c: number): boolean => c >= 48 && c <= 57;
const OP_CHARS = '+-*/<>=~!@#%^&|`?';

/** Index past blanks and comments from i. */
export function skipTrivia(text: string, i: number, end = text.length): number {
  for (;;) {
    while (i < end && /\s/.test(text[i]!)) i++;
    if (text.startsWith('--', i)) {
      const nl = text.indexOf('\n', i);
      i = nl < 0 || nl > end ? end : nl + 1;
    } else if (text.startsWith('/*', i)) {
      let depth = 0;
      while (i < end) {
        if (text.startsWith('/*', i)) {
          depth++;
          i += 2;
        } else if (text.startsWith('*/', i)) {
          i += 2;
          if (--depth === 0) break;
        } else i++;
      }
    } else return i;
  }
}

/** The token starting at i (i must not be in trivia), or undefined at the end. */
export function tokenAt(text: string, i: number, end = text.length): PgToken | undefined {
  if (i >= end) return undefined;
  const c = text.charCodeAt(i);
  const ch = text[i]!;
  // E'..', U&'..', B'..', X'..', N'..' strings: a one-letter prefix glued to the quote
  if ((ch === 'e' || ch === 'E') && text[i + 1] === "'") return str(text, i, i + 1, true, end);
  if ((ch === 'b' || ch === 'B' || ch === 'x' || ch === 'X' || ch === 'n' || ch === 'N') && text[i + 1] === "'") return str(text, i, i + 1, false, end);
  if ((ch === 'u' || ch === 'U') && text[i + 1] === '&' && (text[i + 2] === "'" || text[i + 2] === '"')) {
    return text[i + 2] === "'" ? str(text, i, i + 2, false, end) : qident(text, i, i + 2, end);
  }
  if (ch === "'") return str(text, i, i, false, end);
  if (ch === '"') return qident(text, i, i, end);
  if (ch === '$') {
    if (isDigit(text.charCodeAt(i + 1))) {
      let j = i + 1;
      while (j < end && isDigit(text.charCodeAt(j))) j++;
      return { kind: 'param', start: i, end: j, value: text.slice(i, j) };
    }
    const close = text.indexOf('$', i + 1);
    const tag = close < 0 ? '' : text.slice(i, close + 1);
    if (tag && /^\$([A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$$/.test(tag)) {
      const stop = text.indexOf(tag, close + 1);
      const j = stop < 0 ? end : stop + tag.length;
      return { kind: 'string', start: i, end: j, value: text.slice(i, j) };
    }
  }
  if (isWordStart(c)) {
    let j = i + 1;
    while (j < end && isWordPart(text.charCodeAt(j))) j++;
    return { kind: 'word', start: i, end: j, value: text.slice(i, j).toLowerCase() };
  }
  if (isDigit(c) || (ch === '.' && isDigit(text.charCodeAt(i + 1)))) {
    let j = i;
    while (j < end && /[0-9A-Za-z_.]/.test(text[j]!)) {
      if (text[j] === '.' && text[j + 1] === '.') break; // 1..2 in array slices
      j++;
      if ((text[j - 1] === 'e' || text[j - 1] === 'E') && (text[j] === '+' || text[j] === '-')) j++;
    }
    return { kind: 'number', start: i, end: j, value: text.slice(i, j) };
  }
  if (ch === ':' && text[i + 1] === ':') return { kind: 'punct', start: i, end: i + 2, value: '::' };
  if ('()[],;.:'.includes(ch)) return { kind: 'punct', start: i, end: i + 1, value: ch };
  if (OP_CHARS.includes(ch)) {
    let j = i + 1;
    while (j < end && OP_CHARS.includes(text[j]!) && !text.startsWith('--', j) && !text.startsWith('/*', j)) j++;
    return { kind: 'op', start: i, end: j, value: text.slice(i, j) };
  }
  return { kind: 'op', start: i, end: i + 1, value: ch };
}

function str(text: string, start: number, quote: number, backslash: boolean, end: number): PgToken {
  let j = quote + 1;
  while (j < end) {
    const ch = text[j]!;
    if (backslash && ch === '\\') j += 2;
    else if (ch === "'") {
      if (text[j + 1] === "'") j += 2;
      else {
        j++;
        // 'a' 'b' separated by a newline are one string in SQL; the parser sees one constant
        const k = skipBlanksWithNewline(text, j, end);
        if (k > j && text[k] === "'") {
          j = k + 1;
          continue;
        }
        break;
      }
    } else j++;
  }
  return { kind: 'string', start, end: Math.min(j, end), value: text.slice(start, Math.min(j, end)) };
}

function skipBlanksWithNewline(text: string, i: number, end: number): number {
  let j = i;
  let newline = false;
  while (j < end && /\s/.test(text[j]!)) {
    if (text[j] === '\n' || text[j] === '\r') newline = true;
    j++;
  }
  return newline ? j : i;
}

function qident(text: string, start: number, quote: number, end: number): PgToken {
  let j = quote + 1;
  while (j < end) {
    if (text[j] === '"') {
      if (text[j + 1] === '"') j += 2;
      else {
        j++;
        break;
      }
    } else j++;
  }
  return { kind: 'qident', start, end: j, value: text.slice(start, j) };
}

/** Tokens of text[from, to), comments and blanks left out. */
export function lexPg(text: string, from = 0, to = text.length): PgToken[] {
  const out: PgToken[] = [];
  let i = skipTrivia(text, from, to);
  for (;;) {
    const t = tokenAt(text, i, to);
    if (!t) return out;
    out.push(t);
    i = skipTrivia(text, t.end, to);
  }
}

/** Index of the token that closes the bracket at tokens[open] ('(' or '['), or -1. */
export function closingBracket(tokens: readonly PgToken[], open: number): number {
  let depth = 0;
  for (let k = open; k < tokens.length; k++) {
    const v = tokens[k]!.kind === 'punct' ? tokens[k]!.value : '';
    if (v === '(' || v === '[') depth++;
    else if (v === ')' || v === ']') {
      if (--depth === 0) return k;
    }
  }
  return -1;
}

/** Index of the first token starting at or after position, or tokens.length. */
export function tokenIndexAt(tokens: readonly PgToken[], position: number): number {
  let lo = 0;
  let hi = tokens.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (tokens[mid]!.start < position) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
