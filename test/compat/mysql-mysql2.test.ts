// mysql2 through Recall compared with mysql2 straight to mariadbd: the same statements on both
// sides (each in its own database on the same server), with the default auth plugin and forced to
// caching_sha2_password, with and without TLS; text protocol (query) and binary (execute).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createReadStream } from 'node:fs';
import mysql from 'mysql2/promise';
import { startCompatEnv, rootSql, type CompatEnv, type Target } from './env.js';
import { show, fieldMeta, pluginRewriter, assertSame } from './compare.js';
import { typesTable, typesRows, typesSelect, procedure, failing, readerGrants } from './content.js';
import net from 'node:net';
import { startRecall } from '../harness/recall.js';
import { decodeHandshakeV10 } from '../../src/protocol/mysql/handshake.js';

const user = 'app';
const password = 'app-secret-1';

interface ConnOpts {
  tls?: boolean;
  port?: number;
  database?: string;
  user?: string;
  password?: string;
  dateStrings?: boolean;
}

function connect(env: CompatEnv, t: Target, o: ConnOpts = {}): Promise<mysql.Connection> {
  return mysql.createConnection({
    host: t.host,
    port: o.port ?? t.port,
    user: o.user ?? user,
    password: o.password ?? password,
    database: o.database ?? t.db,
    multipleStatements: true,
    supportBigNumbers: true,
    bigNumberStrings: true,
    dateStrings: o.dateStrings ?? true,
    maxPreparedStatements: 64,
    connectTimeout: 20_000,
    ssl: o.tls ? { ca: env.cert.cert, rejectUnauthorized: false } : undefined,
    infileStreamFactory: (path: string) => createReadStream(path),
  });
}

/** Runs `fn` on both sides and asserts the canonical results are equal; returns the direct one. */
async function same(
  env: CompatEnv,
  fn: (c: mysql.Connection, t: Target) => Promise<unknown>,
  o: ConnOpts = {},
): Promise<string> {
  const out: string[] = [];
  for (const t of [env.direct, env.recall]) {
    const c = await connect(env, t, o);
    try {
      out.push(show(t, await fn(c, t)));
    } finally {
      await c.end().catch(() => c.destroy());
    }
  }
  assertSame(out[1]!, out[0]!, 'mysql2');
  return out[0]!;
}

async function errOf(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
    return { ok: true };
  } catch (e) {
    const x = e as { errno?: number; sqlState?: string; sqlMessage?: string; code?: string };
    return { errno: x.errno, sqlState: x.sqlState, message: x.sqlMessage, code: x.code };
  }
}

