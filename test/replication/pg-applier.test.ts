// PgApplier against a real postgres: hand-built entries (simple and extended statements, a rolled
// back transaction whose sequence use must be replayed, a failing statement, a no-op) applied as
// the entry's role with outcomes compared; an outcome that differs stops the applier (diverged);
// exactly once across kill -9 of postgres (re-applied from the index committed with the data).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ManagedPostgres } from '../../src/supervisor/postgres.js';
import type { PgApplier } from '../../src/replication/pg/applier.js';
import { encodePgEntry, type PgEntry, type PgItem } from '../../src/replication/pg/entry.js';
import type { Entry } from '../../src/consensus/types.js';
import { logger } from '../../src/util/log.js';
import { PgServers, pgAdminQuery, memoryLogApplier, until } from '../harness/pg-fixture.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');

function write(s: number, items: PgItem[], rollback = false, seq?: [string, boolean]): PgEntry {
  return {
    t: 'w', o: { n: 9, s }, db: 'app', role: 'alice', set: { timezone: 'UTC', search_path: 'public' }, items,
    ...(rollback ? { rollback: 1 as const } : {}),
    ...(seq ? { seq: [['public.t_id_seq', ...seq]] as Array<[string, string, boolean]> } : {}),
  };
}

const ENTRIES: Array<PgEntry | null> = [
  write(1, [{ q: 'CREATE TABLE t (id serial PRIMARY KEY, v text NOT NULL, at timestamptz)', out: { tag: 'CREATE TABLE' } }]),
  // each write carries the sequence as the leader had it before (a crashed server's jumps 32 ahead)
  write(2, [
    { q: 'INSERT INTO t (v, at) VALUES ($1, $2)', x: { types: [25, 0], formats: [0, 0], values: [b64('a'), b64('2026-01-01 00:00:00+00')] }, out: { tag: 'INSERT 0 1' } },
    { q: "INSERT INTO t (v) VALUES ('b')", out: { tag: 'INSERT 0 1' } },
  ], false, ['1', false]),
  // rolled back on the leader: id 3 is used up there, so it must be here too
  write(3, [{ q: "INSERT INTO t (v) VALUES ('c')", out: { tag: 'INSERT 0 1' } }], true, ['2', true]),
  // failed on the leader (NOT NULL, after nextval gave id 4): fails the same way here
  write(4, [{ q: 'INSERT INTO t (v) VALUES (NULL)', out: { e: '23502' } }], true, ['3', true]),
  write(5, [{ q: "INSERT INTO t (v) VALUES ('d') RETURNING id", out: { tag: 'INSERT 0 1' } }], false, ['4', true]),
  null, // a no-op entry (leader's empty entry of a new term)
];

function logOf(entries: Array<PgEntry | null>): Entry[] {
  return entries.map((e, i) => ({ term: 1, index: i + 1, type: 0, data: e ? encodePgEntry(e) : new Uint8Array(0) }) as Entry);
}

const rows = (port: number, sql: string, database = 'app'): Promise<unknown[][]> => pgAdminQuery(port, sql, database);

