// The classifier checked against a real mariadbd: what it calls a read runs in a READ ONLY
// transaction and what it calls a write is refused there; implicitCommit matches what the
// server commits; the client-script splitter and the multi-statement splitter cut
// mariadb-dump output where the mariadb client and the server cut it.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import mysql from 'mysql2/promise';
import { startTestMariaDB, type TestMariaDB } from '../harness/mariadb.js';
import { classifyMysql } from '../../src/sql/mysql-classify.js';
import { splitClientScript } from '../../src/sql/mysql-client-script.js';
import { readFixture } from './fixtures.js';
import { TIME_FUNCTIONS, UNSAFE_FUNCTIONS } from '../../src/sql/mysql-unsafe.js';

const ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION = 1792;

const SCHEMA = [
  'CREATE DATABASE app',
  'USE app',
  'CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, a INT, b VARCHAR(20)) ENGINE=InnoDB',
  'CREATE TABLE u (id INT AUTO_INCREMENT PRIMARY KEY, a INT, b VARCHAR(20)) ENGINE=InnoDB',
  'CREATE TABLE marker (id INT) ENGINE=InnoDB',
  "CREATE TABLE sbtest1 (id INTEGER NOT NULL AUTO_INCREMENT, k INTEGER DEFAULT '0' NOT NULL, c CHAR(120) DEFAULT '' NOT NULL, pad CHAR(60) DEFAULT '' NOT NULL, PRIMARY KEY (id)) /*! ENGINE = innodb */",
  "INSERT INTO sbtest1 (k, c, pad) VALUES (1, 'a', 'b'), (2, 'c', 'd')",
  'INSERT INTO t (a, b) VALUES (1, \'x\'), (2, \'y\')',
  'INSERT INTO u (a, b) VALUES (1, \'x\')',
  'CREATE SEQUENCE seq START WITH 1',
  'CREATE PROCEDURE p() BEGIN INSERT INTO u (a) VALUES (9); END',
  'CREATE PROCEDURE r() BEGIN SELECT 1; END',
];

// Statements that must run inside START TRANSACTION READ ONLY (reads) or be refused there (writes).
const READ_ONLY_CASES = [
  'SELECT c FROM sbtest1 WHERE id=1',
  'SELECT c FROM sbtest1 WHERE id BETWEEN 1 AND 2',
  'SELECT SUM(k) FROM sbtest1 WHERE id BETWEEN 1 AND 2',
  'SELECT c FROM sbtest1 WHERE id BETWEEN 1 AND 2 ORDER BY c',
  'SELECT DISTINCT c FROM sbtest1 WHERE id BETWEEN 1 AND 2 ORDER BY c',
  'SELECT AVG(id) FROM (SELECT * FROM sbtest1 FORCE KEY (PRIMARY) LIMIT 10000) t',
  'SELECT * FROM t WHERE id = 1 FOR UPDATE',
  'SELECT * FROM t WHERE id = 1 LOCK IN SHARE MODE',
  '(SELECT 1) UNION (SELECT 2)',
  'WITH x AS (SELECT 1 AS a) SELECT * FROM x',
  'VALUES (1, 2), (3, 4)',
  'SHOW TABLES',
  'DESCRIBE t',
  'EXPLAIN UPDATE t SET a = 1',
  'EXPLAIN DELETE FROM t WHERE id = 1',
  'EXPLAIN INSERT INTO t (a) VALUES (1)',
  'CHECKSUM TABLE t',
  'DO 1 + 1',
  'SELECT LAST_INSERT_ID(), FOUND_ROWS(), ROW_COUNT()',
  "SELECT * FROM t WHERE b = 'FOR UPDATE; DELETE FROM t'",
  'SELECT PREVIOUS VALUE FOR seq',
  'UPDATE sbtest1 SET k=k+1 WHERE id=1',
  "UPDATE sbtest1 SET c='x' WHERE id=1",
  'DELETE FROM sbtest1 WHERE id=2',
  "INSERT INTO sbtest1 (id, k, c, pad) VALUES (0, 5018, 'c', 'p')",
  'INSERT INTO t (a) VALUES (1)',
  'INSERT INTO t (a) SELECT a FROM u',
  'INSERT INTO t (id, a) VALUES (1, 1) ON DUPLICATE KEY UPDATE a = a + 1',
  "REPLACE INTO t VALUES (1, 2, 'z')",
  'UPDATE t JOIN u ON t.id = u.id SET t.a = u.a',
  'DELETE t FROM t JOIN u ON t.id = u.id',
  'CALL p()',
  'SELECT NEXTVAL(seq)',
  'SELECT NEXT VALUE FOR seq',
  'DO SETVAL(seq, 100)',
  'BEGIN NOT ATOMIC INSERT INTO u (a) VALUES (7); END',
  '/*!40000 UPDATE t SET a = 5 */',
];

