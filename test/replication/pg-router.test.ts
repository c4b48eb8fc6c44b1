// Two real Replicators with the PostgreSQL dialect, each with its managed-like postgres and H4's
// front end routed by PgRouter: node-postgres clients on both nodes (writes on the follower are
// forwarded to the leader, the credential sealed) run a workload of simple and extended queries,
// named prepared statements, transactions (committed, rolled back, failed), defaults with
// now()/random()/uuid, SERIAL and ON CONFLICT; both databases end with equal md5 of every table.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import pg from 'pg';
import { spawn } from 'node:child_process';
import { findPostgresBinDir } from '../../src/supervisor/postgres.js';
import { Replicator } from '../../src/replication/replicator.js';
import { pgDialect } from '../../src/replication/pg/dialect.js';
import type { PgApplier } from '../../src/replication/pg/applier.js';
import type { PgLaneRequest, PgLaneResult } from '../../src/replication/pg/types.js';
import { startPostgresFrontend, type PostgresListener } from '../../src/frontend/postgres/server.js';
import { postgresRouting } from '../../src/frontend/postgres/router.js';
import { loadPgParser } from '../../src/sql/pg-parse.js';
import { configureLogging, logger } from '../../src/util/log.js';
import { freePort } from '../harness/ports.js';
import { PgServers, pgAdminQuery, pgFingerprint as fingerprint, pgConnOptions } from '../harness/pg-fixture.js';

configureLogging({ silent: !process.env.DEBUG_LOG, debug: !!process.env.DEBUG_LOG });

type Rep = Replicator<PgLaneRequest, PgLaneResult, PgApplier>;

const admin = (port: number, sql: string, database = 'app'): Promise<unknown[][]> => pgAdminQuery(port, sql, database);

