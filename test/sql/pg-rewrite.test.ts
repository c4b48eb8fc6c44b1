// rewritePgWrite against a real postgres: the rewritten statements are valid, give the leader's
// fixed values (the same as postgres computes from the same clock, in the session's TimeZone),
// and two databases that run the same rewritten writes at different times end with the same
// table md5 — while the same writes unrewritten do not.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { ManagedPostgres } from '../../src/supervisor/postgres.js';
import { loadPgParser } from '../../src/sql/pg-parse.js';
import { classifyPg } from '../../src/sql/pg-classify.js';
import { rewritePgWrite, type PgWriteContext } from '../../src/sql/pg-rewrite.js';
import { PG_COLUMNS_SQL, volatileDefaults, type PgColumnRow, type PgTableDefaults } from '../../src/sql/pg-defaults.js';
import { tempDir } from '../harness/tmp.js';

const SCHEMA = `
  CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
  CREATE TABLE ev (
    id serial PRIMARY KEY,
    a int,
    created timestamptz DEFAULT now(),
    day date DEFAULT current_date,
    tok uuid DEFAULT gen_random_uuid(),
    r float8 DEFAULT random(),
    later timestamptz DEFAULT (now() + interval '1 day'),
    note text DEFAULT 'plain'
  );
  CREATE TABLE idt (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text, at timestamp(0) DEFAULT localtimestamp(0));
  CREATE TABLE log (id serial PRIMARY KEY, msg text, ts timestamptz, u uuid, x float8, d date, t timetz);
`;

/** Statements of a determinism workload: time, random and uuid in values and defaults. */
const WORKLOAD = [
  "INSERT INTO ev (a) VALUES (1), (2), (3)",
  'INSERT INTO ev VALUES (DEFAULT, 4)',
  'INSERT INTO ev DEFAULT VALUES',
  "INSERT INTO ev (a, created, note) VALUES (5, DEFAULT, 'x'), (6, now() - interval '1 hour', DEFAULT)",
  'INSERT INTO ev AS e (a) VALUES (7) ON CONFLICT (id) DO UPDATE SET created = DEFAULT',
  "INSERT INTO log (msg, ts, u, x, d, t) VALUES ('a', now(), gen_random_uuid(), random(), current_date, current_time(3))",
  "INSERT INTO log (msg, ts, u, x) VALUES ('b', clock_timestamp(), uuid_generate_v4(), random() * 100), ('c', statement_timestamp(), gen_random_uuid(), random())",
  "INSERT INTO log (msg, ts) SELECT 'copy ' || msg, now() FROM log WHERE msg = 'a' ORDER BY id",
  "UPDATE ev SET created = DEFAULT, later = now() + interval '2 days' WHERE a = 2",
  "UPDATE log SET ts = CURRENT_TIMESTAMP(2), d = CURRENT_DATE WHERE msg = 'b'",
  "WITH moved AS (DELETE FROM log WHERE msg = 'c' RETURNING msg) INSERT INTO log (msg, ts) SELECT msg || ' moved', localtimestamp FROM moved",
  "INSERT INTO idt (v) VALUES ('x'), ('y')",
  "INSERT INTO idt (v, at) VALUES ('z', DEFAULT)",
  "INSERT INTO log (msg, x) SELECT 'one row', random()",
  'INSERT INTO idt (v) SELECT msg FROM log WHERE msg IS DISTINCT FROM NULL ORDER BY id',
  'INSERT INTO idt OVERRIDING SYSTEM VALUE SELECT 100 + id, msg FROM log ORDER BY id',
  'INSERT INTO ev (a) SELECT 100',
  'INSERT INTO ev (a) (SELECT 101)',
];

async function connect(db: ManagedPostgres, database: string, timeZone = 'UTC'): Promise<pg.Client> {
  const c = new pg.Client({ ...db.dsn, database });
  await c.connect();
  await c.query(`SET TimeZone = '${timeZone}'`);
  return c;
}

