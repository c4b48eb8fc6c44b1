// pgbench (PostgreSQL 15, unmodified) through Recall's PostgreSQL frontend: -i (its COPY FROM STDIN
// load, VACUUM and primary keys), then the tpcb-like workload with the simple, extended and
// prepared query modes at 4 clients: every transaction must succeed, and the balances pgbench
// changed must move by exactly the sum of the deltas the run logged in pgbench_history.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import pg from 'pg';
import { startPostgres, startFrontend, ROLES, type TestPostgres } from '../frontend/postgres/helpers.js';
import type { PostgresFrontend } from '../../src/frontend/postgres/server.js';

let db: TestPostgres;
let fe: PostgresFrontend;
let recallPort: number;

before(async () => {
  db = await startPostgres();
  ({ frontend: fe, port: recallPort } = await startFrontend(db, { auth: 'md5' }));
  await db.admin('CREATE DATABASE bench OWNER alice');
});

after(async () => {
  await fe?.close();
  await db?.stop();
});

function pgbench(args: string[], port = recallPort, database = 'bench'): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(
      'pgbench',
      ['-h', '127.0.0.1', '-p', String(port), '-U', 'alice', ...args, database],
      { env: { ...process.env, PGPASSWORD: ROLES.alice }, timeout: 60000 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, out: stdout + stderr }),
    );
  });
}

describe('pgbench', () => {
  test('-i through Recall loads the tables', async () => {
    const r = await pgbench(['-i', '-s', '1', '-q']);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /done in/);
  });

  for (const mode of ['simple', 'extended', 'prepared']) {
    test(`-M ${mode} -c 4 -T 5: no failed transaction, balances add up`, async () => {
      const before = await benchBalances();
      // pgbench empties pgbench_history before it starts: the run's deltas are all that remain there
      const r = await pgbench(['-M', mode, '-c', '4', '-j', '2', '-T', '5']);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, new RegExp(`query mode: ${mode}`));
      const processed = Number(/number of transactions actually processed: (\d+)/.exec(r.out)?.[1]);
      assert.ok(processed > 100, r.out);
      assert.match(r.out, /number of failed transactions: 0 \(0\.000%\)/);
      const b = await benchBalances();
      assert.notEqual(b.history, 0);
      assert.equal(b.accounts - before.accounts, b.history);
      assert.equal(b.tellers - before.tellers, b.history);
      assert.equal(b.branches - before.branches, b.history);
    });
  }

  test('with a routing hook that relays every batch: -i and -M extended unchanged', async () => {
    let batches = 0;
    const hooked = await startFrontend(db, {
      auth: 'md5',
      decide: () => {
        batches++;
        return false;
      },
      intercept: () => assert.fail('nothing is taken over'),
    });
    try {
      await db.admin('CREATE DATABASE bench_hooked OWNER alice');
      const init = await pgbench(['-i', '-s', '1', '-q'], hooked.port, 'bench_hooked');
      assert.equal(init.code, 0, init.out);
      const before = await benchBalances('bench_hooked');
      const r = await pgbench(['-M', 'extended', '-c', '4', '-j', '2', '-T', '3'], hooked.port, 'bench_hooked');
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /number of failed transactions: 0 \(0\.000%\)/);
      const b = await benchBalances('bench_hooked');
      assert.notEqual(b.history, 0);
      assert.equal(b.accounts - before.accounts, b.history);
      assert.ok(batches > 1000, `batches offered: ${batches}`);
    } finally {
      await hooked.frontend.close();
    }
  });
});

async function benchBalances(database = 'bench'): Promise<{ history: number; accounts: number; tellers: number; branches: number }> {
  const c = new pg.Client({ host: db.socketDir, port: db.port, user: 'postgres', database });
  await c.connect();
  try {
    const r = await c.query(`
      SELECT (SELECT coalesce(sum(delta), 0) FROM pgbench_history)::bigint AS history,
             (SELECT sum(abalance) FROM pgbench_accounts)::bigint AS accounts,
             (SELECT sum(tbalance) FROM pgbench_tellers)::bigint AS tellers,
             (SELECT sum(bbalance) FROM pgbench_branches)::bigint AS branches`);
    const row = r.rows[0] as Record<string, string>;
    return { history: Number(row.history), accounts: Number(row.accounts), tellers: Number(row.tellers), branches: Number(row.branches) };
  } finally {
    await c.end();
  }
}
