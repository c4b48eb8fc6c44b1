// Quick performance sanity, printed and not asserted (the real benchmark is `npm run bench` with
// sysbench): 8 mysql2 connections doing point selects for 3 s straight to mariadbd, then 3 s
// through the frontend, and the ratio.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import mysql from 'mysql2/promise';
import type { TestMariaDB } from '../../harness/mariadb.js';
import type { MysqlFrontend } from '../../../src/frontend/mysql/server.js';
import { startDb, startFrontend } from './helpers.js';

const CONNECTIONS = 8;
const RUN_MS = 3000;
const ROWS = 10000;

let db: TestMariaDB;
let fe: { frontend: MysqlFrontend; port: number };

before(async () => {
  db = await startDb();
  const root = await mysql.createConnection({ socketPath: db.socketPath, user: 'root', multipleStatements: true });
  await root.query(
    `CREATE TABLE app.sb (id INT PRIMARY KEY, k INT, c CHAR(120)); INSERT INTO app.sb SELECT seq, seq, REPEAT('x', 120) FROM app.seq_1_to_${ROWS};`,
  );
  await root.end();
  fe = await startFrontend(db);
});

after(async () => {
  await fe?.frontend.close();
  await db?.stop();
});

async function pointSelects(port: number): Promise<number> {
  const conns = await Promise.all(
    Array.from({ length: CONNECTIONS }, () => mysql.createConnection({ host: '127.0.0.1', port, user: 'app', password: 'app-pw', database: 'app' })),
  );
  let n = 0;
  const end = Date.now() + RUN_MS;
  try {
    await Promise.all(
      conns.map(async (c) => {
        while (Date.now() < end) {
          const id = 1 + ((n * 7919) % ROWS);
          const [rows] = await c.query(`SELECT k FROM sb WHERE id = ${id}`);
          assert.equal((rows as Array<{ k: number }>)[0]!.k, id);
          n++;
        }
      }),
    );
  } finally {
    await Promise.all(conns.map((c) => c.end()));
  }
  return n / (RUN_MS / 1000);
}

test('point selects, direct vs through the frontend (printed)', async () => {
  const direct = await pointSelects(db.port);
  const through = await pointSelects(fe.port);
  assert.ok(direct > 0 && through > 0);
  console.log(
    `# mysql2 point selects, ${CONNECTIONS} connections: direct ${direct.toFixed(0)}/s, through Recall ${through.toFixed(0)}/s, ratio ${(through / direct).toFixed(2)}`,
  );
});
