// The MySQL frontend against a real mariadbd with real mysql2 clients: authentication (native,
// caching_sha2_password full and fast, TLS, change user, refusals), relaying (multi statements,
// several result sets, prepared statements, >16 MiB packets, errors with their numbers, LOCAL
// INFILE), limits (max connections) and a lost backend.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import mysql from 'mysql2/promise';
import type { TestMariaDB } from '../../harness/mariadb.js';
import type { MysqlFrontend } from '../../../src/frontend/mysql/server.js';
import { startDb, startFrontend, selfSignedCert } from './helpers.js';
import { registry } from '../../../src/admin/metrics.js';

let db: TestMariaDB;
let plain: { frontend: MysqlFrontend; port: number };
let sha2tls: { frontend: MysqlFrontend; port: number };
const opened: mysql.Connection[] = [];

async function connect(port: number, opts: mysql.ConnectionOptions = {}): Promise<mysql.Connection> {
  const c = await mysql.createConnection({ host: '127.0.0.1', port, user: 'app', password: 'app-pw', database: 'app', ...opts });
  opened.push(c);
  return c;
}

async function refusal(p: Promise<unknown>): Promise<{ errno: number; sqlState: string; message: string }> {
  try {
    await p;
  } catch (e) {
    return e as { errno: number; sqlState: string; message: string };
  }
  assert.fail('expected the connection to be refused');
}

before(async () => {
  db = await startDb();
  plain = await startFrontend(db);
  sha2tls = await startFrontend(db, { tls: selfSignedCert(), defaultAuthPlugin: 'caching_sha2_password' });
});

after(async () => {
  for (const c of opened) c.destroy();
  await plain?.frontend.close();
  await sha2tls?.frontend.close();
  await db?.stop();
});

describe('authentication', () => {
  test('mysql_native_password: the client runs as its own account on its own backend thread', async () => {
    const c = await connect(plain.port);
    const [rows] = await c.query('SELECT CURRENT_USER() AS u, CONNECTION_ID() AS id');
    const r = (rows as Array<{ u: string; id: number }>)[0]!;
    assert.equal(r.u, 'app@localhost');
    // the handshake announces the backend's thread id, so KILL and CONNECTION_ID() agree
    assert.equal(r.id, c.threadId);
  });

  test('empty password account', async () => {
    const c = await connect(plain.port, { user: 'nopw', password: '' });
    const [rows] = await c.query('SELECT CURRENT_USER() AS u');
    assert.equal((rows as Array<{ u: string }>)[0]!.u, 'nopw@localhost');
  });

  test('wrong password and unknown user get 1045 like MariaDB', async () => {
    const e = await refusal(connect(plain.port, { password: 'nope' }));
    assert.equal(e.errno, 1045);
    assert.equal(e.sqlState, '28000');
    assert.equal(e.message, "Access denied for user 'app'@'127.0.0.1' (using password: YES)");
    const u = await refusal(connect(plain.port, { user: 'ghost', password: '' }));
    assert.equal(u.errno, 1045);
    assert.match(u.message, /using password: NO/);
  });

  test('an account whose plugin Recall cannot proxy is refused with the plugin named', async () => {
    const e = await refusal(connect(plain.port, { user: 'sock', password: '' }));
    assert.equal(e.errno, 1045);
    assert.match(e.message, /unix_socket/);
  });

  test('caching_sha2_password over TLS: full authentication then the fast path', async () => {
    for (let i = 0; i < 2; i++) {
      const c = await connect(sha2tls.port, { ssl: { rejectUnauthorized: false } });
      const stream = (c as unknown as { connection: { stream: { encrypted?: boolean } } }).connection.stream;
      assert.equal(stream.encrypted, true);
      const [rows] = await c.query('SELECT CURRENT_USER() AS u');
      assert.equal((rows as Array<{ u: string }>)[0]!.u, 'app@localhost');
    }
    const e = await refusal(connect(sha2tls.port, { password: 'bad', ssl: { rejectUnauthorized: false } }));
    assert.equal(e.errno, 1045);
  });

  test('caching_sha2_password without TLS: RSA public key exchange, then fast path', async () => {
    for (let i = 0; i < 2; i++) {
      const c = await connect(sha2tls.port, { user: 'other', password: 'other-pw' });
      const [rows] = await c.query('SELECT CURRENT_USER() AS u');
      assert.equal((rows as Array<{ u: string }>)[0]!.u, 'other@localhost');
    }
    const e = await refusal(connect(sha2tls.port, { user: 'other', password: 'bad' }));
    assert.equal(e.errno, 1045);
  });

  test('a password changed in the database is picked up without a restart', async () => {
    const root = await mysql.createConnection({ socketPath: db.socketPath, user: 'root' });
    try {
      await root.query("CREATE USER 'chg'@'localhost' IDENTIFIED BY 'first'");
      await (await connect(plain.port, { user: 'chg', password: 'first', database: undefined })).query('SELECT 1');
      await root.query("ALTER USER 'chg'@'localhost' IDENTIFIED BY 'second'");
      await (await connect(plain.port, { user: 'chg', password: 'second', database: undefined })).query('SELECT 1');
      const e = await refusal(connect(plain.port, { user: 'chg', password: 'first', database: undefined }));
      assert.equal(e.errno, 1045);
    } finally {
      await root.end();
    }
  });

  test('COM_CHANGE_USER re-authenticates and switches the backend session', async () => {
    const c = await connect(plain.port);
    await c.query('SET @v = 1');
    await c.changeUser({ user: 'ro', password: 'ro-pw' });
    const [rows] = await c.query('SELECT CURRENT_USER() AS u, @v AS v');
    assert.deepEqual(rows, [{ u: 'ro@localhost', v: null }]); // session state reset like MariaDB
    const e = await refusal(c.query("INSERT INTO t (v) VALUES ('ro')"));
    assert.equal(e.errno, 1142);
    const bad = await refusal(c.changeUser({ user: 'app', password: 'wrong' }));
    assert.equal(bad.errno, 1045);
  });
});

