// The shape-keyed classification cache (src/sql/pg-classify-cache.ts, pg-shape.ts) against
// classifyPg itself: for a corpus of statements and for random SQL-like texts, every text of a
// shape seen before must get exactly what classifyPg gives it (the parse tree aside), whatever
// the literal values — including values holding quotes, semicolons, comment markers, dollar
// signs and non-ASCII characters. Other texts of a shape are made by filling the shape's
// placeholders with random literals of their class, so the cache is primed by a different text
// than the one checked.
import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { loadPgParser } from '../../src/sql/pg-parse.js';
import { classifyPg, type PgStatement } from '../../src/sql/pg-classify.js';
import { PgClassifyCache } from '../../src/sql/pg-classify-cache.js';
import { pgShape, SHAPE_TEXT_CHARS_MAX } from '../../src/sql/pg-shape.js';

/** Statements, with literals where the values vary in practice. */
const CORPUS = [
  'SELECT abalance FROM pgbench_accounts WHERE aid = 123;',
  'SELECT abalance FROM pgbench_accounts WHERE aid = 1',
  'UPDATE pgbench_accounts SET abalance = abalance + -1234 WHERE aid = 56789;',
  'UPDATE pgbench_tellers SET tbalance = tbalance + 4711 WHERE tid = 7;',
  'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, 4, CURRENT_TIMESTAMP);',
  'DELETE FROM t WHERE id = 1 RETURNING *',
  "SELECT * FROM t WHERE name = 'x' AND v > 1.5 AND w < .5e-3 LIMIT 10 OFFSET 20",
  "  \n SELECT 'a' -- trailing comment",
  "/* leading */ SELECT 'a;b' ; -- after",
  'SELECT 1 -- DELETE FROM t',
  "SELECT * FROM t WHERE a IN (1, 2, 3) AND b = 'it''s'",
  "SELECT $1::int, $2, 'x'",
  "SELECT nextval('s')",
  "SELECT setval('s', 10)",
  "SELECT currval('s'), 1",
  'SELECT pg_advisory_lock(1)',
  'SELECT my_func(1)',
  "SELECT app.audit('x') FROM t",
  'SELECT * FROM t WHERE id = 5 FOR UPDATE',
  'SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE x = 1 FOR KEY SHARE)',
  'SELECT 1 INTO newt FROM t WHERE a = 2',
  'SELECT 1 INTO TEMP tt',
  "WITH d AS (DELETE FROM a WHERE id = 3 RETURNING *) SELECT * FROM d WHERE x = 'y'",
  "WITH d AS (DELETE FROM a WHERE id = 3 RETURNING *) INSERT INTO b SELECT * FROM d",
  'WITH x AS (SELECT 1) SELECT * FROM x',
  "INSERT INTO t VALUES (1, 'a') ON CONFLICT (id) DO UPDATE SET v = 2",
  "INSERT INTO \"My Table\" VALUES (1, 'é😀')",
  "UPDATE a SET v = b.v + 1 FROM b WHERE a.id = b.id AND b.k = 'k'",
  "SELECT interval '1' second(3)",
  "SELECT '2020-01-01'::date + 1",
  "SELECT 1; SELECT 2",
  "SELECT 1; DELETE FROM t WHERE id = 2",
  "BEGIN; UPDATE t SET a = 1; COMMIT",
  'BEGIN',
  'COMMIT',
  'SELECT now()',
  "SET recall.consistency = 'linearizable'",
  "SET statement_timeout = 5000",
  'EXPLAIN (ANALYZE 0) DELETE FROM t WHERE id = 1',
  'EXPLAIN (ANALYZE 1) DELETE FROM t WHERE id = 1',
  "COMMIT PREPARED 'gid'",
  "NOTIFY ch, 'hello'",
  'PREPARE p (int) AS INSERT INTO t VALUES ($1)',
  'EXECUTE p (1)',
  'FETCH 5 FROM c',
  "COPY (SELECT * FROM t WHERE a = 1) TO STDOUT",
  "COPY t FROM STDIN",
  "SELECT \"a\"\"b\" FROM \"t\"\"x\" WHERE c = 'd'",
  "SELECT 'a'\n'b'",
  "SELECT 'a' 'b'",
  "SELECT 1 +/* c */ 2",
  "SELECT 1 /* nested /* c */ 2 */ + 3",
  "SELECT t.5 FROM t",
  "SELECT 1., 2.e5, 3e-2",
  "SELECT 1234567890, 12345678901234567890",
  "SELEC 1",
  "SELECT (1",
  "SELECT * FROM t WHERE a = 'unterminated",
];

