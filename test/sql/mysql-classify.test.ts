import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { classifyMysql, type ClassifiedStatement } from '../../src/sql/mysql-classify.js';
import { lexMysql } from '../../src/sql/mysql-lexer.js';
import { splitClientScript } from '../../src/sql/mysql-client-script.js';
import { list, parseExtras, readFixture, readTsv } from './fixtures.js';

const bool = (v: string): boolean => v === '1';

function checkRow(st: ClassifiedStatement, kind: string, command: string, extras: Map<string, string>): void {
  assert.equal(st.kind, kind, 'kind');
  assert.equal(st.command, command, 'command');
  for (const [k, v] of extras) {
    switch (k) {
      case 'target': {
        const name = st.target ? (st.target.schema ? `${st.target.schema}.${st.target.name}` : st.target.name) : undefined;
        assert.equal(name, v, 'target');
        break;
      }
      case 'ic': assert.equal(st.implicitCommit, bool(v), 'implicitCommit'); break;
      case 'nt': assert.equal(st.nonTransactional, bool(v), 'nonTransactional'); break;
      case 'temp': assert.equal(st.temporary, bool(v), 'temporary'); break;
      case 'tx': assert.equal(st.transaction?.action, v, 'transaction.action'); break;
      case 'ro': assert.equal(st.transaction?.readOnly, bool(v), 'readOnly'); break;
      case 'snap': assert.equal(st.transaction?.consistentSnapshot, bool(v), 'consistentSnapshot'); break;
      case 'chain': assert.equal(st.transaction?.chain, bool(v), 'chain'); break;
      case 'release': assert.equal(st.transaction?.release, bool(v), 'release'); break;
      case 'sp': assert.equal(st.transaction?.savepoint, v, 'savepoint'); break;
      case 'xa': assert.equal(st.transaction?.xa, v, 'xa'); break;
      case 'ac': assert.equal(st.transaction?.autocommit, v === 'null' ? null : bool(v), 'autocommit'); break;
      case 'db': assert.equal(st.database, v, 'database'); break;
      case 'vars': assert.deepEqual(st.variables?.map((x) => `${x.scope}:${x.name}`), list(v), 'variables'); break;
      case 'assigned': assert.deepEqual(st.userVariablesAssigned, list(v), 'userVariablesAssigned'); break;
      case 'read': break; // checked for every row below
      case 'fn': break;
      case 'prep': assert.equal(st.prepared?.name, v, 'prepared.name'); break;
      case 'lookup': assert.equal(st.needsLookup, bool(v), 'needsLookup'); break;
      case 'local': assert.equal(st.localInfile, bool(v), 'localInfile'); break;
      case 'client': assert.equal(st.clientCommand, bool(v), 'clientCommand'); break;
      case 'err': assert.equal(st.lexError !== undefined, bool(v), 'lexError'); break;
      default: throw new Error(`unknown extra ${k}`);
    }
  }
  assert.deepEqual(st.userVariablesRead, list(extras.get('read')), 'userVariablesRead');
  assert.deepEqual(st.sessionFunctions, list(extras.get('fn')), 'sessionFunctions');
  if (!extras.has('err')) assert.equal(st.lexError, undefined, 'no lex error');
}

describe('classifyMysql: fixtures/sql/classify.tsv', () => {
  const rows = readTsv('classify.tsv', 4);
  test('has hundreds of statements', () => assert.ok(rows.length >= 300, `${rows.length} rows`));
  for (const { line, cols: [kind, command, extrasText, sql] } of rows) {
    test(`line ${line}: ${sql.slice(0, 70).replaceAll('\n', ' ')}`, () => {
      const out = classifyMysql(sql);
      assert.equal(out.length, 1, `one statement, got ${out.map((s) => s.text).join(' | ')}`);
      checkRow(out[0], kind, command, parseExtras(extrasText));
      // The same statement with a trailing ';' and surrounding whitespace is the same statement.
      if (!out[0].lexError) {
        const again = classifyMysql(`  ${sql} ;  `);
        assert.equal(again.length, 1);
        assert.equal(again[0].kind, kind);
      }
    });
  }
});

describe('metamorphic: comments and executable comments do not change the classification', () => {
  const rows = readTsv('classify.tsv', 4).filter((r) => r.cols[2].indexOf('err=') < 0 && r.cols[1] !== 'DELIMITER');
  const noisy = "/* FOR UPDATE; INSERT INTO x VALUES ('a') */";
  test('a comment full of keywords in every gap between tokens', () => {
    for (const { line, cols: [kind, command, , sql] } of rows) {
      const ts = lexMysql(sql, { keepWhitespace: true });
      const out = ts.map((t, i) => (t.type === 'whitespace' && ts[i - 1]?.type !== 'comment' ? ` ${noisy} ` : sql.slice(t.start, t.end))).join('');
      const [st] = classifyMysql(out);
      assert.equal(`${st.kind} ${st.command}`, `${kind} ${command}`, `line ${line}: ${out}`);
    }
  });
  test('the whole statement inside /*!50000 ... */ (as mariadb-dump writes them)', () => {
    for (const { line, cols: [kind, command, , sql] } of rows) {
      if (sql.includes('*/') || sql.includes('--') || sql.includes('#')) continue;
      const [st] = classifyMysql(`/*!50000 ${sql} */`);
      assert.equal(`${st.kind} ${st.command}`, `${kind} ${command}`, `line ${line}`);
    }
  });
});