/** A write context as the leader would fix it, with seeded random and uuid sources. */
function context(seed: number, tables?: Map<string, PgTableDefaults>): PgWriteContext {
  let s = seed >>> 0;
  const next = () => {
    // xorshift32: deterministic for the test
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
  const hex = (n: number) => Array.from({ length: n }, () => Math.floor(next() * 16).toString(16)).join('');
  return {
    transactionTimestamp: '2026-11-24 01:02:03.456789+00',
    statementTimestamp: '2026-11-24 01:02:03.5+00',
    clockTimestamp: '2026-11-24 01:02:03.500123+00',
    random: next,
    uuid: () => `${hex(8)}-${hex(4)}-4${hex(3)}-8${hex(3)}-${hex(12)}`,
    ...(tables ? { tables } : {}),
  };
}

async function defaultsOf(c: pg.Client, tables: string[]): Promise<Map<string, PgTableDefaults>> {
  const out = new Map<string, PgTableDefaults>();
  for (const t of tables) out.set(t, volatileDefaults((await c.query<PgColumnRow>(PG_COLUMNS_SQL, [t])).rows));
  return out;
}

async function md5(c: pg.Client, table: string): Promise<string> {
  const { rows } = await c.query<{ m: string }>(`SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY id), '')) AS m FROM ${table} x`);
  return rows[0]!.m;
}

describe('rewritePgWrite on a real postgres', () => {
  const dir = tempDir('recall-pgrw-');
  chmodSync(dir.path, 0o755);
  const db = new ManagedPostgres({ dataDir: join(dir.path, 'db'), port: 0, startTimeoutMs: 60000, stopTimeoutMs: 10000, autoRestart: false });
  let admin: pg.Client;

  before(async () => {
    await loadPgParser();
    await db.start();
    admin = await connect(db, 'postgres');
    for (const d of ['r1', 'r2', 'p1', 'p2']) {
      await admin.query(`CREATE DATABASE ${d}`);
      const c = await connect(db, d);
      await c.query(SCHEMA);
      await c.end();
    }
  });
  after(async () => {
    await admin?.end().catch(() => undefined);
    await db.stop();
    dir.remove();
  });

  test('the same rewritten workload on two databases at different times gives equal tables; unrewritten it does not', async () => {
    const results: Record<string, string[]> = {};
    // Both run with the same TimeZone: it is part of the session context Recall records with an
    // entry (current_date and localtime are evaluated in it; see the next test).
    for (const [name, rewrite] of [['r1', true], ['r2', true], ['p1', false], ['p2', false]] as const) {
      const c = await connect(db, name, 'UTC');
      const tables = await defaultsOf(c, ['ev', 'idt', 'log']);
      const ctx = context(42, tables);
      for (const sql of WORKLOAD) {
        const r = rewrite ? rewritePgWrite(sql, ctx) : { ok: true as const, sql };
        assert.ok(r.ok, `${sql}: ${r.ok ? '' : r.refusal.message}`);
        await c.query(r.sql);
        await new Promise((res) => setTimeout(res, 3)); // the clock moves between statements
      }
      results[name] = [await md5(c, 'ev'), await md5(c, 'idt'), await md5(c, 'log')];
      await c.end();
    }
    assert.deepEqual(results.r1, results.r2);
    assert.notDeepEqual(results.p1, results.p2, 'without the rewrite the replicas differ (the test can fail)');
    const c = await connect(db, 'r1');
    try {
      const ev = (await c.query("SELECT count(*)::int AS n, count(DISTINCT tok)::int AS toks, count(DISTINCT r)::int AS rs, min(created)::text AS c FROM ev WHERE a IS DISTINCT FROM 6")).rows[0];
      assert.equal(ev.n, 9);
      assert.equal(ev.toks, 9, 'each inserted row got its own uuid');
      assert.equal(ev.rs, 9, 'and its own random value');
      assert.equal(ev.c, '2026-11-24 01:02:03.456789+00');
      const later = (await c.query("SELECT (later - created)::text AS d FROM ev WHERE a = 1")).rows[0];
      assert.equal(later.d, '1 day');
      const log = (await c.query("SELECT msg, ts::text, x FROM log ORDER BY id")).rows;
      assert.equal(log[0].ts, '2026-11-24 01:02:03.456789+00');
      assert.ok(log.every((r: { x: number | null }) => r.x === null || (r.x >= 0 && r.x < 100)));
      assert.equal(log.find((r: { msg: string }) => r.msg === 'b').ts, '2026-11-24 01:02:03.46+00', 'CURRENT_TIMESTAMP(2) of the transaction time');
      const idt = (await c.query('SELECT id::int, v, at::text FROM idt ORDER BY id')).rows;
      assert.deepEqual(idt.slice(0, 3), [
        { id: 1, v: 'x', at: '2026-11-24 01:02:03' },
        { id: 2, v: 'y', at: '2026-11-24 01:02:03' },
        { id: 3, v: 'z', at: '2026-11-24 01:02:03' },
      ]);
      assert.ok(idt.length > 6);
      assert.ok(idt.every((r: { at: string }) => r.at === '2026-11-24 01:02:03'), 'INSERT ... SELECT got the default written out');
      const single = (await c.query('SELECT count(DISTINCT tok)::int AS n, min(created)::text AS c FROM ev WHERE a >= 100')).rows[0];
      assert.deepEqual(single, { n: 2, c: '2026-11-24 01:02:03.456789+00' });
    } finally {
      await c.end();
    }
  });

  test('rewritten time keywords equal what postgres computes from the same transaction time, in any TimeZone', async () => {
    const sql = 'SELECT now()::text, current_timestamp(3)::text, localtimestamp(0)::text, localtimestamp::text, current_time(2)::text, current_time::text, localtime::text, localtime(1)::text, current_date::text, transaction_timestamp()::text';
    for (const zone of ['UTC', 'Asia/Kolkata', 'America/St_Johns']) {
      const c = await connect(db, 'r1', zone);
      try {
        await c.query('BEGIN');
        const real = (await c.query({ text: sql, rowMode: 'array' })).rows[0] as string[];
        await c.query('COMMIT');
        const ctx = { ...context(1), transactionTimestamp: real[0]!, statementTimestamp: real[0]! };
        const r = rewritePgWrite(sql, ctx);
        assert.ok(r.ok && r.changed);
        assert.doesNotMatch(r.sql, /now\(\)|current_|localtime/i);
        const fixed = (await c.query({ text: r.sql, rowMode: 'array' })).rows[0];
        assert.deepEqual(fixed, real, zone);
      } finally {
        await c.end();
      }
    }
  });

  test('timeofday(), random(), gen_random_uuid(): types and formats stay those of the functions', async () => {
    const c = await connect(db, 'r1', 'Europe/Paris');
    try {
      const r = rewritePgWrite("SELECT timeofday(), pg_typeof(random()), random(), gen_random_uuid(), pg_typeof(gen_random_uuid()), pg_typeof(clock_timestamp())", context(7));
      assert.ok(r.ok);
      const row = (await c.query({ text: r.sql, rowMode: 'array' })).rows[0] as string[];
      const realTod = (await c.query('SELECT timeofday()')).rows[0].timeofday as string;
      const shape = /^[A-Z][a-z]{2} [A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d\.\d{6} \d{4} \S+$/;
      assert.match(realTod, shape);
      assert.equal(row[0], 'Tue Nov 24 02:02:03.500123 2026 CET');
      assert.equal(row[1], 'double precision');
      assert.ok(Number(row[2]) >= 0 && Number(row[2]) < 1);
      assert.match(row[3]!, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-8[0-9a-f]{3}-[0-9a-f]{12}$/);
      assert.deepEqual(row.slice(4), ['uuid', 'timestamp with time zone']);
    } finally {
      await c.end();
    }
  });

  test('refused writes: SQLSTATE 0A000 and a message that names the construct and the way round', async () => {
    const c = await connect(db, 'r1');
    const tables = await defaultsOf(c, ['ev', 'log', 'idt']);
    await c.end();
    const cases: [string, RegExp][] = [
      ['UPDATE log SET x = random()', /random\(\) is evaluated once per row/],
      ['INSERT INTO log (x) SELECT random() FROM generate_series(1, 3)', /once per row/],
      ['INSERT INTO log (u) SELECT gen_random_uuid() FROM log', /gen_random_uuid\(\) is evaluated once per row/],
      ['INSERT INTO ev (a) SELECT 1 FROM log', /column tok has DEFAULT gen_random_uuid\(\), a new value for each row/],
      ["INSERT INTO idt (v) SELECT msg FROM log UNION SELECT 'x'", /INSERT \.\.\. SELECT leaves column at .* UNION/],
      ['INSERT INTO idt SELECT * FROM idt', /SELECT \* and no column list/],
      ['INSERT INTO log (msg) VALUES (txid_current()::text)', /txid_current\(\).*transaction ids/],
      ['INSERT INTO log (msg) VALUES (pg_backend_pid()::text)', /pg_backend_pid/],
      ['INSERT INTO log (msg) VALUES (inet_client_addr()::text)', /inet_client_addr/],
      ["INSERT INTO log (x) VALUES (currval('log_id_seq'))", /currval\(\).*RETURNING/],
      ["INSERT INTO log (msg) VALUES (current_setting('application_name'))", /current_setting\('application_name'\)/],
      ['DELETE FROM log WHERE id IN (SELECT id FROM log LIMIT 2)', /LIMIT\/OFFSET without ORDER BY/],
      ["UPDATE log SET msg = 'x' WHERE ctid = '(0,1)'", /system column ctid/],
      ['INSERT INTO log (ts) SELECT * FROM now()', /as a table in FROM/],
      ['ALTER TABLE log ADD COLUMN seen timestamptz DEFAULT now()', /ADD COLUMN seen/],
      ['CREATE MATERIALIZED VIEW mv AS SELECT now() AS t', /MATERIALIZED VIEW/],
      ['PREPARE p AS INSERT INTO log (ts) VALUES (now())', /PREPARE/],
      ['COPY ev (a) FROM STDIN', /COPY FROM leaves column created/],
      ['MERGE INTO ev USING log ON ev.id = log.id WHEN NOT MATCHED THEN INSERT (a) VALUES (1)', /MERGE \.\.\. INSERT leaves column created/],
      ['INSERT INTO log (msg) SELECT msg FROM log TABLESAMPLE BERNOULLI (10)', /TABLESAMPLE/],
      ['CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.ts := now(); RETURN NEW; END $$', /function body calls now\(\)/],
      ['CREATE FUNCTION f() RETURNS timestamptz LANGUAGE sql BEGIN ATOMIC SELECT CURRENT_TIMESTAMP; END', /function body calls/],
      ["CREATE PROCEDURE p() LANGUAGE sql AS 'INSERT INTO log (u) VALUES (pg_catalog.gen_random_uuid())'", /gen_random_uuid\(\)/],
      ['DO $$ BEGIN INSERT INTO log (x) VALUES (random()); END $$', /DO block calls random\(\)/],
    ];
    for (const [sql, re] of cases) {
      const r = rewritePgWrite(sql, context(3, tables));
      assert.equal(r.ok, false, sql);
      if (!r.ok) {
        assert.equal(r.refusal.sqlstate, '0A000', sql);
        assert.match(r.refusal.message, re, sql);
      }
    }
    // RETURNING values go to the client only; LIMIT with ORDER BY and EXISTS (... LIMIT 1) pick no arbitrary rows
    for (const sql of [
      'INSERT INTO log (msg) VALUES (1) RETURNING random(), pg_backend_pid()',
      'DELETE FROM log WHERE id IN (SELECT id FROM log ORDER BY id LIMIT 2)',
      'DELETE FROM log WHERE EXISTS (SELECT 1 FROM ev LIMIT 1)',
      'ALTER TABLE log ADD COLUMN seen2 timestamptz',
      'CREATE TABLE t2 (created timestamptz DEFAULT now(), r float8 DEFAULT random())',
      "CREATE FUNCTION g() RETURNS text LANGUAGE plpgsql AS $$ BEGIN RETURN 'now()'; -- random()\n END $$",
      "CREATE FUNCTION h(x timestamptz) RETURNS timestamptz LANGUAGE sql AS 'SELECT x.now FROM (SELECT x AS now) x'",
      'DO $$ BEGIN INSERT INTO log (msg) VALUES (1); END $$',
    ]) {
      const r = rewritePgWrite(sql, context(3, tables));
      assert.ok(r.ok, `${sql}: ${r.ok ? '' : r.refusal.message}`);
    }
  });

  test('a rewritten statement runs: USING of ALTER COLUMN TYPE, CREATE TABLE AS, CALL arguments, DEFAULT in ON CONFLICT', async () => {
    const c = await connect(db, 'r2');
    try {
      const tables = await defaultsOf(c, ['ev']);
      const ctx = context(9, tables);
      for (const sql of [
        'CREATE TABLE snap AS SELECT id, now() AS taken FROM ev ORDER BY id',
        "ALTER TABLE snap ALTER COLUMN taken TYPE text USING (taken + (now() - now()))::text",
        'CREATE PROCEDURE stamp(t timestamptz) LANGUAGE sql AS $$ UPDATE snap SET taken = t::text $$',
        'CALL stamp(now())',
        'PREPARE st (timestamptz) AS UPDATE snap SET taken = $1::text',
        'EXECUTE st (now())',
        'INSERT INTO ev (id, a) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET tok = DEFAULT, created = DEFAULT',
      ]) {
        const r = rewritePgWrite(sql, ctx);
        assert.ok(r.ok, `${sql}: ${r.ok ? '' : r.refusal.message}`);
        await c.query(r.sql);
      }
      const { rows } = await c.query('SELECT DISTINCT taken FROM snap');
      assert.deepEqual(rows, [{ taken: '2026-11-24 01:02:03.456789+00' }]);
      const ev = (await c.query('SELECT created::text FROM ev WHERE id = 1')).rows[0];
      assert.equal(ev.created, '2026-11-24 01:02:03.456789+00');
    } finally {
      await c.end();
    }
  });

  test('classification agrees with the server on what cannot run in a transaction block', async () => {
    const c = await connect(db, 'p1');
    try {
      for (const sql of ['VACUUM', 'CREATE INDEX CONCURRENTLY ci ON log (msg)', 'CREATE DATABASE nope', 'REINDEX TABLE CONCURRENTLY log', 'DISCARD ALL', 'CLUSTER', 'ANALYZE log', 'CREATE INDEX ci2 ON log (msg)', 'REINDEX TABLE log', 'DROP INDEX CONCURRENTLY IF EXISTS ci9']) {
        const [st] = classifyPg(sql);
        await c.query('BEGIN');
        const refused = await c.query(sql).then(() => false, (e: Error) => /cannot run inside a transaction block/.test(e.message));
        await c.query('ROLLBACK');
        assert.equal(st!.noTransactionBlock, refused, sql);
      }
    } finally {
      await c.end();
    }
  });
});