describe('relay', () => {
  test('multi statements and a procedure with several result sets', async () => {
    const c = await connect(plain.port, { multipleStatements: true });
    const [sets] = await c.query('SELECT 1 AS a; SELECT v, n FROM t ORDER BY id; SELECT NULL AS z');
    assert.deepEqual(sets, [[{ a: 1 }], [{ v: 'one', n: 1 }, { v: 'two', n: null }], [{ z: null }]]);
    const [proc] = await c.query('CALL two_sets()');
    const arr = proc as unknown[];
    assert.deepEqual(arr[0], [{ a: 1 }]);
    assert.deepEqual(arr[1], [{ b: 'x', c: 2 }]);
    const e = await refusal(c.query('SELECT 1; SELECT * FROM missing_table'));
    assert.equal(e.errno, 1146);
    // the session is usable after an error in the middle of a multi statement
    const [again] = await c.query('SELECT 2 AS two');
    assert.deepEqual(again, [{ two: 2 }]);
  });

  test('errors are relayed with their number, SQLSTATE and text', async () => {
    const c = await connect(plain.port);
    const e = await refusal(c.query('INSERT INTO t (id, v) VALUES (1, "dup")'));
    assert.equal(e.errno, 1062);
    assert.equal(e.sqlState, '23000');
    assert.match(e.message, /Duplicate entry '1'/);
  });

  test('prepared statements with parameters of several types, re-executed', async () => {
    const c = await connect(plain.port);
    for (let i = 0; i < 3; i++) {
      const [rows] = await c.execute('SELECT ? AS s, ? AS i, ? AS d, ? AS nul, ? AS b', ['text', 42 + i, 1.5, null, Buffer.from([0, 1, 2])]);
      assert.deepEqual(rows, [{ s: 'text', i: 42 + i, d: 1.5, nul: null, b: Buffer.from([0, 1, 2]) }]);
    }
    const [res] = await c.execute('INSERT INTO t (v, n) VALUES (?, ?)', ['prep', 7]);
    assert.equal((res as mysql.ResultSetHeader).affectedRows, 1);
    const e = await refusal(c.execute('SELECT * FROM nowhere WHERE id = ?', [1]));
    assert.equal(e.errno, 1146);
  });

  test('a BLOB of more than 16 MiB goes both ways (packets split and joined)', async () => {
    const c = await connect(plain.port);
    const blob = Buffer.alloc(17 * 1024 * 1024 + 123);
    for (let i = 0; i < blob.length; i += 4096) blob[i] = i % 251;
    const [ins] = await c.query('INSERT INTO t (v, b) VALUES (?, ?)', ['big', blob]);
    const id = (ins as mysql.ResultSetHeader).insertId;
    const [rows] = await c.query('SELECT b FROM t WHERE id = ?', [id]);
    const got = (rows as Array<{ b: Buffer }>)[0]!.b;
    const h = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    assert.equal(got.length, blob.length);
    assert.equal(h(got), h(blob));
    const [prepared] = await c.execute('SELECT b FROM t WHERE id = ?', [id]);
    assert.equal(h((prepared as Array<{ b: Buffer }>)[0]!.b), h(blob));
  });

  test('LOAD DATA LOCAL INFILE is relayed', async () => {
    const c = await connect(plain.port, {
      infileStreamFactory: () => Readable.from([Buffer.from('100\tinfile-a\n101\tinfile-b\n')]),
    } as mysql.ConnectionOptions);
    const [res] = await c.query({ sql: "LOAD DATA LOCAL INFILE 'whatever.tsv' INTO TABLE t (id, v)" });
    assert.equal((res as mysql.ResultSetHeader).affectedRows, 2);
    const [rows] = await c.query('SELECT v FROM t WHERE id IN (100, 101) ORDER BY id');
    assert.deepEqual(rows, [{ v: 'infile-a' }, { v: 'infile-b' }]);
  });

  test('metrics count statements by kind', async () => {
    const before = await registry.getSingleMetricAsString('recall_statements_total');
    const count = (text: string, kind: string): number => Number(new RegExp(`kind="${kind}"} (\\d+)`).exec(text)?.[1] ?? 0);
    const c = await connect(plain.port);
    await c.query('SELECT 1');
    await c.query('UPDATE t SET n = n WHERE id = 1');
    const after = await registry.getSingleMetricAsString('recall_statements_total');
    assert.ok(count(after, 'read') >= count(before, 'read') + 1);
    assert.ok(count(after, 'write') >= count(before, 'write') + 1);
  });
});

