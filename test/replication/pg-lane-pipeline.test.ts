// PgLane's shortcuts for a database without sequences, on real postgres servers and a real
// single-node RaftNode: the sequences are not read on the side, BEGIN, the settings and the first
// statement go in one round trip, and yet settings that fail still leave nothing behind; once a
// transaction creates a sequence, its moves are carried in the entries again. A PgApplier applies
// the log to a second postgres, which ends equal.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { ManagedPostgres } from '../../src/supervisor/postgres.js';
import { RaftNode } from '../../src/engine/node.js';
import { Role } from '../../src/consensus/types.js';
import type { PgApplier } from '../../src/replication/pg/applier.js';
import { pgDialect } from '../../src/replication/pg/dialect.js';
import { decodePgEntry, type PgEntry } from '../../src/replication/pg/entry.js';
import type { PgLaneRequest, PgLaneResult, PgLaneStatement } from '../../src/replication/pg/types.js';
import type { ReplicaLane, ApplierBaseDeps } from '../../src/replication/dialect.js';
import { commandTag, errorOf } from '../../src/replication/pg/conn.js';
import { loadPgParser } from '../../src/sql/pg-parse.js';
import { configureLogging, logger } from '../../src/util/log.js';
import { tempDir } from '../harness/tmp.js';
import { freePort } from '../harness/ports.js';

configureLogging({ silent: !process.env.DEBUG_LOG, debug: !!process.env.DEBUG_LOG });

async function q(port: number, sql: string, database = 'plain'): Promise<unknown[][]> {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database });
  await c.connect();
  try {
    return (await c.query({ text: sql, rowMode: 'array' })).rows as unknown[][];
  } finally {
    await c.end();
  }
}

function tags(r: PgLaneResult): string[] {
  return r.replies.map((ms) => {
    const e = ms.find((m) => m[0] === 0x45);
    if (e) return `E${errorOf(e).code}`;
    const c = [...ms].reverse().find((m) => m[0] === 0x43);
    return c ? commandTag(c) : '?';
  });
}

const w = (sql: string): PgLaneStatement => ({ kind: 'write', sql });
const SETTINGS = { timezone: 'UTC', search_path: 'public', datestyle: 'ISO, MDY' };

