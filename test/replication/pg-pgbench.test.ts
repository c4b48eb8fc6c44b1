// pgbench unmodified through three Recall nodes (Replicators with the PostgreSQL dialect, routed
// front ends, one postgres each): initialisation (COPY FROM STDIN of the generated rows), then tpcb-like
// runs in the simple, extended and prepared protocols against the leader and a follower; no failed
// transaction, and the three databases agree (balances, pgbench_history md5). Then again with
// optimistic transactions (pgOptimistic): pgbench on the leader and a follower at once, retrying
// the rare 40001 of a transaction whose reads a concurrent one changed (--max-tries).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import pg from 'pg';
import { ManagedPostgres, findPostgresBinDir } from '../../src/supervisor/postgres.js';
import { Replicator } from '../../src/replication/replicator.js';
import { pgDialect } from '../../src/replication/pg/dialect.js';
import type { PgApplier } from '../../src/replication/pg/applier.js';
import type { PgLaneRequest, PgLaneResult } from '../../src/replication/pg/types.js';
import { startPostgresFrontend, type PostgresListener } from '../../src/frontend/postgres/server.js';
import { postgresRouting } from '../../src/frontend/postgres/router.js';
import { loadPgParser } from '../../src/sql/pg-parse.js';
import { configureLogging, logger } from '../../src/util/log.js';
import { tempDir } from '../harness/tmp.js';
import { freePort } from '../harness/ports.js';

configureLogging({ silent: !process.env.DEBUG_LOG, debug: !!process.env.DEBUG_LOG });

const NODES = 3;
const SECONDS = 3;
/** PGBENCH_SCALE=10 checks the issue's scale (a ~13 MB COPY in one entry); 1 keeps the suite quick */
const SCALE = process.env.PGBENCH_SCALE ?? '1';

async function one(port: number, sql: string): Promise<string> {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'app' });
  await c.connect();
  try {
    return String((await c.query({ text: sql, rowMode: 'array' })).rows[0]![0]);
  } finally {
    await c.end();
  }
}

/** pgbench as a child (async: the Recall nodes run in this process). */
function pgbench(bin: string, port: number, args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const ch = spawn(join(bin, 'pgbench'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'alice', ...args, 'app'], { env: { ...process.env, PGPASSWORD: 'secret' } });
    let out = '';
    ch.stdout.on('data', (d) => (out += d));
    ch.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => ch.kill('SIGKILL'), 120_000);
    ch.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

