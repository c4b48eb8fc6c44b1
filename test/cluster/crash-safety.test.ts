// Crash safety (issue 4, point 6) on 3 real recall processes with 3 real managed mariadbd:
// kill -9 of a follower's recall or mariadbd at random moments while it applies a write stream,
// while it applies a slow DDL statement, and while a full resync runs (joiner and donor). After
// each, the replica must come back to equal CHECKSUM TABLE with no manual step (a DDL cut in the
// middle leaves it diverged, and it resyncs on its own) and no acknowledged write is missing.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import mysql from 'mysql2/promise';
import { startCluster, type TestCluster } from '../harness/cluster.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const db = 'crash';

interface Rep {
  role: string;
  commit: number;
  applied: number;
  diverged: boolean;
  divergedReason?: string;
  firstIndex: number;
  resync: { state: string; progress?: { phase: string; bytes: number }; last?: { at: string; bytes: number } };
}

describe('crash safety (3 replicas)', { timeout: 900_000 }, () => {
  let c: TestCluster;
  const acked = new Set<number>();
  let nextId = 1;
  let seed = Number(process.env.RECALL_TEST_SEED ?? Date.now() % 100000);
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };

  const conn = (i: number) => mysql.createConnection({ host: '127.0.0.1', port: c.nodes[i]!.mysqlPort, user: 'root', database: db });
  const rep = async (i: number) => (await c.tryStatus(i))?.replication as unknown as Rep | undefined;

  /** A writer through node i until stopped; records acknowledged ids. */
  function stream(i: number): { stop: () => Promise<void> } {
    let on = true;
    const done = (async () => {
      while (on) {
        let k: mysql.Connection | undefined;
        try {
          k = await conn(i);
          while (on) {
            const id = nextId++;
            await k.query('INSERT INTO t (id, v) VALUES (?, REPEAT(?, 100))', [id, 'y']);
            acked.add(id);
          }
        } catch {
          await sleep(100);
        } finally {
          await k?.end().catch(() => undefined);
        }
      }
    })();
    return {
      stop: async () => {
        on = false;
        await done;
      },
    };
  }

  /** Until every node applied the leader's commit, none diverged or resyncing, checksums equal. */
  async function converge(what: string, timeoutMs = 180_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    let seen = '';
    for (;;) {
      const reps = await Promise.all([0, 1, 2].map((i) => rep(i)));
      seen = reps.map((r, i) => `n${i + 1}:${r ? `${r.role} a=${r.applied} c=${r.commit} ${r.diverged ? 'DIVERGED ' : ''}${r.resync.state}` : 'down'}`).join(' ');
      const leader = reps.find((r) => r?.role === 'leader');
      if (leader && reps.every((r) => r && !r.diverged && r.resync.state === 'idle' && r.applied >= leader.commit)) {
        const sums = await c.checksums(db).catch(() => null);
        if (sums && sums.length === 3 && sums.every((s) => JSON.stringify(s) === JSON.stringify(sums[0]))) break;
      }
      // the state again after the logs: CI shows the tail of a failure's output
      if (Date.now() > end) throw new Error(`${what}: not converged within ${timeoutMs} ms: ${seen}\n${c.dumpLogs(6000)}\n${what}: ${seen}`);
      await sleep(300);
    }
    for (let i = 0; i < 3; i++) {
      const rows = await c.dbQuery(i, `SELECT id FROM ${db}.t`);
      const have = new Set(rows.map((r) => Number(r.id)));
      const missing = [...acked].filter((id) => !have.has(id));
      assert.deepEqual(missing.slice(0, 10), [], `${what}: node ${i + 1} lacks ${missing.length} acknowledged rows`);
    }
  }

  async function follower(): Promise<number> {
    const l = await c.waitLeader(30_000);
    return (l + 1 + Math.floor(rnd() * 2)) % 3;
  }

  before(async () => {
    c = await startCluster({
      // a slow transfer, so that kills land in the middle of a resync; little log kept, so a
      // replica killed under load needs one
      extraArgs: ['--log-retain-entries', '200', '--log-retain-bytes', '0', '--resync-rate-bytes', '8MiB'],
    });
    const l = await c.waitLeader(60_000);
    const k = await mysql.createConnection({ host: '127.0.0.1', port: c.nodes[l]!.mysqlPort, user: 'root', multipleStatements: true });
    await k.query(`CREATE DATABASE ${db}`);
    await k.query(`CREATE TABLE ${db}.t (id INT PRIMARY KEY, v TEXT)`);
    // ~40 MB of bulk data so that DDL and resync take a few seconds
    await k.query(`CREATE TABLE ${db}.big (id INT PRIMARY KEY, pad VARCHAR(2000))`);
    await k.query(`USE ${db}`);
    for (let b = 0; b < 20; b++) {
      await k.query(`INSERT INTO ${db}.big SELECT seq, REPEAT(MD5(seq), 60) FROM seq_${b * 1000 + 1}_to_${(b + 1) * 1000}`);
    }
    await k.end();
  });

  after(async () => {
    if (c) await c.stop();
  });

  test('kill -9 of a follower\'s recall or mariadbd at random moments under a write stream', async () => {
    const l = await c.waitLeader();
    const s = stream(l);
    try {
      for (let round = 0; round < 4; round++) {
        await sleep(300 + rnd() * 1500);
        const f = await follower();
        if (rnd() < 0.5) {
          await c.kill(f);
          await sleep(rnd() * 1000);
          await c.restart(f, { waitReady: false });
        } else {
          await c.killDatabase(f);
        }
      }
    } finally {
      await s.stop();
    }
    await converge('after random kills');
  });

  test('kill -9 of a follower\'s mariadbd in the middle of applying a DDL statement', async () => {
    const f = await follower();
    const l = await c.waitLeader();
    const k = await conn(l);
    // A copying ALTER of the bulk table takes a while on every replica.
    const alter = k.query(`ALTER TABLE ${db}.big ADD COLUMN extra INT NOT NULL DEFAULT 7, ALGORITHM=COPY`);
    const end = Date.now() + 30_000;
    let killed = false;
    while (Date.now() < end && !killed) {
      const rows = await c.dbQuery(f, "SELECT idx FROM recall.ddl WHERE state = 'started'").catch(() => []);
      if (rows.length > 0) {
        await c.killDatabase(f);
        killed = true;
      } else await sleep(20);
    }
    await alter;
    await k.end();
    assert.ok(killed, 'the follower was caught applying the DDL');
    await converge('after a DDL apply was cut');
    const cols = await c.dbQuery(f, `SELECT COUNT(*) AS n FROM information_schema.columns WHERE table_schema = '${db}' AND table_name = 'big' AND column_name = 'extra'`);
    assert.equal(Number(cols[0]!.n), 1, 'the resynced follower has the new column');
  });

  /** Makes follower f need a full resync (down while the leader writes past the retention point). */
  async function forceResync(f: number): Promise<void> {
    const l = await c.waitLeader();
    await c.kill(f);
    const s = stream(l);
    const end = Date.now() + 60_000;
    try {
      for (;;) {
        const r = await rep(l);
        const before = r ? r.firstIndex : 0;
        if (r && before > (await lastApplied(f)) + 1) break;
        if (Date.now() > end) throw new Error('leader did not compact past the stopped follower');
        await sleep(200);
      }
    } finally {
      await s.stop();
    }
    await c.restart(f, { waitReady: false });
  }

  async function lastApplied(f: number): Promise<number> {
    const rows = await c.dbQuery(f, 'SELECT idx FROM recall.applied WHERE id = 1');
    return Number(rows[0]!.idx);
  }

  async function waitTransfer(f: number, timeoutMs = 90_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const r = await rep(f);
      if (r?.resync.progress && r.resync.progress.bytes > 0 && r.resync.state === 'running') return;
      if (Date.now() > end) throw new Error(`no transfer seen on node ${f + 1}: ${JSON.stringify(r)}`);
      await sleep(50);
    }
  }

  test('kill -9 of the joiner in the middle of a full resync: it resyncs again after restart', async () => {
    const f = await follower();
    await forceResync(f);
    await waitTransfer(f);
    await c.kill(f);
    await c.restart(f, { waitReady: false });
    await converge('after the joiner was killed mid-resync');
  });

  test('kill -9 of the donor in the middle of a full resync: the joiner finishes from another donor', async () => {
    const f = await follower();
    await forceResync(f);
    await waitTransfer(f);
    // the donor is the other follower (donors are followers first)
    const l = await c.waitLeader();
    const donor = [0, 1, 2].find((i) => i !== f && i !== l)!;
    await c.kill(donor);
    await sleep(500);
    await c.restart(donor, { waitReady: false });
    await converge('after the donor was killed mid-resync');
  });
});
