// classifyPg over a table of statements: kinds, commands, tables written, details, spans of
// multi-statement texts, and the parser's errors. The parser is postgres' own (libpg-query).
import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import { loadPgParser } from '../../src/sql/pg-parse.js';
import { classifyPg, type PgStatement } from '../../src/sql/pg-classify.js';

type Expect = Partial<Omit<PgStatement, 'node' | 'offsets'>>;

const CASES: [string, Expect][] = [
  // reads
  ['SELECT 1', { kind: 'read', command: 'SELECT' }],
  ['select * from t where a = $1', { kind: 'read' }],
  ['SELECT abalance FROM pgbench_accounts WHERE aid = 42', { kind: 'read', tables: [] }],
  ['WITH x AS (SELECT 1) SELECT * FROM x', { kind: 'read' }],
  ['WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM r WHERE n < 5) SELECT * FROM r', { kind: 'read' }],
  ['VALUES (1), (2)', { kind: 'read' }],
  ['TABLE t', { kind: 'read' }],
  ['SELECT now(), random(), clock_timestamp(), gen_random_uuid()', { kind: 'read', writingFunctions: [] }],
  ['SELECT upper(name), count(*) FROM t GROUP BY 1', { kind: 'read' }],
  ['SELECT \'; DELETE FROM t\'', { kind: 'read' }],
  ["SELECT E'it\\'s; DELETE FROM t'", { kind: 'read' }],
  ['SELECT $$ ; DELETE FROM t; $$', { kind: 'read' }],
  ['SELECT $fn$ nextval(\'s\') $fn$', { kind: 'read', writingFunctions: [] }],
  ['SELECT "DELETE" FROM "Weird Table"', { kind: 'read' }],
  ['SELECT 1 -- DELETE FROM t', { kind: 'read' }],
  ['/* DELETE FROM t; */ SELECT 1', { kind: 'read' }],
  ['SELECT U&\'d\\0061t\\+000061\'', { kind: 'read' }],
  ['EXPLAIN SELECT * FROM t', { kind: 'read', command: 'EXPLAIN' }],
  ['EXPLAIN DELETE FROM t', { kind: 'read', command: 'EXPLAIN' }],
  ['SELECT currval(\'s\')', { kind: 'read', sessionFunctions: ['currval'] }],
  ['SELECT set_config(\'search_path\', \'x\', false)', { kind: 'read', sessionFunctions: ['set_config'] }],
  ['SELECT pg_sleep(0)', { kind: 'read' }],
  ['SELECT lower(x) FROM t', { kind: 'read', userFunctions: [] }],
  // writes
  ['INSERT INTO t VALUES (1)', { kind: 'write', command: 'INSERT', tables: ['t'] }],
  ['INSERT INTO s.t (a) SELECT a FROM u ORDER BY a', { kind: 'write', tables: ['s.t'] }],
  ['INSERT INTO "My Table" VALUES (1)', { kind: 'write', tables: ['"My Table"'] }],
  ['INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET v = excluded.v', { kind: 'write', tables: ['t'] }],
  ['INSERT INTO t AS x VALUES (1) RETURNING *', { kind: 'write', tables: ['t'] }],
  ['UPDATE pgbench_accounts SET abalance = abalance + -1234 WHERE aid = 56789', { kind: 'write', command: 'UPDATE', tables: ['pgbench_accounts'] }],
  ['UPDATE a SET v = b.v FROM b WHERE a.id = b.id', { kind: 'write', tables: ['a'] }],
  ['DELETE FROM t WHERE id = 1', { kind: 'write', command: 'DELETE', tables: ['t'] }],
  ['DELETE FROM ONLY public.t USING u WHERE t.id = u.id', { kind: 'write', tables: ['public.t'] }],
  ['MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN UPDATE SET b = 1 WHEN NOT MATCHED THEN INSERT VALUES (s.a, 1)', { kind: 'write', command: 'MERGE', tables: ['t'] }],
  ['WITH d AS (DELETE FROM a RETURNING *) INSERT INTO b SELECT * FROM d', { kind: 'write', tables: ['b', 'a'] }],
  ['WITH d AS (DELETE FROM a RETURNING *) SELECT * FROM d', { kind: 'write', command: 'SELECT', tables: ['a'] }],
  ['WITH u AS (UPDATE x.a SET v = 1 RETURNING id), i AS (INSERT INTO b VALUES (1) RETURNING id) SELECT 1', { kind: 'write', tables: ['x.a', 'b'] }],
  ['SELECT * FROM t FOR UPDATE', { kind: 'write', lockingRead: true, tables: [] }],
  ['SELECT * FROM t FOR SHARE SKIP LOCKED', { kind: 'write', lockingRead: true }],
  ['SELECT * FROM t WHERE id IN (SELECT id FROM u FOR KEY SHARE)', { kind: 'write', lockingRead: true }],
  ['SELECT nextval(\'s\')', { kind: 'write', writingFunctions: ['nextval'] }],
  ['SELECT setval(\'s\', 10)', { kind: 'write', writingFunctions: ['setval'] }],
  ['SELECT pg_advisory_lock(1)', { kind: 'write', sessionFunctions: ['pg_advisory_lock'] }],
  ['SELECT my_func(1)', { kind: 'write', userFunctions: ['my_func'], writingFunctions: ['my_func'] }],
  ['SELECT app.audit(1) FROM t', { kind: 'write', writingFunctions: ['app.audit'] }],
  ['SELECT pg_catalog.lower(\'A\')', { kind: 'read', userFunctions: [] }],
  ['SELECT 1 INTO newt FROM t', { kind: 'write', command: 'SELECT INTO', tables: ['newt'] }],
  ['SELECT 1 INTO TEMP tt', { kind: 'write', temporary: true, tables: ['tt'] }],
  ['COPY t FROM STDIN', { kind: 'write', command: 'COPY', tables: ['t'], copy: { direction: 'from', stdio: true } }],
  ['COPY t (a, b) FROM STDIN WITH (FORMAT csv)', { kind: 'write', tables: ['t'] }],
  ['EXPLAIN ANALYZE DELETE FROM t', { kind: 'write', tables: ['t'] }],
  ['EXPLAIN (ANALYZE, COSTS OFF) SELECT * FROM t', { kind: 'read' }],
  ['EXPLAIN (ANALYZE false) DELETE FROM t', { kind: 'read' }],
  ['CALL p(1)', { kind: 'write', command: 'CALL' }],
  ['DO $$ BEGIN INSERT INTO t VALUES (1); END $$', { kind: 'write', command: 'DO' }],
  ['LOCK TABLE t IN SHARE MODE', { kind: 'write', command: 'LOCK TABLE' }],
  // COPY TO
  ['COPY t TO STDOUT', { kind: 'read', copy: { direction: 'to', stdio: true } }],
  ['COPY (SELECT * FROM t) TO STDOUT WITH (FORMAT binary)', { kind: 'read' }],
  ['COPY (INSERT INTO t VALUES (1) RETURNING *) TO STDOUT', { kind: 'write', tables: ['t'] }],
  // ddl
  ['CREATE TABLE t (id serial PRIMARY KEY, created timestamptz DEFAULT now())', { kind: 'ddl', command: 'CREATE TABLE' }],
  ['CREATE TEMP TABLE tt (a int)', { kind: 'ddl', temporary: true }],
  ['CREATE TABLE x AS SELECT 1', { kind: 'ddl', command: 'CREATE TABLE AS', tables: ['x'] }],
  ['CREATE MATERIALIZED VIEW m AS SELECT 1', { kind: 'ddl', command: 'CREATE MATERIALIZED VIEW' }],
  ['ALTER TABLE t ADD COLUMN c int', { kind: 'ddl', command: 'ALTER TABLE', noTransactionBlock: false }],
  ['DROP TABLE IF EXISTS t, u CASCADE', { kind: 'ddl', command: 'DROP TABLE' }],
  ['DROP VIEW v', { kind: 'ddl', command: 'DROP VIEW' }],
  ['CREATE INDEX i ON t (a)', { kind: 'ddl', command: 'CREATE INDEX', noTransactionBlock: false }],
  ['GRANT SELECT ON t TO bob', { kind: 'ddl', command: 'GRANT' }],
  ['REVOKE ALL ON t FROM bob', { kind: 'ddl', command: 'REVOKE' }],
  ["COMMENT ON TABLE t IS 'x'", { kind: 'ddl', command: 'COMMENT' }],
  ['TRUNCATE a, s.b', { kind: 'ddl', command: 'TRUNCATE TABLE', tables: ['a', 's.b'] }],
  ['CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$', { kind: 'ddl', command: 'CREATE FUNCTION' }],
  ['CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()', { kind: 'ddl', command: 'CREATE TRIGGER' }],
  ['CREATE SEQUENCE s', { kind: 'ddl', command: 'CREATE SEQUENCE' }],
  ['ALTER SEQUENCE s RESTART', { kind: 'ddl' }],
  ['CREATE SCHEMA app', { kind: 'ddl' }],
  ['CREATE ROLE bob LOGIN', { kind: 'ddl', command: 'CREATE ROLE' }],
  ['CREATE EXTENSION IF NOT EXISTS pgcrypto', { kind: 'ddl', command: 'CREATE EXTENSION' }],
  ['REFRESH MATERIALIZED VIEW m', { kind: 'ddl', command: 'REFRESH MATERIALIZED VIEW' }],
  ['ALTER TABLE t RENAME TO u', { kind: 'ddl' }],
  ["CREATE TYPE mood AS ENUM ('a', 'b')", { kind: 'ddl' }],
  // not in a transaction block
  ['CREATE DATABASE d', { kind: 'ddl', command: 'CREATE DATABASE', noTransactionBlock: true }],
  ['DROP DATABASE IF EXISTS d', { kind: 'ddl', noTransactionBlock: true }],
  ['CREATE INDEX CONCURRENTLY i ON t (a)', { kind: 'ddl', noTransactionBlock: true }],
  ['DROP INDEX CONCURRENTLY i', { kind: 'ddl', noTransactionBlock: true }],
  ['REINDEX TABLE CONCURRENTLY t', { kind: 'maintenance', noTransactionBlock: true }],
  ['REINDEX TABLE t', { kind: 'maintenance', noTransactionBlock: false }],
  ['REINDEX DATABASE d', { kind: 'maintenance', noTransactionBlock: true }],
  ["CREATE TABLESPACE ts LOCATION '/x'", { kind: 'ddl', noTransactionBlock: true }],
  ['ALTER TABLE p DETACH PARTITION c CONCURRENTLY', { kind: 'ddl', noTransactionBlock: true }],
  ['ALTER DATABASE d SET TABLESPACE ts', { kind: 'ddl', noTransactionBlock: true }],
  ['VACUUM', { kind: 'maintenance', command: 'VACUUM', noTransactionBlock: true }],
  ['VACUUM (ANALYZE) t', { kind: 'maintenance', noTransactionBlock: true }],
  ['ANALYZE t', { kind: 'maintenance', command: 'ANALYZE', noTransactionBlock: false }],
  ['CLUSTER', { kind: 'maintenance', noTransactionBlock: true }],
  ['CLUSTER t USING i', { kind: 'maintenance', noTransactionBlock: false }],
  ['CHECKPOINT', { kind: 'maintenance' }],
  ['DISCARD ALL', { kind: 'session', noTransactionBlock: true }],
  // transaction control
  ['BEGIN', { kind: 'transaction', command: 'BEGIN', transaction: { action: 'begin' } }],
  ['BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE', { kind: 'transaction', transaction: { action: 'begin', isolation: 'serializable', readOnly: true, deferrable: true } }],
  ['START TRANSACTION READ WRITE', { kind: 'transaction', command: 'START TRANSACTION', transaction: { action: 'begin', readOnly: false } }],
  ['COMMIT', { kind: 'transaction', transaction: { action: 'commit' } }],
  ['END', { kind: 'transaction', transaction: { action: 'commit' } }],
  ['COMMIT AND CHAIN', { kind: 'transaction', transaction: { action: 'commit', chain: true } }],
  ['ROLLBACK', { kind: 'transaction', transaction: { action: 'rollback' } }],
  ['ABORT', { kind: 'transaction', transaction: { action: 'rollback' } }],
  ['SAVEPOINT sp1', { kind: 'transaction', transaction: { action: 'savepoint', savepoint: 'sp1' } }],
  ['RELEASE SAVEPOINT sp1', { kind: 'transaction', transaction: { action: 'release', savepoint: 'sp1' } }],
  ['ROLLBACK TO SAVEPOINT sp1', { kind: 'transaction', transaction: { action: 'rollback-to', savepoint: 'sp1' } }],
  ['SET TRANSACTION ISOLATION LEVEL REPEATABLE READ', { kind: 'transaction', transaction: { action: 'set', isolation: 'repeatable read' } }],
  // session
  ['SET search_path TO app, public', { kind: 'session', command: 'SET', settings: [{ name: 'search_path', action: 'set', local: false, values: ['app', 'public'] }] }],
  ["SET LOCAL statement_timeout = '5s'", { kind: 'session', settings: [{ name: 'statement_timeout', action: 'set', local: true, values: ['5s'] }] }],
  ["SET TIME ZONE 'UTC'", { kind: 'session', settings: [{ name: 'timezone', action: 'set', local: false, values: ['UTC'] }] }],
  ["SET recall.consistency = 'linearizable'", { kind: 'session', settings: [{ name: 'recall.consistency', action: 'set', local: false, values: ['linearizable'] }] }],
  ['SET datestyle TO DEFAULT', { kind: 'session', settings: [{ name: 'datestyle', action: 'default', local: false }] }],
  ['RESET ALL', { kind: 'session', command: 'RESET', settings: [{ name: null, action: 'reset', local: false }] }],
  ['SHOW server_version', { kind: 'session', command: 'SHOW' }],
  ['LISTEN ch', { kind: 'session', notification: { action: 'listen', channel: 'ch' } }],
  ['UNLISTEN *', { kind: 'session', notification: { action: 'unlisten', channel: null } }],
  ["NOTIFY ch, 'hello'", { kind: 'session', notification: { action: 'notify', channel: 'ch' } }],
  ['PREPARE p (int) AS INSERT INTO t VALUES ($1)', { kind: 'session', command: 'PREPARE', prepared: { action: 'prepare', name: 'p', bodyKind: 'write' }, tables: ['t'] }],
  ['PREPARE q AS SELECT 1', { kind: 'session', prepared: { action: 'prepare', name: 'q', bodyKind: 'read' } }],
  ['EXECUTE p (1)', { kind: 'execute', prepared: { action: 'execute', name: 'p' } }],
  ['DEALLOCATE p', { kind: 'session', prepared: { action: 'deallocate', name: 'p' } }],
  ['DEALLOCATE ALL', { kind: 'session', prepared: { action: 'deallocate', name: null } }],
  ['DECLARE c CURSOR WITH HOLD FOR SELECT * FROM t', { kind: 'session', cursor: { action: 'declare', name: 'c', hold: true } }],
  ['DECLARE c CURSOR FOR SELECT * FROM t FOR UPDATE', { kind: 'write', cursor: { action: 'declare', name: 'c', hold: false } }],
  ['FETCH 10 FROM c', { kind: 'session', command: 'FETCH', cursor: { action: 'fetch', name: 'c' } }],
  ['MOVE NEXT IN c', { kind: 'session', command: 'MOVE' }],
  ['CLOSE c', { kind: 'session', cursor: { action: 'close', name: 'c' } }],
  ['CLOSE ALL', { kind: 'session', cursor: { action: 'close', name: null } }],
  ["LOAD 'auto_explain'", { kind: 'other' }],
];

