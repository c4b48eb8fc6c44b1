import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { lexMysql, stringValue, type Token } from '../../src/sql/mysql-lexer.js';
import { classifyMysql } from '../../src/sql/mysql-classify.js';
import { checkDeterminism } from '../../src/sql/mysql-determinism.js';
import { splitClientScript } from '../../src/sql/mysql-client-script.js';

const show = (sql: string, ts: Token[]): string[] => ts.map((t) => `${t.type}:${sql.slice(t.start, t.end)}`);

describe('lexMysql: tokens', () => {
  const cases: [string, string[]][] = [
    ['SELECT a FROM t', ['word:SELECT', 'word:a', 'word:FROM', 'word:t']],
    ['`a``b`.`c`', ['quoted:`a``b`', 'op:.', 'quoted:`c`']],
    ["'it''s' 'a\\'b' \"q\\\"\"", ["string:'it''s'", "string:'a\\'b'", 'string:"q\\""']],
    ["X'0aF' x'' 0x1F 0b101 b'01' B'1' 0x 0xg 0b2", ["hex:X'0aF'", "hex:x''", 'hex:0x1F', 'bit:0b101', "bit:b'01'", "bit:B'1'", 'word:0x', 'word:0xg', 'word:0b2']],
    ['1 1.5 .5 1e10 1.5E-3 2e+5 12abc 1e', ['number:1', 'number:1.5', 'number:.5', 'number:1e10', 'number:1.5E-3', 'number:2e+5', 'word:12abc', 'word:1e']],
    ['t.5 t.col', ['word:t', 'op:.', 'number:5', 'word:t', 'op:.', 'word:col']],
    ["@x @`a b` @'c' @\"d\" @x.y @", ['uservar:@x', 'uservar:@`a b`', "uservar:@'c'", 'uservar:@"d"', 'uservar:@x.y', 'op:@']],
    ['@@x @@session.x @@GLOBAL.y @@local.z @@default.key_buffer_size', ['sysvar:@@x', 'sysvar:@@session.x', 'sysvar:@@GLOBAL.y', 'sysvar:@@local.z', 'sysvar:@@default.key_buffer_size']],
    ["'u'@'h' `u`@`h` u@h", ["string:'u'", 'op:@', "string:'h'", 'quoted:`u`', 'op:@', 'quoted:`h`', 'word:u', 'op:@', 'word:h']],
    ['a := b <=> c <= d >= e <> f != g << h >> i && j || k -> l ->> m', ['word:a', 'op::=', 'word:b', 'op:<=>', 'word:c', 'op:<=', 'word:d', 'op:>=', 'word:e', 'op:<>', 'word:f', 'op:!=', 'word:g', 'op:<<', 'word:h', 'op:>>', 'word:i', 'op:&&', 'word:j', 'op:||', 'word:k', 'op:->', 'word:l', 'op:->>', 'word:m']],
    ['? ; ?', ['param:?', 'semicolon:;', 'param:?']],
    ['a -- c\nb #d\nc /* e */ d --\te', ['word:a', 'comment:-- c', 'word:b', 'comment:#d', 'word:c', 'comment:/* e */', 'word:d', 'comment:--\te']],
    ['1--1 a--', ['number:1', 'op:-', 'op:-', 'number:1', 'word:a', 'comment:--']],
    ['/*+ NO_ICP(t) */ /*!40101 SET x=1 */ /*M!100100 y */ /*!z*/', ['hint:/*+ NO_ICP(t) */', 'version-start:/*!40101', 'word:SET', 'word:x', 'op:=', 'number:1', 'version-end:*/', 'version-start:/*M!100100', 'word:y', 'version-end:*/', 'version-start:/*!', 'word:z', 'version-end:*/']],
    ['/*!50000 a /* b */ c */', ['version-start:/*!50000', 'word:a', 'comment:/* b */', 'word:c', 'version-end:*/']],
    ['/*!50000 a /*!50001 b */ c */', ['version-start:/*!50000', 'word:a', 'version-start:/*!50001', 'word:b', 'version-end:*/', 'word:c', 'version-end:*/']],
    ['2 * 3 */ 4', ['number:2', 'op:*', 'number:3', 'op:*', 'op:/', 'number:4']],
    ["N'x' n'y' _utf8mb4'z'", ["string:N'x'", "string:n'y'", 'word:_utf8mb4', "string:'z'"]],
    ['SELECT ü, 日本, `表`', ['word:SELECT', 'word:ü', 'op:,', 'word:日本', 'op:,', 'quoted:`表`']],
    ["'open", ["error:'open"]],
    ['`open', ['error:`open']],
    ['"open', ['error:"open']],
    ['/* open', ['error:/* open']],
    ['@`open', ['error:@`open']],
    ['/*!40101 open', ['version-start:/*!40101', 'word:open', 'error:']],
  ];
  for (const [sql, expected] of cases) {
    test(JSON.stringify(sql), () => assert.deepEqual(show(sql, lexMysql(sql)), expected));
  }

  test('normalised text: words upper-case, quoted names unescaped, variables lower-case with scope', () => {
    const ts = lexMysql('select `a``b` @MyVar @@Global.Max_Connections');
    assert.deepEqual(ts.map((t) => t.text), ['SELECT', 'a`b', 'myvar', 'max_connections']);
    assert.equal(ts[3].scope, 'global');
    assert.equal(lexMysql('/*M!100100 x */')[0].version, 100100);
    assert.equal(lexMysql('/*M!100100 x */')[0].mariadbOnly, true);
    assert.equal(lexMysql('/*!40101 x */')[0].version, 40101);
    assert.equal(lexMysql('/*!401011 x */')[0].version, 40101); // MySQL takes five digits
  });

  test('ANSI_QUOTES and NO_BACKSLASH_ESCAPES', () => {
    assert.deepEqual(show('"a""b"', lexMysql('"a""b"', { ansiQuotes: true })), ['quoted:"a""b"']);
    assert.equal(lexMysql('"a""b"', { ansiQuotes: true })[0].text, 'a"b');
    assert.deepEqual(show("'a\\' c'", lexMysql("'a\\' c'", { noBackslashEscapes: true })), ["string:'a\\'", 'word:c', "error:'"]);
  });

  test('stringValue undoes escapes and doubled quotes', () => {
    const sql = "'a''b\\n\\'\\\\c' \"d\"\"e\" N'f'";
    const ts = lexMysql(sql);
    assert.deepEqual(ts.map((t) => stringValue(sql, t)), ["a'b\n'\\c", 'd"e', 'f']);
    const raw = "'a\\nb'";
    assert.equal(stringValue(raw, lexMysql(raw, { noBackslashEscapes: true })[0], { noBackslashEscapes: true }), 'a\\nb');
  });
});