/** psql as a child (async: the Recall nodes run in this process). */
function psql(port: number, command: string, input: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const ch = spawn(join(findPostgresBinDir(), 'psql'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'alice', '-d', 'app', '-v', 'ON_ERROR_STOP=1', '-c', command], { env: { ...process.env, PGPASSWORD: 'secret' } });
    let out = '';
    ch.stdout.on('data', (d) => (out += d));
    ch.stderr.on('data', (d) => (out += d));
    ch.stdin.end(input);
    const timer = setTimeout(() => ch.kill('SIGKILL'), 60_000);
    ch.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

describe('PostgreSQL through two Recall nodes (Replicator + PgRouter + front end)', () => {
  const servers = new PgServers({
    prefix: 'recall-pgrt-',
    names: ['pg1', 'pg2'],
    database: 'app',
    roleSql: "SET password_encryption = 'scram-sha-256'; CREATE ROLE alice LOGIN PASSWORD 'secret'",
  });
  const dbs = servers.dbs;
  const reps: Rep[] = [];
  const fes: PostgresListener[] = [];
  const clients: pg.Client[] = [];

  async function client(node: number): Promise<pg.Client> {
    const c = new pg.Client({ host: '127.0.0.1', port: fes[node]!.port, user: 'alice', password: 'secret', database: 'app' });
    await c.connect();
    clients.push(c);
    return c;
  }

  before(async () => {
    await loadPgParser();
    const peerPorts = [await freePort(), await freePort()];
    const peers = new Map(peerPorts.map((p, i) => [i + 1, `127.0.0.1:${p}`]));
    await servers.start();
    const starting = dbs.map((d, i) =>
      Replicator.start(
        {
          nodeId: i + 1, peers, listen: peers.get(i + 1)!, dataDir: join(servers.dir.path, `r${i + 1}`), clusterId: 't', secret: 'cluster-secret',
          entryBytesMax: 16 << 20, laneTimeoutMs: 5000, leaderWaitMs: 10000, readWaitMs: 10000, tickMs: 10,
          logRetainEntries: 10000, logRetainBytes: 1 << 30, autoResync: false,
        },
        pgDialect(pgConnOptions(d)),
      ),
    );
    reps.push(...(await Promise.all(starting)));
    for (let i = 0; i < 2; i++) {
      const d = dbs[i]!;
      fes.push(
        await startPostgresFrontend({
          host: '127.0.0.1',
          port: 0,
          nodeId: i + 1,
          backend: { host: '127.0.0.1', port: d.dsn.port, socketDir: d.socketDir },
          admin: { host: d.socketDir, port: d.dsn.port, user: 'postgres' },
          ...postgresRouting({ nodeId: i + 1, service: reps[i]!, log: logger('pg-router', { nodeId: i + 1 }) }),
        }),
      );
    }
  });

  after(async () => {
    for (const c of clients) await c.end().catch(() => undefined);
    for (const f of fes) await f.close();
    for (const r of reps) await r.close();
    await servers.stop();
  });

  test('a workload on both nodes leaves both databases equal', async () => {
    const c1 = await client(0);
    const c2 = await client(1);
    await c1.query(`CREATE TABLE items (id serial PRIMARY KEY, n int NOT NULL, at timestamptz DEFAULT now(), r float8 DEFAULT random(), u uuid DEFAULT gen_random_uuid(), note text)`);
    await c1.query('CREATE TABLE kv (k text PRIMARY KEY, v int NOT NULL)');
    // the session sees its own DDL at once on the other node too
    await c2.query('INSERT INTO items (n) VALUES (1), (2)');
    const mine = await c2.query('SELECT count(*)::int AS n FROM items');
    assert.equal(mine.rows[0].n, 2, 'read-your-writes on the follower');
    // extended protocol, unnamed and named
    const ret = await c2.query('INSERT INTO items (n, note) VALUES ($1, $2) RETURNING id, n, note', [3, 'three']);
    assert.deepEqual(ret.rows, [{ id: 3, n: 3, note: 'three' }]);
    for (const v of [4, 5]) {
      const r = await c1.query({ name: 'ins', text: 'INSERT INTO items (n) VALUES ($1)', values: [v] });
      assert.equal(r.rowCount, 1);
    }
    await c1.query("INSERT INTO kv VALUES ('a', 1) ON CONFLICT (k) DO UPDATE SET v = kv.v + 1");
    await c2.query("INSERT INTO kv VALUES ('a', 1) ON CONFLICT (k) DO UPDATE SET v = kv.v + 1");
    // errors are postgres' own
    await assert.rejects(c2.query("INSERT INTO kv VALUES ('a', 0)"), (e: { code?: string }) => e.code === '23505');
    await assert.rejects(c1.query('UPDATE items SET r = random()'), (e: { code?: string }) => e.code === '0A000');
    // a transaction: local reads, then the leader from its first write
    await c2.query('BEGIN');
    const before = await c2.query('SELECT count(*)::int AS n FROM items');
    await c2.query('INSERT INTO items (n) VALUES (6)');
    const inside = await c2.query('SELECT count(*)::int AS n FROM items');
    assert.equal(inside.rows[0].n, before.rows[0].n + 1);
    await c2.query("UPDATE kv SET v = v * 10 WHERE k = 'a'");
    await c2.query("SET statement_timeout = '7s'");
    await c2.query('COMMIT');
    // a SET in the leader's part of the transaction reaches the client's own session at COMMIT
    assert.equal((await c2.query('SHOW statement_timeout')).rows[0].statement_timeout, '7s');
    // rolled back, and failed
    await c1.query('BEGIN');
    await c1.query('INSERT INTO items (n) VALUES (7)');
    await c1.query('ROLLBACK');
    await c1.query('BEGIN');
    await c1.query("INSERT INTO kv VALUES ('b', 1)");
    await assert.rejects(c1.query("INSERT INTO kv VALUES ('b', 2)"), (e: { code?: string }) => e.code === '23505');
    await assert.rejects(c1.query('SELECT 1'), (e: { code?: string }) => e.code === '25P02');
    const end = await c1.query('COMMIT');
    assert.equal(end.command, 'ROLLBACK');
    await c2.query("INSERT INTO items (n, note) VALUES (8, 'after')");
    const ids = await c2.query('SELECT id FROM items ORDER BY id');
    assert.deepEqual(ids.rows.map((r) => r.id), [1, 2, 3, 4, 5, 6, 8]);
    await c2.query("SET recall.consistency = 'linearizable'");
    assert.equal((await c2.query("SELECT v FROM kv WHERE k = 'a'")).rows[0].v, 20);

    // COPY FROM STDIN (psql \\copy) through the other node: one entry with the data
    const copied = await psql(fes[1]!.port, '\\copy kv from stdin', 'x\t5\ny\t6\n\\.\n');
    assert.equal(copied.code, 0, copied.out);
    assert.match(copied.out, /COPY 2/);
    // c1 is another session (on the other node): it sees psql's COPY once it reads linearizably
    await c1.query("SET recall.consistency = 'linearizable'");
    assert.equal((await c1.query("SELECT sum(v)::int AS s FROM kv WHERE k IN ('x', 'y')")).rows[0].s, 11);
    const failed = await psql(fes[1]!.port, '\\copy kv from stdin', 'x\t7\n\\.\n');
    assert.notEqual(failed.code, 0);
    assert.match(failed.out, /duplicate key/);

    const target = Math.max(...reps.map((r) => r.applied));
    for (const r of reps) await r.waitApplied(target);
    const f1 = await fingerprint(dbs[0]!.dsn.port);
    const f2 = await fingerprint(dbs[1]!.dsn.port);
    assert.deepEqual(Object.keys(f1), ['public.items', 'public.kv']);
    assert.deepEqual(f2, f1);
    assert.equal(reps[0]!.diverged, null);
    assert.equal(reps[1]!.diverged, null);
  });

  test('SET recall.optimistic = on: the session\'s transactions run without waiting for a lane holder', async () => {
    const setup = await client(0);
    await setup.query('CREATE TABLE opt (k int PRIMARY KEY, v int NOT NULL)');
    await setup.query('INSERT INTO opt SELECT g, 0 FROM generate_series(1, 4) g');
    await setup.query('DROP TABLE items'); // its sequence: optimistic transactions need a database without one
    const serial = await client(0);
    const optimistic = await client(1); // through the other node: the setting travels with forwarded requests
    await optimistic.query('SET recall.optimistic = on');
    await serial.query('BEGIN');
    await serial.query('UPDATE opt SET v = v + 1 WHERE k = 1'); // holds the lane until COMMIT
    await optimistic.query('BEGIN');
    const t0 = Date.now();
    const r = await optimistic.query('UPDATE opt SET v = v + 10 WHERE k = 2 RETURNING v');
    assert.deepEqual(r.rows, [{ v: 10 }]);
    assert.ok(Date.now() - t0 < 2000, `the optimistic update waited ${Date.now() - t0} ms`);
    await serial.query('COMMIT');
    await optimistic.query('COMMIT');
    // RESET: back to the cluster's default (serial): its write now waits for the holder
    await optimistic.query('RESET recall.optimistic');
    await serial.query('BEGIN');
    await serial.query('UPDATE opt SET v = v + 1 WHERE k = 3');
    await optimistic.query('BEGIN');
    const waited = optimistic.query('UPDATE opt SET v = v + 1 WHERE k = 4');
    const first = await Promise.race([waited.then(() => 'update'), new Promise((res) => setTimeout(() => res('timer'), 300))]);
    assert.equal(first, 'timer', 'a serial transaction waits for the lane holder');
    await serial.query('COMMIT');
    await waited;
    await optimistic.query('COMMIT');
    // the same from the startup options (PGOPTIONS='-c recall.optimistic=on'), for clients that cannot SET
    const viaOptions = new pg.Client({ host: '127.0.0.1', port: fes[1]!.port, user: 'alice', password: 'secret', database: 'app', options: '-c recall.optimistic=on' });
    await viaOptions.connect();
    clients.push(viaOptions);
    await serial.query('BEGIN');
    await serial.query('UPDATE opt SET v = v + 1 WHERE k = 1');
    await viaOptions.query('BEGIN');
    const t1 = Date.now();
    assert.deepEqual((await viaOptions.query('UPDATE opt SET v = v + 10 WHERE k = 2 RETURNING v')).rows, [{ v: 20 }]);
    assert.ok(Date.now() - t1 < 2000, `the optimistic update waited ${Date.now() - t1} ms`);
    await serial.query('COMMIT');
    await viaOptions.query('COMMIT');
    await setup.query("SET recall.consistency = 'linearizable'");
    assert.deepEqual((await setup.query('SELECT k, v FROM opt ORDER BY k')).rows, [{ k: 1, v: 2 }, { k: 2, v: 20 }, { k: 3, v: 1 }, { k: 4, v: 1 }]);
    const target = Math.max(...reps.map((x) => x.applied));
    for (const x of reps) await x.waitApplied(target);
    assert.deepEqual(await fingerprint(dbs[1]!.dsn.port), await fingerprint(dbs[0]!.dsn.port));
  });
});
