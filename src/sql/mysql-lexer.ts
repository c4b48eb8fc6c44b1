// MySQL / MariaDB lexer for statement classification.
//
// Runs on every statement in the proxy's hot path, so it walks the string once
// with charCodeAt, never backtracks, never throws, and allocates only the token
// objects (plus the normalised text of words and variables). Anything it does
// not understand becomes a one-character operator; an unterminated string,
// quoted identifier or comment becomes an `error` token that runs to the end.
//
// Lexical rules follow sql/sql_lex.cc of MySQL 8 and MariaDB 10.11:
// https://dev.mysql.com/doc/refman/8.0/en/comments.html
// https://mariadb.com/kb/en/comment-syntax/  (executable comments `/*!`, `/*M!`)

export type TokenType =
  | 'word' // keyword or unquoted identifier; text = upper-cased
  | 'quoted' // `backquoted` (or "double-quoted" under ANSI_QUOTES) identifier; text = name
  | 'string' // '...' or "..." (N'...' too); text = '' (use stringValue())
  | 'number' // 12, 1.5, .5e3; text = ''
  | 'hex' // X'0A' or 0x0A
  | 'bit' // B'01' or 0b01
  | 'uservar' // @x, @`x`, @'x'; text = lower-cased name
  | 'sysvar' // @@x, @@session.x; text = lower-cased name, scope set
  | 'param' // ?
  | 'op' // operator or punctuation; text = the operator
  | 'semicolon' // ;
  | 'comment' // -- x, # x, /* x */
  | 'hint' // /*+ optimizer hint */
  | 'version-start' // /*!40101 or /*M!100100 : what follows is code
  | 'version-end' // the */ closing an executable comment
  | 'whitespace' // only with keepWhitespace
  | 'error'; // unterminated string / identifier / comment; message set

export type SysvarScope = 'global' | 'session' | 'local' | 'default';

export interface Token {
  type: TokenType;
  start: number;
  end: number;
  text: string;
  /** for sysvar: the scope written after @@ (default when none). */
  scope?: SysvarScope;
  /** for version-start: the version number, 0 when none was written. */
  version?: number;
  /** for version-start: true for MariaDB's /*M! form. */
  mariadbOnly?: boolean;
  /** for error tokens. */
  message?: string;
}

export interface LexOptions {
  /** sql_mode ANSI_QUOTES: "x" is an identifier, not a string. */
  ansiQuotes?: boolean;
  /** sql_mode NO_BACKSLASH_ESCAPES: backslash is an ordinary character in strings. */
  noBackslashEscapes?: boolean;
  /** emit whitespace tokens, so that token spans tile the input exactly. */
  keepWhitespace?: boolean;
  /** Server version as MMmmpp (10.11.6 = 101106). Executable comments for a later version are
   * plain comments, as on that server. Absent: every executable comment applies. */
  serverVersion?: number;
  /** 'mysql': /*M! comments are plain comments. Default 'mariadb'. */
  flavor?: 'mariadb' | 'mysql';
}

const CH_TAB = 9, CH_CR = 13, CH_SPACE = 32;
const CH_BANG = 33, CH_DQUOTE = 34, CH_HASH = 35, CH_DOLLAR = 36, CH_AMP = 38, CH_SQUOTE = 39;
const CH_STAR = 42, CH_PLUS = 43, CH_MINUS = 45, CH_DOT = 46, CH_SLASH = 47;
const CH_0 = 48, CH_1 = 49, CH_9 = 57, CH_COLON = 58, CH_SEMI = 59, CH_LT = 60, CH_EQ = 61, CH_GT = 62;
const CH_QMARK = 63, CH_AT = 64, CH_BACKSLASH = 92, CH_UNDERSCORE = 95, CH_BACKTICK = 96, CH_PIPE = 124;

