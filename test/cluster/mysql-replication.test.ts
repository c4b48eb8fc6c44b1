// Three real `recall serve` processes, each with its own managed mariadbd, behave as one MySQL
// server: a write through any port is visible through every port (at once for the writing
// session and for a linearizable reader elsewhere, eventually for everyone), and after
// sysbench oltp_read_write and after a workload of non-deterministic-looking constructs the
// three databases hold identical tables (CHECKSUM TABLE, read straight from each mariadbd).
// Constructs that cannot be replayed identically (UUID(), SYSDATE()) are refused with 1592.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import mysql from 'mysql2/promise';
import { startCluster, type TestCluster } from '../harness/cluster.js';
import { runSysbenchPorts } from '../../bench/lib/cluster-sysbench.js';
import { createDeterminismSchema, determinismTables, runDeterminismWorkload, spotCheck } from './determinism-workload.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const user = 'app';
const password = 'app-pw';
const sysbenchSeconds = Number(process.env.CLUSTER_SYSBENCH_SECONDS ?? 15);
const detIterations = Number(process.env.CLUSTER_DET_ITERATIONS ?? 10);
/** How long a default-consistency reader elsewhere may lag behind an acknowledged write. */
const eventualMs = 5000;

type Conn = mysql.Connection;

function errInfo(e: unknown): string {
  const x = e as { errno?: number; sqlState?: string; message?: string };
  return `${x.errno ?? '?'} (${x.sqlState ?? '?'}) ${x.message ?? String(e)}`;
}

/** Every node's checksums equal node 0's, and there are the expected tables. */
async function assertSameChecksums(c: TestCluster, db: string, tables: readonly string[]): Promise<Record<string, string>> {
  const sums = await c.checksums(db);
  assert.equal(sums.length, c.nodes.length, 'a checksum set per node');
  for (const t of tables) assert.ok(sums[0]![t] !== undefined && sums[0]![t] !== 'null', `node 1 has table ${db}.${t} (${JSON.stringify(sums[0])})`);
  for (let i = 1; i < sums.length; i++) {
    const diff = Object.keys({ ...sums[0], ...sums[i] }).filter((t) => sums[0]![t] !== sums[i]![t]);
    assert.deepEqual(sums[i], sums[0], `node ${i + 1} differs from node 1 in ${db}: ${diff.map((t) => `${t} ${sums[i]![t]} vs ${sums[0]![t]}`).join(', ')}`);
  }
  return sums[0]!;
}

let failed = false;
/** Runs a test body and remembers a failure, so that after() prints the nodes' logs. */
function guard(fn: () => Promise<void>): () => Promise<void> {
  return async () => {
    try {
      await fn();
    } catch (e) {
      failed = true;
      throw e;
    }
  };
}

