// A wrong password is refused about as fast as MariaDB refuses it (N1 in test/compat/FINDINGS.md:
// each refusal used to wait out a 500 ms account-refresh rate limit), while a password changed in
// the database is still honoured at once.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import mysql from 'mysql2/promise';
import type { TestMariaDB } from '../../harness/mariadb.js';
import type { MysqlFrontend } from '../../../src/frontend/mysql/server.js';
import { selfSignedCert, startDb, startFrontend } from './helpers.js';

let db: TestMariaDB;
let fe: { frontend: MysqlFrontend; port: number };
let sha2: { frontend: MysqlFrontend; port: number };

before(async () => {
  db = await startDb();
  fe = await startFrontend(db);
  sha2 = await startFrontend(db, { tls: selfSignedCert(), defaultAuthPlugin: 'caching_sha2_password' });
});

after(async () => {
  await fe?.frontend.close();
  await sha2?.frontend.close();
  await db?.stop();
});

async function refusalMs(password: string): Promise<number> {
  const t0 = performance.now();
  try {
    const c = await mysql.createConnection({ host: '127.0.0.1', port: fe.port, user: 'app', password });
    await c.end();
  } catch (e) {
    assert.equal((e as { errno?: number }).errno, 1045);
    return performance.now() - t0;
  }
  assert.fail('a wrong password was accepted');
}

test('wrong passwords in a row are each refused without waiting for a refresh timer', async (t) => {
  const times: number[] = [];
  for (let i = 0; i < 10; i++) times.push(await refusalMs(`wrong-${i}`));
  times.sort((a, b) => a - b);
  const median = times[5]!;
  t.diagnostic(`refusal ms: ${times.map((x) => x.toFixed(0)).join(', ')}`);
  assert.ok(median < 250, `median refusal ${median.toFixed(0)} ms (all: ${times.map((t) => t.toFixed(0)).join(', ')})`);
});

test('right after refusals, a changed password and a new user work at once', async () => {
  const root = await mysql.createConnection({ socketPath: db.socketPath, user: 'root' });
  try {
    await refusalMs('wrong');
    await root.query("ALTER USER 'app'@'localhost' IDENTIFIED BY 'app-pw-2'");
    await root.query("CREATE USER 'fresh'@'localhost' IDENTIFIED BY 'fresh-pw'");
    const c = await mysql.createConnection({ host: '127.0.0.1', port: fe.port, user: 'app', password: 'app-pw-2' });
    await c.end();
    const n = await mysql.createConnection({ host: '127.0.0.1', port: fe.port, user: 'fresh', password: 'fresh-pw' });
    await n.end();
    assert.ok((await refusalMs('app-pw')) < 1000, 'the old password is refused');
  } finally {
    await root.query("ALTER USER 'app'@'localhost' IDENTIFIED BY 'app-pw'").catch(() => undefined);
    await root.end();
  }
});

test('caching_sha2_password: a password changed in the database is honoured at once', async () => {
  const root = await mysql.createConnection({ socketPath: db.socketPath, user: 'root' });
  const login = async (password: string): Promise<void> => {
    const c = await mysql.createConnection({ host: '127.0.0.1', port: sha2.port, user: 'other', password, ssl: { rejectUnauthorized: false } });
    await c.end();
  };
  try {
    await login('other-pw'); // full authentication, then cached
    await login('other-pw'); // fast path
    await root.query("ALTER USER 'other'@'localhost' IDENTIFIED BY 'other-pw-2'");
    await login('other-pw-2');
    await assert.rejects(login('other-pw'), (e: { errno?: number }) => e.errno === 1045);
  } finally {
    await root.query("ALTER USER 'other'@'localhost' IDENTIFIED BY 'other-pw'").catch(() => undefined);
    await root.end();
  }
});