// Character classes by code unit for ASCII; everything >= 0x80 is an identifier
// character (MySQL allows U+0080..U+FFFF in unquoted identifiers).
const C_IDENT = 1, C_DIGIT = 2, C_SPACE = 4, C_HEX = 8;
const charClass = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  let k = 0;
  if ((c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === CH_UNDERSCORE || c === CH_DOLLAR) k |= C_IDENT;
  if (c >= CH_0 && c <= CH_9) k |= C_IDENT | C_DIGIT | C_HEX;
  if ((c >= 65 && c <= 70) || (c >= 97 && c <= 102)) k |= C_HEX;
  if (c === CH_SPACE || (c >= CH_TAB && c <= CH_CR)) k |= C_SPACE;
  charClass[c] = k;
}
const isIdent = (c: number): boolean => c >= 128 || (charClass[c] & C_IDENT) !== 0;
const isDigit = (c: number): boolean => c >= CH_0 && c <= CH_9;
const isHex = (c: number): boolean => c < 128 && (charClass[c] & C_HEX) !== 0;
const isSpace = (c: number): boolean => c < 128 && (charClass[c] & C_SPACE) !== 0;

// One shared string per single-character operator, so `text` costs no allocation.
const singleOps: string[] = [];
for (let c = 0; c < 128; c++) singleOps.push(String.fromCharCode(c));

const twoCharOps = new Set([':=', '<=', '>=', '<>', '!=', '<<', '>>', '&&', '||', '->']);

function tok(type: TokenType, start: number, end: number, text: string): Token {
  return { type, start, end, text };
}

/** Scan a quoted run starting after the opening quote; returns the index after the
 * closing quote, or -1 when unterminated. `quote` may be doubled to escape it. */
function scanQuoted(sql: string, i: number, quote: number, backslash: boolean): number {
  const n = sql.length;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (c === CH_BACKSLASH && backslash) {
      i += 2;
    } else if (c === quote) {
      if (i + 1 < n && sql.charCodeAt(i + 1) === quote) i += 2;
      else return i + 1;
    } else {
      i++;
    }
  }
  return -1;
}

/** Text of a quoted identifier without its quotes, doubled quotes undone. */
function unquoteIdent(sql: string, start: number, end: number): string {
  const q = sql[start];
  const inner = sql.slice(start + 1, end - 1);
  return inner.includes(q) ? inner.split(q + q).join(q) : inner;
}

