// The `mariadb` command-line client through Recall compared with the same client straight to
// mariadbd: stdout (with column type information) and stderr of the same scripts, each side in its
// own database on the same server, with and without TLS, and with caching_sha2_password.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCompatEnv, createSideDatabases, normalizeDb, type CompatEnv, type Target } from './env.js';
import { typesTable, typesRows, typesSelect, procedure, failing } from './content.js';

const user = 'cliuser';
const password = 'cli-pw-9';

interface CliRun {
  stdout: Buffer;
  stderr: string;
  status: number | null;
}

function cli(t: Target, args: string[], input?: string | Buffer, opts: { tls?: boolean; database?: string | null } = {}): CliRun {
  const r = spawnSync(
    'mariadb',
    [
      '--no-defaults', '-h', t.host, '-P', String(t.port), `-u${user}`, `-p${password}`, '--batch', '--raw',
      '--max-allowed-packet=128M', '--local-infile=1', '--default-character-set=utf8mb4',
      ...(opts.tls ? ['--ssl', '--skip-ssl-verify-server-cert'] : ['--skip-ssl']),
      ...args,
      ...(opts.database === null ? [] : [opts.database ?? t.db]),
    ],
    { input, maxBuffer: 256 * 1024 * 1024, timeout: 120_000 },
  );
  return { stdout: r.stdout, stderr: r.stderr.toString(), status: r.status };
}

/** Runs the same client invocation on both sides and compares stdout, stderr and exit status. */
function same(env: CompatEnv, args: string[], input?: string, opts: { tls?: boolean } = {}): CliRun {
  const d = cli(env.direct, args, input, opts);
  const r = cli(env.recall, args, input, opts);
  const show = (x: CliRun, t: Target) =>
    `status ${x.status}\n--- stderr\n${normalizeDb(x.stderr, t)}\n--- stdout\n${normalizeDb(x.stdout.toString(), t)}`;
  const [a, b] = [show(d, env.direct), show(r, env.recall)];
  if (a !== b) {
    const al = a.split('\n');
    const bl = b.split('\n');
    const diffs: string[] = [];
    for (let i = 0; i < Math.max(al.length, bl.length) && diffs.length < 20; i++) {
      if (al[i] !== bl[i]) diffs.push(`line ${i}: direct ${JSON.stringify(al[i]?.slice(0, 200))} | recall ${JSON.stringify(bl[i]?.slice(0, 200))}`);
    }
    assert.fail(`mariadb client: through Recall differs from direct (${al.length} vs ${bl.length} lines):\n  ${diffs.join('\n  ')}`);
  }
  return d;
}

