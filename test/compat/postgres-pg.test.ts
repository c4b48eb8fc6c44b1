// node-postgres (pg, unmodified) through Recall's PostgreSQL frontend compared with pg straight to
// the same postgres: plain and prepared (named) queries, rowMode 'array', types, transactions,
// errors, a pool running queries in parallel, a large result and a cursor-like row limit.
// Each side works in its own database; results must be equal.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { startPostgres, startFrontend, ROLES, type TestPostgres } from '../frontend/postgres/helpers.js';
import type { PostgresFrontend } from '../../src/frontend/postgres/server.js';

let db: TestPostgres;
let fe: PostgresFrontend;
let recallPort: number;

const sides = [
  { name: 'direct', port: () => db.port, db: 'pgjs_d' },
  { name: 'recall', port: () => recallPort, db: 'pgjs_r' },
] as const;

before(async () => {
  db = await startPostgres();
  ({ frontend: fe, port: recallPort } = await startFrontend(db, { auth: 'md5' }));
  for (const s of sides) await db.admin(`CREATE DATABASE ${s.db} OWNER alice`);
});

after(async () => {
  await fe?.close();
  await db?.stop();
});

type Step = string | pg.QueryConfig | pg.QueryArrayConfig;

/** Runs the steps on one side; each step's rows, fields, command and row count, or its error fields. */
async function run(side: (typeof sides)[number], steps: Step[]): Promise<unknown[]> {
  const c = new pg.Client({ host: '127.0.0.1', port: side.port(), user: 'alice', password: ROLES.alice, database: side.db });
  await c.connect();
  const out: unknown[] = [];
  try {
    for (const s of steps) {
      try {
        const r = await c.query(s);
        const results = Array.isArray(r) ? r : [r];
        out.push(
          results.map((x: pg.QueryResult) => ({
            command: x.command,
            rowCount: x.rowCount,
            rows: x.rows,
            fields: x.fields.map((f) => [f.name, f.dataTypeID, f.format]),
          })),
        );
      } catch (e) {
        const err = e as pg.DatabaseError;
        out.push({ error: [err.code, err.message, err.detail, err.hint, err.position, err.severity, err.routine] });
      }
    }
  } finally {
    await c.end();
  }
  return JSON.parse(JSON.stringify(out, (_k, v: unknown) => (typeof v === 'string' ? v.split(side.db).join('<db>') : v)));
}

describe('node-postgres', () => {
  test('the same results, field types and errors as direct, with and without prepared statements', async () => {
    const steps: Step[] = [
      `CREATE TABLE t (id serial PRIMARY KEY, name text, n numeric(10,2), j jsonb, b bytea, ts timestamptz, a int[], f float8, ok boolean)`,
      { text: 'INSERT INTO t (name, n, j, b, ts, a, f, ok) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id', values: ['one', '12.34', { k: [1, 'x'] }, Buffer.from([0, 1, 255]), '2024-02-29T12:34:56.789Z', [1, 2, 3], 1.5, true] },
      { name: 'ins', text: 'INSERT INTO t (name, n) VALUES ($1, $2) RETURNING id, name', values: ['two', 2] },
      { name: 'ins', text: 'INSERT INTO t (name, n) VALUES ($1, $2) RETURNING id, name', values: ['three', null] },
      'SELECT id, name, n, j, b, ts, a, f, ok FROM t ORDER BY id',
      { text: 'SELECT id, name FROM t WHERE id > $1 ORDER BY id', values: [1], rowMode: 'array' },
      { name: 'sel', text: 'SELECT name FROM t WHERE id = $1', values: [2], rowMode: 'array' },
      { name: 'sel', text: 'SELECT name FROM t WHERE id = $1', values: [3] },
      "SELECT 1 AS a; SELECT 'x' AS b; UPDATE t SET name = upper(name) WHERE id < 3",
      'BEGIN',
      "INSERT INTO t (name) VALUES ('rolled back')",
      'SELECT count(*) FROM t',
      'ROLLBACK',
      'SELECT count(*) FROM t',
      "INSERT INTO t (id, name) VALUES (1, 'dup')",
      { text: 'SELECT $1::int / 0', values: [1] },
      'SELECT nosuch FROM t',
      'BEGIN',
      'SELECT 1/0',
      'SELECT 1',
      'ROLLBACK',
      { text: "SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 20000) g", rowMode: 'array' },
      "SELECT '\\x00'::bytea AS z, E'caf\\u00e9 \\u2603' AS u, NULL::text AS nul, '' AS empty",
    ];
    const [d, r] = await Promise.all(sides.map((s) => run(s, steps)));
    assert.deepEqual(r, d);
    const big = r![r!.length - 2] as Array<{ rows: unknown[] }>;
    assert.equal(big[0]!.rows.length, 20000);
    assert.match(JSON.stringify(r![14]), /23505/);
    assert.match(JSON.stringify(r![19]), /25P02/);
  });

  test('a pool of 10 running 300 queries in parallel, prepared and not', async () => {
    const pool = new pg.Pool({ host: '127.0.0.1', port: recallPort, user: 'alice', password: ROLES.alice, database: 'pgjs_r', max: 10 });
    try {
      const results = await Promise.all(
        Array.from({ length: 300 }, (_, i) =>
          i % 2
            ? pool.query({ name: 'sq', text: 'SELECT $1::int * 2 AS v, pg_backend_pid() AS pid', values: [i] })
            : pool.query(`SELECT ${i} * 2 AS v, pg_backend_pid() AS pid`),
        ),
      );
      results.forEach((r, i) => assert.equal(r.rows[0].v, i * 2));
      const pids = new Set(results.map((r) => r.rows[0].pid));
      assert.ok(pids.size > 1 && pids.size <= 10, `backends used: ${pids.size}`);
      assert.equal(fe.stats().connections, pool.totalCount);
    } finally {
      await pool.end();
    }
  });
});