export function lexMysql(sql: string, opts: LexOptions = {}): Token[] {
  const n = sql.length;
  const out: Token[] = [];
  const backslash = !opts.noBackslashEscapes;
  const ansiQuotes = !!opts.ansiQuotes;
  const keepWs = !!opts.keepWhitespace;
  let versionDepth = 0; // open executable comments
  let i = 0;
  while (i < n) {
    const start = i;
    const c = sql.charCodeAt(i);

    if (isSpace(c)) {
      i++;
      while (i < n && isSpace(sql.charCodeAt(i))) i++;
      if (keepWs) out.push(tok('whitespace', start, i, ''));
      continue;
    }

    // Words, and the X'..' B'..' N'..' literal prefixes.
    if (isIdent(c) && !isDigit(c)) {
      const next = i + 1 < n ? sql.charCodeAt(i + 1) : 0;
      if (next === CH_SQUOTE && (c === 88 || c === 120 || c === 66 || c === 98 || c === 78 || c === 110)) {
        const end = scanQuoted(sql, i + 2, CH_SQUOTE, c === 78 || c === 110 ? backslash : false);
        if (end < 0) {
          out.push(errorTok(start, n, 'unterminated string'));
          break;
        }
        const type: TokenType = c === 88 || c === 120 ? 'hex' : c === 66 || c === 98 ? 'bit' : 'string';
        out.push(tok(type, start, end, ''));
        i = end;
        continue;
      }
      i++;
      while (i < n && isIdent(sql.charCodeAt(i))) i++;
      out.push(tok('word', start, i, sql.slice(start, i).toUpperCase()));
      continue;
    }

    if (isDigit(c) || (c === CH_DOT && i + 1 < n && isDigit(sql.charCodeAt(i + 1)) && !afterName(out, start))) {
      i = lexNumber(sql, i, out);
      continue;
    }

    switch (c) {
      case CH_SQUOTE: {
        const end = scanQuoted(sql, i + 1, CH_SQUOTE, backslash);
        if (end < 0) {
          out.push(errorTok(start, n, 'unterminated string'));
          return out;
        }
        out.push(tok('string', start, end, ''));
        i = end;
        continue;
      }
      case CH_DQUOTE: {
        const end = scanQuoted(sql, i + 1, CH_DQUOTE, ansiQuotes ? false : backslash);
        if (end < 0) {
          out.push(errorTok(start, n, ansiQuotes ? 'unterminated quoted identifier' : 'unterminated string'));
          return out;
        }
        out.push(ansiQuotes ? tok('quoted', start, end, unquoteIdent(sql, start, end)) : tok('string', start, end, ''));
        i = end;
        continue;
      }
      case CH_BACKTICK: {
        const end = scanQuoted(sql, i + 1, CH_BACKTICK, false);
        if (end < 0) {
          out.push(errorTok(start, n, 'unterminated quoted identifier'));
          return out;
        }
        out.push(tok('quoted', start, end, unquoteIdent(sql, start, end)));
        i = end;
        continue;
      }
      case CH_AT: {
        i = lexAt(sql, i, out, ansiQuotes, backslash);
        if (i < 0) return out;
        continue;
      }
      case CH_HASH: {
        i = lineEnd(sql, i);
        out.push(tok('comment', start, i, ''));
        continue;
      }
      case CH_MINUS: {
        // "-- " needs whitespace or a control character after the dashes;
        // "--1" is minus minus one.
        if (i + 1 < n && sql.charCodeAt(i + 1) === CH_MINUS && (i + 2 >= n || sql.charCodeAt(i + 2) <= CH_SPACE)) {
          i = lineEnd(sql, i);
          out.push(tok('comment', start, i, ''));
          continue;
        }
        if (i + 1 < n && sql.charCodeAt(i + 1) === CH_GT) {
          const three = i + 2 < n && sql.charCodeAt(i + 2) === CH_GT;
          i += three ? 3 : 2;
          out.push(tok('op', start, i, three ? '->>' : '->'));
          continue;
        }
        break;
      }
      case CH_SLASH: {
        if (i + 1 < n && sql.charCodeAt(i + 1) === CH_STAR) {
          const third = i + 2 < n ? sql.charCodeAt(i + 2) : 0;
          const fourth = i + 3 < n ? sql.charCodeAt(i + 3) : 0;
          if (third === CH_BANG || ((third === 77 || third === 109) && fourth === CH_BANG)) {
            const mariadbOnly = third !== CH_BANG;
            let j = i + (mariadbOnly ? 4 : 3);
            let digits = 0;
            while (j + digits < n && digits < 6 && isDigit(sql.charCodeAt(j + digits))) digits++;
            // MySQL takes exactly five digits; MariaDB's /*M! takes five or six.
            const take = digits >= 6 && mariadbOnly ? 6 : digits >= 5 ? 5 : 0;
            const version = take ? Number(sql.slice(j, j + take)) : 0;
            j += take;
            if ((opts.serverVersion !== undefined && version > opts.serverVersion) || (mariadbOnly && opts.flavor === 'mysql')) {
              // Not for this server: the whole thing is a comment.
              const close = sql.indexOf('*/', j);
              if (close < 0) {
                out.push(errorTok(start, n, 'unterminated comment'));
                return out;
              }
              i = close + 2;
              out.push(tok('comment', start, i, ''));
              continue;
            }
            const t = tok('version-start', start, j, '');
            t.version = version;
            t.mariadbOnly = mariadbOnly;
            out.push(t);
            versionDepth++;
            i = j;
            continue;
          }
          const close = sql.indexOf('*/', i + 2);
          if (close < 0) {
            out.push(errorTok(start, n, 'unterminated comment'));
            return out;
          }
          i = close + 2;
          out.push(tok(third === CH_PLUS ? 'hint' : 'comment', start, i, ''));
          continue;
        }
        break;
      }
      case CH_STAR: {
        if (versionDepth > 0 && i + 1 < n && sql.charCodeAt(i + 1) === CH_SLASH) {
          versionDepth--;
          i += 2;
          out.push(tok('version-end', start, i, ''));
          continue;
        }
        break;
      }
      case CH_SEMI:
        out.push(tok('semicolon', start, i + 1, ';'));
        i++;
        continue;
      case CH_QMARK:
        out.push(tok('param', start, i + 1, '?'));
        i++;
        continue;
      case CH_LT: {
        if (i + 2 < n && sql.charCodeAt(i + 1) === CH_EQ && sql.charCodeAt(i + 2) === CH_GT) {
          out.push(tok('op', start, i + 3, '<=>'));
          i += 3;
          continue;
        }
        break;
      }
    }

    // Two-character operators, else one character.
    if (i + 1 < n && (c === CH_COLON || c === CH_LT || c === CH_GT || c === CH_BANG || c === CH_AMP || c === CH_PIPE)) {
      const two = sql.slice(i, i + 2);
      if (twoCharOps.has(two)) {
        out.push(tok('op', start, i + 2, two));
        i += 2;
        continue;
      }
    }
    out.push(tok('op', start, i + 1, c < 128 ? singleOps[c] : sql[i]));
    i++;
  }
  if (versionDepth > 0) out.push(errorTok(n, n, 'unterminated executable comment'));
  return out;
}