describe('splitting multi-statement strings', () => {
  const cases = JSON.parse(readFixture('split.json')) as { sql: string; kinds: string[]; texts?: string[] }[];
  for (const c of cases) {
    test(c.sql.slice(0, 80).replaceAll('\n', ' '), () => {
      const out = classifyMysql(c.sql);
      assert.deepEqual(out.map((s) => s.kind), c.kinds);
      if (c.texts) assert.deepEqual(out.map((s) => s.text), c.texts);
      for (const s of out) assert.equal(c.sql.slice(s.start, s.end), s.text);
    });
  }
});

describe('options', () => {
  test('ANSI_QUOTES: "x" is an identifier', () => {
    const [st] = classifyMysql('INSERT INTO "my table" VALUES (1)', { ansiQuotes: true });
    assert.equal(st.target?.name, 'my table');
    const [plain] = classifyMysql('INSERT INTO "my table" VALUES (1)');
    assert.equal(plain.target, undefined); // a string is not a table name
  });
  test('NO_BACKSLASH_ESCAPES: a backslash does not escape the quote', () => {
    const sql = "SELECT 'a\\'; UPDATE t SET a = 1; SELECT '";
    assert.deepEqual(classifyMysql(sql, { noBackslashEscapes: true }).map((s) => s.kind), ['read', 'write', 'read']);
    const escaped = classifyMysql(sql);
    assert.equal(escaped.length, 1); // the whole thing is one string
  });
  test('serverVersion: executable comments for a later version are comments', () => {
    // MySQL 8.0.30 skips code for 8.0.40; MariaDB 10.11.6 skips /*M!999999 (mariadb-dump's sandbox line).
    assert.equal(classifyMysql('/*!80040 UPDATE t SET a = 1 */ SELECT 1', { serverVersion: 80030 })[0].kind, 'read');
    assert.equal(classifyMysql('/*!80040 UPDATE t SET a = 1 */', { serverVersion: 80030 }).length, 0);
    assert.equal(classifyMysql('/*M!999999 UPDATE t SET a = 1 */ SELECT 1', { serverVersion: 101106 })[0].kind, 'read');
    assert.equal(classifyMysql('/*!40101 UPDATE t SET a = 1 */', { serverVersion: 101106 })[0].kind, 'write');
    assert.equal(classifyMysql('/*!99999 UPDATE t SET a = 1 */', { serverVersion: 101106 })[0].kind, 'write'); // 9.99.99 < 10.11.6
    assert.equal(classifyMysql('/*!80040 UPDATE t SET a = 1 */')[0].kind, 'write'); // no version given: applies
  });
  test("flavor 'mysql': /*M! is a comment", () => {
    assert.equal(classifyMysql('SELECT 1 /*M!100100 FOR UPDATE */', { flavor: 'mysql' })[0].kind, 'read');
    assert.equal(classifyMysql('SELECT 1 /*M!100100 FOR UPDATE */')[0].kind, 'locking-read');
  });
  test('empty input and comment-only input give no statements', () => {
    for (const sql of ['', '   ', ';', ';;;', '-- x', '/* x */ ; # y', '/*!40101 */;']) assert.deepEqual(classifyMysql(sql), [], sql);
  });
  test('PREPARE text and EXECUTE IMMEDIATE text are unescaped', () => {
    const [p] = classifyMysql("PREPARE s FROM 'SELECT ''a'', \\'b\\''");
    assert.equal(p.prepared?.text, "SELECT 'a', 'b'");
    const [e] = classifyMysql("EXECUTE IMMEDIATE 'DELETE FROM t'");
    assert.equal(e.prepared?.text, 'DELETE FROM t');
    assert.equal(classifyMysql(e.prepared!.text!)[0].kind, 'write');
  });
  test('stored function calls: listed, and readOnlyFunctions keeps a read a read', () => {
    const [st] = classifyMysql('SELECT my_func(1), app.g(2), CONCAT(a, b) FROM t');
    assert.equal(st.kind, 'write');
    assert.deepEqual(st.routineCalls, ['MY_FUNC', 'APP.G']);
    const [ro] = classifyMysql('SELECT my_func(1), app.g(2) FROM t', { readOnlyFunctions: new Set(['MY_FUNC', 'APP.G']) });
    assert.equal(ro.kind, 'read');
    assert.deepEqual(ro.routineCalls, []);
  });
  test('SET values keep their source text', () => {
    const [st] = classifyMysql("SET @a = CONCAT('x', (1, 2)), sql_mode = 'A,B'");
    assert.deepEqual(st.variables?.map((v) => v.value), ["CONCAT('x', (1, 2))", "'A,B'"]);
  });
});