// Statements and whether the server commits an open transaction before running them.
const IMPLICIT_COMMIT_CASES: { sql: string; cleanup?: string; before?: string }[] = [
  { sql: 'SELECT 1' },
  { sql: 'INSERT INTO t (a) VALUES (3)' },
  { sql: 'SET @x = 1' },
  { sql: 'USE app' },
  { sql: 'SAVEPOINT s1' },
  { sql: 'CALL r()' },
  { sql: 'DO 1' },
  { sql: 'CHECKSUM TABLE t' },
  { sql: 'BEGIN' },
  { sql: 'START TRANSACTION READ ONLY' },
  { sql: 'CREATE TABLE x1 (a INT)', cleanup: 'DROP TABLE x1' },
  { sql: 'CREATE TEMPORARY TABLE tmp1 (a INT)', cleanup: 'DROP TEMPORARY TABLE tmp1' },
  { sql: 'DROP TEMPORARY TABLE IF EXISTS tmp2', before: 'CREATE TEMPORARY TABLE tmp2 (a INT)' },
  { sql: 'ALTER TABLE u ADD COLUMN c1 INT', cleanup: 'ALTER TABLE u DROP COLUMN c1' },
  { sql: 'CREATE INDEX i1 ON u (a)', cleanup: 'DROP INDEX i1 ON u' },
  { sql: 'TRUNCATE TABLE x2', before: 'CREATE TABLE x2 (a INT)', cleanup: 'DROP TABLE x2' },
  { sql: 'RENAME TABLE x3 TO x4', before: 'CREATE TABLE x3 (a INT)', cleanup: 'DROP TABLE x4' },
  { sql: 'CREATE VIEW v1 AS SELECT 1', cleanup: 'DROP VIEW v1' },
  { sql: 'CREATE PROCEDURE p2() BEGIN SELECT 1; SELECT 2; END', cleanup: 'DROP PROCEDURE p2' },
  { sql: 'CREATE SEQUENCE s2', cleanup: 'DROP SEQUENCE s2' },
  { sql: 'CREATE DATABASE dbx', cleanup: 'DROP DATABASE dbx' },
  { sql: "CREATE USER 'ux'@'localhost'", cleanup: "DROP USER 'ux'@'localhost'" },
  { sql: "GRANT SELECT ON app.* TO 'uy'@'localhost'", before: "CREATE USER 'uy'@'localhost'", cleanup: "DROP USER 'uy'@'localhost'" },
  { sql: 'ANALYZE TABLE t' },
  { sql: 'OPTIMIZE TABLE u' },
  { sql: 'CHECK TABLE t' },
  { sql: 'LOCK TABLES t WRITE', cleanup: 'UNLOCK TABLES' },
  { sql: 'FLUSH TABLES' },
];