// Inputs rich in the characters that switch lexer states.
const sqlish = fc.string({
  unit: fc.constantFrom(
    "'", '"', '`', '\\', '/', '*', '!', 'M', '+', '-', '#', '\n', ' ', '\t', '@', '.', ';', '?', '(', ')', '=', ':', '<', '>',
    'x', 'X', 'b', '0', '1', '9', 'e', 'a', 'B', 'N', 'SELECT', 'BEGIN', 'END', 'IF', 'CASE', 'CREATE PROCEDURE', 'FOR UPDATE',
    'é', '日', '\u0000',
  ),
  maxLength: 200,
});

function assertTiles(sql: string, ts: Token[]): void {
  let pos = 0;
  for (const t of ts) {
    assert.equal(t.start, pos, `token ${t.type} starts at ${t.start}, expected ${pos}`);
    assert.ok(t.end >= t.start);
    assert.ok(t.end > t.start || t.type === 'error', 'only an error token may be empty');
    pos = t.end;
  }
  assert.equal(pos, sql.length);
}

describe('lexMysql: properties (fast-check)', () => {
  test('never throws; with keepWhitespace the token spans tile the input exactly', () => {
    fc.assert(fc.property(fc.oneof(sqlish, fc.string({ unit: 'binary', maxLength: 200 })), fc.boolean(), fc.boolean(), (sql, ansiQuotes, noBackslashEscapes) => {
      assertTiles(sql, lexMysql(sql, { keepWhitespace: true, ansiQuotes, noBackslashEscapes }));
    }), { numRuns: 3000 });
  });

  test('without keepWhitespace the gaps between tokens are whitespace only', () => {
    fc.assert(fc.property(sqlish, (sql) => {
      let pos = 0;
      for (const t of lexMysql(sql)) {
        assert.match(sql.slice(pos, t.start), /^[ \t\n\r\f\v]*$/);
        pos = t.end;
      }
      assert.match(sql.slice(pos), /^[ \t\n\r\f\v]*$/);
    }), { numRuns: 2000 });
  });

  test('classify, checkDeterminism and the client splitter never throw; statements are ordered slices', () => {
    fc.assert(fc.property(sqlish, (sql) => {
      let pos = 0;
      for (const st of classifyMysql(sql)) {
        assert.ok(st.start >= pos && st.end >= st.start && st.end <= sql.length);
        assert.equal(st.text, sql.slice(st.start, st.end));
        pos = st.end;
        checkDeterminism(st);
      }
      splitClientScript(sql);
    }), { numRuns: 2000 });
  });

  test('long pathological inputs lex in linear time', () => {
    const units = ["'", '/*', '/*!', '--', '@', '`', '\\', '(', 'BEGIN ', 'x', 'f(1, ', 'IF(', 'CASE ', 'END IF; ', 'SELECT f(', 'WITH a(b) AS ('];
    for (const unit of units) {
      const sql = unit.repeat(50_000);
      const t0 = performance.now();
      const ts = lexMysql(sql, { keepWhitespace: true });
      const ms = performance.now() - t0;
      assertTiles(sql, ts);
      // Generous bounds (the machine is shared); quadratic behaviour would take minutes.
      assert.ok(ms < 10_000, `lex ${JSON.stringify(unit)} x 50000 took ${ms.toFixed(0)} ms`);
      for (const prefix of ['', 'CREATE PROCEDURE p() BEGIN ', 'SELECT ']) {
        const t1 = performance.now();
        for (const st of classifyMysql(prefix + sql)) checkDeterminism(st);
        const ms1 = performance.now() - t1;
        assert.ok(ms1 < 10_000, `classify ${JSON.stringify(prefix + unit)} x 50000 took ${ms1.toFixed(0)} ms`);
      }
    }
  });
});

