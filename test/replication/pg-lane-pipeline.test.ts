// PgLane's shortcuts for a database without sequences, on real postgres servers and a real
// single-node RaftNode: the sequences are not read on the side, BEGIN, the settings and the first
// statement go in one round trip, and yet settings that fail still leave nothing behind; once a
// transaction creates a sequence, its moves are carried in the entries again. A PgApplier applies
// the log to a second postgres, which ends equal.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { ManagedPostgres } from '../../src/supervisor/postgres.js';
import type { RaftNode } from '../../src/engine/node.js';
import type { PgApplier } from '../../src/replication/pg/applier.js';
import { decodePgEntry, type PgEntry } from '../../src/replication/pg/entry.js';
import type { PgLaneRequest, PgLaneResult, PgLaneStatement } from '../../src/replication/pg/types.js';
import type { ReplicaLane } from '../../src/replication/dialect.js';
import { loadPgParser } from '../../src/sql/pg-parse.js';
import { configureLogging, logger } from '../../src/util/log.js';
import { PgServers, pgAdminQuery, laneTags as tags, startPgLane, type PgLaneRig } from '../harness/pg-fixture.js';

configureLogging({ silent: !process.env.DEBUG_LOG, debug: !!process.env.DEBUG_LOG });

const q = (port: number, sql: string, database = 'plain'): Promise<unknown[][]> => pgAdminQuery(port, sql, database);

const w = (sql: string): PgLaneStatement => ({ kind: 'write', sql });
const SETTINGS = { timezone: 'UTC', search_path: 'public', datestyle: 'ISO, MDY' };

describe('PgLane without sequences: pipelined BEGIN, no side reads, sequences again once created', () => {
  const servers = new PgServers({ prefix: 'recall-pglanep-', names: ['a', 'b'], database: 'plain' });
  let a: ManagedPostgres;
  let b: ManagedPostgres;
  let rig: PgLaneRig | undefined;
  let node: RaftNode;
  let lane: ReplicaLane<PgLaneRequest, PgLaneResult>;
  let appliers: PgApplier[];
  let delivered: { index: number };
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
    [a, b] = (await servers.start()) as [ManagedPostgres, ManagedPostgres];
    rig = await startPgLane([a, b], join(servers.dir.path, 'raft'), logger('test-pg-lane-pipeline'), 5000);
    ({ node, lane, appliers, delivered } = rig);
    // count the lane's reads of the sequences on the applier's side connection
    const applierA = appliers[0]!;
    const read = applierA.sequences.bind(applierA);
    applierA.sequences = (d: string) => {
      sideReads++;
      return read(d);
    };
  });

  after(async () => {
    await rig?.close();
    await servers.stop();
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