describe('limits and failures', () => {
  test('more connections than maxConnections get 1040 Too many connections', async () => {
    const small = await startFrontend(db, { maxConnections: 2 });
    try {
      await connect(small.port);
      await connect(small.port);
      const e = await refusal(connect(small.port));
      assert.equal(e.errno, 1040);
      assert.equal(small.frontend.stats().connections, 2);
    } finally {
      await small.frontend.close();
    }
  });

  test('a backend session killed under a client: the client gets an error, other sessions carry on', async () => {
    const victim = await connect(plain.port);
    const bystander = await connect(plain.port);
    const root = await mysql.createConnection({ socketPath: db.socketPath, user: 'root' });
    try {
      // The handler is attached at once: the error can reach the victim before root's KILL is answered.
      const sleeping = refusal(victim.query('SELECT SLEEP(5)'));
      await new Promise((r) => setTimeout(r, 200));
      await root.query(`KILL CONNECTION ${victim.threadId}`);
      const e = await sleeping;
      // MariaDB's own 1927 "Connection was killed" relayed, or Recall's 1053 when the socket closed first
      // (mysql2 then may report it by code only), or a plain lost connection
      const code = (e as unknown as { code?: string }).code;
      assert.ok(
        e.errno === 1927 || e.errno === 1053 || code === 'ER_SERVER_SHUTDOWN' || code === 'PROTOCOL_CONNECTION_LOST' || /Recall lost its connection/.test(e.message),
        JSON.stringify({ errno: e.errno, code, message: e.message }),
      );
      const [rows] = await bystander.query('SELECT 3 AS x');
      assert.deepEqual(rows, [{ x: 3 }]);
    } finally {
      await root.end();
    }
  });
});
