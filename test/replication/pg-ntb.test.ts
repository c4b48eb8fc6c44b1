// Statements that cannot run in a transaction block ('ntb' entries) against a real postgres: the
// leader's outcome arrives in a later 'ntbo' entry and the applier compares it with its own, as it
// does for the items of a 'w' entry: the same tag, or an error with the same SQLSTATE on both sides,
// is fine; anything else stops the applier (diverged). An outcome without a statement run here
// (the lane ran it, or a restart came between) is passed over.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ManagedPostgres } from '../../src/supervisor/postgres.js';
import type { PgApplier } from '../../src/replication/pg/applier.js';
import { decodePgEntry, encodePgEntry, type PgEntry, type PgOutcome } from '../../src/replication/pg/entry.js';
import type { Entry } from '../../src/consensus/types.js';
import { logger } from '../../src/util/log.js';
import { PgServers, pgAdminQuery, memoryLogApplier, until } from '../harness/pg-fixture.js';

let seq = 0;
const ntb = (q: string, db = 'app'): PgEntry => ({ t: 'ntb', o: { n: 9, s: ++seq }, db, role: 'alice', set: { timezone: 'UTC' }, item: { q, out: {} } });
const ntbo = (of: number, out: PgOutcome): PgEntry => ({ t: 'ntbo', o: { n: 9, s: ++seq }, of, out });

const rows = (port: number, sql: string, database = 'app'): Promise<unknown[][]> => pgAdminQuery(port, sql, database);

describe('ntb outcomes', () => {
  const servers = new PgServers({ prefix: 'recall-pgntb-', names: ['db'], database: 'app', roleSql: 'CREATE ROLE alice LOGIN CREATEDB', restart: { backoffMsMin: 100, backoffMsMax: 1000 } });
  let db: ManagedPostgres;
  let port = 0;
  const log = logger('test-pg-ntb');
  const entries: Entry[] = [];
  const commit = { index: 0 };
  const diverged: string[] = [];
  let a: PgApplier;

  function add(...es: PgEntry[]): number {
    for (const e of es) entries.push({ term: 1, index: entries.length + 1, type: 0, data: encodePgEntry(e) } as Entry);
    return entries.length;
  }

  before(async () => {
    db = (await servers.start())[0]!;
    port = db.dsn.port;
    await rows(port, 'CREATE TABLE t (id int, v text); ALTER TABLE t OWNER TO alice; INSERT INTO t VALUES (1, $$a$$), (1, $$b$$)');
    a = memoryLogApplier(db, log, entries, commit, (r) => diverged.push(r));
    await a.open();
  });

  after(async () => {
    a?.close();
    await servers.stop();
  });

  async function applyTo(index: number): Promise<void> {
    commit.index = index;
    a.notify();
    assert.ok(await a.waitApplied(index, 20000), `applied ${a.applied}: ${JSON.stringify(a.status())}`);
  }

  test('the entry decodes; a malformed outcome entry does not', () => {
    const e = ntbo(3, { e: '42P04' });
    assert.deepEqual(decodePgEntry(encodePgEntry(e)), e);
    for (const bad of [{ of: 0 }, { of: 'x' }, { out: { e: 5 } }, { out: null }]) {
      assert.throws(() => decodePgEntry(Buffer.from(JSON.stringify({ ...e, ...bad }))));
    }
  });

  test('the same outcome on both sides passes: ok, and the same error', async () => {
    const i1 = add(ntb('CREATE DATABASE d1', 'postgres'));
    add(ntbo(i1, { tag: 'CREATE DATABASE' }));
    // fails here as it did on the leader: the same SQLSTATE is no divergence
    const i3 = add(ntb('CREATE DATABASE d1', 'postgres'));
    add(ntbo(i3, { e: '42P04' }));
    const i5 = add(ntb('VACUUM t'));
    add(ntbo(i5, { tag: 'VACUUM' }));
    // a unique index built concurrently over duplicates fails the same way on both sides
    const i7 = add(ntb('CREATE UNIQUE INDEX CONCURRENTLY t_id ON t (id)'));
    const last = add(ntbo(i7, { e: '23505' }));
    await applyTo(last);
    assert.deepEqual(diverged, []);
    assert.equal(a.diverged, null);
    assert.deepEqual(await rows(port, "SELECT datname FROM pg_database WHERE datname = 'd1'", 'postgres'), [['d1']]);
  });

  test('an outcome for a statement this applier did not run is passed over', async () => {
    // index 1 ran long ago (its outcome was taken); 2 is not an ntb entry at all
    const last = add(ntbo(1, { e: '42P04' }), ntbo(2, { tag: 'X' }));
    await applyTo(last);
    assert.equal(a.diverged, null);
  });

  test('a different outcome stops the applier: ok here, an error on the leader', async () => {
    const i = add(ntb('CREATE DATABASE d2', 'postgres'));
    const o = add(ntbo(i, { e: '42P04' }));
    add(ntb('CREATE DATABASE d3', 'postgres'));
    commit.index = entries.length;
    a.notify();
    await until(() => a.diverged !== null, 20000);
    assert.equal(a.applied, i, 'stopped at the outcome entry');
    assert.equal(a.diverged!.index, o);
    assert.match(a.diverged!.reason, new RegExp(`the statement of entry ${i} gave 'CREATE DATABASE' here but error 42P04 on the leader \\(node 9\\): CREATE DATABASE d2`));
    assert.equal(diverged.length, 1);
    assert.deepEqual(await rows(port, "SELECT datname FROM pg_database WHERE datname IN ('d2', 'd3') ORDER BY 1", 'postgres'), [['d2']], 'nothing after it ran');
  });
});
