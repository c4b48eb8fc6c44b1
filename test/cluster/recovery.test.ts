// Replica recovery on 3 real recall processes with 3 real managed mariadbd (issue 4, points 1-3):
//   - catch-up: a replica that was down for fewer entries than the leader keeps replays them;
//   - compaction: the log is discarded below the retention point (small limits here);
//   - full resync, built in: a replica that was down past the retention point (the leader sent
//     it a snapshot), and a replica whose database diverged, get a copy from a donor and converge.
// Every scenario ends with equal CHECKSUM TABLE on all replicas and every acknowledged row present.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import mysql from 'mysql2/promise';
import { join } from 'node:path';
import { startCluster, type TestCluster } from '../harness/cluster.js';
import { repoRoot } from '../harness/recall.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const db = 'rec';
const retainEntries = 40;

// The built-in snapshot transfer, and the hook-mode rsync method (here over a local remote shell
// that runs rsync's server side on this machine, as ssh would on the donor's).
const methods: Array<{ name: string; args: string[] }> = [
  { name: 'snapshot', args: [] },
  { name: 'rsync', args: ['--resync-method', 'rsync', '--sync-cmd', join(repoRoot(), 'test/recovery/fixtures/local-rsh')] },
];

for (const method of methods)
describe(`replica recovery, ${method.name} resync (3 replicas, small log retention)`, { timeout: 600_000 }, () => {
  let c: TestCluster;
  const acked: number[] = [];
  let nextId = 1;

  const conn = (i: number) => mysql.createConnection({ host: '127.0.0.1', port: c.nodes[i]!.mysqlPort, user: 'root', database: db });

  /** n single-row autocommit inserts through node i (one log entry each, roughly). */
  async function insert(i: number, n: number): Promise<void> {
    const k = await conn(i);
    try {
      for (let j = 0; j < n; j++) {
        const id = nextId++;
        await k.query('INSERT INTO t (id, v, pad) VALUES (?, ?, REPEAT(?, 200))', [id, `v${id}`, 'x']);
        acked.push(id);
      }
    } finally {
      await k.end();
    }
  }

  async function assertConverged(what: string): Promise<void> {
    await c.waitConverged(60_000);
    const sums = await c.checksums(db);
    assert.equal(sums.length, 3, `${what}: every database answers`);
    for (const s of sums) assert.deepEqual(s, sums[0], `${what}: checksums differ: ${JSON.stringify(sums)}`);
    for (let i = 0; i < 3; i++) {
      const rows = await c.dbQuery(i, `SELECT id FROM ${db}.t ORDER BY id`);
      const have = new Set(rows.map((r) => Number(r.id)));
      const missing = acked.filter((id) => !have.has(id));
      assert.deepEqual(missing, [], `${what}: node ${i + 1} lacks acknowledged rows`);
    }
  }

  async function follower(): Promise<number> {
    const l = await c.waitLeader();
    return (l + 1) % 3;
  }

  before(async () => {
    c = await startCluster({ extraArgs: ['--log-retain-entries', String(retainEntries), '--log-retain-bytes', '0', ...method.args] });
    const l = await c.waitLeader(60_000);
    const k = await mysql.createConnection({ host: '127.0.0.1', port: c.nodes[l]!.mysqlPort, user: 'root' });
    await k.query(`CREATE DATABASE ${db}`);
    await k.query(`CREATE TABLE ${db}.t (id INT PRIMARY KEY, v VARCHAR(20), pad TEXT, at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6))`);
    await k.end();
    await insert(l, 10);
  });

  after(async () => {
    if (c) {
      if (process.env.RECALL_TEST_VERBOSE) process.stderr.write(c.dumpLogs(20_000));
      await c.stop();
    }
  });

  test('a replica down for a few entries catches up from the log', async () => {
    const f = await follower();
    const l = await c.waitLeader();
    await c.kill(f);
    await insert(l, retainEntries / 4);
    await c.restart(f);
    await assertConverged('after catch-up');
    const st = await c.status(f);
    assert.equal((st.replication as unknown as { resync: { state: string } }).resync.state, 'idle', 'no resync was needed');
  });

  test('the log is compacted below the retention point', async () => {
    const l = await c.waitLeader();
    await insert(l, retainEntries * 3);
    const deadline = Date.now() + 15_000;
    let first = 0;
    while (Date.now() < deadline) {
      const st = (await c.status(l)).replication as unknown as { firstIndex: number; applied: number };
      first = st.firstIndex;
      if (first > 1) {
        assert.ok(st.applied - first + 1 >= retainEntries, `at least ${retainEntries} entries kept (first ${first}, applied ${st.applied})`);
        break;
      }
      await sleep(200);
    }
    assert.ok(first > 1, 'the leader compacted its log');
    await assertConverged('after compaction');
  });

  test('a replica down past the retention point gets a full resync and converges', async () => {
    const f = await follower();
    const l = await c.waitLeader();
    await c.kill(f);
    await insert(l, retainEntries * 4);
    // wait for the leader to compact past the stopped replica's entries
    const deadline = Date.now() + 20_000;
    for (;;) {
      const st = (await c.status(l)).replication as unknown as { firstIndex: number; commit: number };
      if (st.firstIndex > st.commit - retainEntries * 2) break;
      if (Date.now() > deadline) throw new Error(`leader did not compact: ${JSON.stringify(st)}`);
      await sleep(200);
    }
    await c.restart(f, { waitReady: false });
    // the resync shows in /status while it runs (or is already done)
    let sawResync = false;
    const end = Date.now() + 120_000;
    for (;;) {
      const st = await c.tryStatus(f);
      const r = (st?.replication as unknown as { resync?: { state: string; last?: { bytes: number } } } | undefined)?.resync;
      if (r && r.state !== 'idle') sawResync = true;
      if (r?.state === 'idle' && r.last) {
        sawResync = true;
        assert.equal((r.last as unknown as { method: string }).method, method.name, 'the configured method ran');
        break;
      }
      if (Date.now() > end) throw new Error(`no resync finished: ${JSON.stringify(st?.replication)}\n${c.nodes[f]!.output().slice(-5000)}`);
      await sleep(250);
    }
    assert.ok(sawResync, 'a resync ran');
    await c.waitReady(f, 60_000);
    await insert(f, 5);
    await assertConverged('after resync');
  });

  test('a diverged replica resyncs on its own', async () => {
    const f = await follower();
    const l = await c.waitLeader();
    // Tamper with the follower's database behind Recall's back: the next update of that row
    // affects a different number of rows there than on the leader, and the applier stops.
    await c.dbQuery(f, `DELETE FROM ${db}.t WHERE id = 1`);
    const k = await conn(l);
    await k.query(`UPDATE ${db}.t SET v = 'changed' WHERE id = 1`);
    await k.end();
    const end = Date.now() + 120_000;
    let sawDiverged = false;
    for (;;) {
      const st = await c.tryStatus(f);
      const rep = st?.replication as unknown as { diverged: boolean; resync?: { state: string; last?: { at: string } } } | undefined;
      if (rep?.diverged || (rep?.resync && rep.resync.state !== 'idle')) sawDiverged = true;
      if (sawDiverged && rep && !rep.diverged && rep.resync?.state === 'idle') break;
      if (Date.now() > end) throw new Error(`diverged replica did not recover: ${JSON.stringify(rep)}\n${c.nodes[f]!.output().slice(-5000)}`);
      await sleep(250);
    }
    await c.waitReady(f, 60_000);
    await c.waitConverged(60_000); // ready allows some lag behind the commit index
    const rows = await c.dbQuery(f, `SELECT v FROM ${db}.t WHERE id = 1`);
    assert.equal(rows[0]?.v, 'changed', 'the resynced replica holds the leader\'s row');
    await assertConverged('after divergence');
  });
});