describe('mysql2 through Recall vs direct', { timeout: 240_000 }, () => {
  let env: CompatEnv;

  before(async () => {
    env = await startCompatEnv('m2');
    for (const t of [env.direct, env.recall]) {
      rootSql(env, `CREATE DATABASE ${t.db} CHARACTER SET utf8mb4`);
      for (const host of ['%', 'localhost', '127.0.0.1']) {
        rootSql(env, `CREATE USER IF NOT EXISTS '${user}'@'${host}' IDENTIFIED BY '${password}';
          GRANT ALL ON ${t.db}.* TO '${user}'@'${host}'`);
      }
      rootSql(env, readerGrants(t.db, 'reader', 'reader-pw'));
    }
  });
  after(async () => {
    await env?.stop();
  });

  test('DDL, DML and every column type, text protocol', async () => {
    await same(env, async (c) => {
      const r: unknown[] = [];
      r.push(await c.query(typesTable));
      for (const ins of typesRows) r.push(await c.query(ins));
      const [rows, fields] = await c.query(typesSelect);
      r.push(rows, fieldMeta(fields));
      r.push(await c.query("UPDATE types SET vc = CONCAT(vc, '!') WHERE id IN (1, 2)"));
      r.push(await c.query('DELETE FROM types WHERE id = 2'));
      r.push((await c.query(typesSelect))[0]);
      r.push(await c.query('INSERT INTO types SELECT 2, ti, tiu, si, siu, mi, miu, i, iu, bi, biu, dc, f, d, b, dt, tm, dtt, ts, y, c, vc, bn, vb, tb, bl, mb, lb, tt, tx, mt, lt, e, s, j, g, p, ip, u FROM types WHERE id = 1'));
      r.push((await c.query('SELECT id, NULL AS n, HEX(b), ST_AsText(g), ST_AsText(p), CAST(ip AS CHAR), JSON_EXTRACT(j, "$.k[1]") FROM types ORDER BY id'))[0]);
      return r;
    });
  });

  test('every column type, binary protocol (execute), Dates as objects', async () => {
    await same(
      env,
      async (c) => {
        const r: unknown[] = [];
        for (const id of [1, 2, 3, 4]) {
          const [rows, fields] = await c.execute('SELECT * FROM types WHERE id = ?', [id]);
          r.push(rows, fieldMeta(fields));
        }
        return r;
      },
      { dateStrings: false },
    );
  });

  test('prepared statements with every parameter type', async () => {
    await same(env, async (c) => {
      await c.query(`CREATE TABLE params (id INT AUTO_INCREMENT PRIMARY KEY, n INT, dbl DOUBLE, s VARCHAR(50),
        bb VARBINARY(50), dt DATETIME(3), nul INT, big BIGINT, bigu BIGINT UNSIGNED, dec1 DECIMAL(10,3), bool1 BOOLEAN)`);
      const r: unknown[] = [];
      const vals: (string | number | bigint | boolean | Date | Buffer | null)[][] = [
        [42, 3.25, 'héllo 😀', Buffer.from([0, 1, 2, 255]), new Date(Date.UTC(2024, 1, 29, 12, 34, 56, 789)), null,
          -9007199254740993n, '18446744073709551615', '1234567.125', true],
        [-1, -0.5, '', Buffer.alloc(0), '2001-02-03 04:05:06.007', null, 0, 0, '-0.001', false],
      ];
      for (const v of vals) {
        r.push(await c.execute('INSERT INTO params (n, dbl, s, bb, dt, nul, big, bigu, dec1, bool1) VALUES (?,?,?,?,?,?,?,?,?,?)', v));
      }
      r.push((await c.execute('SELECT * FROM params WHERE n > ? OR s = ? ORDER BY id', [-100, '']))[0]);
      r.push((await c.execute('SELECT ? AS a, ? AS b, ? AS c, ? AS d, ? AS e', [1, 'x', null, Buffer.from('yz'), 2.5]))[0]);
      // COM_STMT_PREPARE once, execute many times with different values.
      const st = await c.prepare('SELECT id, s FROM params WHERE id = ?');
      r.push((await st.execute([1]))[0], (await st.execute([2]))[0], (await st.execute([999]))[0]);
      await st.close();
      return r;
    });
  });

  test('NULLs everywhere', async () => {
    await same(env, async (c) => [
      (await c.query('SELECT NULL, NULL AS a, CAST(NULL AS SIGNED), CAST(NULL AS DATETIME), 1 + NULL'))[0],
      (await c.execute('SELECT ?, ? IS NULL', [null, null]))[0],
      (await c.query('SELECT * FROM types WHERE id = 3'))[0],
    ]);
  });

  test('multi-statements and a stored procedure with several result sets', async () => {
    await same(env, async (c) => {
      const r: unknown[] = [];
      const [multi, mf] = await c.query('SELECT 1 AS one; SELECT 2 AS two, "b" AS bee; SET @x = 5; SELECT @x');
      r.push(multi, fieldMeta(mf));
      await c.query(procedure);
      const [callRes] = await c.query('CALL multi(2)');
      r.push(callRes);
      const [callExec] = await c.execute('CALL multi(?)', [4]);
      r.push(callExec);
      return r;
    });
  });

  test('errors keep their numbers, SQLSTATE and text', async () => {
    const out = await same(env, async (c) => {
      const r: unknown[] = [];
      for (const f of failing) r.push(await errOf(c.query(f.sql)));
      for (const f of failing) r.push(await errOf(c.execute(f.sql)));
      r.push((await c.query('SELECT 1 AS still_alive'))[0]);
      return r;
    });
    for (const f of failing) assert.match(out, new RegExp(`"errno":${f.errno}`));
  });

  test('warnings count, info and status flags of transactions', async () => {
    const out = await same(env, async (c) => {
      const r: unknown[] = [];
      await c.query("SET SESSION sql_mode = ''");
      await c.query('CREATE TABLE warn (t TINYINT, v VARCHAR(3))');
      r.push(await c.query("INSERT INTO warn VALUES (1000, 'abcdef'), (1, 'x')"));
      r.push((await c.query('SHOW WARNINGS'))[0]);
      r.push(await c.query('BEGIN'));
      r.push(await c.query('INSERT INTO warn VALUES (2, "y")'));
      r.push(await c.query('COMMIT'));
      r.push(await c.query('START TRANSACTION'));
      r.push(await c.query('UPDATE warn SET t = t + 1'));
      r.push(await c.query('ROLLBACK'));
      r.push(await c.query('SET autocommit = 0'));
      r.push(await c.query('INSERT INTO warn VALUES (3, "z")'));
      r.push(await c.query('COMMIT'));
      r.push(await c.query('SET autocommit = 1'));
      r.push((await c.query('SELECT * FROM warn ORDER BY t'))[0]);
      return r;
    });
    assert.match(out, /"warningStatus":2/);
    // SERVER_STATUS_IN_TRANS (1) is set after BEGIN's INSERT: serverStatus 3 = IN_TRANS|AUTOCOMMIT.
    assert.match(out, /"serverStatus":3/);
  });

  test('BLOBs of 17 and 33 MiB, text and binary protocol, byte for byte', async () => {
    const sizes = [17 * 1024 * 1024, 33 * 1024 * 1024];
    const blobs = sizes.map((n, k) => {
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i += 4096) b.writeUInt32LE((i * 2654435761 + k) >>> 0, i);
      return b;
    });
    for (const t of [env.direct, env.recall]) {
      const c = await connect(env, t);
      try {
        await c.query('CREATE TABLE big (id INT PRIMARY KEY, b LONGBLOB)');
        await c.query('INSERT INTO big VALUES (?, ?)', [1, blobs[0]]); // text protocol: X'…' literal
        await c.execute('INSERT INTO big VALUES (?, ?)', [2, blobs[1]]); // binary protocol
        for (const [k, blob] of blobs.entries()) {
          const sha = createHash('sha1').update(blob).digest('hex');
          const [[meta]] = (await c.query('SELECT SHA1(b) AS s, LENGTH(b) AS n FROM big WHERE id = ?', [k + 1])) as unknown as [[{ s: string; n: number }]];
          assert.equal(meta.s, sha, `${t.name}: stored sha1 of blob ${k + 1}`);
          assert.equal(Number(meta.n), blob.length);
          const [[viaText]] = (await c.query('SELECT b FROM big WHERE id = ?', [k + 1])) as unknown as [[{ b: Buffer }]];
          assert.ok(viaText.b.equals(blob), `${t.name}: blob ${k + 1} read back via text protocol`);
          const [[viaBin]] = (await c.execute('SELECT b FROM big WHERE id = ?', [k + 1])) as unknown as [[{ b: Buffer }]];
          assert.ok(viaBin.b.equals(blob), `${t.name}: blob ${k + 1} read back via binary protocol`);
        }
        await c.query('DROP TABLE big');
      } finally {
        await c.end().catch(() => c.destroy());
      }
    }
  });

  test('LOAD DATA LOCAL INFILE works identically or is refused clearly', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'recall-infile-'));
    const file = join(dir, 'rows.tsv');
    writeFileSync(file, '1\tone\n2\ttwo\n3\t\\N\n');
    try {
      const res: unknown[] = [];
      for (const t of [env.direct, env.recall]) {
        const c = await connect(env, t);
        try {
          await c.query('CREATE TABLE loaded (id INT, s VARCHAR(10))');
          const r = await errOf(c.query({ sql: `LOAD DATA LOCAL INFILE '${file}' INTO TABLE loaded`, values: [] }));
          const rows = (await c.query('SELECT * FROM loaded ORDER BY id'))[0];
          res.push({ r, rows });
        } finally {
          await c.end().catch(() => c.destroy());
        }
      }
      const [d, r] = res.map((x) => JSON.stringify(x));
      assert.match(d!, /"ok":true/, 'direct LOAD DATA LOCAL works');
      if (d !== r) {
        // A refusal must be an SQL error with a number and a message, and load nothing.
        assert.match(r!, /"errno":\d+/, `through Recall neither identical nor a clear refusal: ${r}`);
        assert.match(r!, /"rows":\[\]/);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('COM_PING, COM_CHANGE_USER, USE, and a read-only user gets 1142 for INSERT', async () => {
    const out = await same(env, async (c, t) => {
      const r: unknown[] = [];
      await c.ping();
      r.push((await c.query('SELECT CURRENT_USER() AS u, DATABASE() AS d'))[0]);
      await c.changeUser({ user: 'reader', password: 'reader-pw', database: t.db });
      r.push((await c.query('SELECT CURRENT_USER() AS u, DATABASE() AS d'))[0]);
      r.push((await c.query('SELECT COUNT(*) AS n FROM types'))[0]);
      r.push(await errOf(c.query('INSERT INTO types (id) VALUES (100)')));
      r.push(await errOf(c.execute('INSERT INTO types (id) VALUES (?)', [101])));
      r.push(await errOf(c.query('CREATE TABLE nope (x INT)')));
      await c.changeUser({ user, password, database: t.db });
      r.push((await c.query('SELECT CURRENT_USER() AS u'))[0]);
      await c.query('USE information_schema');
      r.push((await c.query('SELECT DATABASE() AS d'))[0]);
      await c.ping();
      return r;
    });
    assert.match(out, /"errno":1142/);
    assert.match(out, /reader@/);
  });

  test('a user with only SELECT logging in directly: SELECT works, INSERT/UPDATE/DELETE get 1142', async () => {
    const res: string[] = [];
    for (const t of [env.direct, env.recall]) {
      const c = await connect(env, t, { user: 'reader', password: 'reader-pw' });
      try {
        const r = [
          (await c.query('SELECT CURRENT_USER() AS u, COUNT(*) AS n FROM types'))[0],
          (await c.execute('SELECT id FROM types WHERE id = ?', [1]))[0],
          await errOf(c.query('INSERT INTO types (id) VALUES (200)')),
          await errOf(c.execute('INSERT INTO types (id) VALUES (?)', [201])),
          await errOf(c.query('UPDATE types SET vc = "x"')),
          await errOf(c.query('DELETE FROM types')),
          await errOf(c.query('BEGIN; INSERT INTO types (id) VALUES (202); COMMIT')),
          (await c.query('SELECT COUNT(*) AS n FROM types'))[0],
        ];
        res.push(show(t, r));
      } finally {
        await c.end().catch(() => c.destroy());
      }
    }
    assertSame(res[1]!, res[0]!, 'read-only user');
    assert.equal(res[1]!.match(/"errno":1142/g)?.length, 5, res[1]);
  });

  test('COM_RESET_CONNECTION clears user variables, sql_mode and temporary tables', async () => {
    const out = await same(env, async (c) => {
      const r: unknown[] = [];
      await c.query("SET @v = 42, SESSION sql_mode = 'ANSI_QUOTES'");
      await c.query('CREATE TEMPORARY TABLE tmp1 (x INT)');
      r.push((await c.query('SELECT @v AS v, @@SESSION.sql_mode AS m'))[0]);
      await c.reset();
      r.push((await c.query('SELECT @v AS v, @@SESSION.sql_mode AS m'))[0]);
      r.push(await errOf(c.query('SELECT * FROM tmp1')));
      r.push((await c.execute('SELECT ? AS after_reset', [7]))[0]);
      return r;
    });
    assert.match(out, /\[\{"v":null,/, 'user variable cleared by the reset');
    assert.match(out, /"errno":1146/, 'temporary table gone after the reset');
  });

  test('wrong password gets 1045 on both sides', async () => {
    const res: unknown[] = [];
    for (const t of [env.direct, env.recall]) {
      res.push(await errOf(connect(env, t, { password: 'wrong' }).then((c) => c.end())));
    }
    assert.match(JSON.stringify(res[0]), /"errno":1045/);
    assert.match(JSON.stringify(res[1]), /"errno":1045/);
  });

  for (const plugin of ['default', 'caching_sha2_password'] as const) {
    for (const tls of [false, true]) {
      test(`auth plugin ${plugin}, TLS ${tls ? 'on' : 'off'}: query and execute`, async () => {
        const relays: { port: number; close(): Promise<void> }[] = [];
        try {
          const ports = new Map<Target, number>();
          for (const t of [env.direct, env.recall]) {
            if (plugin === 'default') ports.set(t, t.port);
            else {
              const relay = await pluginRewriter(t.port, 'mysql_native_password', 'caching_sha2_password');
              relays.push(relay);
              ports.set(t, relay.port);
            }
          }
          const out: string[] = [];
          for (const t of [env.direct, env.recall]) {
            const c = await connect(env, t, { tls, port: ports.get(t) }).catch((e: Error) => {
              throw new Error(`${t.name}: ${e.message}`);
            });
            try {
              // The client's own socket says whether TLS was negotiated with the side it talks to.
              const stream = (c as unknown as { connection: { stream: { encrypted?: boolean } } }).connection.stream;
              assert.equal(stream.encrypted === true, tls, `${t.name}: TLS ${tls ? 'on' : 'off'} on the client socket`);
              const r = [
                (await c.query('SELECT CURRENT_USER() AS u, 1 + 1 AS two, ? AS p', ['x']))[0],
                (await c.execute('SELECT ? + 1 AS n, ? AS s, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?', [41, 'x', 'none']))[0],
              ];
              out.push(show(t, r));
            } finally {
              await c.end().catch(() => c.destroy());
            }
          }
          assert.equal(out[1], out[0]);
          // Through Recall: a wrong password is still refused with this plugin.
          const bad = await errOf(connect(env, env.recall, { tls, port: ports.get(env.recall), password: 'nope' }));
          assert.match(JSON.stringify(bad), /"errno":1045/);
        } finally {
          for (const r of relays) await r.close();
        }
      });
    }
  }

  test('Recall started with --default-auth-plugin caching_sha2_password: mysql2 connects as it is (TLS off and on)', async () => {
    // No plugin-rewriting relay: Recall's own handshake names caching_sha2_password.
    const sha2 = await startRecall({
      dsn: `mysql://root@localhost/?socket=${encodeURIComponent(env.socketPath)}`,
      extraArgs: ['--tls-cert', env.cert.certFile, '--tls-key', env.cert.keyFile, '--default-auth-plugin', 'caching_sha2_password'],
    });
    try {
      const greeting = await new Promise<Buffer>((resolve, reject) => {
        const s = net.connect(sha2.mysqlPort, '127.0.0.1');
        let got = Buffer.alloc(0);
        s.on('data', (d: Buffer) => {
          got = Buffer.concat([got, d]);
          if (got.length >= 4 && got.length >= 4 + got.readUIntLE(0, 3)) {
            s.destroy();
            resolve(got.subarray(4, 4 + got.readUIntLE(0, 3)));
          }
        });
        s.on('error', reject);
      });
      assert.equal(decodeHandshakeV10(greeting).authPluginName, 'caching_sha2_password');
      // TLS off first: the cache is empty, so full authentication over RSA; then TLS; then the fast path.
      for (const tls of [false, true, false]) {
        const c = await connect(env, env.recall, { tls, port: sha2.mysqlPort });
        try {
          const [rows] = await c.query('SELECT CURRENT_USER() AS u, DATABASE() AS d');
          assert.deepEqual(rows, [{ u: `${user}@localhost`, d: env.recall.db }]);
        } finally {
          await c.end().catch(() => c.destroy());
        }
        const bad = await errOf(connect(env, env.recall, { tls, port: sha2.mysqlPort, password: 'nope' }));
        assert.match(JSON.stringify(bad), /"errno":1045/);
      }
    } finally {
      await sha2.stop();
    }
  });
});
