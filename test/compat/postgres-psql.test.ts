// psql (the PostgreSQL 15 client, unmodified) through Recall's PostgreSQL frontend compared with
// psql straight to the same postgres: -c with several statements, and a script with \copy in both
// directions, a transaction, a prepared statement, errors, notices and \gset. Each side works in its
// own database; outputs must be equal once the database name is replaced.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startPostgres, startFrontend, ROLES, type TestPostgres } from '../frontend/postgres/helpers.js';
import type { PostgresFrontend } from '../../src/frontend/postgres/server.js';
import { tempDir, type TempDir } from '../harness/tmp.js';

let db: TestPostgres;
let fe: PostgresFrontend;
let recallPort: number;
let dir: TempDir;

interface Side {
  name: 'direct' | 'recall';
  port: () => number;
  db: string;
}
const sides: Side[] = [
  { name: 'direct', port: () => db.port, db: 'psql_d' },
  { name: 'recall', port: () => recallPort, db: 'psql_r' },
];

function psql(side: Side, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(
      'psql',
      ['-X', '-h', '127.0.0.1', '-p', String(side.port()), '-U', 'alice', '-d', side.db, ...args],
      { env: { ...process.env, PGPASSWORD: ROLES.alice, PGAPPNAME: 'psql-compat', PGCONNECT_TIMEOUT: '10' }, cwd: dir.path, timeout: 30000 },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: number }).code ?? -1) : 0;
        resolve({ code, out: (stdout + stderr).split(side.db).join('<db>') });
      },
    );
  });
}

before(async () => {
  dir = tempDir('recall-psql-');
  chmodSync(dir.path, 0o755);
  db = await startPostgres();
  ({ frontend: fe, port: recallPort } = await startFrontend(db, { auth: 'md5' }));
  for (const s of sides) await db.admin(`CREATE DATABASE ${s.db} OWNER alice`);
});

after(async () => {
  await fe?.close();
  await db?.stop();
  dir?.remove();
});

describe('psql', () => {
  test('-c with several statements, and a connection error, the same as direct', async () => {
    const [d, r] = await Promise.all(sides.map((s) => psql(s, ['-c', "SELECT 1 AS a; SELECT 'two' AS b; SELECT current_user, current_database()"])));
    assert.equal(r!.code, 0, r!.out);
    assert.equal(r!.out, d!.out);
    assert.match(r!.out, /alice\s+\| <db>/);
    const bad = await new Promise<string>((resolve) =>
      execFile('psql', ['-X', '-h', '127.0.0.1', '-p', String(recallPort), '-U', 'alice', '-d', 'psql_r', '-c', 'SELECT 1'], { env: { ...process.env, PGPASSWORD: 'wrong' } }, (_e, o, e) => resolve(o + e)),
    );
    assert.match(bad, /FATAL: {2}password authentication failed for user "alice"/);
  });

  test('a script with \\copy both ways, a transaction, PREPARE, errors, a notice and \\gset', async () => {
    const rows = Array.from({ length: 500 }, (_, i) => `${i}\tname ${i}\t${i % 7 === 0 ? '\\N' : String(i * 1.5)}`).join('\n') + '\n';
    writeFileSync(join(dir.path, 'in.tsv'), rows);
    const script = (out: string) => `
\\set ON_ERROR_STOP 0
CREATE TABLE t (id int PRIMARY KEY, name text NOT NULL, x numeric);
\\copy t FROM 'in.tsv'
SELECT count(*), sum(id), count(x) FROM t;
\\copy (SELECT * FROM t WHERE id % 50 = 0 ORDER BY id) TO '${out}'
BEGIN;
DELETE FROM t WHERE id < 100;
SELECT count(*) AS in_tx FROM t;
ROLLBACK;
SELECT count(*) AS after_rollback FROM t;
PREPARE by_id(int) AS SELECT name, x FROM t WHERE id = $1;
EXECUTE by_id(14);
EXECUTE by_id(15);
SELECT 1/0;
INSERT INTO t VALUES (1, 'dup', 0);
DO $$ BEGIN RAISE NOTICE 'notice from %', 'plpgsql'; END $$;
SELECT max(id) AS top FROM t \\gset
\\echo top is :top
SELECT name FROM t WHERE id = :top;
`;
    const outs = await Promise.all(
      sides.map((s) => {
        writeFileSync(join(dir.path, `${s.name}.sql`), script(`${s.name}.out.tsv`));
        return psql(s, ['-f', `${s.name}.sql`]);
      }),
    );
    const [d, r] = outs.map((o, i) => o.out.split(`${sides[i]!.name}.sql`).join('<script>'));
    assert.equal(r, d);
    assert.match(r!, /division by zero/);
    assert.match(r!, /duplicate key value violates unique constraint "t_pkey"/);
    assert.match(r!, /NOTICE: {2}notice from plpgsql/);
    assert.match(r!, /top is 499/);
    assert.match(r!, /COPY 500/);
    const copiedOut = readFileSync(join(dir.path, 'recall.out.tsv'), 'utf8');
    assert.equal(copiedOut, readFileSync(join(dir.path, 'direct.out.tsv'), 'utf8'));
    assert.equal(copiedOut.split('\n').length, 11);
  });
});