describe('mariadb CLI through Recall vs direct', { timeout: 240_000 }, () => {
  let env: CompatEnv;
  let tmp: string;

  before(async () => {
    env = await startCompatEnv('cli');
    tmp = mkdtempSync(join(tmpdir(), 'recall-cli-'));
    createSideDatabases(env, user, password);
  });
  after(async () => {
    await env?.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test('DDL, DML, every column type with its metadata, NULLs', () => {
    const script = [typesTable, ...typesRows, typesSelect, 'SELECT NULL, 1 + NULL, NULL AS n',
      // ROW_COUNT() right after a replicated write reads the local session, which did not run the
      // write (known gap, see the closing note of issue 3): the affected-rows count in the OK is exact.
      "UPDATE types SET vc = 'changed' WHERE id = 2", 'DELETE FROM types WHERE id = 4',
      'SELECT id, HEX(b), ST_AsText(g), ST_AsText(p), ip, u FROM types ORDER BY id'].join(';\n') + ';\n';
    const out = same(env, ['--column-type-info', '--table'], script);
    assert.equal(out.status, 0, out.stderr);
    assert.match(out.stdout.toString(), /Type:\s+JSON|Type:\s+BLOB|Type:\s+LONG_BLOB/);
  });

  test('stored procedure with several result sets, and the client-side `use` (COM_INIT_DB)', () => {
    const script = `DELIMITER //\n${procedure}//\nDELIMITER ;\nCALL multi(3);\nuse information_schema\nSELECT DATABASE();\n`;
    const out = same(env, [], script);
    assert.equal(out.status, 0, out.stderr);
    assert.match(out.stdout.toString(), /first\tlabel\n3\tone\n/);
    assert.match(out.stdout.toString(), /cnt\n\d+\n/);
    assert.match(out.stdout.toString(), /information_schema/);
  });

  test('errors with their numbers and SQLSTATE (--force continues)', () => {
    const script = failing.map((f) => f.sql).join(';\n') + ';\nSELECT "after errors";\n';
    const out = same(env, ['--force'], script);
    for (const f of failing) assert.match(out.stderr, new RegExp(`ERROR ${f.errno} \\(`));
    assert.match(out.stdout.toString(), /after errors/);
  });

  test('warnings (non-strict insert) and --show-warnings', () => {
    const script = "SET sql_mode = '';\nCREATE TABLE w (t TINYINT);\nINSERT INTO w VALUES (999);\nSELECT * FROM w;\n";
    const out = same(env, ['--show-warnings'], script);
    assert.match(out.stdout.toString() + out.stderr, /Warning.*1264/);
  });

  test('a 17 MiB BLOB in and out, byte for byte', () => {
    const n = 17 * 1024 * 1024;
    const blob = Buffer.alloc(n);
    for (let i = 0; i < n; i += 2048) blob.writeUInt32LE((i * 2246822519) >>> 0, i);
    const sha = createHash('sha1').update(blob).digest('hex');
    const insert = `CREATE TABLE big (b LONGBLOB);\nINSERT INTO big VALUES (X'${blob.toString('hex')}');\n`;
    for (const t of [env.direct, env.recall]) {
      const ins = cli(t, [], insert);
      assert.equal(ins.status, 0, `${t.name}: ${ins.stderr}`);
      const meta = cli(t, ['-N', '-e', 'SELECT SHA1(b), LENGTH(b) FROM big']);
      assert.equal(meta.stdout.toString().trim(), `${sha}\t${n}`, `${t.name}: stored blob`);
      const back = cli(t, ['-N', '-e', 'SELECT b FROM big']);
      assert.equal(back.status, 0, `${t.name}: ${back.stderr}`);
      assert.ok(back.stdout.subarray(0, n).equals(blob), `${t.name}: 17 MiB blob read back`);
      assert.equal(back.stdout.length, n + 1, `${t.name}: blob plus newline`);
    }
  });

  test('LOAD DATA LOCAL INFILE works identically or is refused clearly', () => {
    const file = join(tmp, 'rows.tsv');
    writeFileSync(file, '1\tone\n2\ttwo\n');
    const script = `CREATE TABLE ld (id INT, s VARCHAR(9));\nLOAD DATA LOCAL INFILE '${file}' INTO TABLE ld;\nSELECT * FROM ld;\n`;
    const d = cli(env.direct, ['--force'], script);
    const r = cli(env.recall, ['--force'], script);
    assert.equal(d.stdout.toString(), 'id\ts\n1\tone\n2\ttwo\n');
    if (r.stdout.toString() !== d.stdout.toString()) {
      assert.match(r.stderr, /ERROR \d+ \(\w+\)/, `neither identical nor a clear refusal: ${r.stderr}`);
    }
  });

  for (const tls of [false, true]) {
    for (const auth of ['default', 'caching_sha2_password']) {
      test(`connect with TLS ${tls ? 'on' : 'off'}, auth ${auth}`, () => {
        const args = auth === 'default' ? [] : [`--default-auth=${auth}`];
        for (const t of [env.direct, env.recall]) {
          const st = cli(t, [...args, '-e', 'status'], undefined, { tls });
          assert.equal(st.status, 0, `${t.name}: ${st.stderr}`);
          const ssl = /SSL:\s+(.*)/.exec(st.stdout.toString())?.[1] ?? '';
          assert.equal(/Cipher in use/.test(ssl), tls, `${t.name}: client reports SSL "${ssl}"`);
          const bad = spawnSync('mariadb', ['--no-defaults', '-h', t.host, '-P', String(t.port), `-u${user}`, '-pwrong',
            ...(tls ? ['--ssl', '--skip-ssl-verify-server-cert'] : ['--skip-ssl']), ...args, '-e', 'SELECT 1']);
          assert.match(bad.stderr.toString(), /ERROR 1045 \(28000\)/, `${t.name}: wrong password`);
        }
        same(env, args, 'SELECT CURRENT_USER(), DATABASE(), 1 + 1;\nSELECT id, vc FROM types ORDER BY id;\n', { tls });
      });
    }
  }
});