function errorTok(start: number, end: number, message: string): Token {
  const t = tok('error', start, end, '');
  t.message = message;
  return t;
}

function lineEnd(sql: string, i: number): number {
  const nl = sql.indexOf('\n', i);
  return nl < 0 ? sql.length : nl;
}

/** True when the previous token is a name ending exactly at `pos`: then `.5` in
 * `t.5x` is a qualifier dot, not a number. */
function afterName(out: Token[], pos: number): boolean {
  const prev = out.length ? out[out.length - 1] : undefined;
  return prev !== undefined && prev.end === pos && (prev.type === 'word' || prev.type === 'quoted');
}

function lexNumber(sql: string, i: number, out: Token[]): number {
  const n = sql.length;
  const start = i;
  const c1 = i + 1 < n ? sql.charCodeAt(i + 1) : 0;
  if (sql.charCodeAt(i) === CH_0 && (c1 === 120 || c1 === 98)) {
    // 0x1F / 0b101, unless more identifier characters follow (then `0x1g` is a name).
    let j = i + 2;
    const bin = c1 === 98;
    while (j < n && (bin ? sql.charCodeAt(j) === CH_0 || sql.charCodeAt(j) === CH_1 : isHex(sql.charCodeAt(j)))) j++;
    if (j > i + 2 && (j >= n || !isIdent(sql.charCodeAt(j)))) {
      out.push(tok(bin ? 'bit' : 'hex', start, j, ''));
      return j;
    }
  }
  let j = i;
  while (j < n && isDigit(sql.charCodeAt(j))) j++;
  let frac = false;
  if (j < n && sql.charCodeAt(j) === CH_DOT) {
    frac = true;
    j++;
    while (j < n && isDigit(sql.charCodeAt(j))) j++;
  }
  if (isExponent(sql, j)) {
    j++;
    const s = sql.charCodeAt(j);
    if (s === CH_PLUS || s === CH_MINUS) j++;
    while (j < n && isDigit(sql.charCodeAt(j))) j++;
  }
  if (!frac && j < n && isIdent(sql.charCodeAt(j))) {
    // MySQL identifiers may start with digits: 1abc, 123_t.
    while (j < n && isIdent(sql.charCodeAt(j))) j++;
    out.push(tok('word', start, j, sql.slice(start, j).toUpperCase()));
    return j;
  }
  out.push(tok('number', start, j, ''));
  return j;
}

function isExponent(sql: string, j: number): boolean {
  const c = sql.charCodeAt(j);
  if (c !== 101 && c !== 69) return false;
  let k = j + 1;
  const s = sql.charCodeAt(k);
  if (s === CH_PLUS || s === CH_MINUS) k++;
  return isDigit(sql.charCodeAt(k));
}

/** @ at i: user variable, system variable, or the @ of 'user'@'host'. Returns the
 * next index, or -1 after pushing an error token that ends the input. */
