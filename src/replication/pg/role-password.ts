// CREATE/ALTER ROLE ... PASSWORD 'plain text': postgres salts the password itself, so every replica
// applying the same text would store a different SCRAM verifier, and Recall, which logs in to the
// leader with the ClientKey a client proved against its own replica's verifier, could not log in
// (H8's cluster test). The leader computes the verifier once, with one salt, and the statement
// carries it instead of the password: every replica stores the same verifier, and no plain
// password reaches the log (as the MySQL side does with IDENTIFIED BY).
import crypto from 'node:crypto';
import { parsePg } from '../../sql/pg-parse.js';

const SCRAM_ITERATIONS = 4096;

/** A SCRAM-SHA-256 verifier as postgres stores it in pg_authid.rolpassword. */
export function scramVerifier(password: string, salt = crypto.randomBytes(16), iterations = SCRAM_ITERATIONS): string {
  // SASLprep leaves ASCII as it is; postgres uses the raw bytes when a password cannot be prepared.
  const salted = crypto.pbkdf2Sync(Buffer.from(password.normalize('NFKC'), 'utf8'), salt, iterations, 32, 'sha256');
  const clientKey = crypto.createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = crypto.createHash('sha256').update(clientKey).digest();
  const serverKey = crypto.createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

/** Already a verifier (SCRAM or md5): postgres stores those as given. */
function isVerifier(p: string): boolean {
  return /^SCRAM-SHA-256\$\d+:/.test(p) || /^md5[0-9a-f]{32}$/.test(p);
}

/**
 * The statement with every plain-text role password replaced by a SCRAM verifier (a plain
 * '...' literal after the PASSWORD keyword); the text unchanged when there is none.
 */
export function hashRolePasswords(sql: string): string {
  if (!/password/i.test(sql)) return sql;
  const r = parsePg(sql);
  if (!r.ok) return sql;
  const bytes = r.offsets.ascii ? null : Buffer.from(sql, 'utf8');
  const toIndex = (loc: number) => (bytes ? bytes.subarray(0, loc).toString('utf8').length : loc);
  const edits: Array<{ from: number; to: number; text: string }> = [];
  for (const st of r.statements) {
    const node = st.node as Record<string, { options?: Array<{ DefElem?: { defname: string; arg?: { String?: { sval: string } }; location: number } }> }>;
    const stmt = node.CreateRoleStmt ?? node.AlterRoleStmt;
    for (const o of stmt?.options ?? []) {
      const d = o.DefElem;
      const plain = d?.defname === 'password' ? d.arg?.String?.sval : undefined;
      if (plain === undefined || isVerifier(plain)) continue;
      // PASSWORD 'literal': find the quote after the keyword
      const at = toIndex(d!.location);
      const m = /^password\s+'((?:[^']|'')*)'/i.exec(sql.slice(at));
      if (!m || m[1]!.replace(/''/g, "'") !== plain) continue; // E'...' or other forms: left to postgres
      const litFrom = at + m[0].length - m[1]!.length - 2;
      edits.push({ from: litFrom, to: at + m[0].length, text: `'${scramVerifier(plain)}'` });
    }
  }
  let out = sql;
  for (const e of edits.sort((a, b) => b.from - a.from)) out = out.slice(0, e.from) + e.text + out.slice(e.to);
  return out;
}