for (const optimistic of [false, true]) describe(`pgbench through three Recall nodes${optimistic ? ', optimistic transactions' : ''}`, () => {
  const dir = tempDir('recall-pgpb-');
  chmodSync(dir.path, 0o755);
  const bin = findPostgresBinDir();
  const dbs: ManagedPostgres[] = [];
  const reps: Array<Replicator<PgLaneRequest, PgLaneResult, PgApplier>> = [];
  const fes: PostgresListener[] = [];

  before(async () => {
    assert.ok(existsSync(join(bin, 'pgbench')), `pgbench in ${bin}`);
    await loadPgParser();
    for (let i = 0; i < NODES; i++) dbs.push(new ManagedPostgres({ dataDir: join(dir.path, `pg${i}`), port: await freePort(), startTimeoutMs: 60000 }));
    await Promise.all(dbs.map((d) => d.start()));
    for (const d of dbs) {
      const c = new pg.Client({ host: '127.0.0.1', port: d.dsn.port, user: 'postgres', database: 'postgres' });
      await c.connect();
      await c.query("SET password_encryption = 'scram-sha-256'; CREATE ROLE alice LOGIN PASSWORD 'secret'");
      await c.query('CREATE DATABASE app OWNER alice');
      await c.end();
    }
    const peers = new Map<number, string>();
    for (let i = 0; i < NODES; i++) peers.set(i + 1, `127.0.0.1:${await freePort()}`);
    reps.push(
      ...(await Promise.all(
        dbs.map((d, i) =>
          Replicator.start(
            {
              nodeId: i + 1, peers, listen: peers.get(i + 1)!, dataDir: join(dir.path, `r${i}`), clusterId: 't', secret: 's', entryBytesMax: 16 << 20,
              laneTimeoutMs: 5000, leaderWaitMs: 10000, readWaitMs: 10000, logRetainEntries: 100000, logRetainBytes: 1 << 30, autoResync: false,
            },
            pgDialect({ target: { host: '127.0.0.1', port: d.dsn.port, socketDir: d.socketDir }, admin: { user: 'postgres', credential: null }, connectTimeoutMs: 5000, optimistic }),
          ),
        ),
      )),
    );
    for (let i = 0; i < NODES; i++) {
      const d = dbs[i]!;
      fes.push(
        await startPostgresFrontend({
          host: '127.0.0.1', port: 0, nodeId: i + 1,
          backend: { host: '127.0.0.1', port: d.dsn.port, socketDir: d.socketDir },
          admin: { host: d.socketDir, port: d.dsn.port, user: 'postgres' },
          ...postgresRouting({ nodeId: i + 1, service: reps[i]!, log: logger('pg-router', { nodeId: i + 1 }) }),
        }),
      );
    }
    const end = Date.now() + 15000;
    while (!reps.some((r) => r.isLeader())) {
      if (Date.now() > end) throw new Error('no leader');
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  after(async () => {
    for (const f of fes) await f.close();
    for (const r of reps) await r.close();
    await Promise.all(dbs.map((d) => d.stop()));
    dir.remove();
  });

  test(`init, then ${optimistic ? 'simple@follower with prepared@leader at once' : '-M simple/extended/prepared on the leader and a follower'}: 0 failed, replicas equal`, async () => {
    const leader = reps.findIndex((r) => r.isLeader());
    const follower = (leader + 1) % NODES;
    // the default init generates the data client-side and loads it with COPY FROM STDIN (in a transaction, FREEZE)
    const init = await pgbench(bin, fes[leader]!.port, ['-i', '-s', SCALE]);
    assert.equal(init.code, 0, init.out);
    const tps: string[] = [];
    const runs = optimistic
      ? [[[follower, 'simple'], [leader, 'prepared']]] as const
      : [[[leader, 'simple']], [[leader, 'extended']], [[leader, 'prepared']], [[follower, 'prepared']]] as const;
    for (const together of runs) {
      // -n: pgbench's own VACUUM and TRUNCATE before the run would make the history md5 trivial
      const rs = await Promise.all(together.map(([node, mode]) => pgbench(bin, fes[node]!.port, ['-n', '-c', '4', '-T', String(SECONDS), '-M', mode, ...(optimistic ? ['--max-tries=20'] : [])])));
      rs.forEach((r, k) => {
        assert.equal(r.code, 0, r.out);
        assert.match(r.out, /number of failed transactions: 0 /);
        const [node, mode] = together[k]!;
        tps.push(`${mode}@${node === leader ? 'leader' : 'follower'} ${/tps = ([\d.]+)/.exec(r.out)?.[1]}${optimistic ? ` (retried ${/number of transactions retried: (\d+)/.exec(r.out)?.[1] ?? 0})` : ''}`);
      });
    }
    console.log(`# pgbench${optimistic ? ' (optimistic)' : ''}: ${tps.join(', ')}`);
    const target = Math.max(...reps.map((r) => r.applied));
    for (const r of reps) await r.waitApplied(target);
    const sql = "SELECT (SELECT sum(abalance) FROM pgbench_accounts) || '|' || (SELECT sum(bbalance) FROM pgbench_branches) || '|' || (SELECT sum(tbalance) FROM pgbench_tellers) || '|' || (SELECT count(*) || ':' || md5(string_agg(h::text, '|' ORDER BY h::text)) FROM pgbench_history h)";
    const states = await Promise.all(dbs.map((d) => one(d.dsn.port, sql)));
    const [a, b, t, h] = states[0]!.split('|');
    assert.equal(a, b, 'accounts and branches balances add up');
    assert.equal(a, t);
    assert.ok(Number(h!.split(':')[0]) > 0, 'history rows were written');
    assert.deepEqual(states, [states[0], states[0], states[0]]);
    for (const r of reps) assert.equal(r.diverged, null);
  });
});