describe('speed (printed, not asserted)', () => {
  test('tokens/s and statements/s for sysbench statements', () => {
    const stmts = [
      'SELECT c FROM sbtest1 WHERE id=?',
      'UPDATE sbtest1 SET k=k+1 WHERE id=?',
      "INSERT INTO sbtest1 (id, k, c, pad) VALUES (0, 5018, '68487932199-96439406143-93774651418-41631865787-96406072701-20604855487-25459966574-28203206787-41238978918-19503783441', '22195207048-70116052123-74140395089-76317954521-98694025897')",
      'BEGIN',
      'COMMIT',
    ];
    const rounds = 40_000;
    for (let r = 0; r < 2000; r++) for (const s of stmts) classifyMysql(s); // warm up the JIT
    let tokens = 0;
    let t0 = performance.now();
    for (let r = 0; r < rounds; r++) for (const s of stmts) tokens += lexMysql(s).length;
    const lexMs = performance.now() - t0;
    t0 = performance.now();
    let n = 0;
    for (let r = 0; r < rounds; r++) for (const s of stmts) n += classifyMysql(s).length;
    const clsMs = performance.now() - t0;
    const msg = `lex: ${((tokens / lexMs) * 1000 / 1e6).toFixed(1)} M tokens/s; classify: ${((n / clsMs) * 1000 / 1e3).toFixed(0)} k statements/s (${(clsMs * 1000 / n).toFixed(2)} µs each)`;
    console.log(`# ${msg}`);
    assert.equal(n, rounds * stmts.length);
  });
});
