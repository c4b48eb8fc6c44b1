// Faults under load on 3 real `recall serve --engine postgres` processes with their managed
// postgres servers (issue 6, "Must show" 3: the leader-kill and cut-off-replica scenarios of the
// MySQL issue), clients being plain node-postgres connections to the Recall PostgreSQL ports:
//   - kill -9 of the leader's recall process during a concurrent insert stream over all ports;
//   - a follower cut off from both peers by the fault relays;
//   - the leader cut off while a follower's client holds a transaction on its lane: the
//     transaction's COMMIT or next statement fails on the new leader (40001), nothing is committed.
// The stream: 4 clients spread over the ports, one writing two-row transactions. After the kill:
// every acknowledged insert is on every surviving replica, no insert that got a clear error
// (anything but "outcome unknown" 40003 or a dropped connection) is anywhere, no transaction is
// present in part, writes resume within a few seconds on a surviving port, and once the killed
// node is back the md5 of the table's ordered contents is equal on all three. For the cut: the
// isolated replica answers `SET recall.consistency = 'local'` reads, refuses writes and
// linearizable reads with 25006 (no leader; 57P03 would also do) within a few seconds, and after
// the heal holds what was written meanwhile.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import pg from 'pg';
import { ensureAllUp as ensureAllUpIn, startCluster, pgSuperuserPassword, type TestCluster } from '../harness/cluster.js';
import { failureGuard } from '../harness/failure-guard.js';
import { InsertStream, rowDifferences, type StreamDriver } from '../harness/insert-stream.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const database = 'faults';
const role = 'app';
const password = 'app-secret';
const clientsCount = 4;
const resumeMsMax = 5000;
/** How long a refusal on the isolated replica may take once it noticed the cut. */
const refusalMsMax = 5000;
/** A statement still unanswered after this long counts as outcome unknown (and is reported). */
const statementTimeoutMs = 15_000;
/** SQLSTATEs the router gives when no leader can take a write or confirm a read. */
const noLeaderStates = ['25006', '57P03'];

interface PgError {
  code?: string;
  message?: string;
}

function errText(e: unknown): string {
  const x = e as PgError;
  return `${x.code ?? '?'} ${(x.message ?? String(e)).slice(0, 120)}`.replace(/\s+/g, ' ');
}

/** Whether the error came from a server (a SQLSTATE) rather than from a lost connection or a client timeout. */
const serverAnswered = (e: unknown) => /^[0-9A-Z]{5}$/.test((e as PgError).code ?? '');


/** The md5 verifier postgres stores for (role, password): the same on every replica. */
const md5Verifier = (user: string, pw: string) => `md5${createHash('md5').update(pw + user).digest('hex')}`;

async function connectTo(port: number, o: { user?: string; password?: string; database?: string; timeoutMs?: number } = {}): Promise<pg.Client> {
  const cl = new pg.Client({
    host: '127.0.0.1', port, user: o.user ?? role, password: o.password ?? password, database: o.database ?? database,
    connectionTimeoutMillis: o.timeoutMs ?? 3000, query_timeout: statementTimeoutMs,
  });
  cl.on('error', () => undefined);
  try {
    await cl.connect();
  } catch (e) {
    await cl.end().catch(() => undefined);
    throw e;
  }
  return cl;
}

/** node-postgres for the shared insert stream (test/harness/insert-stream.ts). */
function pgDriver(c: TestCluster): StreamDriver<pg.Client> {
  return {
    connect: (node) => connectTo(c.nodes[node]!.postgresPort, { timeoutMs: 2000 }),
    insert: (conn, k, client, seq, phase, via) => conn.query('INSERT INTO t (k, client, seq, phase, via) VALUES ($1, $2, $3, $4, $5)', [k, client, seq, phase, via]),
    run: (conn, sql) => conn.query(sql),
    drop: (conn) => void conn.end().catch(() => undefined),
    serverAnswered,
    outcomeUnknown: (e) => (e as PgError).code === '40003',
    errText,
  };
}

type Stream = InsertStream<pg.Client>;

/** Concurrent autocommit inserts with client-chosen unique keys, spread over all ports. */
const insertStream = (c: TestCluster, phase: string) => new InsertStream(c, phase, pgDriver(c), { clients: clientsCount, statementTimeoutMs });

/** Remembers a failure, so that after() prints the nodes' logs. */
const failures = failureGuard();
const guard = failures.guard;