describe('splitClientScript (the mariadb client)', () => {
  test('DELIMITER changes the delimiter; $$ works though $ is an identifier character', () => {
    const script = [
      '-- header', 'SELECT 1;', 'delimiter $$', 'CREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END$$',
      "SELECT '$$' AS a$$", 'DELIMITER ;', "SELECT 'x;y', `a;b`; SELECT 3 /* ; */ ; # ;", 'SELECT 4',
    ].join('\n');
    const out = splitClientScript(script);
    assert.deepEqual(out.map((s) => s.text), [
      '-- header\nSELECT 1', 'CREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END', "SELECT '$$' AS a",
      "SELECT 'x;y', `a;b`", 'SELECT 3 /* ; */', '# ;\nSELECT 4',
    ]);
    assert.deepEqual(out.map((s) => s.delimiter), [';', '$$', '$$', ';', ';', ';']);
    assert.deepEqual(out.map((s) => classifyMysql(s.text).length), [1, 1, 1, 1, 1, 1]);
  });
  test('a delimiter inside an executable comment still ends the statement (the client treats /*! as code)', () => {
    assert.deepEqual(splitClientScript('/*!40101 SET a=1; SET b=2 */;').map((s) => s.text), ['/*!40101 SET a=1', 'SET b=2 */']);
  });
  test('comment-only chunks are not sent', () => {
    assert.deepEqual(splitClientScript('-- a\n;\n/* b */;\nSELECT 1;\n-- tail'), [{ text: 'SELECT 1', delimiter: ';' }]);
  });
});

describe('mariadb-dump output (fixtures/sql/mariadb-dump.sql), split the way the mariadb client splits it', () => {
  const script = readFixture('mariadb-dump.sql');
  const chunks = splitClientScript(script);
  const classified = chunks.map((c) => classifyMysql(c.text));
  test('every chunk the client sends is exactly one statement', () => {
    classified.forEach((out, i) => assert.equal(out.length, 1, `chunk ${i}: ${chunks[i].text.slice(0, 120)}`));
  });
  test('DELIMITER lines never reach the server', () => {
    assert.ok(script.includes('DELIMITER ;;'));
    for (const c of chunks) assert.ok(!/^\s*DELIMITER/im.test(c.text), c.text);
  });
  test('kinds of what a dump contains', () => {
    const flat = classified.map((o) => o[0]);
    const count = (pred: (s: ClassifiedStatement) => boolean): number => flat.filter(pred).length;
    const commands = new Set(flat.map((s) => s.command));
    for (const c of ['CREATE DATABASE', 'USE', 'DROP TABLE', 'CREATE TABLE', 'LOCK TABLES', 'ALTER TABLE', 'INSERT', 'UNLOCK TABLES',
      'CREATE TRIGGER', 'CREATE PROCEDURE', 'CREATE FUNCTION', 'CREATE EVENT', 'CREATE VIEW', 'DROP VIEW', 'CREATE SEQUENCE', 'SET NAMES']) {
      assert.ok(commands.has(c), `dump contains ${c}`);
    }
    // Everything else in a dump is SET of session or user variables.
    assert.ok(count((s) => s.kind === 'session' && s.command === 'SET') > 50);
    assert.equal(count((s) => s.kind === 'read'), 0);
    assert.equal(count((s) => s.kind === 'unsafe'), 0);
    assert.equal(count((s) => s.kind === 'write'), 3); // two INSERTs and DO SETVAL(seq)
    const proc = flat.find((s) => s.command === 'CREATE PROCEDURE')!;
    assert.match(proc.text, /END REPEAT;\nEND$/);
    const trigger = flat.find((s) => s.command === 'CREATE TRIGGER' && s.target?.name === 'ledger_audit')!;
    assert.match(trigger.text, /END \n\*\/$/);
  });
  test('the same dump sent as one multi-statement string (no DELIMITER) splits at the same places', () => {
    // What a program that strips DELIMITER lines and joins with ';' would send.
    const joined = chunks.map((c) => c.text).join(';\n');
    const out = classifyMysql(joined);
    assert.equal(out.length, chunks.length);
    out.forEach((s, i) => assert.equal(s.command, classified[i][0].command));
  });
});

describe('sysbench', () => {
  const lua = '/usr/share/sysbench/oltp_common.lua';
  test('every statement oltp_common.lua defines is classified as the fixture says', () => {
    assert.ok(existsSync(lua), `${lua} missing: run npm run setup (installs sysbench)`);
    const src = readFileSync(lua, 'utf8');
    const stmts = [...src.matchAll(/"((?:SELECT|UPDATE|DELETE|INSERT)[^"]*sbtest%u[^"]*)"/g)].map((m) => m[1].replace('%u', '1'));
    assert.ok(stmts.length >= 9, `found ${stmts.length}`);
    const fixture = readTsv('classify.tsv', 4).map((r) => r.cols[3]);
    for (const s of stmts) {
      assert.ok(fixture.includes(s), `fixtures/sql/classify.tsv lacks sysbench statement: ${s}`);
      const [st] = classifyMysql(s);
      assert.equal(st.kind, s.startsWith('SELECT') ? 'read' : 'write', s);
    }
  });
});