/** A random literal of a placeholder's class. */
const digits = fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: 1, maxLength: 12 });
const smallInt = fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: 1, maxLength: 9 });
const number = fc.oneof(
  fc.tuple(digits, digits).map(([a, b]) => `${a}.${b}`),
  fc.tuple(digits, fc.constantFrom('e', 'E', 'e-', 'e+'), smallInt).map(([a, e, b]) => `${a}${e}${b}`),
  digits.map((d) => `.${d}`),
  digits.map((d) => `${d}.`),
  fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: 10, maxLength: 25 }),
);
const stringLit = fc
  .string({ unit: fc.constantFrom('a', 'Z', ' ', "'", ';', '-', '/', '*', '$', '\\', '\n', '"', 'é', '😀', 'E', '0', '(', ')'), maxLength: 12 })
  .map((s) => `'${s.replace(/'/g, "''")}'`);
const param = fc.integer({ min: 1, max: 99 }).map((n) => `$${n}`);
const literalOf = { i: smallInt, n: number, s: stringLit, p: param } as const;
const fillers = fc.array(fc.tuple(smallInt, number, stringLit, param), { minLength: 8, maxLength: 8 });

/** A text of the same shape as `key`, with the given literals in place of its placeholders. */
function instantiate(key: string, fill: Array<[string, string, string, string]>): string {
  let k = 0;
  return key.replace(/\u0001([insp])/g, (_, cls: string) => {
    const f = fill[k++ % fill.length]!;
    return cls === 'i' ? f[0] : cls === 'n' ? f[1] : cls === 's' ? f[2] : f[3];
  });
}

function strip(sts: PgStatement[]): unknown[] {
  return sts.map(({ node: _n, offsets: _o, ...rest }) => rest);
}

/**
 * Prime a fresh cache with another text of the same shape, then classify `sql` through it: the
 * result must be classifyPg's. Returns whether the cache answered.
 */
function checkThroughCache(sql: string, fill: Array<[string, string, string, string]>): boolean {
  const shape = pgShape(sql);
  const cache = new PgClassifyCache();
  if (shape) {
    // filling in may glue a literal to its neighbour (`t.5` filled with 0.0 reads `t0.0`, an
    // identifier and a number): such a text has another shape, and the text itself primes instead
    const other = instantiate(shape.key, fill);
    cache.classify(pgShape(other)?.key === shape.key ? other : sql);
  }
  const hitsBefore = cache.hits;
  const got = cache.classify(sql);
  const want = classifyPg(sql);
  assert.deepStrictEqual(strip(got), strip(want), `classification of ${JSON.stringify(sql)} through the cache`);
  return cache.hits > hitsBefore;
}

describe('pgShape', () => {
  test('literals become placeholders by class; everything else stays as written', () => {
    assert.deepEqual(pgShape('SELECT abalance FROM pgbench_accounts WHERE aid = 123;'), {
      key: 'SELECT abalance FROM pgbench_accounts WHERE aid = \u0001i;', firstLiteral: 50, lastLiteralEnd: 53,
    });
    assert.equal(pgShape("select 'a''b', 1.5, 1234567890, $3, \"x'y\" -- 'z' 7\n/* '8' */")?.key,
      "select \u0001s, \u0001n, \u0001n, \u0001p, \"x'y\" -- 'z' 7\n/* '8' */");
    assert.equal(pgShape('SELECT t.5, x1, a$2 FROM t')?.key, 'SELECT t\u0001n, x1, a$2 FROM t');
    assert.deepEqual(pgShape('BEGIN'), { key: 'BEGIN', firstLiteral: -1, lastLiteralEnd: -1 });
    // two values of the same class give the same key
    assert.equal(pgShape("SELECT * FROM t WHERE a = 1 AND b = 'x'")?.key, pgShape("SELECT * FROM t WHERE a = 987654321 AND b = 'it''s; --'")?.key);
    assert.notEqual(pgShape('SELECT 1')?.key, pgShape('SELECT 1.0')?.key);
    assert.notEqual(pgShape('SELECT 123456789')?.key, pgShape('SELECT 1234567890')?.key);
  });

  test('gives up wherever it could cut tokens differently from postgres', () => {
    for (const sql of [
      "SELECT E'it\\'s'", "SELECT e'x'", "SELECT B'101'", "SELECT X'1F'", "SELECT N'x'", "SELECT U&'\\0061'",
      'SELECT $$ x $$', 'SELECT $q$ x $q$', 'SELECT $1a', 'SELECT $', 'SELECT 0x1F', 'SELECT 0o17', 'SELECT 0b101', 'SELECT 1_000',
      'SELECT 1e', 'SELECT 1abc', 'SELECT 1..2', 'SELECT 1.2.3', "SELECT 'unterminated", 'SELECT "unterminated', 'SELECT /* unterminated',
      'SELECT 1\u0000', 'SELECT \u0001i', 'SELECT\u00071', "SELECT date'2020-01-01'", "SELECT 1'a'", 'x'.repeat(SHAPE_TEXT_CHARS_MAX + 1),
    ]) assert.equal(pgShape(sql), null, JSON.stringify(sql));
  });
});

