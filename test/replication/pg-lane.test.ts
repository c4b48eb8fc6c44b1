// PgLane on a real postgres with a real single-node RaftNode: writes run as the client's role,
// rewritten to the leader's values, committed with the applied index once the entry is committed;
// a PgApplier then applies the same log to a SECOND postgres, and the two end with equal md5 of
// every table's ordered contents after now()/random()/uuid in values and defaults, SERIAL,
// IDENTITY, a trigger, ON CONFLICT, a CTE with writes, transactions committed and rolled back,
// failed statements and the extended protocol.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { ManagedPostgres } from '../../src/supervisor/postgres.js';
import type { PgApplier } from '../../src/replication/pg/applier.js';
import type { PgLaneRequest, PgLaneResult, PgLaneStatement } from '../../src/replication/pg/types.js';
import type { ReplicaLane } from '../../src/replication/dialect.js';
import { loadPgParser } from '../../src/sql/pg-parse.js';
import { configureLogging, logger } from '../../src/util/log.js';
import { PgServers, pgAdminQuery, pgFingerprint as fingerprint, laneTags as tags, startPgLane, type PgLaneRig } from '../harness/pg-fixture.js';

configureLogging({ silent: !process.env.DEBUG_LOG, debug: !!process.env.DEBUG_LOG });

const q = (port: number, sql: string, database = 'app'): Promise<unknown[][]> => pgAdminQuery(port, sql, database);

const w = (sql: string): PgLaneStatement => ({ kind: 'write', sql });

