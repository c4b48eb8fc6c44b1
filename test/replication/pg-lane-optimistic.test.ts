// PgLane with optimistic transactions (pgOptimistic) on a real postgres and a real single-node
// RaftNode, a PgApplier applying the same log to a second postgres: transactions run at once
// without the lane, their COMMITs are replayed, checked and committed in groups; a transaction
// whose results a concurrent one changed gets 40001 and leaves nothing; a statement that cannot
// run optimistically moves the transaction onto the lane; the two databases end equal.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import pg from 'pg';
import type { ManagedPostgres } from '../../src/supervisor/postgres.js';
import type { PgApplier } from '../../src/replication/pg/applier.js';
import type { PgLaneRequest, PgLaneResult, PgLaneStatement } from '../../src/replication/pg/types.js';
import type { ReplicaLane } from '../../src/replication/dialect.js';
import { loadPgParser } from '../../src/sql/pg-parse.js';
import { configureLogging, logger } from '../../src/util/log.js';
import { PgServers, pgAdminQuery, pgFingerprint as fingerprint, laneTags as tags, startPgLane, until, type PgLaneRig } from '../harness/pg-fixture.js';

configureLogging({ silent: !process.env.DEBUG_LOG, debug: !!process.env.DEBUG_LOG });

const LANE_TIMEOUT_MS = 1500;
const w = (sql: string): PgLaneStatement => ({ kind: 'write', sql });
const r = (sql: string): PgLaneStatement => ({ kind: 'read', sql });
const COMMIT: PgLaneStatement = { kind: 'commit', sql: 'COMMIT' };

/** The first column of the first DataRow of a statement's reply. */
function value(res: PgLaneResult, k = 0): string | null {
  const d = res.replies[k]?.find((m) => m[0] === 0x44);
  if (!d) return null;
  const len = d.readInt32BE(7);
  return len < 0 ? null : d.toString('utf8', 11, 11 + len);
}

