// Replicas apply entries as Recall's admin account, not as the client's: what a statement
// takes from the account it runs as is written into its text on the leader, as MySQL's binary
// log does. CURRENT_USER becomes the account (a string in expressions, 'user'@'host' where an
// account is expected), and CREATE VIEW/TRIGGER/PROCEDURE/FUNCTION/EVENT without a DEFINER gets
// the account as DEFINER, so routines run with the same rights on every replica.
import { lexMysql, isTrivia, type Token } from '../sql/mysql-lexer.js';

const DEFINED_OBJECTS: ReadonlySet<string> = new Set(['VIEW', 'TRIGGER', 'PROCEDURE', 'FUNCTION', 'EVENT', 'AGGREGATE']);
const DDL_START: ReadonlySet<string> = new Set(['CREATE', 'ALTER', 'GRANT', 'REVOKE', 'SET', 'DROP', 'RENAME']);

/** `user@host` as CURRENT_USER() returns it, split at the last '@'. */
export function accountParts(currentUser: string): { user: string; host: string } {
  const at = currentUser.lastIndexOf('@');
  return at < 0 ? { user: currentUser, host: '%' } : { user: currentUser.slice(0, at), host: currentUser.slice(at + 1) };
}

function quote(s: string): string {
  return "'" + s.replace(/\\/g, '\\\\').replace(/'/g, "''") + "'";
}

/** The statement text (raw bytes in a latin1 string) with the account written in, or the same text. */
export function withAccount(sql: string, currentUser: string): string {
  const upper = sql.toUpperCase();
  const mentionsUser = upper.includes('CURRENT_USER');
  const creates = upper.includes('CREATE');
  if (!mentionsUser && !creates && !upper.includes('PASSWORD')) return sql;
  const { user, host } = accountParts(currentUser);
  const accountSpec = `${quote(user)}@${quote(host)}`;
  const ts = lexMysql(sql).filter((t) => !isTrivia(t) && t.type !== 'whitespace');
  if (ts.length === 0) return sql;
  const edits: Array<[number, number, string]> = [];
  const ddl = ts[0]!.type === 'word' && DDL_START.has(ts[0]!.text);
  // SET PASSWORD = ... without FOR is the current account's: on a replica that would be the admin's
  if (ts[0]!.text === 'SET' && ts[1]?.text === 'PASSWORD' && ts[2]?.text !== 'FOR') {
    edits.push([ts[1]!.end, ts[1]!.end, ` FOR ${accountSpec}`]);
  }
  if (ts[0]!.type === 'word' && ts[0]!.text === 'CREATE') {
    const at = definerInsertPoint(ts);
    if (at !== null) edits.push([at, at, `DEFINER=${accountSpec} `]);
  }
  if (mentionsUser) {
    for (let i = 0; i < ts.length; i++) {
      const t = ts[i]!;
      if (t.type !== 'word' || t.text !== 'CURRENT_USER') continue;
      let end = t.end;
      if (ts[i + 1]?.text === '(' && ts[i + 2]?.text === ')') end = ts[i + 2]!.end;
      if (ts[0]!.text === 'CREATE') {
        // only DEFINER = CURRENT_USER names the account; in a body (a view's query, a routine,
        // a trigger) CURRENT_USER is evaluated where and when it runs, as the definer
        if (!(ts[i - 1]?.text === '=' && ts[i - 2]?.text === 'DEFINER')) continue;
        edits.push([t.start, end, accountSpec]);
        continue;
      }
      edits.push([t.start, end, ddl ? accountSpec : quote(`${user}@${host}`)]);
    }
  }
  if (edits.length === 0) return sql;
  edits.sort((a, b) => b[0] - a[0]);
  let out = sql;
  for (const [a, b, r] of edits) out = out.slice(0, a) + r + out.slice(b);
  return out;
}

/** Where DEFINER goes in a CREATE of a view or stored program that has none; null when not one. */
function definerInsertPoint(ts: Token[]): number | null {
  for (let i = 1; i < ts.length && i < 16; i++) {
    const t = ts[i]!;
    if (t.type !== 'word') {
      if (t.text === '=') continue;
      return null;
    }
    if (t.text === 'DEFINER') return null;
    if (t.text === 'SQL' && ts[i + 1]?.text === 'SECURITY') return t.start;
    if (DEFINED_OBJECTS.has(t.text)) {
      // a loadable function (CREATE FUNCTION f RETURNS ... SONAME) has no definer
      if (ts.some((x) => x.type === 'word' && x.text === 'SONAME')) return null;
      return t.start;
    }
    if (['OR', 'REPLACE', 'ALGORITHM', 'UNDEFINED', 'MERGE', 'TEMPTABLE'].includes(t.text)) continue;
    return null;
  }
  return null;
}