describe('PgLane + PgApplier: a leader and a replica end equal', () => {
  const servers = new PgServers({ prefix: 'recall-pglane-', names: ['a', 'b'], database: 'app' });
  let a: ManagedPostgres;
  let b: ManagedPostgres;
  let rig: PgLaneRig | undefined;
  let lane: ReplicaLane<PgLaneRequest, PgLaneResult>;
  let appliers: PgApplier[];
  let delivered: { index: number };
  let session = 0;

  function req(stmts: PgLaneStatement[], mode: 'auto' | 'txn' = 'auto', s = `1:${++session}`): PgLaneRequest {
    return { session: s, role: 'alice', database: 'app', credential: { kind: 'trust' }, settings: { timezone: 'Europe/Paris', search_path: 'public', datestyle: 'ISO, MDY' }, mode, stmts };
  }

  before(async () => {
    await loadPgParser();
    [a, b] = (await servers.start()) as [ManagedPostgres, ManagedPostgres];
    rig = await startPgLane([a, b], join(servers.dir.path, 'raft'), logger('test-pg-lane'), 3000);
    ({ lane, appliers, delivered } = rig);
  });

  after(async () => {
    await rig?.close();
    await servers.stop();
  });

  test('a workload through the lane replays to an equal second database', async () => {
    const ddl = await lane.submit(req([
      w(`CREATE TABLE items (id serial PRIMARY KEY, n int NOT NULL, at timestamptz DEFAULT now(), r float8 DEFAULT random(), u uuid DEFAULT gen_random_uuid(), d date DEFAULT current_date, note text)`),
      w('CREATE TABLE ident (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text)'),
      w('CREATE TABLE audit (id bigserial PRIMARY KEY, item int, n int)'),
      w('CREATE TABLE kv (k text PRIMARY KEY, v int NOT NULL)'),
      w(`CREATE FUNCTION audit_item() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN INSERT INTO audit (item, n) VALUES (NEW.id, NEW.n); RETURN NEW; END$$`),
      w('CREATE TRIGGER items_audit AFTER INSERT ON items FOR EACH ROW EXECUTE FUNCTION audit_item()'),
    ]));
    assert.deepEqual(tags(ddl), ['CREATE TABLE', 'CREATE TABLE', 'CREATE TABLE', 'CREATE TABLE', 'CREATE FUNCTION', 'CREATE TRIGGER']);
    assert.ok(ddl.index > 0);

    const r1 = await lane.submit(req([w('INSERT INTO items (n) VALUES (1), (2), (3)')]));
    assert.deepEqual(tags(r1), ['INSERT 0 3']);
    const r2 = await lane.submit(req([w("INSERT INTO items (n, at, r, u, note) VALUES (4, now(), random(), gen_random_uuid(), 'explicit'), (5, clock_timestamp(), random(), gen_random_uuid(), localtimestamp::text)")]));
    assert.deepEqual(tags(r2), ['INSERT 0 2']);
    const r3 = await lane.submit(req([{ kind: 'write', sql: 'INSERT INTO items (n, note) VALUES ($1, $2) RETURNING id', x: { types: [23, 25], formats: [0, 0], values: [Buffer.from('6'), Buffer.from('extended')], resultFormats: [], describe: true } }]));
    assert.deepEqual(tags(r3), ['INSERT 0 1']);
    assert.ok(r3.replies[0]!.some((m) => m[0] === 0x54), 'RowDescription of the described portal');
    assert.deepEqual(tags(await lane.submit(req([w("INSERT INTO ident (v) VALUES ('a'), ('b')")]))), ['INSERT 0 2']);
    assert.deepEqual(tags(await lane.submit(req([w("INSERT INTO kv VALUES ('a', 1), ('b', 1)")]))), ['INSERT 0 2']);
    assert.deepEqual(tags(await lane.submit(req([w("INSERT INTO kv VALUES ('a', 10) ON CONFLICT (k) DO UPDATE SET v = kv.v + EXCLUDED.v")]))), ['INSERT 0 1']);
    assert.deepEqual(tags(await lane.submit(req([w("WITH x AS (INSERT INTO kv VALUES ('c', 3) RETURNING v) INSERT INTO audit (item, n) SELECT 0, v FROM x")]))), ['INSERT 0 1']);
    // fails after nextval: replayed and rolled back everywhere, so the sequences stay equal
    assert.deepEqual(tags(await lane.submit(req([w('INSERT INTO items (n) VALUES (NULL)')]))), ['E23502']);
    // refused before running: answered, nothing replicated
    const before = delivered.index;
    const refused = await lane.submit(req([w('UPDATE items SET r = random()')]));
    assert.deepEqual(tags(refused), ['E0A000']);
    assert.equal(refused.index, 0);
    assert.equal(delivered.index, before);

    // a transaction of several statements, then one rolled back
    const s = '1:txn';
    let t = await lane.submit({ ...req([w('INSERT INTO items (n) VALUES (7)')], 'txn', s), begin: 'BEGIN ISOLATION LEVEL REPEATABLE READ' });
    assert.equal(t.status, 0x54);
    assert.equal(lane.holderSession(), s);
    t = await lane.submit(req([w("UPDATE items SET note = 'n=' || n WHERE n > 2"), { kind: 'read', sql: 'SELECT count(*) FROM items' }, w("INSERT INTO ident (v) VALUES ('c')")], 'txn', s));
    assert.deepEqual(tags(t), ['UPDATE 5', 'SELECT 1', 'INSERT 0 1']);
    t = await lane.submit(req([{ kind: 'commit', sql: 'COMMIT' }], 'txn', s));
    assert.deepEqual(tags(t), ['COMMIT']);
    assert.equal(t.status, 0x49);
    assert.equal(lane.holderSession(), null);
    await lane.submit(req([w('INSERT INTO items (n) VALUES (8), (9)')], 'txn', '1:rb'));
    t = await lane.submit(req([{ kind: 'rollback', sql: 'ROLLBACK' }], 'txn', '1:rb'));
    assert.deepEqual(tags(t), ['ROLLBACK']);
    // a transaction that failed: COMMIT answers ROLLBACK, as postgres does
    await lane.submit(req([w("INSERT INTO kv VALUES ('d', 4)")], 'txn', '1:f'));
    t = await lane.submit(req([w("INSERT INTO kv VALUES ('d', 5)")], 'txn', '1:f'));
    assert.deepEqual(tags(t), ['E23505']);
    assert.equal(t.status, 0x45);
    t = await lane.submit(req([{ kind: 'commit', sql: 'COMMIT' }], 'txn', '1:f'));
    assert.deepEqual(tags(t), ['ROLLBACK']);
    assert.deepEqual(tags(await lane.submit(req([w('INSERT INTO items (n) VALUES (10)')]))), ['INSERT 0 1']);

    const last = delivered.index;
    const applierB = appliers[1]!;
    assert.ok(await applierB.waitApplied(last, 20000), JSON.stringify(applierB.status()));
    assert.equal(applierB.diverged, null);
    assert.equal(appliers[0]!.applied, last);
    const fa = await fingerprint(a.dsn.port);
    const fb = await fingerprint(b.dsn.port);
    assert.deepEqual(Object.keys(fa), ['public.audit', 'public.ident', 'public.items', 'public.kv']);
    assert.deepEqual(fb, fa);
    // ids: 1-3, 4-5, 6, (NULL used 7), 8 (txn), (rolled back 9, 10), 11
    assert.deepEqual((await q(a.dsn.port, 'SELECT id FROM items ORDER BY id')).map((r) => r[0]), [1, 2, 3, 4, 5, 6, 8, 11]);
    assert.deepEqual(await q(b.dsn.port, "SELECT tableowner FROM pg_tables WHERE tablename = 'items'"), [['alice']]);
    assert.deepEqual(await q(b.dsn.port, 'SELECT idx FROM recall.applied'), await q(a.dsn.port, 'SELECT idx FROM recall.applied'));
  });

  test('a volatile DEFAULT set later on a table that a function inserts into is refused, naming the function', async () => {
    // audit_item() (the items trigger) inserts into audit: its rows would take the default on every replica
    const refused = await lane.submit(req([w('ALTER TABLE audit ALTER COLUMN n SET DEFAULT (random() * 10)::int')]));
    assert.deepEqual(tags(refused), ['E0A000']);
    assert.match(JSON.stringify(refused.replies[0]!.map((m) => m.toString('latin1'))), /audit_item\(\) inserts into audit/);
    assert.deepEqual(await q(a.dsn.port, "SELECT column_default FROM information_schema.columns WHERE table_name = 'audit' AND column_name = 'n'"), [[null]]);
    // a constant default there, or a volatile one on a table no function writes, is fine
    assert.deepEqual(tags(await lane.submit(req([w('ALTER TABLE audit ALTER COLUMN n SET DEFAULT 0')]))), ['ALTER TABLE']);
    assert.deepEqual(tags(await lane.submit(req([w('ALTER TABLE kv ALTER COLUMN v SET DEFAULT (random() * 10)::int')]))), ['ALTER TABLE']);
  });

  test('a transaction that holds the lane past laneTimeoutMs is rolled back (replicated) and its session told so', async () => {
    const s = '1:slow';
    await lane.submit(req([w('INSERT INTO items (n) VALUES (100)')], 'txn', s));
    assert.equal(lane.holderSession(), s);
    // another session waits for the lane, then gets it once the holder is rolled back (it comes
    // 300 ms later: had it come at once, its own wait would end with the holder's, a race)
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    const other = await lane.submit(req([w('INSERT INTO items (n) VALUES (101)')]));
    assert.deepEqual(tags(other), ['INSERT 0 1']);
    assert.ok(Date.now() - t0 >= 2200, 'waited for the lane timeout');
    assert.equal(lane.holderSession(), null);
    await assert.rejects(lane.submit(req([w('INSERT INTO items (n) VALUES (102)')], 'txn', s)), (e: { sqlState?: string }) => e.sqlState === '57014');
    // leadership lost while a transaction holds the lane: its next statement gets 40001
    await lane.submit(req([w('INSERT INTO items (n) VALUES (103)')], 'txn', '1:lost'));
    lane.abort(new Error('test: stepped down'));
    await assert.rejects(lane.submit(req([{ kind: 'commit', sql: 'COMMIT' }], 'txn', '1:lost')), (e: { sqlState?: string }) => e.sqlState === '40001');
    const applierB = appliers[1]!;
    assert.ok(await applierB.waitApplied(delivered.index, 20000));
    // 100 rolled back (but its number used everywhere), 101 committed, 103 never replicated
    assert.deepEqual(await q(b.dsn.port, 'SELECT n FROM items WHERE n >= 100'), [[101]]);
    assert.deepEqual(await q(a.dsn.port, 'SELECT n FROM items WHERE n >= 100'), [[101]]);
    assert.deepEqual(await q(b.dsn.port, 'SELECT id FROM items WHERE n = 101'), await q(a.dsn.port, 'SELECT id FROM items WHERE n = 101'));
  });

  test('a transaction named by another epoch is gone (40001, nothing proposed); one whose first answer was lost is rolled back when the session starts anew, and a COMMIT that does not name it is refused', async () => {
    const bare = rig!.bare;
    const before = delivered.index;
    // as on a new leader: the COMMIT and the next statement of a transaction it never held
    const other = { txn: '9.feedface0000' };
    await assert.rejects(bare.submit({ ...req([{ kind: 'commit', sql: 'COMMIT' }], 'txn', '1:moved'), ...other }), (e: { sqlState?: string }) => e.sqlState === '40001');
    await assert.rejects(bare.submit({ ...req([w('INSERT INTO items (n) VALUES (200)')], 'txn', '1:moved'), ...other }), (e: { sqlState?: string }) => e.sqlState === '40001');
    const rb = await bare.submit({ ...req([{ kind: 'rollback', sql: 'ROLLBACK' }], 'txn', '1:moved'), ...other });
    assert.deepEqual(tags(rb), ['ROLLBACK']);
    assert.equal(rb.status, 0x49);
    assert.equal(lane.holderSession(), null);
    assert.equal(delivered.index, before, 'nothing was proposed');
    // the first answer of a transaction is lost (its client was told it failed); the session's
    // next transaction starts without a name and must not continue the orphan
    const first = await bare.submit(req([w('INSERT INTO items (n) VALUES (201)')], 'txn', '1:orphan'));
    assert.equal(typeof first.txn, 'string', 'a result inside a transaction names it');
    assert.equal(lane.holderSession(), '1:orphan');
    const again = await bare.submit(req([w('INSERT INTO items (n) VALUES (202)')], 'txn', '1:orphan'));
    assert.deepEqual(tags(again), ['INSERT 0 1']);
    const done = await bare.submit({ ...req([{ kind: 'commit', sql: 'COMMIT' }], 'txn', '1:orphan'), txn: again.txn! });
    assert.deepEqual(tags(done), ['COMMIT']);
    // a COMMIT that does not name the transaction the lane holds for its session (as from a
    // follower of an older version) is refused, not answered over rows just rolled back
    await bare.submit(req([w('INSERT INTO items (n) VALUES (203)')], 'txn', '1:unnamed'));
    await assert.rejects(bare.submit(req([{ kind: 'commit', sql: 'COMMIT' }], 'txn', '1:unnamed')), (e: { sqlState?: string }) => e.sqlState === '40001');
    for (let k = 0; k < 100 && lane.holderSession() !== null; k++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(lane.holderSession(), null, 'the unnamed transaction was rolled back');
    assert.ok(await appliers[1]!.waitApplied(delivered.index, 20000));
    for (const port of [a.dsn.port, b.dsn.port]) assert.deepEqual(await q(port, 'SELECT n FROM items WHERE n >= 200 ORDER BY n'), [[202]]);
  });
});