describe('PostgreSQL faults on 3 real recall + postgres', { timeout: 300_000 }, () => {
  let c: TestCluster;
  const fileStart = Date.now();
  const timings: string[] = [];
  const lap = (what: string, since: number) => timings.push(`  ${what}: ${Date.now() - since} ms`);

  before(async () => {
    const t0 = Date.now();
    // md5 here (the replication test uses scram-sha-256)
    c = await startCluster({ engine: 'postgres', postgresAuth: 'md5' });
    const leader = await c.waitLeader(30_000);
    lap('cluster start + leader', t0);
    const su = await connectTo(c.nodes[leader]!.postgresPort, { user: 'postgres', password: pgSuperuserPassword, database: 'postgres', timeoutMs: 10_000 });
    try {
      await su.query(`CREATE ROLE ${role} LOGIN PASSWORD '${md5Verifier(role, password)}'`);
      await su.query(`CREATE DATABASE ${database} OWNER ${role}`);
    } finally {
      await su.end();
    }
    await c.waitConverged(30_000);
    const app = await connectTo(c.nodes[leader]!.postgresPort, { timeoutMs: 10_000 });
    try {
      await app.query('CREATE TABLE t (k text PRIMARY KEY, client int NOT NULL, seq int NOT NULL, phase text NOT NULL, via int NOT NULL)');
    } finally {
      await app.end();
    }
    await c.waitConverged(30_000);
  });

  after(async () => {
    if (c && failures.failed) console.log(c.dumpLogs(12_000));
    await c?.stop();
    console.log(`# timings (whole file ${Date.now() - fileStart} ms):\n${timings.map((l) => `# ${l}`).join('\n')}`);
  });

  const ensureAllUp = () => ensureAllUpIn(c);

  /** Keys of `phase` present in node i's database (read straight from its postgres). */
  const keysOn = async (i: number, phase: string): Promise<Set<string>> =>
    new Set((await c.pgQuery(i, database, 'SELECT k FROM t WHERE phase = $1', [phase])).map((r) => String(r.k)));

  const assertOutcomes = async (s: Stream, nodes: number[]) => {
    for (const i of nodes) s.assertOutcomes(i, await keysOn(i, s.phase));
  };

  const assertSameContents = async () => {
    const sums = await c.pgChecksums(database);
    assert.ok(sums[0]!.t && !sums[0]!.t.startsWith('0:'), `table t has rows (${JSON.stringify(sums)})`);
    if (sums.every((x) => x.t === sums[0]!.t)) return;
    const rows = await Promise.all(c.nodes.map((n) => c.pgQuery(n.index, database, 'SELECT k, client, seq, phase, via FROM t ORDER BY k')));
    assert.fail(`md5 of t differs: ${JSON.stringify(sums)}; ${rowDifferences(rows)}`);
  };

  test('kill -9 of the leader recall during an insert stream over all ports', { timeout: 150_000 }, guard(async () => {
    const t0 = Date.now();
    await ensureAllUp();
    const leader = await c.waitLeader(20_000);
    const survivors = [0, 1, 2].filter((i) => i !== leader);
    const phase = 'kill-recall';
    const s = insertStream(c, phase);
    await sleep(2500);
    assert.ok(s.acked().length >= 10, `inserts flow before the fault (${s.acked().length} acknowledged)\n${s.summary()}`);
    const tKill = Date.now();
    await c.kill(leader);
    const deadline = tKill + 20_000;
    while (Date.now() < deadline && s.resumeGap(tKill, survivors).firstAfter === undefined) await sleep(100);
    await sleep(1500);
    await s.stop();
    const g = s.resumeGap(tKill, survivors);
    console.log(`# ${phase}: last ack ${tKill - g.lastBefore} ms before the kill, first ack after it ${g.firstAfter === undefined ? 'never' : `${g.firstAfter - tKill} ms after`}; gap ${g.gapMs ?? '∞'} ms\n${s.summary().replace(/^/gm, '# ')}`);
    timings.push(`  ${phase}: writes resumed after a gap of ${g.gapMs ?? '∞'} ms`);

    const newLeader = await c.waitLeader(20_000);
    assert.notEqual(newLeader, leader);
    await c.waitConverged(30_000, survivors);
    await assertOutcomes(s, survivors);
    assert.ok(g.gapMs !== undefined && g.gapMs < resumeMsMax, `writes resume within ${resumeMsMax} ms (gap ${g.gapMs ?? 'never'} ms)`);

    const tr = Date.now();
    await c.restart(leader, { readyTimeoutMs: 90_000 });
    await c.waitConverged(60_000);
    lap(`${phase}: restart of the killed node until converged`, tr);
    await assertOutcomes(s, [0, 1, 2]);
    await assertSameContents();
    lap(`${phase} test`, t0);
  }));

  for (const mode of ['reset', 'blackhole'] as const) {
    // reset: links die at once (host gone); blackhole: bytes vanish, nothing closes (only timeouts notice).
    const m = mode === 'reset' ? 'rst' : 'bh';
    test(`a follower cut off from its peers (${mode}): local reads yes, writes and linearizable reads get 25006, converges after heal`, { timeout: 150_000 }, guard(async () => {
      const t0 = Date.now();
      await ensureAllUp();
      const leader = await c.waitLeader(20_000);
      const f = (leader + 1) % 3;
      const others = [0, 1, 2].filter((i) => i !== f);
      const open = (i: number) => connectTo(c.nodes[i]!.postgresPort, { timeoutMs: 5000 });
      const pre = await open(leader);
      for (let k = 0; k < 20; k++) await pre.query('INSERT INTO t VALUES ($1, 0, $2, $3, $4)', [`pre-${m}-${k}`, k, `pre-${m}`, leader + 1]);
      await pre.end();
      await c.waitConverged(30_000);

      // Sessions opened before the cut (a client does not reconnect just because peers vanish).
      const localConn = await open(f);
      await localConn.query("SET recall.consistency = 'local'");
      const linConn = await open(f);
      await linConn.query("SET recall.consistency = 'linearizable'");
      const writeConn = await open(f);
      const opened = [localConn, linConn, writeConn];

      try {
        const tc = Date.now();
        c.cut(f, mode);
        // blackhole: only the missing heartbeats tell; wait until the replica gave up on its leader
        // (before that a forwarded write could vanish and rightly be "outcome unknown")
        const deadline = Date.now() + 15_000;
        for (;;) {
          const r = (await c.tryStatus(f))?.replication;
          if (mode === 'reset' ? r?.peers.every((p) => !p.connected) : r && r.leader === 0) break;
          assert.ok(Date.now() < deadline, `node ${f + 1} did not notice the cut: ${JSON.stringify(r)}`);
          await sleep(100);
        }
        lap(`cut (${mode}): until the replica noticed`, tc);

        // Writes go on meanwhile on every port: the majority's must succeed, the isolated
        // replica's must be refused and never appear later.
        const mid = insertStream(c, `mid-${m}`);
        const majorityWrites: string[] = [];
        const w = await open(others[0]!);
        for (let k = 0; k < 30; k++) {
          await w.query('INSERT INTO t VALUES ($1, 9, $2, $3, $4)', [`maj-${m}-${k}`, k, `maj-${m}`, others[0]! + 1]);
          majorityWrites.push(`maj-${m}-${k}`);
        }
        await w.end();

        // local reads are served from the isolated replica's own database.
        const r1 = await localConn.query(`SELECT count(*)::int AS n FROM t WHERE phase = 'pre-${m}'`);
        assert.equal(r1.rows[0].n, 20, 'a local read on the isolated replica sees the data it had');
        const fresh = await open(f);
        opened.push(fresh);
        await fresh.query("SET recall.consistency = 'local'");
        const r2 = await fresh.query(`SELECT count(*)::int AS n FROM t WHERE phase = 'pre-${m}'`);
        assert.equal(r2.rows[0].n, 20, 'a new session on the isolated replica can read locally');

        const tw = Date.now();
        let writeErr: PgError | undefined;
        try {
          await writeConn.query('INSERT INTO t VALUES ($1, 7, 0, $2, $3)', [`cw-${m}`, `cw-${m}`, f + 1]);
        } catch (e) {
          writeErr = e as PgError;
        }
        const writeMs = Date.now() - tw;
        console.log(`# cut ${mode}: write on the isolated replica answered in ${writeMs} ms: ${writeErr ? errText(writeErr) : 'OK (!)'}`);
        assert.ok(writeErr, 'a write on the isolated replica fails');
        assert.ok(noLeaderStates.includes(writeErr.code ?? ''), `write refused with ${noLeaderStates.join('/')} (got ${errText(writeErr)})`);
        assert.match(writeErr.message ?? '', /no leader/);
        assert.ok(writeMs < refusalMsMax, `the refusal came within ${refusalMsMax} ms (${writeMs} ms)`);

        const tl = Date.now();
        let linErr: PgError | undefined;
        try {
          await linConn.query('SELECT count(*) AS n FROM t');
        } catch (e) {
          linErr = e as PgError;
        }
        const linMs = Date.now() - tl;
        console.log(`# cut ${mode}: linearizable read on the isolated replica answered in ${linMs} ms: ${linErr ? errText(linErr) : 'rows (!)'}`);
        assert.ok(linErr, 'a linearizable read on the isolated replica fails');
        assert.ok(serverAnswered(linErr), `a clear error, not a dropped connection (${errText(linErr)})`);
        assert.ok(noLeaderStates.includes(linErr.code ?? ''), `linearizable read refused with ${noLeaderStates.join('/')} (got ${errText(linErr)})`);
        assert.ok(linMs < refusalMsMax, `the refusal came within ${refusalMsMax} ms (${linMs} ms)`);
        // The sessions survive the refusals.
        const r3 = await localConn.query(`SELECT count(*)::int AS n FROM t WHERE phase = 'pre-${m}'`);
        assert.equal(r3.rows[0].n, 20);
        const r4 = await writeConn.query('SELECT 1 AS one');
        assert.equal(r4.rows[0].one, 1, 'the refused session still answers');

        await mid.stop();
        console.log(`# cut ${mode}: stream during the cut (all ports):\n${mid.summary().replace(/^/gm, '# ')}`);
        assert.ok(mid.attempts.filter((a) => a.node !== f && a.outcome === 'ok').length > 0, 'the majority acknowledged writes during the cut');

        const th = Date.now();
        c.heal(f);
        await c.waitConverged(60_000);
        lap(`heal (${mode}): until converged`, th);
        await assertSameContents();
        const onF = await keysOn(f, `maj-${m}`);
        assert.deepEqual([...onF].sort(), [...majorityWrites].sort(), 'the healed replica has the writes made meanwhile');
        await assertOutcomes(mid, [0, 1, 2]);
        for (const i of [0, 1, 2]) assert.equal((await keysOn(i, `cw-${m}`)).size, 0, `the refused write is not on node ${i + 1}`);
        // Through the healed replica's own port, with its default consistency.
        const healed = await open(f);
        opened.push(healed);
        await healed.query('INSERT INTO t VALUES ($1, 8, 0, $2, $3)', [`ah-${m}`, `ah-${m}`, f + 1]);
        const r5 = await healed.query(`SELECT count(*)::int AS n FROM t WHERE phase IN ('maj-${m}', 'ah-${m}')`);
        assert.equal(r5.rows[0].n, majorityWrites.length + 1);
        // the linearizable session works again too
        const r6 = await linConn.query(`SELECT count(*)::int AS n FROM t WHERE phase = 'ah-${m}'`);
        assert.equal(r6.rows[0].n, 1);
      } finally {
        c.heal(f);
        for (const cl of opened) await cl.end().catch(() => undefined);
      }
      lap(`cut test (${mode})`, t0);
    }));
  }

  // A transaction opened through a follower holds the old leader's lane; the leader is cut off and
  // rolls it back. Its COMMIT (or next statement) then reaches the new leader, which never saw it:
  // acknowledging it there would lose the rows the old leader rolled back (or commit the rest alone).
  for (const next of ['COMMIT', 'its next statement'] as const) {
    test(`a transaction open on a leader that is cut off: ${next} through a follower fails with 40001 and nothing of it is committed`, { timeout: 120_000 }, guard(async () => {
      const t0 = Date.now();
      await ensureAllUp();
      const leader = await c.waitLeader(20_000);
      const f = (leader + 1) % 3;
      const phase = next === 'COMMIT' ? 'lost-c' : 'lost-n';
      const conn = await connectTo(c.nodes[f]!.postgresPort, { timeoutMs: 5000 });
      try {
        await conn.query('BEGIN');
        await conn.query('INSERT INTO t VALUES ($1, 5, 0, $2, $3)', [`${phase}-1`, phase, f + 1]);
        c.cut(leader, 'reset');
        const newLeader = await c.waitLeader(20_000);
        assert.notEqual(newLeader, leader);
        const sql = next === 'COMMIT' ? 'COMMIT' : `INSERT INTO t VALUES ('${phase}-2', 5, 1, '${phase}', ${f + 1})`;
        const e = await conn.query(sql).then(() => null, (x: PgError) => x);
        assert.ok(e, `${sql} of a transaction the old leader rolled back must fail`);
        assert.equal(e.code, '40001', errText(e));
        // after a failed COMMIT the session is out of its transaction; after a failed statement it
        // is in a failed one, which ROLLBACK ends
        if (next !== 'COMMIT') {
          const e2 = await conn.query('SELECT 1').then(() => null, (x: PgError) => x);
          assert.equal(e2?.code, '25P02', 'the failed transaction ignores commands until it ends');
          await conn.query('ROLLBACK');
        }
        await conn.query('BEGIN');
        await conn.query('INSERT INTO t VALUES ($1, 5, 2, $2, $3)', [`${phase}-ok`, `${phase}-ok`, f + 1]);
        await conn.query('COMMIT');
        c.heal(leader);
        await c.waitConverged(60_000);
        for (const i of [0, 1, 2]) {
          assert.equal((await keysOn(i, phase)).size, 0, `nothing of the rolled-back transaction is on node ${i + 1}`);
          assert.equal((await keysOn(i, `${phase}-ok`)).size, 1, `the next transaction is on node ${i + 1}`);
        }
        await assertSameContents();
      } finally {
        await conn.end().catch(() => undefined);
        c.heal(leader);
      }
      lap(`lost-lane test (${next})`, t0);
    }));
  }
});
