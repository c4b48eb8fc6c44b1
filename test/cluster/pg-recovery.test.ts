// Full resync of PostgreSQL replicas on 3 real `recall serve --engine postgres` processes, each
// with its managed postgres, with a small log retention (the MariaDB counterpart is
// recovery.test.ts): a replica down past the retention point (the leader sends it a snapshot),
// and a replica whose database was tampered with (it diverges), get a pg_basebackup copy from a
// donor and converge: equal md5 of every table's ordered rows, every acknowledged row present.
// A replica killed (kill -9) in the middle of its resync resyncs again at restart.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { startCluster, pgSuperuserPassword, type TestCluster } from '../harness/cluster.js';
import { failureGuard } from '../harness/failure-guard.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const db = 'rec';
const retainEntries = 40;
const failures = failureGuard();
const guard = failures.guard;

interface ResyncLast {
  method: string;
  donor: number;
  index: number;
  bytes: number;
  seconds: number;
  bytesPerSec: number;
}
interface Replication {
  firstIndex: number;
  commit: number;
  applied: number;
  diverged: boolean;
  resync?: { state: string; last?: ResyncLast };
}

describe('PostgreSQL replica recovery, snapshot resync (3 replicas, small log retention)', { timeout: 300_000 }, () => {
  let c: TestCluster;
  const acked: number[] = [];
  let nextId = 1;

  const connect = async (i: number): Promise<pg.Client> => {
    const cl = new pg.Client({ host: '127.0.0.1', port: c.nodes[i]!.postgresPort, user: 'postgres', password: pgSuperuserPassword, database: db, connectionTimeoutMillis: 10_000 });
    cl.on('error', () => undefined);
    await cl.connect();
    return cl;
  };

  /** n single-row autocommit inserts through node i (one log entry each). */
  async function insert(i: number, n: number): Promise<void> {
    const k = await connect(i);
    try {
      for (let j = 0; j < n; j++) {
        const id = nextId++;
        await k.query("INSERT INTO t (id, v, pad) VALUES ($1, $2, repeat('x', 200))", [id, `v${id}`]);
        acked.push(id);
      }
    } finally {
      await k.end().catch(() => undefined);
    }
  }

  const replication = async (i: number) => (await c.tryStatus(i))?.replication as unknown as Replication | undefined;

  async function assertConverged(what: string): Promise<void> {
    await c.waitConverged(60_000);
    const sums = await c.pgChecksums(db);
    assert.equal(sums.length, 3, `${what}: every database answers`);
    for (const s of sums) assert.deepEqual(s, sums[0], `${what}: contents differ: ${JSON.stringify(sums)}`);
    for (let i = 0; i < 3; i++) {
      const rows = await c.pgQuery(i, db, 'SELECT id FROM public.t ORDER BY id');
      const have = new Set(rows.map((r) => Number(r.id)));
      assert.deepEqual(acked.filter((id) => !have.has(id)), [], `${what}: node ${i + 1} lacks acknowledged rows`);
    }
  }

  async function follower(): Promise<number> {
    return ((await c.waitLeader()) + 1) % 3;
  }

  /**
   * Inserts n rows through the leader l, then waits for it to compact its log past a stopped
   * replica's entries; returns the leader's log floor (the last index no longer in its log).
   */
  async function pushPastRetention(l: number, n: number): Promise<number> {
    await insert(l, n);
    const deadline = Date.now() + 20_000;
    for (;;) {
      const st = (await replication(l))!;
      if (st.firstIndex > st.commit - retainEntries * 2) return st.firstIndex - 1;
      if (Date.now() > deadline) throw new Error(`leader did not compact: ${JSON.stringify(st)}`);
      await sleep(200);
    }
  }

  /** Waits for node f's resync to finish and returns it (a new `last` after `since`). */
  async function waitResync(f: number, sinceAt: string | undefined): Promise<ResyncLast & { at: string }> {
    const end = Date.now() + 120_000;
    for (;;) {
      const r = (await replication(f))?.resync as { state: string; last?: ResyncLast & { at: string } } | undefined;
      if (r?.state === 'idle' && r.last && r.last.at !== sinceAt) return r.last;
      if (Date.now() > end) throw new Error(`no resync finished on node ${f + 1}: ${JSON.stringify(r)}\n${c.nodes[f]!.output().slice(-5000)}`);
      await sleep(250);
    }
  }

  before(async () => {
    c = await startCluster({ engine: 'postgres', extraArgs: ['--log-retain-entries', String(retainEntries), '--log-retain-bytes', '0'] });
    const l = await c.waitLeader(60_000);
    const k = new pg.Client({ host: '127.0.0.1', port: c.nodes[l]!.postgresPort, user: 'postgres', password: pgSuperuserPassword, database: 'postgres' });
    k.on('error', () => undefined);
    await k.connect();
    await k.query(`CREATE DATABASE ${db}`);
    await k.end();
    const t = await connect(l);
    await t.query('CREATE TABLE t (id int PRIMARY KEY, v text, pad text, at timestamptz DEFAULT now())');
    // some bulk (one entry), so that the copy's rate means something
    await t.query("CREATE TABLE big AS SELECT g AS id, md5(g::text) AS h, repeat('y', 300) AS pad FROM generate_series(1, 100000) g");
    await t.end();
    await insert(l, 10);
  });

  after(async () => {
    if (c) {
      if (failures.failed || process.env.RECALL_TEST_VERBOSE) process.stderr.write(c.dumpLogs(20_000));
      await c.stop();
    }
  });

  test(
    'a replica down past the retention point resyncs with pg_basebackup and converges',
    guard(async () => {
      const f = await follower();
      const l = await c.waitLeader();
      await c.kill(f);
      const floor = await pushPastRetention(l, retainEntries * 4);
      const t0 = Date.now();
      await c.restart(f, { waitReady: false });
      const last = await waitResync(f, undefined);
      assert.equal(last.method, 'snapshot');
      assert.ok(last.bytes > 1e6, `a copy of ${last.bytes} bytes`);
      // the index is what PgApplier.reload read from the copy's recall.applied rows
      assert.ok(last.index >= floor, `the copy holds index ${last.index}, at least the leader's log floor ${floor}`);
      console.log(
        `pg resync after a gap: ${(last.bytes / 1e6).toFixed(1)} MB in ${last.seconds.toFixed(2)} s (${(last.bytesPerSec / 1e6).toFixed(1)} MB/s) from node ${last.donor}, ` +
          `${((Date.now() - t0) / 1000).toFixed(1)} s from restart to done`,
      );
      await c.waitReady(f, 60_000);
      await insert(f, 5);
      await assertConverged('after resync');
    }),
  );

  test(
    'a replica whose database was tampered with diverges, resyncs on its own and holds the leader\'s data',
    guard(async () => {
      const f = await follower();
      const l = await c.waitLeader();
      const before = (await replication(f))?.resync?.last as (ResyncLast & { at: string }) | undefined;
      // Behind Recall's back: row 1 moves to id -1 on the follower, so the leader's next update
      // of row 1 touches one row there and none here, and the applier stops.
      await c.pgQuery(f, db, 'UPDATE public.t SET id = -1 WHERE id = 1');
      const k = await connect(l);
      await k.query("UPDATE t SET v = 'changed' WHERE id = 1");
      await k.end();
      let sawDiverged = false;
      const end = Date.now() + 60_000;
      while (!sawDiverged) {
        const rep = await replication(f);
        sawDiverged = !!rep?.diverged || (!!rep?.resync && rep.resync.state !== 'idle') || (rep?.resync?.last?.index ?? 0) > (before?.index ?? 0);
        if (Date.now() > end) throw new Error(`the tampered replica did not diverge: ${JSON.stringify(rep)}`);
        if (!sawDiverged) await sleep(100);
      }
      const last = await waitResync(f, before?.at);
      assert.equal(last.method, 'snapshot');
      console.log(`pg resync after divergence: ${(last.bytes / 1e6).toFixed(1)} MB in ${last.seconds.toFixed(2)} s (${(last.bytesPerSec / 1e6).toFixed(1)} MB/s)`);
      await c.waitReady(f, 60_000);
      await c.waitConverged(60_000); // ready allows some lag behind the commit index
      const rows = await c.pgQuery(f, db, 'SELECT id, v FROM public.t WHERE id IN (1, -1) ORDER BY id');
      assert.deepEqual(rows.map((r) => [Number(r.id), r.v]), [[1, 'changed']], "the resynced replica holds the leader's row, not the tampered one");
      await insert(f, 5);
      await assertConverged('after divergence');
    }),
  );

  test(
    'a replica killed with a resync unfinished (its marker and a partial staging copy left) resyncs at restart',
    guard(async () => {
      const f = await follower();
      const l = await c.waitLeader();
      const before = (await replication(f))?.resync?.last as (ResyncLast & { at: string }) | undefined;
      await c.kill(f);
      await insert(l, 5);
      // what a kill -9 in the middle of a transfer leaves: the marker, and a staging directory
      // without the prepared-snapshot marker (removed at start-up, before postgres starts)
      const dir = c.nodes[f]!.dataDir;
      const staging = `${join(dir, 'postgres')}.resync-staging`;
      mkdirSync(join(staging, 'base'), { recursive: true });
      writeFileSync(join(staging, 'base', 'partial'), 'half a file');
      writeFileSync(join(dir, 'resync-needed.json'), JSON.stringify({ reason: 'test: killed mid-resync', minIndex: 0, at: new Date().toISOString() }) + '\n');
      await c.restart(f, { waitReady: false });
      const last = await waitResync(f, before?.at);
      assert.equal(last.method, 'snapshot');
      assert.ok(!existsSync(join(dir, 'resync-needed.json')), 'the marker is removed once the resync is done');
      assert.ok(!existsSync(staging), 'the partial staging copy is gone');
      assert.match(c.nodes[f]!.output(), /removing an unfinished snapshot staging directory/, 'start-up removed it before postgres started');
      await c.waitReady(f, 60_000);
      await insert(f, 5);
      await assertConverged('after a resync resumed from its marker');
    }),
  );

  test(
    'kill -9 of a replica in the middle of its resync (transfer or install): it resyncs again at restart and converges',
    guard(async () => {
      const f = await follower();
      const l = await c.waitLeader();
      const before = (await replication(f))?.resync?.last as (ResyncLast & { at: string }) | undefined;
      await c.kill(f);
      await pushPastRetention(l, retainEntries * 3);
      await c.restart(f, { waitReady: false });
      // poll the replica's status until its resync has moved bytes, then kill it there
      const end = Date.now() + 90_000;
      let seen = '';
      for (;;) {
        const r = (await replication(f))?.resync as { state: string; progress?: { bytes: number } } | undefined;
        if (r && r.state !== 'idle' && (r.progress?.bytes ?? 0) > 0) {
          seen = `${r.state} after ${r.progress!.bytes} bytes`;
          break;
        }
        if (Date.now() > end) throw new Error(`no resync transfer seen on node ${f + 1}: ${JSON.stringify(r)}`);
        await sleep(20);
      }
      await c.kill(f);
      console.log(`# killed node ${f + 1} in its resync (${seen})`);
      await c.restart(f, { waitReady: false });
      const last = await waitResync(f, before?.at);
      assert.equal(last.method, 'snapshot');
      assert.ok(!existsSync(join(c.nodes[f]!.dataDir, 'resync-needed.json')), 'the marker is removed once the resync is done');
      await c.waitReady(f, 60_000);
      await insert(f, 5);
      await assertConverged('after a resync cut by kill -9');
    }),
  );
});
