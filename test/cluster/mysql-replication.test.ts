// Three real `recall serve` processes, each with its own managed mariadbd, behave as one MySQL
// server: a write through any port is visible through every port (at once for the writing
// session and for a linearizable reader elsewhere, eventually for everyone), and after
// sysbench oltp_read_write and after a workload of non-deterministic-looking constructs the
// three databases hold identical tables (CHECKSUM TABLE, read straight from each mariadbd).
// Constructs that cannot be replayed identically (UUID(), SYSDATE()) are refused with 1592.
// A second suite, on a cluster of its own, takes the constructs one at a time in short scripts,
// so that a failure names the construct. Settings: CLUSTER_SYSBENCH_SECONDS (default 15),
// CLUSTER_DET_ITERATIONS (default 10; iterations of the workload per client, 6 clients).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import mysql from 'mysql2/promise';
import { startCluster, type TestCluster } from '../harness/cluster.js';
import { failureGuard } from '../harness/failure-guard.js';
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

/** Remembers a failure, so that after() prints the nodes' logs. */
const failures = failureGuard();
const guard = failures.guard;

describe('MySQL replication across 3 real recall + mariadbd', { timeout: 900_000 }, () => {
  let c: TestCluster;
  const conns: Conn[] = [];
  const connect = async (i: number, extra: Partial<mysql.ConnectionOptions> = {}): Promise<Conn> => {
    // A new session on another port is only promised what the cluster has applied: let a
    // database created just before through some other session reach every replica first.
    if (extra.database) await c.waitConverged(30_000);
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
    if (c && failures.failed) console.log(c.dumpLogs());
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

  test('UUID() and SYSDATE() in a write are refused with 1592 naming the construct, on every port', guard(async () => {
    const admin = await connect(0);
    await admin.query('CREATE DATABASE refuse');
    await admin.query('CREATE TABLE refuse.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64), at DATETIME(6))');
    await admin.query(`INSERT INTO refuse.t (v) VALUES ('keep')`);
    const results: string[] = [];
    for (let i = 0; i < 3; i++) {
      const conn = await connect(i, { database: 'refuse' });
      const cases: Array<[string, string]> = [
        ['UUID()', `INSERT INTO t (v) VALUES (UUID())`],
        ['UUID()', `UPDATE t SET v = UUID() WHERE v = 'keep'`],
        ['SYSDATE()', `INSERT INTO t (v, at) VALUES ('sysdate', SYSDATE())`],
        ['SYSDATE()', `UPDATE t SET at = SYSDATE(6) WHERE v = 'keep'`],
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
    // Nothing of them reached any database: the one row is untouched everywhere.
    await c.waitConverged(30_000);
    for (let i = 0; i < 3; i++) {
      const rows = await c.dbQuery(i, 'SELECT v, at FROM refuse.t');
      assert.deepEqual(rows.map((r) => [r.v, r.at]), [['keep', null]], `node ${i + 1} has no trace of a refused statement`);
    }
  }));

  test(`sysbench oltp_read_write, 8 threads over the 3 ports, ${sysbenchSeconds} s: equal checksums afterwards`, guard(async () => {
    const leader = await c.waitLeader();
    const via = (leader + 1) % 3; // prepared through a follower: bulk inserts are forwarded
    const admin = await connect(via);
    await admin.query('CREATE DATABASE sbtest');
    await c.waitConverged(30_000); // sysbench's sessions are new: they log in to sbtest on that replica
    const target = { host: '127.0.0.1', user, password, db: 'sbtest' };
    const common = { workload: 'oltp_read_write', tables: 2, tableSize: 10000, target };
    await runSysbenchPorts({ ...common, command: 'prepare', ports: [c.nodes[via]!.mysqlPort], threads: 2 });
    await c.waitConverged(60_000); // the run's sessions on the other ports are new sessions
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
    await c.waitConverged(30_000); // the workload's sessions on the other ports are new sessions
    const rep = await runDeterminismWorkload({ ports: c.nodes.map((n) => n.mysqlPort), user, password, database: 'det', clientsPerPort: 2, iterations: detIterations });
    console.log(`# determinism workload: ${rep.okStatements} statements ok, ${rep.expectedErrors} expected duplicate-key errors, ${rep.failures.length} failures, ${rep.elapsedMs} ms`);
    assert.deepEqual(rep.failures, [], `statements that failed:\n${rep.failures.slice(0, 30).join('\n')}`);
    assert.deepEqual(rep.staleOwnReads, [], `a session did not see its own write:\n${rep.staleOwnReads.join('\n')}`);
    assert.equal(rep.expectedErrors, 6 * detIterations, 'every deliberate duplicate failed with 1062');

    await c.waitConverged(60_000);
    // Spot checks first, on every node, so that a checksum difference comes with its reason.
    const problems: string[] = [];
    for (let i = 0; i < 3; i++) {
      for (const p of await spotCheck((sql) => c.dbQuery(i, sql), 'det', rep)) problems.push(`node ${i + 1}${i === leader ? ' (leader)' : ''}: ${p}`);
    }
    const sums = await c.checksums('det');
    for (const t of determinismTables) {
      if (sums.some((x) => x[t] !== sums[0]![t])) problems.push(`CHECKSUM TABLE det.${t} differs: ${sums.map((x, i) => `node ${i + 1}${i === leader ? ' (leader)' : ''} ${x[t]}`).join(', ')}`);
    }
    assert.deepEqual(problems, [], problems.join('\n'));
    await assertSameChecksums(c, 'det', determinismTables);
    // Not only equal checksums: the clock and RAND() columns really carry the leader's values
    // (distinct per row, not all equal to one constant or NULL).
    const distinct = await c.dbQuery(0, 'SELECT COUNT(DISTINCT r) AS r, COUNT(DISTINCT created) AS t, COUNT(*) AS n FROM det.parent');
    assert.ok(Number(distinct[0]!.r) > Number(distinct[0]!.n) / 2, `RAND() values vary: ${JSON.stringify(distinct)}`);
    assert.ok(Number(distinct[0]!.t) > 1, `timestamps vary: ${JSON.stringify(distinct)}`);
  }));
});

// Short scripted cases, one construct each, on a cluster of their own (a replica that a case
// drives into divergence would otherwise fail every later test). Each ends with the replicas
// converged and its database equal on all three, value by value.
describe('determinism, one construct at a time (3 real recall + mariadbd)', { timeout: 600_000 }, () => {
  let c: TestCluster;
  let leader = 0;
  const conns: Conn[] = [];
  const connect = async (i: number, database?: string): Promise<Conn> => {
    if (database) await c.waitConverged(30_000); // as in the first suite
    const conn = await mysql.createConnection({ host: '127.0.0.1', port: c.nodes[i]!.mysqlPort, user: 'root', database });
    conn.on('error', () => undefined);
    conns.push(conn);
    return conn;
  };
  /** The rows of `sql` straight from every database must be identical. */
  const sameEverywhere = async (sql: string): Promise<Array<Record<string, unknown>>> => {
    await c.waitConverged(30_000);
    const per = await Promise.all([0, 1, 2].map((i) => c.dbQuery(i, sql)));
    const text = per.map((rows) => JSON.stringify(rows));
    assert.ok(text.every((t) => t === text[0]), `${sql}\n${text.map((t, i) => `node ${i + 1}${i === leader ? ' (leader)' : ''}: ${t}`).join('\n')}`);
    return per[0]!;
  };

  before(async () => {
    c = await startCluster();
    leader = await c.waitLeader(30_000);
  });
  after(async () => {
    for (const conn of conns) conn.destroy();
    if (c && failures.failed) console.log(c.dumpLogs());
    await c?.stop();
  });
  const follower = () => (leader + 1) % 3;
  const other = () => (leader + 2) % 3;

  test('user variables of every type reach the leader with the session\'s values', guard(async () => {
    const admin = await connect(leader);
    await admin.query('CREATE DATABASE uv');
    await admin.query(`CREATE TABLE uv.t (id INT PRIMARY KEY, via INT, s VARCHAR(20), u VARCHAR(20), i BIGINT, neg INT, d DECIMAL(6,2),
      f DOUBLE, nul INT NULL, b VARBINARY(4)) DEFAULT CHARSET=utf8mb4`);
    const problems: string[] = [];
    for (const i of [follower(), leader]) {
      const conn = await connect(i, 'uv');
      await conn.query(`SET @s = 'abc', @u = 'ünï''"\\\\', @i = 9007199254740993, @neg = -7, @d = 1.50, @f = 1e0 / 3, @nul = NULL, @b = X'00ff'`);
      try {
        await conn.query('INSERT INTO t VALUES (?, ?, @s, @u, @i, @neg, @d, @f, @nul, @b)', [i, i]);
      } catch (e) {
        problems.push(`port ${c.nodes[i]!.mysqlPort} (node ${i + 1}${i === leader ? ', leader' : ''}): INSERT … VALUES (@s, @u, …) -> ${errInfo(e)}`);
      }
    }
    assert.deepEqual(problems, [], problems.join('\n'));
    const rows = await sameEverywhere('SELECT id, s, u, i, neg, d, f, nul, HEX(b) AS b FROM uv.t ORDER BY id');
    for (const r of rows) {
      assert.deepEqual({ ...r, id: 0 }, { id: 0, s: 'abc', u: 'ünï\'"\\', i: '9007199254740993', neg: -7, d: '1.50', f: 1 / 3, nul: null, b: '00FF' }, `row written via node ${String(r.id)}`);
    }
  }));

  test('DDL then USE / SHOW on the same session through a follower sees the DDL (session consistency)', guard(async () => {
    const problems: string[] = [];
    for (const i of [follower(), other()]) {
      const conn = await connect(i);
      for (let k = 0; k < 10; k++) {
        const db = `ddl_${i}_${k}`;
        const step = async (what: string, sql: string): Promise<unknown> => {
          try {
            return (await conn.query(sql))[0];
          } catch (e) {
            problems.push(`port ${c.nodes[i]!.mysqlPort} (node ${i + 1}): ${what}: ${sql} -> ${errInfo(e)}`);
            return undefined;
          }
        };
        await step('create', `CREATE DATABASE ${db}`);
        await step('use right after create', `USE ${db}`);
        await step('create table', `CREATE TABLE ${db}.t (id INT PRIMARY KEY)`);
        const shown = (await step('show right after create table', `SHOW TABLES FROM ${db}`)) as unknown[] | undefined;
        if (shown && shown.length !== 1) problems.push(`port ${c.nodes[i]!.mysqlPort} (node ${i + 1}): SHOW TABLES FROM ${db} right after CREATE TABLE: ${JSON.stringify(shown)}`);
      }
    }
    assert.deepEqual(problems, [], problems.join('\n'));
  }));

  test('a prepared statement as a session\'s first statement runs in the session\'s database, on every port', guard(async () => {
    const admin = await connect(leader);
    await admin.query('CREATE DATABASE ps1');
    await admin.query('CREATE TABLE ps1.t (id INT AUTO_INCREMENT PRIMARY KEY, via INT)');
    const problems: string[] = [];
    for (let i = 0; i < 3; i++) {
      // The database comes with the handshake; nothing else precedes COM_STMT_PREPARE.
      const conn = await connect(i, 'ps1');
      try {
        await conn.execute('INSERT INTO t (via) VALUES (?)', [i]);
      } catch (e) {
        problems.push(`port ${c.nodes[i]!.mysqlPort} (node ${i + 1}${i === leader ? ', leader' : ''}), connected with database ps1: execute INSERT INTO t -> ${errInfo(e)}`);
      }
    }
    assert.deepEqual(problems, [], problems.join('\n'));
    assert.equal((await sameEverywhere('SELECT via FROM ps1.t ORDER BY via')).length, 3);
  }));

  test('ON UPDATE CURRENT_TIMESTAMP(6), a trigger\'s NOW(6) and RAND() in concurrent prepared and text UPDATEs', guard(async () => {
    const admin = await connect(leader);
    await admin.query('CREATE DATABASE ts');
    await admin.query(`CREATE TABLE ts.t (id INT PRIMARY KEY, n INT, r DOUBLE, at DATETIME(6) NULL,
      updated TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))`);
    await admin.query('CREATE TABLE ts.log (id INT AUTO_INCREMENT PRIMARY KEY, tid INT, n INT, at DATETIME(6))');
    await admin.query('CREATE TRIGGER ts.t_au AFTER UPDATE ON ts.t FOR EACH ROW INSERT INTO ts.log (tid, n, at) VALUES (NEW.id, NEW.n, NOW(6))');
    await admin.query('INSERT INTO ts.t (id, n) VALUES (1, 0), (2, 0), (3, 0), (4, 0), (5, 0), (6, 0)');
    await c.waitConverged(30_000); // new sessions on the other replicas prepare against their own tables
    // Two clients per port, each on its own row; the first execution of each prepared
    // statement is also its first use on the leader's lane.
    const clients = await Promise.all([0, 1, 2, 0, 1, 2].map((i) => connect(i)));
    await Promise.all(clients.map(async (conn, n) => {
      for (let k = 0; k < 5; k++) {
        // The clock is read only by the ON UPDATE column and the trigger: the statement text
        // names no time function, the leader's timestamp must travel all the same.
        if (n % 2 === 0) await conn.execute('UPDATE ts.t SET n = n + 1, r = RAND() * ? WHERE id = ?', [2, n + 1]);
        else await conn.query('UPDATE ts.t SET n = n + 1, r = RAND() * ?, at = NOW(6) WHERE id = ?', [2, n + 1]);
      }
    }));
    await sameEverywhere('SELECT id, n, r, at, updated FROM ts.t ORDER BY id');
    await sameEverywhere('SELECT * FROM ts.log ORDER BY id');
  }));

  test('AUTO_INCREMENT in a trigger after a rolled-back transaction', guard(async () => {
    const admin = await connect(leader);
    await admin.query('CREATE DATABASE trg');
    await admin.query('CREATE TABLE trg.p (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20))');
    await admin.query('CREATE TABLE trg.audit (id INT AUTO_INCREMENT PRIMARY KEY, pid INT, what VARCHAR(20))');
    await admin.query(`CREATE TRIGGER trg.p_ai AFTER INSERT ON trg.p FOR EACH ROW INSERT INTO trg.audit (pid, what) VALUES (NEW.id, 'insert')`);
    const conn = await connect(follower(), 'trg');
    await conn.query(`INSERT INTO p (v) VALUES ('first')`);
    // On the leader this burns an id of p and, through the trigger, one of audit.
    await conn.query('BEGIN');
    await conn.query(`INSERT INTO p (v) VALUES ('rolled back')`);
    await conn.query('ROLLBACK');
    await conn.query(`INSERT INTO p (v) VALUES ('after')`);
    await sameEverywhere('SELECT * FROM trg.p ORDER BY id');
    await sameEverywhere('SELECT * FROM trg.audit ORDER BY id');
  }));

  test('AUTO_INCREMENT inside a stored procedure after a failed duplicate insert', guard(async () => {
    const admin = await connect(leader);
    await admin.query('CREATE DATABASE prc');
    await admin.query('CREATE TABLE prc.p (id INT AUTO_INCREMENT PRIMARY KEY, u INT UNIQUE, v VARCHAR(20))');
    await admin.query(`CREATE PROCEDURE prc.add_two(IN x INT) BEGIN
      INSERT INTO prc.p (u, v) VALUES (x, 'proc-1'); INSERT INTO prc.p (u, v) VALUES (x + 1000, 'proc-2'); END`);
    const conn = await connect(follower(), 'prc');
    await conn.query(`INSERT INTO p (u, v) VALUES (1, 'first')`);
    // Fails with 1062 after InnoDB handed out an AUTO_INCREMENT value on the leader.
    await assert.rejects(conn.query(`INSERT INTO p (u, v) VALUES (1, 'dup')`), (e: { errno?: number }) => e.errno === 1062);
    await conn.query('CALL add_two(2)');
    await sameEverywhere('SELECT * FROM prc.p ORDER BY id');
  }));

  test('LAST_INSERT_ID(expr) in an UPDATE (the sequence idiom), then a trigger\'s AUTO_INCREMENT insert', guard(async () => {
    const admin = await connect(leader);
    await admin.query('CREATE DATABASE sq');
    await admin.query('CREATE TABLE sq.seq (name CHAR(1) PRIMARY KEY, id BIGINT NOT NULL)');
    await admin.query(`INSERT INTO sq.seq VALUES ('s', 100)`);
    await admin.query('CREATE TABLE sq.p (id INT PRIMARY KEY, v INT)');
    await admin.query('CREATE TABLE sq.audit (id INT AUTO_INCREMENT PRIMARY KEY, pid INT, v INT)');
    await admin.query('CREATE TRIGGER sq.p_au AFTER UPDATE ON sq.p FOR EACH ROW INSERT INTO sq.audit (pid, v) VALUES (NEW.id, NEW.v)');
    await admin.query('INSERT INTO sq.p VALUES (1, 0)');
    const conn = await connect(follower(), 'sq');
    const seen: number[] = [];
    for (let k = 0; k < 3; k++) {
      // The OK packet of this UPDATE carries 101, 102, … as its insert id; nothing in it
      // inserts an AUTO_INCREMENT row, so no replica may hand that value to a later insert.
      await conn.query(`UPDATE seq SET id = LAST_INSERT_ID(id + 1) WHERE name = 's'`);
      const [rows] = (await conn.query('SELECT LAST_INSERT_ID() AS v')) as [mysql.RowDataPacket[], unknown];
      seen.push(Number(rows[0]!.v));
      await conn.query('UPDATE p SET v = v + 1 WHERE id = 1');
    }
    assert.deepEqual(seen, [101, 102, 103], 'the session reads the value its UPDATE set');
    await sameEverywhere('SELECT * FROM sq.seq');
    await sameEverywhere('SELECT * FROM sq.audit ORDER BY id');
  }));

  test('CURRENT_USER() in a write, and the DEFINER of a trigger and a procedure made by a non-root account, are the same everywhere', guard(async () => {
    const admin = await connect(leader);
    await admin.query('CREATE DATABASE acct');
    await admin.query('CREATE TABLE acct.t (id INT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(20), v VARCHAR(200))');
    for (const host of ['%', 'localhost']) {
      await admin.query(`CREATE USER 'dev'@'${host}' IDENTIFIED BY 'dev-pw'`);
      await admin.query(`GRANT ALL ON acct.* TO 'dev'@'${host}'`);
    }
    await c.waitConverged(30_000);
    const dev = await mysql.createConnection({ host: '127.0.0.1', port: c.nodes[follower()]!.mysqlPort, user: 'dev', password: 'dev-pw', database: 'acct' });
    conns.push(dev);
    await dev.query(`INSERT INTO t (what, v) VALUES ('current_user', CURRENT_USER())`);
    await dev.query(`CREATE TRIGGER t_bi BEFORE INSERT ON t FOR EACH ROW SET NEW.v = COALESCE(NEW.v, CURRENT_USER())`);
    // SQL SECURITY DEFINER: the body runs with its definer's privileges, so the definer must
    // be the same account on every replica (not the account Recall applies with).
    await dev.query(`CREATE PROCEDURE who() SQL SECURITY DEFINER INSERT INTO acct.t (what, v) VALUES ('in_proc', CURRENT_USER())`);
    await dev.query('CALL who()');
    // SQL SECURITY INVOKER: CURRENT_USER() in the body is whoever calls, evaluated at the call;
    // replicas apply as Recall's admin account, so such a CALL is refused with 1592 (and its way out).
    await dev.query(`CREATE PROCEDURE whoi() SQL SECURITY INVOKER INSERT INTO acct.t (what, v) VALUES ('in_invoker_proc', CURRENT_USER())`);
    const refused = await dev.query('CALL whoi()').then(() => null, (e: { errno?: number; message?: string }) => e);
    assert.equal(refused?.errno, 1592, `CALL of an invoker procedure reading CURRENT_USER(): ${refused?.message ?? 'accepted'}`);
    assert.match(String(refused?.message), /SQL SECURITY DEFINER/);
    await dev.query(`INSERT INTO t (what) VALUES ('trigger')`);
    await sameEverywhere('SELECT * FROM acct.t ORDER BY id');
    const definers = await sameEverywhere(`SELECT 'trigger' AS kind, DEFINER FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = 'acct'
      UNION ALL SELECT 'routine', DEFINER FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'acct' ORDER BY 1`);
    for (const d of definers) assert.match(String(d.DEFINER), /^dev@/, `the ${String(d.kind)} belongs to the account that created it`);
    const users = await c.dbQuery(leader, 'SELECT what, v FROM acct.t ORDER BY id');
    for (const r of users) assert.match(String(r.v), /^dev@/, `${String(r.what)}: CURRENT_USER() is the calling/defining account`);
  }));

  test('AUTO_INCREMENT reserved in bulk by INSERT … SELECT, INSERT IGNORE and ON DUPLICATE KEY UPDATE, then taken by a procedure', guard(async () => {
    const admin = await connect(leader);
    await admin.query('CREATE DATABASE bulk');
    await admin.query('CREATE TABLE bulk.src (v INT PRIMARY KEY)');
    await admin.query('INSERT INTO bulk.src VALUES (1), (2), (3), (4), (5), (6), (7), (8), (9), (10), (11)');
    await admin.query('CREATE TABLE bulk.p (id INT AUTO_INCREMENT PRIMARY KEY, v INT, u INT UNIQUE, n INT DEFAULT 0)');
    // The procedure's insert is not the statement's own, so no INSERT_ID from the leader covers
    // it: it shows whether every replica's AUTO_INCREMENT counter stands where the leader's does.
    await admin.query(`CREATE PROCEDURE bulk.add_one(IN x INT) INSERT INTO bulk.p (v) VALUES (x)`);
    const conn = await connect(follower(), 'bulk');
    const steps = [
      // InnoDB reserves values for INSERT … SELECT in growing batches (1, 2, 4, 8, …), so more
      // are taken than rows are inserted.
      'INSERT INTO p (v) SELECT v FROM src ORDER BY v',
      'CALL add_one(100)',
      'INSERT IGNORE INTO p (v, u) VALUES (200, 1), (201, 1), (202, 2)',
      'CALL add_one(101)',
      'INSERT INTO p (v, u) VALUES (300, 1) ON DUPLICATE KEY UPDATE n = n + 1',
      'CALL add_one(102)',
      'INSERT INTO p (v, u) SELECT v + 1000, v + 10 FROM src WHERE v <= 3 ORDER BY v ON DUPLICATE KEY UPDATE n = n + 1',
      'CALL add_one(103)',
    ];
    for (const sql of steps) await conn.query(sql);
    await sameEverywhere('SELECT * FROM bulk.p ORDER BY id');
  }));

  test('LAST_INSERT_ID() and AUTO_INCREMENT in concurrent prepared statements of clients on every port', guard(async () => {
    const admin = await connect(leader);
    await admin.query('CREATE DATABASE lid');
    await admin.query('CREATE TABLE lid.p (id INT AUTO_INCREMENT PRIMARY KEY, who CHAR(1), k INT, r DOUBLE, at DATETIME(6))');
    await admin.query('CREATE TABLE lid.c (id INT AUTO_INCREMENT PRIMARY KEY, pid INT, who CHAR(1), k INT, at DATETIME(6))');
    await c.waitConverged(30_000); // new sessions on the other replicas prepare against their own tables
    const clients = await Promise.all([follower(), other(), leader].map((i) => connect(i)));
    // Concurrent clients: their statements share group-commit entries on the leader and one
    // apply session on each follower; each LAST_INSERT_ID() must still be its own session's.
    await Promise.all(clients.map(async (conn, n) => {
      const who = 'ABC'[n]!;
      for (let k = 0; k < 10; k++) {
        await conn.execute('INSERT INTO lid.p (who, k, r, at) VALUES (?, ?, RAND(), NOW(6))', [who, k]);
        await conn.execute('INSERT INTO lid.c (pid, who, k, at) VALUES (LAST_INSERT_ID(), ?, ?, NOW(6))', [who, k]);
        if (k % 3 === 0) {
          await conn.query('BEGIN');
          await conn.execute('INSERT INTO lid.p (who, k) VALUES (?, ?)', ['X', k]);
          await conn.execute('INSERT INTO lid.c (pid, who, k) VALUES (LAST_INSERT_ID(), ?, ?)', ['X', k]);
          await conn.query('ROLLBACK');
        }
      }
    }));
    for (let i = 0; i < 3; i++) {
      const wrong = await c.dbQuery(i, 'SELECT c.*, p.who AS pwho, p.k AS pk FROM lid.c c LEFT JOIN lid.p p ON p.id = c.pid WHERE p.id IS NULL OR p.who <> c.who OR p.k <> c.k');
      assert.deepEqual(wrong, [], `node ${i + 1}${i === leader ? ' (leader)' : ''}: child rows whose LAST_INSERT_ID() is not their client's parent`);
    }
    await sameEverywhere('SELECT * FROM lid.p ORDER BY id');
    await sameEverywhere('SELECT * FROM lid.c ORDER BY id');
  }));
});