describe('PgClassifyCache', () => {
  before(async () => {
    await loadPgParser();
  });

  test('the corpus: the cache answers as classifyPg for other literal values', () => {
    fc.assert(fc.property(fc.constantFrom(...CORPUS), fillers, (sql, fill) => void checkThroughCache(sql, fill)), { numRuns: 600 });
    for (const sql of CORPUS) checkThroughCache(sql, [['7', '2.5', "'v'", '$1']]);
  });

  test('pgbench statements hit the cache with any values', () => {
    const cache = new PgClassifyCache();
    for (let aid = 1; aid <= 200; aid++) {
      const sql = `SELECT abalance FROM pgbench_accounts WHERE aid = ${aid * 7919};`;
      assert.deepStrictEqual(strip(cache.classify(sql)), strip(classifyPg(sql)));
    }
    assert.equal(cache.misses, 1);
    assert.equal(cache.hits, 199);
    const hit = cache.classify('SELECT abalance FROM pgbench_accounts WHERE aid = 5;')[0]!;
    assert.equal(hit.node, undefined, 'a hit from a template carries no parse tree');
    assert.ok(Object.isFrozen(hit.tables));
    for (const sql of ['UPDATE pgbench_accounts SET abalance = abalance + 5 WHERE aid = 9;', 'UPDATE pgbench_accounts SET abalance = abalance + 77 WHERE aid = 123456;']) {
      assert.deepStrictEqual(strip(cache.classify(sql)), strip(classifyPg(sql)));
    }
    assert.equal(cache.hits, 201);
  });

  test('statements whose classification reads a literal value are never answered from another text', () => {
    // each pair has one shape but different classifications: the cache must not share them
    const pairs: Array<[string, string]> = [
      ['EXPLAIN (ANALYZE 0) DELETE FROM t WHERE id = 1', 'EXPLAIN (ANALYZE 1) DELETE FROM t WHERE id = 1'],
      ["SET recall.consistency = 'local'", "SET recall.consistency = 'linearizable'"],
      ["COMMIT PREPARED 'a'", "COMMIT PREPARED 'b'"],
    ];
    for (const [a, b] of pairs) {
      assert.equal(pgShape(a)?.key, pgShape(b)?.key);
      const cache = new PgClassifyCache();
      cache.classify(a);
      assert.deepStrictEqual(strip(cache.classify(b)), strip(classifyPg(b)), b);
      assert.equal(cache.hits, 0, `${b} was classified afresh`);
    }
  });

  test('texts without literals are answered with the same statements, frozen', () => {
    const cache = new PgClassifyCache();
    const first = cache.classify('BEGIN; SELECT now(); COMMIT');
    const again = cache.classify('BEGIN; SELECT now(); COMMIT');
    assert.equal(again, first);
    assert.equal(cache.hits, 1);
    assert.ok(Object.isFrozen(first[0]));
    assert.throws(() => (first[0] as { kind: string }).kind = 'write');
    assert.deepStrictEqual(strip(again), strip(classifyPg('BEGIN; SELECT now(); COMMIT')));
  });

  test('the number of shapes kept is bounded', () => {
    const cache = new PgClassifyCache(16);
    for (let i = 0; i < 100; i++) cache.classify(`SELECT c${i} FROM t WHERE a = ${i}`);
    assert.equal(cache.size(), 16);
    cache.classify('SELECT c99 FROM t WHERE a = 5');
    assert.equal(cache.hits, 1, 'the newest shapes stay');
    cache.classify('SELECT c0 FROM t WHERE a = 5');
    assert.equal(cache.hits, 1, 'the oldest went');
  });

  test('random SQL-like texts: the cache answers as classifyPg (fast-check)', () => {
    const fragment = fc.constantFrom(
      'SELECT ', 'select ', 'FROM t ', 'WHERE ', 'a = ', 'b ', 'INSERT INTO t VALUES (', 'UPDATE t SET a = ', 'DELETE FROM t WHERE a = ',
      'nextval(', 'my_func(', 'now()', 'FOR UPDATE ', 'INTO x ', 'WITH w AS (', 'DELETE FROM d RETURNING *) ', 'EXPLAIN ', '(ANALYZE ',
      'SET x = ', 'BEGIN', 'COMMIT', ')', '(', ', ', ';', ' ', '\n', '-- c\n', '/* c */', '/* /* n */ */', '"q""i"', '"x y"', "E'x\\'y'",
      '$$a$$', '$1', '$2', '1', '42', '1.5', '.5', '1e5', '1e', '0x1F', '1_000', '12345678901', "'s'", "'it''s'", "''", "'a;b'", "'--'",
      '.', '::int', 'U&', '&', '-', '+', '=', '<', 'é', 'AND ', 'OR ', 'IN (', 'LIMIT ', "interval '1' second(", 't.', 'x1', 'a$b',
    );
    const sqlish = fc.array(fragment, { minLength: 1, maxLength: 14 }).map((parts) => parts.join(''));
    let hits = 0;
    fc.assert(fc.property(sqlish, fillers, (sql, fill) => {
      if (checkThroughCache(sql, fill)) hits++;
    }), { numRuns: 1500 });
    assert.ok(hits > 50, `the fuzz exercised cache hits (${hits})`);
  });
});