describe('PgApplier', () => {
  const servers = new PgServers({ prefix: 'recall-pgap-', names: ['db'], database: 'app', restart: { backoffMsMin: 100, backoffMsMax: 1000 } });
  let db: ManagedPostgres;
  let port = 0;
  const appliers: PgApplier[] = [];
  const log = logger('test-pg-applier');

  function applier(entries: Entry[], commit: { index: number }, diverged?: string[]): PgApplier {
    const a = memoryLogApplier(db, log, entries, commit, (r) => diverged?.push(r));
    appliers.push(a);
    return a;
  }

  before(async () => {
    db = (await servers.start())[0]!;
    port = db.dsn.port;
  });

  after(async () => {
    for (const a of appliers) a.close();
    await servers.stop();
  });

  test('entries apply as their role with the same outcomes; rolled-back and failed writes move the sequence', async () => {
    const entries = logOf(ENTRIES);
    const commit = { index: 0 };
    const diverged: string[] = [];
    const a = applier(entries, commit, diverged);
    await a.open();
    assert.equal(a.applied, 0);
    commit.index = entries.length;
    a.notify();
    assert.ok(await a.waitApplied(entries.length, 10000), `applied ${a.applied}: ${JSON.stringify(a.status())}`);
    assert.deepEqual(diverged, []);
    assert.deepEqual(await rows(port, 'SELECT id, v, at FROM t ORDER BY id'), [
      [1, 'a', new Date('2026-01-01T00:00:00Z')],
      [2, 'b', null],
      [5, 'd', null],
    ]);
    assert.deepEqual(await rows(port, "SELECT tableowner FROM pg_tables WHERE tablename = 't'"), [['alice']]);
    // the index of the last entry that wrote to app commits with it; the no-op writes nothing
    assert.deepEqual(await rows(port, 'SELECT idx FROM recall.applied'), [['5']]);

    // an outcome that differs from the leader's stops the applier
    entries.push(...logOf([...ENTRIES, write(7, [{ q: "UPDATE t SET v = 'x' WHERE id = 1", out: { tag: 'UPDATE 2' } }])]).slice(6));
    commit.index = 7;
    a.notify();
    await until(() => a.diverged !== null, 10000);
    assert.equal(a.applied, 6);
    assert.match(a.diverged!.reason, /gave 'UPDATE 1' here but 'UPDATE 2' on the leader/);
    assert.equal(diverged.length, 1);
    assert.deepEqual(await rows(port, 'SELECT v FROM t WHERE id = 1'), [['a']], 'the diverging statement was rolled back');
    a.close();
  });

  test('exactly once across kill -9 of postgres: resumes from the index committed with the data', async () => {
    await rows(port, 'DROP TABLE t');
    await rows(port, 'UPDATE recall.applied SET idx = 0');
    const entries = logOf(ENTRIES);
    const commit = { index: 3 };
    const a = applier(entries, commit);
    await a.open();
    a.notify();
    assert.ok(await a.waitApplied(3, 10000));
    a.close();
    // entries commit with synchronous_commit off (the log is the durable copy; a lost commit loses
    // its applied index with it); a synchronous commit flushes the WAL before it, so the crash
    // below finds entries 1-3 committed and must not apply them again
    await rows(port, 'CREATE TEMP TABLE flush_wal ()', 'postgres');
    const pid = db.pid!;
    const crashed = new Promise((r) => db.once('crash', r));
    process.kill(pid, 'SIGKILL');
    await crashed;
    await until(() => db.state === 'running', 60000);
    const b = applier(entries, commit);
    await until(async () => {
      try {
        await b.open();
        return true;
      } catch {
        return false;
      }
    }, 30000);
    assert.equal(b.applied, 3, 'the applied index survived the crash with the data');
    commit.index = entries.length;
    b.notify();
    assert.ok(await b.waitApplied(entries.length, 10000), JSON.stringify(b.status()));
    assert.equal(b.diverged, null);
    // without the entries' sequence values, 'd' would get 35 here: the restarted server's
    // sequence continues from its WAL-logged value, 32 past the last number it handed out
    assert.deepEqual(await rows(port, 'SELECT id, v FROM t ORDER BY id'), [[1, 'a'], [2, 'b'], [5, 'd']]);
  });

  test('kill -9 right after applying (commits not yet flushed): whatever was lost is applied again, once', async () => {
    await rows(port, 'DROP TABLE t');
    await rows(port, 'UPDATE recall.applied SET idx = 0');
    await rows(port, 'CREATE TEMP TABLE flush_wal ()', 'postgres');
    const entries = logOf(ENTRIES);
    const commit = { index: entries.length };
    const a = applier(entries, commit);
    await a.open();
    a.notify();
    assert.ok(await a.waitApplied(entries.length, 10000));
    a.close();
    const crashed = new Promise((r) => db.once('crash', r));
    process.kill(db.pid!, 'SIGKILL');
    await crashed;
    await until(() => db.state === 'running', 60000);
    const b = applier(entries, commit);
    await until(async () => {
      try {
        await b.open();
        return true;
      } catch {
        return false;
      }
    }, 30000);
    // the index and the data it describes were lost or kept together
    const kept = b.applied;
    const exists = (await rows(port, "SELECT to_regclass('t') IS NOT NULL"))[0]![0];
    assert.equal(exists, kept >= 1, `applied ${kept}, table t exists: ${exists}`);
    b.notify();
    assert.ok(await b.waitApplied(entries.length, 10000), JSON.stringify(b.status()));
    assert.equal(b.diverged, null);
    assert.deepEqual(await rows(port, 'SELECT id, v FROM t ORDER BY id'), [[1, 'a'], [2, 'b'], [5, 'd']]);
  });
});