describe('PgLane without sequences: pipelined BEGIN, no side reads, sequences again once created', () => {
  const dir = tempDir('recall-pglanep-');
  chmodSync(dir.path, 0o755);
  let a: ManagedPostgres;
  let b: ManagedPostgres;
  let node: RaftNode;
  let lane: ReplicaLane<PgLaneRequest, PgLaneResult>;
  const appliers: PgApplier[] = [];
  const delivered = { index: 0 };
  let session = 0;
  let sideReads = 0;

  function req(stmts: PgLaneStatement[], mode: 'auto' | 'txn' = 'auto', s = `1:${++session}`, settings: Record<string, string> = SETTINGS): PgLaneRequest {
    return { session: s, role: 'alice', database: 'plain', credential: { kind: 'trust' }, settings, mode, stmts };
  }

  /** The entry committed last. */
  function lastEntry(): PgEntry {
    const i = node.storage.lastIndex();
    return decodePgEntry(node.storage.entries(i, i + 1, 1 << 20)[0]!.data);
  }

  before(async () => {
    await loadPgParser();
    const [pa, pb, pr] = [await freePort(), await freePort(), await freePort()];
    a = new ManagedPostgres({ dataDir: join(dir.path, 'a'), port: pa, startTimeoutMs: 60000 });
    b = new ManagedPostgres({ dataDir: join(dir.path, 'b'), port: pb, startTimeoutMs: 60000 });
    await Promise.all([a.start(), b.start()]);
    for (const p of [pa, pb]) {
      await q(p, 'CREATE ROLE alice LOGIN', 'postgres');
      await q(p, 'CREATE DATABASE plain OWNER alice', 'postgres');
    }
    mkdirSync(join(dir.path, 'raft'));
    node = await RaftNode.open({ id: 1, peers: new Map([[1, `127.0.0.1:${pr}`]]), dataDir: join(dir.path, 'raft'), clusterId: 't', secret: 'k', tickMs: 10, onFatal: (e) => assert.fail(e) });
    const log = logger('test-pg-lane-pipeline');
    const deps = (nodeId: number): ApplierBaseDeps => ({
      nodeId,
      log,
      entries: (lo, hi) => node.storage.entries(lo, Math.min(hi, node.storage.lastIndex() + 1), 64 << 20),
      commitIndex: () => delivered.index,
      firstIndex: () => node.storage.firstIndex(),
    });
    const da = pgDialect({ target: { host: '127.0.0.1', port: pa, socketDir: a.socketDir }, admin: { user: 'postgres', credential: null }, connectTimeoutMs: 5000 });
    const db = pgDialect({ target: { host: '127.0.0.1', port: pb, socketDir: b.socketDir }, admin: { user: 'postgres', credential: null }, connectTimeoutMs: 5000 });
    const applierA = da.createApplier(deps(1));
    const applierB = db.createApplier(deps(2));
    appliers.push(applierA, applierB);
    await applierA.open();
    await applierB.open();
    // count the lane's reads of the sequences on the applier's side connection
    const read = applierA.sequences.bind(applierA);
    applierA.sequences = (d: string) => {
      sideReads++;
      return read(d);
    };
    node.onCommitted((es) => {
      if (es.length) delivered.index = es[es.length - 1]!.index;
      applierA.notify();
      applierB.notify();
    });
    const end = Date.now() + 10000;
    while (node.status().role !== Role.Leader) {
      if (Date.now() > end) throw new Error('no leader');
      await new Promise((r) => setTimeout(r, 20));
    }
    lane = da.createLane(
      { nodeId: 1, log, laneTimeoutMs: 5000, propose: (d) => node.propose(d), ready: async () => undefined, databaseFailed: (why) => assert.fail(why) },
      applierA,
    );
  });

  after(async () => {
    await lane?.close();
    for (const x of appliers) x.close();
    await node?.close();
    await Promise.all([a?.stop(), b?.stop()]);
    dir.remove();
  });

  test('writes without sequences, failing settings, then a sequence', async () => {
    // the first transaction reads the sequences (nothing known yet); its end finds none
    assert.deepEqual(tags(await lane.submit(req([w('CREATE TABLE acc (id int PRIMARY KEY, bal int NOT NULL)')]))), ['CREATE TABLE']);
    assert.deepEqual(tags(await lane.submit(req([w('INSERT INTO acc VALUES (1, 0), (2, 0), (3, 0)')]))), ['INSERT 0 3']);
    const reads0 = sideReads;

    // a transaction: the first UPDATE travels with BEGIN and the settings
    const s = '1:t';
    let t = await lane.submit({ ...req([w('UPDATE acc SET bal = bal + 5 WHERE id = 1')], 'txn', s), begin: 'BEGIN' });
    assert.deepEqual(tags(t), ['UPDATE 1']);
    assert.equal(t.status, 0x54);
    t = await lane.submit(req([{ kind: 'read', sql: 'SELECT bal FROM acc WHERE id = 1' }, w('UPDATE acc SET bal = bal - 5 WHERE id = 2'), w("INSERT INTO acc VALUES (4, extract(epoch FROM now())::int % 7)")], 'txn', s));
    assert.deepEqual(tags(t), ['SELECT 1', 'UPDATE 1', 'INSERT 0 1']);
    t = await lane.submit(req([{ kind: 'commit', sql: 'COMMIT' }], 'txn', s));
    assert.deepEqual(tags(t), ['COMMIT']);
    assert.equal(lastEntry().t, 'w');
    assert.equal((lastEntry() as Extract<PgEntry, { t: 'w' }>).seq, undefined);
    // a read inside a transaction as its first statement, pipelined too
    t = await lane.submit({ ...req([{ kind: 'read', sql: 'SELECT sum(bal) FROM acc' }], 'txn', '1:r'), begin: 'START TRANSACTION' });
    assert.deepEqual(tags(t), ['SELECT 1']);
    t = await lane.submit(req([w('UPDATE acc SET bal = bal + 1 WHERE id = 3'), { kind: 'commit', sql: 'COMMIT' }], 'txn', '1:r'));
    assert.deepEqual(tags(t), ['UPDATE 1', 'COMMIT']);
    assert.equal(sideReads, reads0, 'no sequence read while the database has none');

    // settings that fail: the pipelined statement ran in an aborted transaction and changed nothing
    const bad = { ...SETTINGS, timezone: 'No/Such_Zone' };
    await assert.rejects(lane.submit({ ...req([w('UPDATE acc SET bal = 999')], 'txn', '1:bad', bad), begin: 'BEGIN' }), (e: { sqlState?: string }) => e.sqlState === '22023');
    await assert.rejects(lane.submit(req([w('UPDATE acc SET bal = 998')], 'auto', '1:bad2', bad)), (e: { sqlState?: string }) => e.sqlState === '22023');
    assert.deepEqual(await q(a.dsn.port, 'SELECT count(*)::int FROM acc WHERE bal >= 998'), [[0]]);
    assert.equal(lane.holderSession(), null);
    // a BEGIN with options is not pipelined, and still works
    t = await lane.submit({ ...req([w('UPDATE acc SET bal = bal + 2 WHERE id = 3')], 'txn', '1:rr'), begin: 'BEGIN ISOLATION LEVEL REPEATABLE READ' });
    assert.deepEqual(tags(t), ['UPDATE 1']);
    assert.deepEqual(tags(await lane.submit(req([{ kind: 'commit', sql: 'COMMIT' }], 'txn', '1:rr'))), ['COMMIT']);

    // a transaction creates a sequence: from then on the lane reads the sequences again
    t = await lane.submit({ ...req([w('CREATE TABLE s (id serial PRIMARY KEY, v int)')], 'txn', '1:ddl'), begin: 'BEGIN' });
    assert.deepEqual(tags(t), ['CREATE TABLE']);
    t = await lane.submit(req([w('INSERT INTO s (v) VALUES (1)'), { kind: 'commit', sql: 'COMMIT' }], 'txn', '1:ddl'));
    assert.deepEqual(tags(t), ['INSERT 0 1', 'COMMIT']);
    const reads1 = sideReads;
    assert.deepEqual(tags(await lane.submit(req([w('INSERT INTO s (v) VALUES (2), (3)')]))), ['INSERT 0 2']);
    assert.ok(sideReads > reads1, 'the sequences are read again');
    assert.deepEqual((lastEntry() as Extract<PgEntry, { t: 'w' }>).seq, [['public.s_id_seq', '1', true]]);
    t = await lane.submit({ ...req([w('INSERT INTO s (v) VALUES (4)')], 'txn', '1:s'), begin: 'BEGIN' });
    t = await lane.submit(req([{ kind: 'commit', sql: 'COMMIT' }], 'txn', '1:s'));
    assert.deepEqual(tags(t), ['COMMIT']);
    assert.deepEqual((lastEntry() as Extract<PgEntry, { t: 'w' }>).seq, [['public.s_id_seq', '3', true]]);

    // dropped again: back to no reads after the next transaction finds none
    assert.deepEqual(tags(await lane.submit(req([w('DROP TABLE s')]))), ['DROP TABLE']);
    assert.deepEqual(tags(await lane.submit(req([w('UPDATE acc SET bal = bal + 1 WHERE id = 4')]))), ['UPDATE 1']);
    const reads2 = sideReads;
    assert.deepEqual(tags(await lane.submit(req([w('UPDATE acc SET bal = bal + 1 WHERE id = 4')]))), ['UPDATE 1']);
    assert.equal(sideReads, reads2);

    // a statement shape the rewrite left alone is not rewritten again, until DDL changes the defaults
    assert.deepEqual(tags(await lane.submit(req([w('CREATE TABLE d (a int PRIMARY KEY, b timestamptz)')]))), ['CREATE TABLE']);
    assert.deepEqual(tags(await lane.submit(req([w('INSERT INTO d (a) VALUES (1)')]))), ['INSERT 0 1']);
    assert.equal((lastEntry() as Extract<PgEntry, { t: 'w' }>).items[0]!.q, 'INSERT INTO d (a) VALUES (1)');
    assert.deepEqual(tags(await lane.submit(req([w('INSERT INTO d (a) VALUES (2)')]))), ['INSERT 0 1']);
    assert.equal((lastEntry() as Extract<PgEntry, { t: 'w' }>).items[0]!.q, 'INSERT INTO d (a) VALUES (2)');
    assert.deepEqual(tags(await lane.submit(req([w('ALTER TABLE d ALTER COLUMN b SET DEFAULT now()')]))), ['ALTER TABLE']);
    assert.deepEqual(tags(await lane.submit(req([w('INSERT INTO d (a) VALUES (3)')]))), ['INSERT 0 1']);
    const q3 = (lastEntry() as Extract<PgEntry, { t: 'w' }>).items[0]!.q;
    assert.notEqual(q3, 'INSERT INTO d (a) VALUES (3)', 'the default now() is written out by the leader');
    assert.match(q3, /\d{4}-\d\d-\d\d/);

    // a deferrable constraint: COMMIT checks it again before the entry is proposed
    assert.deepEqual(tags(await lane.submit(req([w('ALTER TABLE acc ADD COLUMN u int'), w('ALTER TABLE acc ADD CONSTRAINT acc_u UNIQUE (u) DEFERRABLE INITIALLY DEFERRED')]))), ['ALTER TABLE', 'ALTER TABLE']);
    assert.deepEqual(tags(await lane.submit(req([w('UPDATE acc SET u = 10 WHERE id = 4')]))), ['UPDATE 1']);
    t = await lane.submit({ ...req([w('UPDATE acc SET u = 1 WHERE id = 1')], 'txn', '1:def'), begin: 'BEGIN' });
    t = await lane.submit(req([w('UPDATE acc SET u = 1 WHERE id = 2'), { kind: 'commit', sql: 'COMMIT' }], 'txn', '1:def'));
    assert.deepEqual(tags(t), ['UPDATE 1', 'E23505']);
    assert.equal(lane.holderSession(), null);
    assert.deepEqual(await q(a.dsn.port, 'SELECT count(*)::int FROM acc WHERE u = 1'), [[0]]);
    assert.deepEqual(tags(await lane.submit(req([w('UPDATE acc SET u = 2 WHERE id = 2')]))), ['UPDATE 1']);
    // the same in autocommit: the implicit COMMIT's error, nothing changed, the lane goes on
    assert.deepEqual(tags(await lane.submit(req([w('UPDATE acc SET u = 10 WHERE id = 3')]))), ['E23505']);
    assert.deepEqual(await q(a.dsn.port, 'SELECT u FROM acc WHERE id = 3'), [[null]]);
    assert.deepEqual(tags(await lane.submit(req([w('UPDATE acc SET u = 3 WHERE id = 3')]))), ['UPDATE 1']);

    const applierB = appliers[1]!;
    assert.ok(await applierB.waitApplied(delivered.index, 20000), JSON.stringify(applierB.status()));
    assert.equal(applierB.diverged, null);
    const sql = "SELECT coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM acc x";
    assert.deepEqual(await q(b.dsn.port, sql), await q(a.dsn.port, sql));
    const dsql = "SELECT coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM d x";
    assert.deepEqual(await q(b.dsn.port, dsql), await q(a.dsn.port, dsql));
    assert.deepEqual(await q(a.dsn.port, 'SELECT id, bal FROM acc WHERE id < 4 ORDER BY id'), [[1, 5], [2, -5], [3, 3]]);
  });
});