describe('PgLane optimistic transactions', () => {
  const servers = new PgServers({ prefix: 'recall-pgopt-', names: ['a', 'b'], database: 'app' });
  let a: ManagedPostgres;
  let b: ManagedPostgres;
  let rig: PgLaneRig | undefined;
  let lane: ReplicaLane<PgLaneRequest, PgLaneResult>;
  let appliers: PgApplier[];
  let delivered: { index: number };

  const req = (s: string, stmts: PgLaneStatement[], mode: 'auto' | 'txn' = 'txn', begin = 'BEGIN'): PgLaneRequest => ({
    session: s, role: 'postgres', database: 'app', credential: { kind: 'trust' }, settings: { search_path: 'public' }, mode, ...(mode === 'txn' ? { begin } : {}), stmts,
  });
  const bal = async (port: number, id: number): Promise<number> => Number((await pgAdminQuery(port, `SELECT bal FROM acct WHERE id = ${id}`, 'app'))[0]![0]);

  async function converged(): Promise<void> {
    const last = delivered.index;
    assert.ok(await appliers[1]!.waitApplied(last, 20000), JSON.stringify(appliers[1]!.status()));
    assert.equal(appliers[1]!.diverged, null);
    assert.deepEqual(await fingerprint(b.dsn.port), await fingerprint(a.dsn.port));
  }

  before(async () => {
    await loadPgParser();
    [a, b] = (await servers.start()) as [ManagedPostgres, ManagedPostgres];
    rig = await startPgLane([a, b], join(servers.dir.path, 'raft'), logger('test-pg-opt'), LANE_TIMEOUT_MS, { optimistic: true });
    ({ lane, appliers, delivered } = rig);
    // no sequences in the database: what optimistic transactions need
    const ddl = await lane.submit(req('0:ddl', [w('CREATE TABLE acct (id int PRIMARY KEY, bal int NOT NULL)'), w('CREATE TABLE hist (id int NOT NULL, delta int NOT NULL, seen int)')], 'auto'));
    assert.deepEqual(tags(ddl), ['CREATE TABLE', 'CREATE TABLE']);
    // a plain autocommit write after the DDL: the lane now knows the database has no sequence
    assert.deepEqual(tags(await lane.submit(req('0:fill', [w('INSERT INTO acct SELECT g, 100 FROM generate_series(1, 20) g')], 'auto'))), ['INSERT 0 20']);
  });

  after(async () => {
    await rig?.close();
    await servers.stop();
  });

  test('transactions run at once, off the lane, and their COMMITs replicate', async () => {
    const before = delivered.index;
    const sessions = [1, 2, 3, 4].map((k) => `1:par${k}`);
    // all four are open at once: with a lane holder, the second would wait for the first's COMMIT
    const firsts = await Promise.all(sessions.map((s, k) => lane.submit(req(s, [w(`UPDATE acct SET bal = bal + ${k + 1} WHERE id = ${k + 1}`), r(`SELECT bal FROM acct WHERE id = ${k + 1}`)]))));
    assert.equal(lane.holderSession(), null, 'no transaction holds the lane');
    firsts.forEach((res, k) => {
      assert.deepEqual(tags(res), ['UPDATE 1', 'SELECT 1']);
      assert.equal(value(res, 1), String(100 + k + 1));
      assert.equal(res.status, 0x54);
      assert.equal(res.index, 0);
    });
    assert.equal(delivered.index, before, 'nothing proposed before COMMIT');
    const more = await Promise.all(sessions.map((s, k) => lane.submit(req(s, [w(`INSERT INTO hist VALUES (${k + 1}, ${k + 1}, NULL)`)]))));
    more.forEach((res) => assert.deepEqual(tags(res), ['INSERT 0 1']));
    // a serial transaction holds the lane meanwhile: the four COMMITs wait for it together
    const holder = '1:parholder';
    assert.deepEqual(tags(await lane.submit(req(holder, [w('UPDATE acct SET bal = bal + 1 WHERE id = 19')], 'txn', 'BEGIN ISOLATION LEVEL REPEATABLE READ'))), ['UPDATE 1']);
    const pending = sessions.map((s) => lane.submit(req(s, [COMMIT])));
    await new Promise((res) => setTimeout(res, 200));
    assert.deepEqual(tags(await lane.submit(req(holder, [COMMIT]))), ['COMMIT']);
    const commits = await Promise.all(pending);
    commits.forEach((res) => {
      assert.deepEqual(tags(res), ['COMMIT']);
      assert.equal(res.status, 0x49);
      assert.ok(res.index > before);
    });
    // COMMITs that waited for the lane together went in one entry
    assert.equal(new Set(commits.map((c) => c.index)).size, 1, 'the four COMMITs in one entry');
    for (const k of [1, 2, 3, 4]) assert.equal(await bal(a.dsn.port, k), 100 + k);
    await converged();
  });

  test('a transaction whose read a concurrent COMMIT changed gets 40001 at COMMIT and leaves nothing', async () => {
    const s1 = '1:c1';
    const s2 = '1:c2';
    const seen = await lane.submit(req(s2, [r('SELECT bal FROM acct WHERE id = 12')]));
    assert.equal(value(seen), '100');
    assert.deepEqual(tags(await lane.submit(req(s2, [w('INSERT INTO hist VALUES (12, 0, 100)')]))), ['INSERT 0 1']);
    assert.deepEqual(tags(await lane.submit(req(s1, [w('UPDATE acct SET bal = bal + 1 WHERE id = 12')]))), ['UPDATE 1']);
    assert.deepEqual(tags(await lane.submit(req(s1, [COMMIT]))), ['COMMIT']);
    const before = delivered.index;
    const c = await lane.submit(req(s2, [COMMIT]));
    assert.deepEqual(tags(c), ['E40001']);
    assert.equal(c.status, 0x49, 'the session is out of its transaction, as after a failed COMMIT');
    assert.equal(c.index, 0);
    assert.equal(delivered.index, before, 'nothing of s2 was proposed');
    assert.deepEqual(await pgAdminQuery(a.dsn.port, 'SELECT count(*) FROM hist WHERE id = 12', 'app'), [['0']]);
    // the session goes on: its next transaction commits
    assert.deepEqual(tags(await lane.submit(req(s2, [r('SELECT bal FROM acct WHERE id = 12'), w('INSERT INTO hist VALUES (12, 0, 101)')]))), ['SELECT 1', 'INSERT 0 1']);
    assert.deepEqual(tags(await lane.submit(req(s2, [COMMIT]))), ['COMMIT']);
    assert.equal(await bal(a.dsn.port, 12), 101);
    await converged();
  });

  test('with the lane idle, a COMMIT commits the transaction as it ran, without a replay', async () => {
    const s1 = '1:idle1';
    assert.deepEqual(tags(await lane.submit(req(s1, [w('UPDATE acct SET bal = bal + 1 WHERE id = 9'), r('SELECT bal FROM acct WHERE id = 9')]))), ['UPDATE 1', 'SELECT 1']);
    const c = await lane.submit(req(s1, [COMMIT]));
    assert.deepEqual(tags(c), ['COMMIT']);
    assert.ok(c.index > 0);
    assert.equal(await bal(a.dsn.port, 9), 101);
    await converged();
  });

  test('a statement that waits for a row another transaction holds moves onto the lane and waits there', async () => {
    const s1 = '1:w1';
    const s2 = '1:w2';
    assert.deepEqual(tags(await lane.submit(req(s1, [w('UPDATE acct SET bal = bal + 10 WHERE id = 10')]))), ['UPDATE 1']);
    // s2's speculative update gives up on s1's row lock within milliseconds; on the lane it waits
    const s2update = lane.submit(req(s2, [w('UPDATE acct SET bal = bal * 2 WHERE id = 10 RETURNING bal')]));
    await until(() => lane.holderSession() === s2, 3000); // s2 holds the lane
    // (s1 must COMMIT now: a quiet holder of a row the lane waits for is wounded after 100-200 ms)
    // s1's COMMIT rolls its speculative transaction back (s2 goes on) and waits for the lane
    const c1 = lane.submit(req(s1, [COMMIT]));
    const u = await s2update;
    assert.deepEqual(tags(u), ['UPDATE 1']);
    assert.equal(value(u), '200');
    assert.deepEqual(tags(await lane.submit(req(s2, [COMMIT]))), ['COMMIT']);
    // s1 replays after s2: its own result (UPDATE 1) is the same, so it commits
    assert.deepEqual(tags(await c1), ['COMMIT']);
    assert.equal(await bal(a.dsn.port, 10), 210);
    await converged();
  });

  test('a speculative transaction holding rows the lane needs is rolled back (40001) instead of stalling the lane', async () => {
    const s = '1:idle';
    assert.deepEqual(tags(await lane.submit(req(s, [w('UPDATE acct SET bal = bal + 1 WHERE id = 14')]))), ['UPDATE 1']);
    // its client goes quiet; an autocommit write on the lane needs the row
    const t0 = Date.now();
    assert.deepEqual(tags(await lane.submit(req('1:auto', [w('UPDATE acct SET bal = bal + 5 WHERE id = 14')], 'auto'))), ['UPDATE 1']);
    assert.ok(Date.now() - t0 < LANE_TIMEOUT_MS, `the lane waited ${Date.now() - t0} ms, less than the lane timeout`);
    await assert.rejects(lane.submit(req(s, [COMMIT])), (e: Error & { sqlState?: string }) => e.sqlState === '40001');
    assert.equal(await bal(a.dsn.port, 14), 105);
    // the session goes on: its next transaction commits
    assert.deepEqual(tags(await lane.submit(req(s, [w('UPDATE acct SET bal = bal + 1 WHERE id = 14')]))), ['UPDATE 1']);
    assert.deepEqual(tags(await lane.submit(req(s, [COMMIT]))), ['COMMIT']);
    assert.equal(await bal(a.dsn.port, 14), 106);
    await converged();
  });

  test('in a group, the member that conflicts is rolled back alone; the others commit in one entry', async () => {
    // a serial holder (a BEGIN with options runs on the lane as before) keeps the COMMITs waiting together
    const holder = '1:holder';
    const h = await lane.submit(req(holder, [w('UPDATE acct SET bal = bal + 1 WHERE id = 20')], 'txn', 'BEGIN ISOLATION LEVEL REPEATABLE READ'));
    assert.deepEqual(tags(h), ['UPDATE 1']);
    assert.equal(lane.holderSession(), holder);
    const [g1, g2, g3] = ['1:g1', '1:g2', '1:g3'];
    // write skew: g1 reads row 18 and changes 17, g2 reads 17 and changes 18; in either order the
    // second one's read differs from what its client got
    assert.equal(value(await lane.submit(req(g1, [r('SELECT bal FROM acct WHERE id = 18'), w('UPDATE acct SET bal = bal + 5 WHERE id = 17')]))), '100');
    assert.equal(value(await lane.submit(req(g2, [r('SELECT bal FROM acct WHERE id = 17'), w('UPDATE acct SET bal = bal + 3 WHERE id = 18')]))), '100');
    assert.deepEqual(tags(await lane.submit(req(g3, [w('UPDATE acct SET bal = bal + 7 WHERE id = 13'), w("INSERT INTO hist VALUES (13, 7, NULL)")]))), ['UPDATE 1', 'INSERT 0 1']);
    const commits = [g1, g2, g3].map((g) => lane.submit(req(g, [COMMIT])));
    await new Promise((res) => setTimeout(res, 100));
    assert.deepEqual(tags(await lane.submit(req(holder, [COMMIT]))), ['COMMIT']);
    const [r1, r2, r3] = await Promise.all(commits);
    const outcomes = [tags(r1!)[0], tags(r2!)[0]].sort();
    assert.deepEqual(outcomes, ['COMMIT', 'E40001'], 'exactly one of the two commits');
    assert.deepEqual(tags(r3!), ['COMMIT']);
    const won = tags(r1!)[0] === 'COMMIT' ? r1! : r2!;
    assert.equal(won.index, r3!.index, 'the winner and g3 in one entry');
    const [b17, b18] = [await bal(a.dsn.port, 17), await bal(a.dsn.port, 18)];
    assert.deepEqual([b17, b18], won === r1 ? [105, 100] : [100, 103]);
    assert.equal(await bal(a.dsn.port, 13), 107);
    assert.equal(await bal(a.dsn.port, 20), 101);
    await converged();
  });

  test('a statement that cannot run optimistically moves the transaction onto the lane, which waits for locks as long as it takes', async () => {
    const s = '1:promote';
    const s0 = '1:locker';
    // s0 holds row 6 and goes quiet
    assert.deepEqual(tags(await lane.submit(req(s0, [w('UPDATE acct SET bal = bal + 1 WHERE id = 6')]))), ['UPDATE 1']);
    assert.deepEqual(tags(await lane.submit(req(s, [w('UPDATE acct SET bal = bal + 1 WHERE id = 5'), r('SELECT bal FROM acct WHERE id = 5')]))), ['UPDATE 1', 'SELECT 1']);
    assert.equal(lane.holderSession(), null);
    // SAVEPOINT moves s onto the (idle) lane as it is; its update of row 6 waits there past the
    // speculative lock timeout, until s0 is rolled back for holding up the lane
    const sp = await lane.submit(req(s, [{ kind: 'session', sql: 'SAVEPOINT x' }, w('UPDATE acct SET bal = bal + 1000 WHERE id = 5'), w('UPDATE acct SET bal = bal + 1 WHERE id = 6')]));
    assert.deepEqual(tags(sp), ['SAVEPOINT', 'UPDATE 1', 'UPDATE 1']);
    assert.equal(lane.holderSession(), s, 'the lane holds it now');
    assert.deepEqual(tags(await lane.submit(req(s, [{ kind: 'session', sql: 'ROLLBACK TO SAVEPOINT x' }, COMMIT]))), ['ROLLBACK', 'COMMIT']);
    assert.equal(lane.holderSession(), null);
    await assert.rejects(lane.submit(req(s0, [COMMIT])), (e: Error & { sqlState?: string }) => e.sqlState === '40001');
    assert.equal(await bal(a.dsn.port, 5), 101);
    assert.equal(await bal(a.dsn.port, 6), 100);
    await converged();
  });

  test('a failed statement, a ROLLBACK and a read-only transaction end where they ran: nothing is proposed', async () => {
    const before = delivered.index;
    const f = '1:failed';
    assert.deepEqual(tags(await lane.submit(req(f, [w('INSERT INTO acct VALUES (1, 0)')]))), ['E23505']);
    assert.deepEqual(tags(await lane.submit(req(f, [w('UPDATE acct SET bal = 0 WHERE id = 2')]))), ['E25P02']);
    assert.deepEqual(tags(await lane.submit(req(f, [COMMIT]))), ['ROLLBACK']);
    const rb = '1:rolledback';
    assert.deepEqual(tags(await lane.submit(req(rb, [w('UPDATE acct SET bal = 0 WHERE id = 3')]))), ['UPDATE 1']);
    assert.deepEqual(tags(await lane.submit(req(rb, [{ kind: 'rollback', sql: 'ROLLBACK' }]))), ['ROLLBACK']);
    const ro = '1:readonly';
    assert.deepEqual(tags(await lane.submit(req(ro, [r('SELECT sum(bal) FROM acct')]))), ['SELECT 1']);
    const c = await lane.submit(req(ro, [COMMIT]));
    assert.deepEqual(tags(c), ['COMMIT']);
    assert.equal(c.index, 0);
    assert.equal(delivered.index, before);
    assert.equal(await bal(a.dsn.port, 2), 102);
    assert.equal(await bal(a.dsn.port, 3), 103);
  });

  test('a COMMIT that waited past laneTimeoutMs for the lane is refused and never replays later', async () => {
    const s = '1:late';
    assert.deepEqual(tags(await lane.submit(req(s, [w('UPDATE acct SET bal = bal + 1000 WHERE id = 15')]))), ['UPDATE 1']);
    // something outside Recall holds a row: the lane's next write waits for it
    const outside = new pg.Client({ host: '127.0.0.1', port: a.dsn.port, user: 'postgres', database: 'app' });
    await outside.connect();
    try {
      await outside.query('BEGIN');
      await outside.query('SELECT 1 FROM acct WHERE id = 16 FOR UPDATE');
      const blocked = lane.submit(req('1:blocked', [w('UPDATE acct SET bal = bal + 1 WHERE id = 16')], 'auto'));
      await new Promise((res) => setTimeout(res, 50));
      await assert.rejects(lane.submit(req(s, [COMMIT])), (e: Error & { sqlState?: string }) => e.sqlState === '55P03');
      await outside.query('ROLLBACK');
      assert.deepEqual(tags(await blocked), ['UPDATE 1']);
    } finally {
      await outside.end();
    }
    // the session's next transaction is its own: nothing of the refused one comes back
    assert.deepEqual(tags(await lane.submit(req(s, [w('UPDATE acct SET bal = bal + 2 WHERE id = 15')]))), ['UPDATE 1']);
    assert.deepEqual(tags(await lane.submit(req(s, [COMMIT]))), ['COMMIT']);
    assert.equal(await bal(a.dsn.port, 15), 102);
    assert.equal(await bal(a.dsn.port, 16), 101);
    await converged();
  });

  test('a transaction open past laneTimeoutMs is rolled back and its session told so', async () => {
    const s = '1:slow';
    assert.deepEqual(tags(await lane.submit(req(s, [w('UPDATE acct SET bal = bal + 1 WHERE id = 7')]))), ['UPDATE 1']);
    await new Promise((res) => setTimeout(res, LANE_TIMEOUT_MS + 400));
    // its row lock is gone: another transaction updates the row at once
    const other = '1:other';
    assert.deepEqual(tags(await lane.submit(req(other, [w('UPDATE acct SET bal = bal + 2 WHERE id = 7')]))), ['UPDATE 1']);
    assert.deepEqual(tags(await lane.submit(req(other, [COMMIT]))), ['COMMIT']);
    await assert.rejects(lane.submit(req(s, [COMMIT])), (e: Error & { sqlState?: string }) => e.sqlState === '57014');
    assert.equal(await bal(a.dsn.port, 7), 102);
    await converged();
  });
  // last: it gives the database a sequence (the tests above rely on there being none, for group commit)
  test('with sequences in the database, writes that cannot move one still run optimistically; one that can moves onto the lane', async () => {
    assert.deepEqual(tags(await lane.submit(req('0:ddl2', [
      w('CREATE TABLE ser (id serial PRIMARY KEY, v int NOT NULL)'),
      w('CREATE TABLE trig (k int PRIMARY KEY, v int NOT NULL)'),
      w("CREATE FUNCTION trig_audit() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN INSERT INTO ser (v) VALUES (NEW.v); RETURN NEW; END$$"),
      w('CREATE TRIGGER trig_ins AFTER UPDATE ON trig FOR EACH ROW EXECUTE FUNCTION trig_audit()'),
      w('INSERT INTO trig VALUES (1, 0)'),
    ], 'auto'))), ['CREATE TABLE', 'CREATE TABLE', 'CREATE FUNCTION', 'CREATE TRIGGER', 'INSERT 0 1']);
    const bal2 = await bal(a.dsn.port, 2);
    const holder = '1:seqholder';
    assert.deepEqual(tags(await lane.submit(req(holder, [w('UPDATE acct SET bal = bal + 1 WHERE id = 1')], 'txn', 'BEGIN ISOLATION LEVEL REPEATABLE READ'))), ['UPDATE 1']);
    // acct has no sequence, trigger or function default: speculative, not waiting for the holder
    const plain = '1:seqplain';
    assert.deepEqual(tags(await lane.submit(req(plain, [w('UPDATE acct SET bal = bal + 1 WHERE id = 2')]))), ['UPDATE 1']);
    // a serial column, and a trigger that inserts into one: both wait for the lane
    const serial = lane.submit(req('1:seqins', [w('INSERT INTO ser (v) VALUES (7) RETURNING id')]));
    const triggered = lane.submit(req('1:seqtrig', [w('UPDATE trig SET v = v + 1 WHERE k = 1')]));
    const first = await Promise.race([serial.then(() => 'serial'), triggered.then(() => 'trigger'), new Promise((res) => setTimeout(() => res('timer'), 300))]);
    assert.equal(first, 'timer', 'writes that can move a sequence wait for the lane holder');
    const plainCommit = lane.submit(req(plain, [COMMIT])); // queued: replayed when the lane is free
    assert.deepEqual(tags(await lane.submit(req(holder, [COMMIT]))), ['COMMIT']);
    // each of the two now holds the lane in turn, until its COMMIT (the queue order is theirs)
    const pendingWrites = new Map([['1:seqins', serial], ['1:seqtrig', triggered]]);
    while (pendingWrites.size) {
      const [session, res] = await Promise.race([...pendingWrites].map(([k, p]) => p.then((x) => [k, x] as const)));
      pendingWrites.delete(session);
      assert.deepEqual(tags(res), [session === '1:seqins' ? 'INSERT 0 1' : 'UPDATE 1']);
      assert.deepEqual(tags(await lane.submit(req(session, [COMMIT]))), ['COMMIT']);
    }
    assert.deepEqual(tags(await plainCommit), ['COMMIT']);
    assert.deepEqual(await pgAdminQuery(a.dsn.port, 'SELECT id FROM ser ORDER BY id', 'app'), [[1], [2]]);
    assert.deepEqual(await pgAdminQuery(a.dsn.port, 'SELECT v FROM ser ORDER BY v', 'app'), [[1], [7]]);
    assert.equal(await bal(a.dsn.port, 2), bal2 + 1);
    await converged();
    assert.deepEqual(await pgAdminQuery(b.dsn.port, 'SELECT last_value FROM ser_id_seq', 'app'), await pgAdminQuery(a.dsn.port, 'SELECT last_value FROM ser_id_seq', 'app'));
  });
});
