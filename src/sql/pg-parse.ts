// PostgreSQL's own parser (libpg-query: the server's gram.y and scan.l compiled to WASM) behind a
// small synchronous interface: statements with their spans in the caller's string, or the
// parser's error with the position postgres would report. See DESIGN.md "PostgreSQL".
//
// The WASM module compiles asynchronously once per process (about 30 ms), after which every
// parse is synchronous. Classification sits on the front end's hot path, which must not yield
// between reading a message and routing it, so callers `await loadPgParser()` at start-up and
// then call `parsePg` synchronously.
import { loadModule, parseSync, type Node } from 'libpg-query';

export type { Node as PgNode } from 'libpg-query';

let loaded = false;
let loading: Promise<void> | undefined;

/** Load the parser (idempotent). Must have resolved before parsePg is called. */
export function loadPgParser(): Promise<void> {
  loading ??= loadModule().then(() => {
    loaded = true;
  });
  return loading;
}

export function pgParserLoaded(): boolean {
  return loaded;
}

export interface PgSyntaxError {
  /** postgres reports most parser errors as 42601 (syntax_error); the server has the final word */
  sqlstate: string;
  message: string;
  /** 1-based character position in the whole text, as in ErrorResponse field 'P' (0: none) */
  position: number;
}

export interface PgRawStatement {
  node: Node;
  /** the statement's own text: text.slice(start, end), no surrounding comments or ';' */
  start: number;
  end: number;
  /** the statement with the comments before it and its terminating ';': the chunks of a text
   * follow each other without gaps, so routing them one by one loses nothing */
  chunkStart: number;
  chunkEnd: number;
}

export type PgParseResult = { ok: true; statements: PgRawStatement[]; offsets: TextOffsets } | { ok: false; error: PgSyntaxError };

/**
 * Converts the parser's offsets (bytes of the UTF-8 text) to indices of the JS string (UTF-16
 * code units). Identity for ASCII text, which is the common case and costs one regex test.
 */
export class TextOffsets {
  private map: Int32Array | undefined;
  readonly ascii: boolean;

  constructor(readonly text: string) {
    // eslint-disable-next-line no-control-regex
    this.ascii = /^[\x00-\x7f]*$/.test(text);
  }

  /** JS string index of a UTF-8 byte offset (offsets inside a character map to its start). */
  index(byteOffset: number): number {
    if (this.ascii) return byteOffset;
    const map = (this.map ??= this.build());
    assertInRange(byteOffset, map.length);
    return map[byteOffset]!;
  }

  private build(): Int32Array {
    const t = this.text;
    const map = new Int32Array(Buffer.byteLength(t, 'utf8') + 1);
    let b = 0;
    for (let i = 0; i < t.length; i++) {
      const c = t.charCodeAt(i);
      const start = i;
      let n: number;
      if (c < 0x80) n = 1;
      else if (c < 0x800) n = 2;
      else if (c >= 0xd800 && c <= 0xdbff && i + 1 < t.length && (t.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
        n = 4;
        i++;
      } else n = 3; // BMP character, or a lone surrogate (encoded as U+FFFD, 3 bytes)
      for (let k = 0; k < n; k++) map[b + k] = start;
      b += n;
    }
    map[b] = t.length;
    return map;
  }
}

function assertInRange(offset: number, length: number): void {
  if (!(offset >= 0 && offset < length)) throw new Error(`parser offset ${offset} outside the text (${length - 1} bytes)`);
}

/**
 * Parse a (possibly multi-statement) text. An empty text or one holding only comments and
 * semicolons gives no statements. A syntax error anywhere fails the whole text, as postgres
 * does for a simple Query message (it parses all statements before running the first).
 */
export function parsePg(text: string): PgParseResult {
  if (!loaded) throw new Error('the PostgreSQL parser is not loaded: await loadPgParser() at start-up');
  if (text.includes('\0')) {
    // The parser reads a C string and would stop at the NUL; postgres never receives one in a query.
    return { ok: false, error: { sqlstate: '42601', message: 'statement text contains a zero byte', position: text.indexOf('\0') + 1 } };
  }
  if (text.trim() === '') return { ok: true, statements: [], offsets: new TextOffsets(text) };
  let stmts;
  try {
    stmts = parseSync(text).stmts ?? [];
  } catch (err) {
    const e = err as Error & { sqlDetails?: { cursorPosition?: number } };
    const cursor = e.sqlDetails?.cursorPosition;
    // libpg-query gives the 0-based character position postgres computed (0 also for "none").
    return { ok: false, error: { sqlstate: '42601', message: e.message, position: cursor === undefined ? 0 : cursor + 1 } };
  }
  const offsets = new TextOffsets(text);
  const statements: PgRawStatement[] = [];
  let chunkStart = 0;
  for (const raw of stmts) {
    if (!raw.stmt) continue;
    const startByte = raw.stmt_location ?? 0;
    const start = offsets.index(startByte);
    // stmt_len 0 (omitted) means "to the end of the text"
    let end = raw.stmt_len ? offsets.index(startByte + raw.stmt_len) : trimEnd(text, text.length);
    while (end > start && /\s/.test(text[end - 1]!)) end--;
    const chunkEnd = afterTerminator(text, end);
    statements.push({ node: raw.stmt, start, end, chunkStart, chunkEnd });
    chunkStart = chunkEnd;
  }
  const last = statements.at(-1);
  if (last) last.chunkEnd = text.length; // trailing comments and empty statements belong to the last chunk
  return { ok: true, statements, offsets };
}

/** The last statement runs to the end of the text: drop trailing blanks and comments. */
function trimEnd(text: string, end: number): number {
  // Only whitespace and `--` comments are trimmed: a `/* */` could be part of a string-like token
  // the statement ends with, and trimming less is harmless (it stays inside the statement's span).
  for (;;) {
    while (end > 0 && /\s/.test(text[end - 1]!)) end--;
    const lineStart = text.lastIndexOf('\n', end - 1) + 1;
    const dash = lineCommentStart(text, lineStart, end);
    if (dash < 0) return end;
    end = dash;
  }
}

/** Start of a trailing `--` comment on the line [lineStart, end), or -1. Quotes on the line mean we
 * cannot tell without lexing, so then we keep the line. */
function lineCommentStart(text: string, lineStart: number, end: number): number {
  const line = text.slice(lineStart, end);
  const dash = line.indexOf('--');
  if (dash < 0 || /['"$]/.test(line)) return -1;
  return lineStart + dash;
}

/** Just past the ';' that ends a statement (skipping blanks and comments), or `end` when none. */
function afterTerminator(text: string, end: number): number {
  let i = end;
  for (;;) {
    while (i < text.length && /\s/.test(text[i]!)) i++;
    if (text.startsWith('--', i)) {
      const nl = text.indexOf('\n', i);
      i = nl < 0 ? text.length : nl + 1;
    } else if (text.startsWith('/*', i)) {
      i = skipBlockComment(text, i);
    } else break;
  }
  return text[i] === ';' ? i + 1 : end;
}

/** Past a (nested, as in postgres) block comment starting at i. */
export function skipBlockComment(text: string, i: number): number {
  let depth = 0;
  while (i < text.length) {
    if (text.startsWith('/*', i)) {
      depth++;
      i += 2;
    } else if (text.startsWith('*/', i)) {
      depth--;
      i += 2;
      if (depth === 0) return i;
    } else i++;
  }
  return i;
}