const REFUSED: [string, RegExp][] = [
  ["PREPARE TRANSACTION 'x'", /two-phase commit/],
  ["COMMIT PREPARED 'x'", /one server only/],
  ["ROLLBACK PREPARED 'x'", /one server only/],
  ["COPY t FROM '/etc/passwd'", /FROM STDIN/],
  ["COPY t FROM PROGRAM 'date'", /FROM STDIN/],
  ["COPY t TO '/tmp/out'", /TO STDOUT/],
  ['ALTER SYSTEM SET work_mem = 1', /each server/],
  ["ALTER SYSTEM SET work_mem = '8MB'", /configuration file of one server/],
  ["SET TRANSACTION SNAPSHOT '00000003-0000001B-1'", /snapshot/],
];

function pick(st: PgStatement, keys: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of keys) out[k] = (st as unknown as Record<string, unknown>)[k];
  return out;
}

describe('classifyPg', () => {
  before(() => loadPgParser());

  test(`table of ${CASES.length} statements`, () => {
    assert.ok(CASES.length >= 80);
    for (const [sql, expect] of CASES) {
      const out = classifyPg(sql);
      assert.equal(out.length, 1, sql);
      assert.deepEqual(pick(out[0]!, Object.keys(expect)), expect, sql);
      assert.equal(out[0]!.refuse, undefined, `${sql}: not refused`);
      if (out[0]!.kind !== 'write' && out[0]!.kind !== 'ddl') assert.ok(!out[0]!.tables.length || out[0]!.prepared, sql);
    }
  });

  test('refused statements name the way round', () => {
    for (const [sql, re] of REFUSED) {
      const [st] = classifyPg(sql);
      assert.equal(st!.refuse?.sqlstate, '0A000', sql);
      assert.match(st!.refuse!.message, re, sql);
    }
  });

  test('a multi-statement text: spans, chunks that tile the text, comments and dollar quotes', () => {
    const sql = "/* lead */ SELECT 1; -- note\nINSERT INTO t VALUES ($$;$$, E'\\';');  ;\nBEGIN ; COMMIT -- tail";
    const out = classifyPg(sql);
    assert.deepEqual(out.map((s) => s.kind), ['read', 'write', 'transaction', 'transaction']);
    assert.deepEqual(out.map((s) => s.text), ['SELECT 1', "INSERT INTO t VALUES ($$;$$, E'\\';')", 'BEGIN', 'COMMIT']);
    for (const s of out) assert.equal(sql.slice(s.start, s.end), s.text);
    assert.equal(out[0]!.chunkStart, 0);
    for (let i = 1; i < out.length; i++) assert.equal(out[i]!.chunkStart, out[i - 1]!.chunkEnd);
    assert.equal(out.at(-1)!.chunkEnd, sql.length);
    assert.equal(out.map((s) => sql.slice(s.chunkStart, s.chunkEnd)).join(''), sql);
    assert.ok(sql.slice(out[0]!.chunkStart, out[0]!.chunkEnd).startsWith('/* lead */'));
  });

  test('spans are string indices also after non-ASCII text (the parser counts UTF-8 bytes)', () => {
    const sql = "SELECT 'héllo 😀'; UPDATE \"tablé\" SET v = 'ü' WHERE k = 1; SELECT 2";
    const out = classifyPg(sql);
    assert.deepEqual(out.map((s) => s.text), ["SELECT 'héllo 😀'", "UPDATE \"tablé\" SET v = 'ü' WHERE k = 1", 'SELECT 2']);
    assert.deepEqual(out[1]!.tables, ['"tablé"']);
  });

  test('empty texts and texts of comments only have no statements', () => {
    for (const sql of ['', '   ', '-- nothing', '/* x */ ;; ;']) assert.deepEqual(classifyPg(sql), [], JSON.stringify(sql));
  });

  test("syntax errors carry postgres' message and 1-based position", () => {
    const [st] = classifyPg('SELECT 1; SELEC 2');
    assert.equal(st!.kind, 'invalid');
    assert.equal(st!.error!.sqlstate, '42601');
    assert.equal(st!.error!.message, 'syntax error at or near "SELEC"');
    assert.equal(st!.error!.position, 11);
    const [u] = classifyPg("SELECT 'é' FROM WHERE");
    assert.equal(u!.error!.position, 17); // characters, not bytes
    const [v] = classifyPg("SELECT 'unterminated");
    assert.match(v!.error!.message, /unterminated quoted string/);
    const [w] = classifyPg('SELECT 1\0; DROP TABLE t');
    assert.equal(w!.kind, 'invalid');
  });

  test('readOnlyFunctions keeps a SELECT of a known read-only user function a read', () => {
    assert.equal(classifyPg('SELECT app.price(1)', { readOnlyFunctions: new Set(['app.price']) })[0]!.kind, 'read');
    assert.equal(classifyPg('SELECT price(1)', { readOnlyFunctions: new Set(['price']) })[0]!.kind, 'read');
    assert.equal(classifyPg('SELECT other.price(1)', { readOnlyFunctions: new Set(['price']) })[0]!.kind, 'write');
  });
});
