// Function, procedure and DO bodies that call time, random or uuid functions: the body runs on
// every replica (a trigger firing, a function called by a replicated write, a DO block now), so
// each would use its own clock or random source. SQL and PL/pgSQL bodies are scanned token by
// token (strings and comments skipped); bodies in other languages cannot be checked.
import { lexPg } from './pg-lex.js';
import { type Fields, unwrap } from './pg-tree.js';
import { FRESH_FUNCTIONS, NEVER_FUNCTIONS, TIME_FUNCTIONS } from './pg-volatile.js';

const TIME_WORDS: ReadonlySet<string> = new Set(['current_timestamp', 'current_date', 'current_time', 'localtime', 'localtimestamp']);

/** Names of the time/random/uuid/never functions a SQL or PL/pgSQL body calls. */
export function bodyCalls(body: string): string[] {
  const tokens = lexPg(body);
  const found: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t.kind !== 'word') continue;
    const prev = tokens[i - 1];
    // x.now() is a column or another schema's function, except pg_catalog.now()
    if (prev?.kind === 'punct' && prev.value === '.' && tokens[i - 2]?.value !== 'pg_catalog') continue;
    const call = tokens[i + 1]?.kind === 'punct' && tokens[i + 1]!.value === '(';
    const name = t.value;
    const hit = TIME_WORDS.has(name) || (call && (TIME_FUNCTIONS.has(name) || FRESH_FUNCTIONS.has(name) || NEVER_FUNCTIONS.has(name)));
    if (hit && !found.includes(name)) found.push(name);
  }
  return found;
}

/**
 * Tables a SQL or PL/pgSQL body inserts into (INSERT INTO name or schema.name, as written): a
 * column default calling now() or random() is evaluated inside the body, on every replica.
 */
export function bodyInsertTargets(body: string): string[] {
  const tokens = lexPg(body);
  const found: string[] = [];
  const name = (t: { kind: string; value: string } | undefined) =>
    t?.kind === 'word' ? t.value : t?.kind === 'qident' ? t.value : undefined;
  for (let i = 0; i + 2 < tokens.length; i++) {
    if (tokens[i]!.kind !== 'word' || tokens[i]!.value !== 'insert' || tokens[i + 1]!.value !== 'into') continue;
    let n = name(tokens[i + 2]);
    if (n === undefined) continue;
    if (tokens[i + 3]?.value === '.' && name(tokens[i + 4]) !== undefined) n = `${n}.${name(tokens[i + 4])}`;
    if (!found.includes(n)) found.push(n);
  }
  return found;
}

/** The language and body text of a CREATE FUNCTION/PROCEDURE or DO statement's options. */
export function routineBody(options: unknown): { language: string | undefined; body: string | undefined } {
  let language: string | undefined;
  let body: string | undefined;
  for (const o of Array.isArray(options) ? options : []) {
    const d = unwrap(o);
    if (d?.[0] !== 'DefElem') continue;
    const arg = unwrap(d[1].arg);
    if (d[1].defname === 'language' && arg?.[0] === 'String') language = String(arg[1].sval ?? '').toLowerCase();
    if (d[1].defname === 'as' && arg) {
      if (arg[0] === 'String') body = String(arg[1].sval ?? '');
      else if (arg[0] === 'List') {
        const first = unwrap((arg[1].items as unknown[] | undefined)?.[0]);
        if (first?.[0] === 'String') body = String((first[1] as Fields).sval ?? '');
      }
    }
  }
  return { language, body };
}
