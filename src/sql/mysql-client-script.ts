// Split a SQL script the way the mysql/mariadb command-line client does before
// it sends anything to the server: on the current delimiter, outside strings,
// quoted identifiers and comments, with `DELIMITER x` lines changing the
// delimiter. DELIMITER is a client command; the server never sees it.
// (client/mysql.cc, add_line(): `/*!` executable comments are code there too,
// so a delimiter inside one still ends the statement.)

export interface ScriptStatement {
  /** statement text as the client sends it (delimiter removed, surrounding whitespace trimmed) */
  text: string;
  /** the delimiter in force when it was read */
  delimiter: string;
}

export function splitClientScript(script: string): ScriptStatement[] {
  const out: ScriptStatement[] = [];
  let delimiter = ';';
  let start = 0;
  let i = 0;
  const n = script.length;
  const push = (end: number): void => {
    const text = script.slice(start, end).trim();
    if (text && !isOnlyComments(text)) out.push({ text, delimiter });
  };
  // Only whitespace and comments since the last statement: a client command may start here.
  let blank = true;
  while (i < n) {
    const c = script[i];
    if (blank) {
      if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
        i++;
        continue;
      }
      if (/^delimiter[ \t]/i.test(script.slice(i, i + 10))) {
        const eol = script.indexOf('\n', i);
        const line = script.slice(i, eol < 0 ? n : eol);
        const next = line.slice(10).trim().split(/\s+/)[0];
        if (next) delimiter = next;
        i = eol < 0 ? n : eol + 1;
        start = i;
        continue;
      }
      // mariadb-dump's sandbox-mode line (/*M!999999\- ... */) is a client command too.
      if (script.startsWith('/*M!999999\\-', i)) {
        const close = script.indexOf('*/', i);
        i = close < 0 ? n : close + 2;
        start = i;
        continue;
      }
    }
    if (c === "'" || c === '"' || c === '`') {
      blank = false;
      i = skipQuoted(script, i + 1, c);
      continue;
    }
    if (c === '#' || (c === '-' && script[i + 1] === '-' && (i + 2 >= n || script.charCodeAt(i + 2) <= 32))) {
      const eol = script.indexOf('\n', i);
      i = eol < 0 ? n : eol;
      continue;
    }
    if (c === '/' && script[i + 1] === '*' && script[i + 2] !== '!' && !(script[i + 2] === 'M' && script[i + 3] === '!')) {
      const close = script.indexOf('*/', i + 2);
      i = close < 0 ? n : close + 2;
      continue;
    }
    if (script.startsWith(delimiter, i)) {
      push(i);
      i += delimiter.length;
      start = i;
      blank = true;
      continue;
    }
    blank = false;
    i++;
  }
  push(n);
  return out;
}

function skipQuoted(s: string, i: number, q: string): number {
  while (i < s.length) {
    const c = s[i];
    if (c === '\\' && q !== '`') i += 2;
    else if (c === q && s[i + 1] === q) i += 2;
    else if (c === q) return i + 1;
    else i++;
  }
  return s.length;
}

function isOnlyComments(text: string): boolean {
  let rest = text;
  for (;;) {
    rest = rest.trimStart();
    if (rest === '') return true;
    if (rest.startsWith('--') || rest.startsWith('#')) {
      const eol = rest.indexOf('\n');
      if (eol < 0) return true;
      rest = rest.slice(eol + 1);
    } else if (rest.startsWith('/*') && rest[2] !== '!' && !rest.startsWith('/*M!')) {
      const close = rest.indexOf('*/');
      if (close < 0) return true;
      rest = rest.slice(close + 2);
    } else {
      return false;
    }
  }
}
