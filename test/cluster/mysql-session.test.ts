// Session semantics through a 3-replica cluster, each check through a follower (forwarded) and
// through the leader: temporary tables stay in the session, SHOW WARNINGS after a replicated
// write shows its warnings, LOAD DATA LOCAL reaches every replica, the `recall` database is not
// writable, a read-only account cannot write through any port, a transaction that holds the lane
// too long is rolled back with 1205, multi-statement texts mixing transaction control and writes
// run as the server would run them, and the consistency level is settable per session.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync, createReadStream, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import { startCluster, type TestCluster } from '../harness/cluster.js';

type Conn = mysql.Connection;

async function errOf(p: Promise<unknown>): Promise<{ errno?: number; message?: string } | 'ok'> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    const x = e as { errno?: number; message?: string };
    return { errno: x.errno, message: x.message };
  }
}

describe('MySQL session semantics on 3 real recall + mariadbd', { timeout: 600_000 }, () => {
  let c: TestCluster;
  let leader = 0;
  let follower = 1;
  const conns: Conn[] = [];
  let dir = '';
  const connect = async (i: number, opts: Partial<mysql.ConnectionOptions> = {}): Promise<Conn> => {
    const conn = await mysql.createConnection({
      host: '127.0.0.1',
      port: c.nodes[i]!.mysqlPort,
      user: 'root',
      multipleStatements: true,
      infileStreamFactory: (p: string) => createReadStream(p),
      ...opts,
    });
    conns.push(conn);
    return conn;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'recall-session-'));
    c = await startCluster({ size: 3, extraArgs: ['--lane-timeout-ms', '1500'] });
    leader = await c.waitLeader();
    follower = (leader + 1) % 3;
    const admin = await connect(leader);
    await admin.query('CREATE DATABASE s; CREATE TABLE s.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(10), n TINYINT)');
    await admin.query("CREATE USER 'ro'@'%' IDENTIFIED BY 'ro-pw'; GRANT SELECT ON s.* TO 'ro'@'%'");
    // the tests log in to followers with database s and as ro: a new session on another node
    // carries no causal token, so wait until every replica applied the set-up
    await c.waitConverged(30_000);
  });

  after(async () => {
    for (const x of conns) await x.end().catch(() => x.destroy());
    if (c) await c.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('temporary tables stay in the session; a write reading one is refused with 1592', async () => {
    for (const i of [follower, leader]) {
      const conn = await connect(i, { database: 's' });
      await conn.query('CREATE TEMPORARY TABLE tmp (a INT)');
      await conn.query('INSERT INTO tmp VALUES (1), (2)');
      const [rows] = await conn.query('SELECT SUM(a) AS s FROM tmp');
      assert.equal(Number((rows as Array<{ s: number }>)[0]!.s), 3, `node ${i + 1}: the session sees its temporary table`);
      const e = await errOf(conn.query("INSERT INTO t (v) SELECT 'tmp' FROM tmp"));
      assert.ok(e !== 'ok' && e.errno === 1592 && /temporary table tmp/.test(e.message ?? ''), `node ${i + 1}: ${JSON.stringify(e)}`);
      await conn.query('DROP TEMPORARY TABLE tmp');
    }
    await c.waitConverged();
    for (let i = 0; i < 3; i++) {
      const rows = await c.dbQuery(i, "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_name = 'tmp'");
      assert.equal(Number(rows[0]!.n), 0, `node ${i + 1}: no table tmp was replicated`);
    }
  });

  test('SHOW WARNINGS after a replicated write shows its warnings; the OK carries the count', async () => {
    for (const i of [follower, leader]) {
      const conn = await connect(i, { database: 's' });
      await conn.query("SET sql_mode = ''");
      const [ok] = await conn.query("INSERT INTO t (v, n) VALUES ('toolongvalue!', 300)");
      assert.equal((ok as mysql.ResultSetHeader).warningStatus, 2, `node ${i + 1}: warning count in the OK`);
      const [w] = await conn.query('SHOW WARNINGS');
      const codes = (w as Array<{ Code: number }>).map((x) => x.Code).sort();
      assert.deepEqual(codes, [1264, 1265], `node ${i + 1}: ${JSON.stringify(w)}`);
    }
  });

  test('LOAD DATA LOCAL INFILE through a follower reaches every replica', async () => {
    const file = join(dir, 'rows.tsv');
    writeFileSync(file, 'loaded1\t1\nloaded2\t2\n');
    const conn = await connect(follower, { database: 's' });
    const [r] = await conn.query({ sql: `LOAD DATA LOCAL INFILE '${file}' INTO TABLE t (v, n)`, values: [] });
    assert.equal((r as mysql.ResultSetHeader).affectedRows, 2);
    await c.waitConverged();
    for (let i = 0; i < 3; i++) {
      const rows = await c.dbQuery(i, "SELECT v FROM s.t WHERE v LIKE 'loaded%' ORDER BY v");
      assert.deepEqual(rows.map((x) => x.v), ['loaded1', 'loaded2'], `node ${i + 1}`);
    }
  });

  test('the recall database is not writable through Recall; a read-only account cannot write on any port', async () => {
    const conn = await connect(follower);
    const e = await errOf(conn.query('UPDATE recall.applied SET idx = 0'));
    assert.ok(e !== 'ok' && e.errno === 1044, JSON.stringify(e));
    for (let i = 0; i < 3; i++) {
      const ro = await connect(i, { user: 'ro', password: 'ro-pw', database: 's' });
      const [rows] = await ro.query('SELECT COUNT(*) AS n FROM t');
      assert.ok(Number((rows as Array<{ n: number }>)[0]!.n) >= 0);
      const w = await errOf(ro.query("INSERT INTO t (v) VALUES ('ro')"));
      assert.ok(w !== 'ok' && w.errno === 1142, `node ${i + 1}: ${JSON.stringify(w)}`);
    }
    await c.waitConverged();
    for (let i = 0; i < 3; i++) assert.equal(Number((await c.dbQuery(i, "SELECT COUNT(*) AS n FROM s.t WHERE v = 'ro'"))[0]!.n), 0);
    // CREATE USER ... IDENTIFIED BY 'ro-pw' reached the log as the password's hash only
    for (const n of c.nodes) {
      const raft = join(n.dataDir, 'raft');
      const text = readdirSync(raft).map((f) => readFileSync(join(raft, f)).toString('latin1')).join('');
      assert.ok(text.includes('CREATE USER'), `node ${n.nodeId}: the log holds the CREATE USER`);
      assert.ok(!text.includes('ro-pw'), `node ${n.nodeId}: a plaintext password in the replicated log`);
    }
  });

  test('a transaction holding the lane past laneTimeoutMs is rolled back (1205); others proceed', async () => {
    const holder = await connect(follower, { database: 's' });
    const other = await connect(leader, { database: 's' });
    await holder.query('BEGIN');
    await holder.query("INSERT INTO t (v) VALUES ('held')");
    // the lane is held: an autocommit write elsewhere waits, then gets 1205 or runs after the rollback
    const t0 = Date.now();
    const waited = await errOf(other.query("INSERT INTO t (v) VALUES ('other')"));
    const ms = Date.now() - t0;
    assert.ok(waited === 'ok' || waited.errno === 1205, JSON.stringify(waited));
    assert.ok(ms >= 1000, `the other write waited for the lane (${ms} ms)`);
    await new Promise((r) => setTimeout(r, 300));
    const late = await errOf(holder.query('COMMIT'));
    assert.ok(late !== 'ok' && late.errno === 1205, `the expired transaction's COMMIT: ${JSON.stringify(late)}`);
    await c.waitConverged();
    for (let i = 0; i < 3; i++) assert.equal(Number((await c.dbQuery(i, "SELECT COUNT(*) AS n FROM s.t WHERE v = 'held'"))[0]!.n), 0, `node ${i + 1}`);
    // the session works again
    await holder.query("INSERT INTO t (v) VALUES ('after')");
  });

  test('a multi-statement text with a transaction and writes runs statement by statement', async () => {
    const conn = await connect(follower, { database: 's' });
    const [res] = await conn.query("BEGIN; INSERT INTO t (v) VALUES ('m1'); INSERT INTO t (v) VALUES ('m2'); SELECT COUNT(*) AS n FROM t WHERE v LIKE 'm_'; COMMIT");
    const sets = res as unknown[];
    assert.equal(sets.length, 5, 'one result per statement');
    assert.equal(Number((sets[3] as Array<{ n: number }>)[0]!.n), 2, 'the read inside the transaction sees its writes');
    await c.waitConverged();
    for (let i = 0; i < 3; i++) assert.equal(Number((await c.dbQuery(i, "SELECT COUNT(*) AS n FROM s.t WHERE v LIKE 'm_'"))[0]!.n), 2, `node ${i + 1}`);
  });

  test('consistency levels: session sees its own write at once, linearizable (per session or per statement) sees another session\'s', async () => {
    const writer = await connect(leader, { database: 's' });
    const reader = await connect(follower, { database: 's' });
    await reader.query("SET @recall_consistency = 'linearizable'");
    for (let k = 0; k < 20; k++) {
      await writer.query('INSERT INTO t (v) VALUES (?)', [`lin${k}`]);
      const [rows] = await reader.query('SELECT COUNT(*) AS n FROM t WHERE v = ?', [`lin${k}`]);
      assert.equal(Number((rows as Array<{ n: number }>)[0]!.n), 1, `linearizable read ${k} through a follower`);
    }
    // per statement: a leading comment asks for linearizable on a session that is 'session'
    const hinted = await connect(follower, { database: 's' });
    for (let k = 0; k < 20; k++) {
      await writer.query('INSERT INTO t (v) VALUES (?)', [`hint${k}`]);
      const [rows] = await hinted.query('/*recall_consistency=linearizable*/ SELECT COUNT(*) AS n FROM t WHERE v = ?', [`hint${k}`]);
      assert.equal(Number((rows as Array<{ n: number }>)[0]!.n), 1, `statement-level linearizable read ${k} through a follower`);
    }
    const own = await connect(follower, { database: 's' });
    for (let k = 0; k < 20; k++) {
      const [ok] = await own.query('INSERT INTO t (v) VALUES (?)', [`own${k}`]);
      const id = (ok as mysql.ResultSetHeader).insertId;
      const [rows] = await own.query('SELECT v FROM t WHERE id = ?', [id]);
      assert.deepEqual(rows, [{ v: `own${k}` }], `read-your-writes ${k} through a follower`);
      const [lid] = await own.query('SELECT LAST_INSERT_ID() AS id');
      assert.equal(Number((lid as Array<{ id: number }>)[0]!.id), id, 'LAST_INSERT_ID() of the session');
    }
  });
});