describe('classification against a real mariadbd', () => {
  let db: TestMariaDB;
  let conn: mysql.Connection;
  before(async () => {
    db = await startTestMariaDB();
    conn = await mysql.createConnection({ host: '127.0.0.1', port: db.port, user: db.rootUser });
    for (const s of SCHEMA) await conn.query(s);
  });
  after(async () => {
    await conn?.end().catch(() => undefined);
    await db?.stop();
  });

  test('reads run in a READ ONLY transaction; writes and locking reads are refused there with 1792', async () => {
    for (const sql of READ_ONLY_CASES) {
      const [st] = classifyMysql(sql);
      await conn.query('START TRANSACTION READ ONLY');
      let errno = 0;
      try {
        await conn.query(sql);
      } catch (err) {
        errno = (err as { errno?: number }).errno ?? -1;
      }
      await conn.query('ROLLBACK');
      if (st.kind === 'locking-read') {
        // MariaDB refuses FOR UPDATE in a READ ONLY transaction but allows LOCK IN SHARE MODE;
        // either way a locking read belongs on the leader, like a write.
        assert.ok(errno === 0 || errno === ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION, `${sql}: locking read, server said ${errno}`);
      } else if (st.kind === 'read' && st.command === 'EXPLAIN' && errno === ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION) {
        // MariaDB opens the tables of EXPLAIN UPDATE/DELETE/INSERT for writing, so it refuses them in a
        // READ ONLY transaction, but they change nothing: check that in autocommit mode.
        const sum = async (): Promise<string> => JSON.stringify((await conn.query('CHECKSUM TABLE t, u, sbtest1'))[0]);
        const before = await sum();
        await conn.query(sql);
        assert.equal(await sum(), before, `${sql} changed data`);
      } else if (st.kind === 'read') {
        assert.equal(errno, 0, `${sql}: classified ${st.kind} but the server refused it (${errno})`);
      } else {
        assert.equal(st.kind, 'write', sql);
        assert.equal(errno, ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION, `${sql}: classified write, server said ${errno}`);
      }
    }
  });

  test('implicitCommit matches what the server commits', async () => {
    for (const c of IMPLICIT_COMMIT_CASES) {
      const [st] = classifyMysql(c.sql);
      if (c.before) await conn.query(c.before);
      await conn.query('DELETE FROM marker');
      await conn.query('BEGIN');
      await conn.query('INSERT INTO marker VALUES (1)');
      await conn.query(c.sql);
      await conn.query('ROLLBACK');
      if (c.cleanup) await conn.query(c.cleanup); // UNLOCK TABLES before reading marker
      const [rows] = await conn.query('SELECT COUNT(*) AS n FROM marker');
      const committed = Number((rows as { n: number }[])[0].n) === 1;
      await conn.query('USE app');
      assert.equal(st.implicitCommit, committed, `${c.sql}: implicitCommit=${st.implicitCommit}, server committed=${committed}`);
    }
  });

  test('mariadb-dump output: each chunk the client splitter yields executes on its own', async () => {
    const chunks = splitClientScript(readFixture('mariadb-dump.sql'));
    const c2 = await mysql.createConnection({ host: '127.0.0.1', port: db.port, user: db.rootUser });
    try {
      for (const ch of chunks) await c2.query(ch.text);
      const [rows] = await c2.query('SELECT COUNT(*) AS n FROM recall_dump.accounts');
      assert.equal(Number((rows as { n: number }[])[0].n), 4);
      const [trg] = await c2.query("SELECT COUNT(*) AS n FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = 'recall_dump'");
      assert.equal(Number((trg as { n: number }[])[0].n), 2);
      const [rt] = await c2.query("SELECT COUNT(*) AS n FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'recall_dump'");
      assert.equal(Number((rt as { n: number }[])[0].n), 2);
    } finally {
      await c2.end();
    }
  });

  test('the server splits a multi-statement string where classifyMysql does', async () => {
    const chunks = splitClientScript(readFixture('mariadb-dump.sql'));
    const joined = chunks.map((c) => c.text).join(';\n');
    const ours = classifyMysql(joined);
    const c3 = await mysql.createConnection({ host: '127.0.0.1', port: db.port, user: db.rootUser, multipleStatements: true });
    try {
      await c3.query('DROP DATABASE IF EXISTS recall_dump');
      const [results] = await c3.query(joined);
      assert.equal((results as unknown[]).length, ours.length, 'one result per statement');
      const extra = [
        'CREATE PROCEDURE app.q() BEGIN IF 1 > 0 THEN SELECT IF(1, 2, 3); END IF; CASE WHEN 1 THEN SELECT 1; END CASE; END',
        "SELECT ';' AS a",
        'SELECT 1 /* ; */',
        'DROP PROCEDURE app.q',
      ].join('; ');
      const [r2] = await c3.query(extra);
      assert.equal((r2 as unknown[]).length, classifyMysql(extra).length);
    } finally {
      await c3.end();
    }
  });

  test('the catalogue matches the server: SET TIMESTAMP and rand seeds fix what checkDeterminism records; unsafe functions stay different', async () => {
    const other = await mysql.createConnection({ host: '127.0.0.1', port: db.port, user: db.rootUser });
    const evalOn = async (c: mysql.Connection, expr: string): Promise<string> => {
      await c.query('SET TIMESTAMP = 1700000000.123456, @@rand_seed1 = 12345, @@rand_seed2 = 67890');
      const [rows] = await c.query(`SELECT CAST(${expr} AS CHAR) AS v`);
      return String((rows as { v: unknown }[])[0].v);
    };
    const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
    try {
      // Recorded context makes these equal on two connections and at two moments.
      const fixed = [...TIME_FUNCTIONS].map((f) => `${f}()`).concat(['RAND()', 'NOW(6)', 'CURRENT_TIMESTAMP']);
      for (const expr of fixed) {
        const a = await evalOn(conn, expr);
        await pause(5);
        const b = await evalOn(other, expr);
        assert.equal(a, b, `${expr} differs under the same TIMESTAMP and seeds`);
      }
      // What the catalogue refuses differs even so.
      const fresh = ['UUID()', 'UUID_SHORT()', 'SYS_GUID()', 'SYSDATE(6)', 'CONNECTION_ID()'];
      for (const expr of fresh) {
        assert.ok(UNSAFE_FUNCTIONS.has(expr.slice(0, expr.indexOf('('))), `${expr} is in the catalogue`);
        const a = await evalOn(conn, expr);
        await pause(5);
        const b = await evalOn(other, expr);
        assert.notEqual(a, b, `${expr} gave the same value twice`);
      }
    } finally {
      await other.end();
    }
  });
});