function lexAt(sql: string, i: number, out: Token[], ansiQuotes: boolean, backslash: boolean): number {
  const n = sql.length;
  const start = i;
  const prev = out.length ? out[out.length - 1] : undefined;
  // 'user'@'host': an @ glued to a name or string separates user and host.
  if (prev !== undefined && prev.end === i && (prev.type === 'string' || prev.type === 'quoted' || prev.type === 'word')) {
    out.push(tok('op', i, i + 1, '@'));
    return i + 1;
  }
  const c1 = i + 1 < n ? sql.charCodeAt(i + 1) : 0;
  if (c1 === CH_AT) {
    let j = i + 2;
    let scope: SysvarScope = 'default';
    let nameStart = j;
    while (j < n && isIdent(sql.charCodeAt(j))) j++;
    if (j < n && sql.charCodeAt(j) === CH_DOT) {
      const s = sql.slice(nameStart, j).toLowerCase();
      if (s === 'global' || s === 'session' || s === 'local') {
        scope = s;
        j++;
        nameStart = j;
      }
    }
    if (j < n && sql.charCodeAt(j) === CH_BACKTICK) {
      const end = scanQuoted(sql, j + 1, CH_BACKTICK, false);
      if (end < 0) {
        out.push(errorTok(start, n, 'unterminated quoted identifier'));
        return -1;
      }
      const t = tok('sysvar', start, end, unquoteIdent(sql, j, end).toLowerCase());
      t.scope = scope;
      out.push(t);
      return end;
    }
    // Structured variables: @@default.key_buffer_size.
    while (j < n && (isIdent(sql.charCodeAt(j)) || (sql.charCodeAt(j) === CH_DOT && j + 1 < n && isIdent(sql.charCodeAt(j + 1))))) j++;
    const t = tok('sysvar', start, j, sql.slice(nameStart, j).toLowerCase());
    t.scope = scope;
    out.push(t);
    return j;
  }
  if (c1 === CH_SQUOTE || c1 === CH_DQUOTE || c1 === CH_BACKTICK) {
    const end = scanQuoted(sql, i + 2, c1, c1 === CH_BACKTICK || (c1 === CH_DQUOTE && ansiQuotes) ? false : backslash);
    if (end < 0) {
      out.push(errorTok(start, n, 'unterminated user variable name'));
      return -1;
    }
    out.push(tok('uservar', start, end, unquoteIdent(sql, i + 1, end).toLowerCase()));
    return end;
  }
  let j = i + 1;
  while (j < n && (isIdent(sql.charCodeAt(j)) || sql.charCodeAt(j) === CH_DOT)) j++;
  if (j === i + 1) {
    out.push(tok('op', i, i + 1, '@'));
    return i + 1;
  }
  out.push(tok('uservar', start, j, sql.slice(i + 1, j).toLowerCase()));
  return j;
}

/** Value of a string token: quotes removed, escapes and doubled quotes undone. */
export function stringValue(sql: string, t: Token, opts: LexOptions = {}): string {
  let s = t.start;
  const c = sql.charCodeAt(s);
  if (c !== CH_SQUOTE && c !== CH_DQUOTE) s++; // N'...'
  const quote = sql.charCodeAt(s);
  const backslash = !opts.noBackslashEscapes;
  let out = '';
  for (let i = s + 1; i < t.end - 1; i++) {
    const ch = sql.charCodeAt(i);
    if (ch === CH_BACKSLASH && backslash && i + 1 < t.end - 1) {
      const e = sql[++i];
      out += e === 'n' ? '\n' : e === 't' ? '\t' : e === 'r' ? '\r' : e === '0' ? '\0' : e === 'Z' ? '\x1a' : e === 'b' ? '\b' : e;
    } else if (ch === quote && sql.charCodeAt(i + 1) === quote) {
      out += sql[i];
      i++;
    } else {
      out += sql[i];
    }
  }
  return out;
}

/** True for tokens that carry no code (comments, hints, whitespace, executable-comment markers). */
export function isTrivia(t: Token): boolean {
  const y = t.type;
  return y === 'comment' || y === 'hint' || y === 'whitespace' || y === 'version-start' || y === 'version-end';
}