describe('MySQL replication across 3 real recall + mariadbd', { timeout: 900_000 }, () => {
  let c: TestCluster;
  const conns: Conn[] = [];
  const connect = async (i: number, extra: Partial<mysql.ConnectionOptions> = {}): Promise<Conn> => {
    const conn = await mysql.createConnection({ host: '127.0.0.1', port: c.nodes[i]!.mysqlPort, user, password, ...extra });
    conn.on('error', () => undefined);
    conns.push(conn);
    return conn;
  };

  before(async () => {
    c = await startCluster();
    const leader = await c.waitLeader(30_000);
    // The account is created through a follower's port: account DDL must replicate too.
    const follower = (leader + 1) % 3;
    const root = await mysql.createConnection({ host: '127.0.0.1', port: c.nodes[follower]!.mysqlPort, user: 'root' });
    try {
      for (const host of ['%', 'localhost']) {
        await root.query(`CREATE USER '${user}'@'${host}' IDENTIFIED BY '${password}'`);
        await root.query(`GRANT ALL ON *.* TO '${user}'@'${host}'`);
      }
    } finally {
      await root.end();
    }
    await c.waitConverged(30_000);
  });

  after(async () => {
    for (const conn of conns) conn.destroy();
    if (c && failed) console.log(c.dumpLogs());
    await c?.stop();
  });

  test('a write through any port is visible through all three', guard(async () => {
    const admin = await connect(0);
    await admin.query('CREATE DATABASE rw');
    await admin.query('CREATE TABLE rw.kv (k VARCHAR(64) PRIMARY KEY, v INT NOT NULL, via INT NOT NULL) ENGINE=InnoDB');
    const writers = await Promise.all([0, 1, 2].map((i) => connect(i, { database: 'rw' })));
    const linear = await Promise.all([0, 1, 2].map((i) => connect(i, { database: 'rw' })));
    for (const l of linear) await l.query(`SET @recall_consistency = 'linearizable'`);
    const plain = await Promise.all([0, 1, 2].map((i) => connect(i, { database: 'rw' })));
    const local = await Promise.all([0, 1, 2].map((i) => connect(i, { database: 'rw' })));
    for (const l of local) await l.query(`SET @recall_consistency = 'local'`);

    const problems: string[] = [];
    const lags: number[] = [];
    const expected = new Map<string, number>();
    for (let round = 0; round < 5; round++) {
      for (let w = 0; w < 3; w++) {
        const k = `w${w}-r${round}`;
        const port = c.nodes[w]!.mysqlPort;
        // Session consistency: the writer reads its own insert and its own update at once.
        await writers[w]!.query('INSERT INTO kv (k, v, via) VALUES (?, ?, ?)', [k, round, w]);
        const [own] = (await writers[w]!.query('SELECT v FROM kv WHERE k = ?', [k])) as [mysql.RowDataPacket[], unknown];
        if (own.length !== 1 || own[0]!.v !== round) problems.push(`port ${port} (node ${w + 1}): INSERT ${k} then SELECT on the same session: expected v=${round}, got ${JSON.stringify(own)}`);
        await writers[w]!.query('UPDATE kv SET v = v + 100 WHERE k = ?', [k]);
        const [own2] = (await writers[w]!.query('SELECT v FROM kv WHERE k = ?', [k])) as [mysql.RowDataPacket[], unknown];
        if (own2[0]?.v !== round + 100) problems.push(`port ${port} (node ${w + 1}): UPDATE ${k} then SELECT on the same session: expected v=${round + 100}, got ${JSON.stringify(own2)}`);
        expected.set(k, round + 100);
        // Linearizable readers on every port see the acknowledged update immediately.
        for (let o = 0; o < 3; o++) {
          const [rows] = (await linear[o]!.query('SELECT v FROM kv WHERE k = ?', [k])) as [mysql.RowDataPacket[], unknown];
          if (rows[0]?.v !== round + 100) problems.push(`write via port ${port} (node ${w + 1}), linearizable read via port ${c.nodes[o]!.mysqlPort} (node ${o + 1}) right after: expected v=${round + 100}, got ${JSON.stringify(rows)}`);
        }
        // Default (session) and local readers on the other ports see it eventually.
        for (let o = 0; o < 3; o++) {
          for (const [name, reader] of [['session', plain[o]!], ['local', local[o]!]] as const) {
            const t0 = Date.now();
            for (;;) {
              const [rows] = (await reader.query('SELECT v FROM kv WHERE k = ?', [k])) as [mysql.RowDataPacket[], unknown];
              if (rows[0]?.v === round + 100) break;
              if (Date.now() - t0 > eventualMs) {
                problems.push(`write via port ${port}, ${name} read via port ${c.nodes[o]!.mysqlPort} (node ${o + 1}): not visible after ${eventualMs} ms (got ${JSON.stringify(rows)})`);
                break;
              }
              await sleep(5);
            }
            lags.push(Date.now() - t0);
          }
        }
      }
    }
    assert.deepEqual(problems, [], problems.join('\n'));
    console.log(`# read-after-write on other ports: max wait ${Math.max(...lags)} ms, mean ${(lags.reduce((a, b) => a + b, 0) / lags.length).toFixed(1)} ms`);

    // Straight from each mariadbd: the same 15 rows with the final values.
    await c.waitConverged(30_000);
    for (let i = 0; i < 3; i++) {
      const rows = await c.dbQuery(i, 'SELECT k, v, via FROM rw.kv ORDER BY k');
      assert.deepEqual(new Map(rows.map((r) => [String(r.k), Number(r.v)])), expected, `node ${i + 1}'s database holds every write`);
    }
    await assertSameChecksums(c, 'rw', ['kv']);
  }));

  test(`sysbench oltp_read_write, 8 threads over the 3 ports, ${sysbenchSeconds} s: equal checksums afterwards`, guard(async () => {
    const leader = await c.waitLeader();
    const via = (leader + 1) % 3; // prepared through a follower: bulk inserts are forwarded
    const admin = await connect(via);
    await admin.query('CREATE DATABASE sbtest');
    const target = { host: '127.0.0.1', user, password, db: 'sbtest' };
    const common = { workload: 'oltp_read_write', tables: 2, tableSize: 10000, target };
    await runSysbenchPorts({ ...common, command: 'prepare', ports: [c.nodes[via]!.mysqlPort], threads: 2 });
    const r = await runSysbenchPorts({
      ...common, command: 'run', ports: c.nodes.map((n) => n.mysqlPort), threads: 8, seconds: sysbenchSeconds, psMode: 'auto',
      // Uniform keys as in test/compat/mysql-sysbench.test.ts: the default "special"
      // distribution concentrates writes on a few rows.
      extra: ['--rand-type=uniform'],
    });
    const report = `transactions ${r.transactions} (${r.tps}/s), ignored errors ${r.errors}, reconnects ${r.reconnects}, p95 ${r.p95Ms} ms`;
    console.log(`# sysbench oltp_read_write through 3 ports: ${report}`);
    assert.ok(r.transactions > 0, report);
    // sysbench ignores only 1213 (deadlock), 1205 (lock wait / lane timeout) and 1020; any other
    // error is fatal and runSysbench rejects. With one write lane per cluster the database
    // itself cannot deadlock between two writers; what remains are transactions that waited
    // for the lane past its timeout, which must stay rare (at most 1%).
    assert.ok(r.errors <= Math.max(2, r.transactions / 100), `${report}\n${r.output.slice(-2000)}`);
    assert.equal(r.reconnects, 0, report);
    assert.doesNotMatch(r.output, /FATAL/, report);

    // Quiet period: every replica applies the leader's commit index, then the tables agree.
    await c.waitConverged(60_000);
    const sums = await assertSameChecksums(c, 'sbtest', ['sbtest1', 'sbtest2']);
    const counts = await Promise.all([0, 1, 2].map((i) => c.dbQuery(i, 'SELECT (SELECT COUNT(*) FROM sbtest.sbtest1) + (SELECT COUNT(*) FROM sbtest.sbtest2) AS n')));
    // oltp_read_write deletes one row and inserts one per transaction: the count stays 20000.
    for (const [i, rows] of counts.entries()) assert.equal(Number(rows[0]!.n), 20000, `node ${i + 1} row count`);
    console.log(`# sbtest checksums equal on 3 nodes: ${JSON.stringify(sums)}`);
  }));

  test('determinism workload over the 3 ports: equal checksums and the values the clients were told', guard(async () => {
    const leader = await c.waitLeader();
    const via = (leader + 2) % 3;
    const admin = await connect(via);
    await createDeterminismSchema(admin, 'det');
    const rep = await runDeterminismWorkload({ ports: c.nodes.map((n) => n.mysqlPort), user, password, database: 'det', clientsPerPort: 2, iterations: detIterations });
    console.log(`# determinism workload: ${rep.okStatements} statements ok, ${rep.expectedErrors} expected duplicate-key errors, ${rep.failures.length} failures, ${rep.elapsedMs} ms`);
    assert.deepEqual(rep.failures, [], `statements that failed:\n${rep.failures.slice(0, 30).join('\n')}`);
    assert.deepEqual(rep.staleOwnReads, [], `a session did not see its own write:\n${rep.staleOwnReads.join('\n')}`);
    assert.equal(rep.expectedErrors, 6 * detIterations, 'every deliberate duplicate failed with 1062');

    await c.waitConverged(60_000);
    await assertSameChecksums(c, 'det', determinismTables);
    for (let i = 0; i < 3; i++) {
      const problems = await spotCheck((sql) => c.dbQuery(i, sql), 'det', rep);
      assert.deepEqual(problems, [], `node ${i + 1}:\n${problems.join('\n')}`);
    }
    // Not only equal checksums: the clock and RAND() columns really carry the leader's values
    // (distinct per row, not all equal to one constant or NULL).
    const distinct = await c.dbQuery(0, 'SELECT COUNT(DISTINCT r) AS r, COUNT(DISTINCT created) AS t, COUNT(*) AS n FROM det.parent');
    assert.ok(Number(distinct[0]!.r) > Number(distinct[0]!.n) / 2, `RAND() values vary: ${JSON.stringify(distinct)}`);
    assert.ok(Number(distinct[0]!.t) > 1, `timestamps vary: ${JSON.stringify(distinct)}`);
  }));

  test('UUID() and SYSDATE() in a write are refused with 1592 naming the construct, on every port', guard(async () => {
    const results: string[] = [];
    for (let i = 0; i < 3; i++) {
      const conn = await connect(i, { database: 'det' });
      const cases: Array<[string, string]> = [
        ['UUID()', `INSERT INTO uvars (client, seq, v) VALUES (0, ${i * 10 + 1}, UUID())`],
        ['UUID()', `UPDATE uvars SET v = UUID() WHERE client = 1 AND seq = 1`],
        ['SYSDATE()', `INSERT INTO child (parent_id, client, seq, note, at) VALUES (0, 0, ${i * 10 + 2}, 'sysdate', SYSDATE())`],
        ['SYSDATE()', `UPDATE parent SET ts_now = SYSDATE(6) WHERE client = 1`],
      ];
      for (const [construct, sql] of cases) {
        try {
          await conn.query(sql);
          results.push(`port ${c.nodes[i]!.mysqlPort} (node ${i + 1}): ${sql} -> succeeded, expected error 1592 naming ${construct}`);
        } catch (e) {
          const x = e as { errno?: number; sqlState?: string; message?: string };
          if (x.errno !== 1592 || x.sqlState !== 'HY000' || !x.message?.includes(construct)) {
            results.push(`port ${c.nodes[i]!.mysqlPort} (node ${i + 1}): ${sql} -> ${errInfo(e)}, expected 1592 (HY000) naming ${construct}`);
          }
        }
      }
    }
    assert.deepEqual(results, [], results.join('\n'));
    // Nothing of them reached any database.
    await c.waitConverged(30_000);
    for (let i = 0; i < 3; i++) {
      const rows = await c.dbQuery(i, `SELECT (SELECT COUNT(*) FROM det.uvars WHERE client = 0) + (SELECT COUNT(*) FROM det.child WHERE note = 'sysdate') AS n`);
      assert.equal(Number(rows[0]!.n), 0, `node ${i + 1} has no row of a refused statement`);
    }
    await assertSameChecksums(c, 'det', determinismTables);
  }));
});
