// sysbench oltp_read_write (server-side prepared statements, 8 threads) runs unmodified through
// Recall with zero errors (beyond rare deadlocks, as direct) and zero reconnects; the tables are
// also prepared through Recall.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCompatEnv, rootSql, type CompatEnv } from './env.js';
import { runSysbench, type SysbenchTarget } from '../../bench/lib/sysbench.js';

describe('sysbench through Recall', { timeout: 180_000 }, () => {
  let env: CompatEnv;
  before(async () => {
    env = await startCompatEnv('sb');
    for (const t of [env.direct, env.recall]) {
      rootSql(env, `CREATE DATABASE ${t.db};
        CREATE USER IF NOT EXISTS 'sbuser'@'%' IDENTIFIED BY 'sb-pw'; CREATE USER IF NOT EXISTS 'sbuser'@'localhost' IDENTIFIED BY 'sb-pw';
        GRANT ALL ON ${t.db}.* TO 'sbuser'@'%'; GRANT ALL ON ${t.db}.* TO 'sbuser'@'localhost';`);
    }
  });
  after(async () => {
    await env?.stop();
  });

  test('oltp_read_write, 8 threads, prepared statements: zero errors, zero reconnects', async () => {
    const common = { tables: 2, tableSize: 10000 };
    for (const side of [env.direct, env.recall]) {
      const target: SysbenchTarget = { host: side.host, port: side.port, user: 'sbuser', password: 'sb-pw', db: side.db };
      await runSysbench({ workload: 'oltp_read_write', command: 'prepare', target, threads: 2, ...common });
      const counts = rootSql(env, `SELECT COUNT(*) FROM ${side.db}.sbtest1; SELECT COUNT(*) FROM ${side.db}.sbtest2`);
      assert.deepEqual(counts.match(/^\d+$/gm), ['10000', '10000'], `${side.name}: prepared rows`);
      const r = await runSysbench({
        workload: 'oltp_read_write', command: 'run', target, threads: 8, seconds: 10, psMode: 'auto', ...common,
        // Uniform keys: sysbench's default "special" distribution makes hot rows and so deadlocks.
        extra: ['--rand-type=uniform'],
      });
      const report = `${side.name}: transactions ${r.transactions} (${r.tps}/s), errors ${r.errors}, reconnects ${r.reconnects}`;
      assert.ok(r.transactions > 0, report);
      // Any error outside sysbench's retry list (1213 deadlock, 1205 lock wait timeout, 1020) is
      // fatal: sysbench exits non-zero and runSysbench rejects. Deadlocks are the database's own
      // behaviour (they happen direct too, about 1 in 10^4 transactions here); they must stay as rare
      // through Recall, and any other error fails the test.
      assert.ok(r.errors <= Math.max(2, r.transactions / 2000), `${report}\n${r.output.slice(-2000)}`);
      assert.equal(r.reconnects, 0, report);
      // sysbench itself counts failed statements as fatal; none may have been printed.
      assert.doesNotMatch(r.output, /FATAL|error 1\d\d\d/i, report);
      console.log(`${report}, p95 ${r.p95Ms} ms`);
    }
  });
});
