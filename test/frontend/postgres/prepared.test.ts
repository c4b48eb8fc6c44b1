// prepared.ts: the tracker of a session's SQL-level PREPARE / DEALLOCATE, the name an EXPLAIN
// ANALYZE EXECUTE runs, and the expansion of `EXECUTE name(args)` into the prepared text with
// `((arg)::type)` in place of each $n. The first part checks the texts the expansion writes (how
// arguments are cut, which ones may be copied); the second runs on a real postgres: each EXECUTE's
// rows (or error) are compared with those of its expansion, built from the session's own
// pg_prepared_statements read with preparedQuery, as the router does.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { ManagedPostgres } from '../../../src/supervisor/postgres.js';
import { loadPgParser } from '../../../src/sql/pg-parse.js';
import { classifyPg, type PgStatement } from '../../../src/sql/pg-classify.js';
import {
  SqlPreparedTracker,
  expandExecute,
  explainedExecute,
  isPreparedStatementCommand,
  preparedQuery,
  preparedRows,
  preparedWrites,
  type Expansion,
  type PreparedRow,
} from '../../../src/frontend/postgres/prepared.js';
import { tempDir } from '../../harness/tmp.js';

const one = (sql: string): PgStatement => {
  const sts = classifyPg(sql);
  assert.equal(sts.length, 1, sql);
  return sts[0]!;
};

/** A row as pg_prepared_statements would give it for one SQL PREPARE text. */
const row = (statement: string, types: string[], name = one(statement).prepared!.name!): PreparedRow => ({ name, statement, fromSql: true, types });

const sqlOf = (x: Expansion): string => {
  assert.ok('sql' in x, `expanded, not ${JSON.stringify(x)}`);
  return x.sql;
};
const errorOf = (x: Expansion): { sqlstate: string; message: string } => {
  assert.ok('error' in x, `refused, not ${JSON.stringify(x)}`);
  return x.error;
};

before(async () => {
  await loadPgParser();
});

describe('SqlPreparedTracker', () => {
  test('an unknown name is looked up; one PREPARE of a read is relayable, of a write is not', () => {
    const t = new SqlPreparedTracker();
    assert.equal(t.relayable('r'), false);
    t.note(one('PREPARE r AS SELECT 1'));
    t.note(one('PREPARE w (int) AS INSERT INTO t VALUES ($1)'));
    t.note(one('PREPARE d AS DELETE FROM t'));
    assert.equal(t.relayable('r'), true);
    assert.equal(t.writes('r'), false);
    assert.equal(t.relayable('w'), false);
    assert.equal(t.writes('w'), true);
    assert.equal(t.writes('d'), true);
    assert.equal(t.writes('nothing'), false);
  });

  test('a second PREPARE of a name makes it uncertain (the first may have failed or not) until it is dropped', () => {
    const t = new SqlPreparedTracker();
    t.note(one('PREPARE r AS SELECT 1'));
    t.note(one('PREPARE r AS SELECT 2'));
    assert.equal(t.relayable('r'), false);
    t.note(one('DEALLOCATE r'));
    assert.equal(t.relayable('r'), false, 'forgotten: looked up');
    t.note(one('PREPARE r AS SELECT 3'));
    assert.equal(t.relayable('r'), true);
  });

  test('DEALLOCATE [PREPARE] name, DEALLOCATE ALL and DISCARD ALL forget names', () => {
    const t = new SqlPreparedTracker();
    for (const n of ['a', 'b', 'c']) t.note(one(`PREPARE ${n} AS SELECT 1`));
    t.note(one('DEALLOCATE PREPARE a'));
    assert.deepEqual(['a', 'b', 'c'].map((n) => t.relayable(n)), [false, true, true]);
    t.note(one('DEALLOCATE ALL'));
    assert.deepEqual(['a', 'b', 'c'].map((n) => t.relayable(n)), [false, false, false]);
    for (const n of ['a', 'b']) t.note(one(`PREPARE ${n} AS SELECT 1`));
    t.note(one('DISCARD ALL'));
    assert.deepEqual(['a', 'b'].map((n) => t.relayable(n)), [false, false]);
    // other statements leave names alone
    t.note(one('PREPARE a AS SELECT 1'));
    t.note(one('EXECUTE a'));
    t.note(one('SELECT 1'));
    assert.equal(t.relayable('a'), true);
  });

  test('unquoted names fold to lower case, quoted ones keep theirs', () => {
    const t = new SqlPreparedTracker();
    t.note(one('PREPARE "MyStmt" AS SELECT 1'));
    t.note(one('PREPARE MyOther AS SELECT 1'));
    assert.equal(one('EXECUTE "MyStmt"').prepared?.name, 'MyStmt');
    assert.equal(t.relayable('MyStmt'), true);
    assert.equal(t.relayable('mystmt'), false);
    assert.equal(t.relayable(one('EXECUTE MYOTHER').prepared!.name!), true);
    t.note(one('DEALLOCATE MYSTMT'));
    assert.equal(t.relayable('MyStmt'), true, 'DEALLOCATE mystmt is another name');
    t.note(one('DEALLOCATE "MyStmt"'));
    assert.equal(t.relayable('MyStmt'), false);
    t.note(one('DEALLOCATE myOTHER'));
    assert.equal(t.relayable('myother'), false);
  });

  test('a protocol-level Parse of a name makes it uncertain; Close drops it', () => {
    const t = new SqlPreparedTracker();
    t.note(one('PREPARE r AS SELECT 1'));
    t.parsed('r');
    assert.equal(t.relayable('r'), false);
    t.closed('r');
    t.note(one('PREPARE r AS SELECT 1'));
    assert.equal(t.relayable('r'), true);
  });

  test('a Parse of a name before any PREPARE of it: the PREPARE fails, so its read is not what EXECUTE runs', () => {
    // Parse q = INSERT …; PREPARE q AS SELECT 1 (42P05, q is taken); EXECUTE q runs the INSERT.
    // This was relayable (the tracker only marked names it already had), so the INSERT ran on
    // the local replica only.
    const t = new SqlPreparedTracker();
    t.parsed('q');
    t.note(one('PREPARE q AS SELECT 1'));
    assert.equal(t.relayable('q'), false);
    t.closed('q');
    t.note(one('PREPARE q AS SELECT 1'));
    assert.equal(t.relayable('q'), true);
  });
});

test('isPreparedStatementCommand: PREPARE and DEALLOCATE only', () => {
  assert.equal(isPreparedStatementCommand(one('PREPARE p AS SELECT 1')), true);
  assert.equal(isPreparedStatementCommand(one('DEALLOCATE p')), true);
  assert.equal(isPreparedStatementCommand(one('DEALLOCATE ALL')), true);
  assert.equal(isPreparedStatementCommand(one('EXECUTE p')), false);
  assert.equal(isPreparedStatementCommand(one('DISCARD ALL')), false);
  assert.equal(isPreparedStatementCommand(one('PREPARE TRANSACTION \'g\'')), false);
  assert.equal(isPreparedStatementCommand(null), false);
});

describe('explainedExecute', () => {
  const withoutTree = (st: PgStatement): PgStatement => {
    const { node: _node, ...rest } = st;
    return rest;
  };

  test('the name of an EXPLAIN ANALYZE EXECUTE, null for anything else', () => {
    const cases: Array<[string, string | null]> = [
      ['EXPLAIN ANALYZE EXECUTE P(1)', 'p'],
      ['EXPLAIN ANALYSE EXECUTE p', 'p'],
      ['EXPLAIN (ANALYZE, BUFFERS) EXECUTE "MyStmt"(1, 2)', 'MyStmt'],
      ['EXPLAIN (ANALYZE false) EXECUTE p', 'p'], // counted: at worst a look-up
      ['explain /* c */ analyze execute "a""b"', 'a"b'],
      ['EXPLAIN EXECUTE p(1)', null],
      ['EXPLAIN ANALYZE SELECT 1', null],
      ['EXECUTE p', null],
      ['SELECT 1', null],
    ];
    for (const [sql, name] of cases) {
      assert.equal(explainedExecute(one(sql)), name, sql);
      assert.equal(explainedExecute(withoutTree(one(sql))), name, `${sql} (tokens only)`);
    }
    assert.equal(explainedExecute(null), null);
  });

  test('names as postgres stores them: truncated to 63 bytes, only ASCII folded, U&"" decoded', () => {
    // each was looked up under another name than PREPARE's, found nothing, and a write ran here only
    const long = 'Long' + 'x'.repeat(70);
    const multibyte = 'é'.repeat(40); // 80 bytes: 31 characters fit in 63
    for (const [prep, exec] of [
      [`PREPARE ${long} AS SELECT 1`, `EXPLAIN ANALYZE EXECUTE ${long}`],
      [`PREPARE "${long}" AS SELECT 1`, `EXPLAIN ANALYZE EXECUTE "${long}"`],
      [`PREPARE "${multibyte}" AS SELECT 1`, `EXPLAIN ANALYZE EXECUTE "${multibyte}"`],
      ['PREPARE Äx AS SELECT 1', 'EXPLAIN ANALYZE EXECUTE Äx'],
    ]) {
      const name = one(prep!).prepared!.name!;
      assert.equal(explainedExecute(one(exec!)), name, exec);
      assert.equal(explainedExecute(withoutTree(one(exec!))), name, `${exec} (tokens only)`);
    }
    assert.equal(one('PREPARE Äx AS SELECT 1').prepared!.name, 'Äx');
    assert.equal(explainedExecute(one('EXPLAIN ANALYZE EXECUTE U&"d\\0061t"')), 'dat');
  });
});

test('preparedRows: text columns to rows; rows without name or text are skipped', () => {
  const rows = preparedRows([
    ['p', 'PREPARE p(int) AS SELECT $1', 't', '["integer"]'],
    ['q', 'SELECT 1', 'f', null, '[2]'],
    [null, 'x', 't', '[]'],
    ['r', null, 't', '[]'],
  ]);
  assert.deepEqual([...rows.keys()], ['p', 'q']);
  assert.deepEqual(rows.get('p'), { name: 'p', statement: 'PREPARE p(int) AS SELECT $1', fromSql: true, types: ['integer'] });
  assert.deepEqual(rows.get('q'), { name: 'q', statement: 'SELECT 1', fromSql: false, types: [], lengthDomains: [2] });
});

describe('expandExecute: the text it writes', () => {
  test('arguments cut at the commas of the top level only', () => {
    const two = row('PREPARE p (text, int) AS SELECT $1, $2', ['text', 'integer']);
    const cases: Array<[string, string, string]> = [
      ["EXECUTE p('a,b', 1)", "'a,b'", '1'],
      ["EXECUTE p('it''s, here', -1)", "'it''s, here'", '-1'],
      ["EXECUTE p(E'\\', x', 2)", "E'\\', x'", '2'],
      ["EXECUTE p(E'it''s\\\\', 2)", "E'it''s\\\\'", '2'],
      ['EXECUTE p($$a,b$$, 3)', '$$a,b$$', '3'],
      ['EXECUTE p($tag$ x, $$ y, $ $tag$, 4)', '$tag$ x, $$ y, $ $tag$', '4'],
      ["EXECUTE p(concat('a', 'b', lower('C,D')), coalesce(nullif(1, 2), 3))", "concat('a', 'b', lower('C,D'))", 'coalesce(nullif(1, 2), 3)'],
      ["EXECUTE p(array_to_string(ARRAY[1, 2, 3], ','), (ARRAY[4, 5])[1])", "array_to_string(ARRAY[1, 2, 3], ',')", '(ARRAY[4, 5])[1]'],
      ["EXECUTE p('{1,2}'::int[]::text, (length(concat('a', 'b')) * (2 + (3)))::int)", "'{1,2}'::int[]::text", "(length(concat('a', 'b')) * (2 + (3)))::int"],
      ['EXECUTE p(pg_catalog."left"(\'x,y\', 1), 5)', 'pg_catalog."left"(\'x,y\', 1)', '5'],
      ['EXECUTE p(/* a, b */ $1, $2 -- c, d\n)', '$1', '$2'],
      ["EXECUTE p(\n  'x'  ,\n  6\n)", "'x'", '6'],
      ["EXECUTE \"P\"('x', 7)", "'x'", '7'],
      ["EXECUTE /* c */ p /* d, e */ ('x', 8)", "'x'", '8'],
    ];
    for (const [exec, a, b] of cases) {
      assert.equal(sqlOf(expandExecute(exec, two, classifyPg)), `SELECT ((${a})::text), ((${b})::integer)`, exec);
    }
  });

  test('types: qualified, quoted, arrays, several words', () => {
    const types = ['public.mytype', '"MyType"', 'integer[]', 'timestamp with time zone', 'character varying', 'bpchar', '"bit"'];
    const r = row(`PREPARE t (${types.join(', ')}) AS INSERT INTO x VALUES ($1, $2, $3, $4, $5, $6, $7)`, types);
    const got = sqlOf(expandExecute("EXECUTE t('(1)', 'a', '{1}', '2026-11-24 00:00+02', 'v', 'c', B'101')", r, classifyPg));
    assert.equal(
      got,
      "INSERT INTO x VALUES ((('(1)')::public.mytype), (('a')::\"MyType\"), (('{1}')::integer[]), (('2026-11-24 00:00+02')::timestamp with time zone), (('v')::character varying), (('c')::bpchar), ((B'101')::\"bit\"))",
    );
  });

  test('the body: after AS, past a type list, with the other statements of its text left out; $n in strings, dollar quotes and comments stay', () => {
    const text = "SELECT 1; PREPARE p (int, text) AS SELECT $1 /* $2 */, '$1', $f$ $2 $f$, $2 -- $1\n; SELECT 2";
    const r = row(text, ['integer', 'text'], 'p');
    // the comment at the end is left out: it would swallow what the lane puts after the text
    assert.equal(sqlOf(expandExecute("EXECUTE p(1, 'x')", r, classifyPg)), "SELECT ((1)::integer) /* $2 */, '$1', $f$ $2 $f$, (('x')::text)");
    // no type list, no arguments
    const none = row('PREPARE n AS SELECT 42', []);
    assert.equal(sqlOf(expandExecute('EXECUTE n', none, classifyPg)), 'SELECT 42');
    // a protocol-level statement: its whole text is the body
    const parsed: PreparedRow = { name: 'S_1', statement: 'UPDATE t SET a = $1 WHERE b = $2', fromSql: false, types: ['integer', 'integer'] };
    assert.equal(sqlOf(expandExecute('EXECUTE "S_1"(3, 4)', parsed, classifyPg)), 'UPDATE t SET a = ((3)::integer) WHERE b = ((4)::integer)');
  });

  test('$n in the arguments are the outer statement\'s: copied as they are, never replaced again', () => {
    const r = row('PREPARE p (int, int) AS SELECT $1 - $2', ['integer', 'integer']);
    assert.equal(sqlOf(expandExecute('EXECUTE p($2, $1)', r, classifyPg)), 'SELECT (($2)::integer) - (($1)::integer)');
  });

  test('an argument used twice must be a constant (an expression would be evaluated twice): 0A000', () => {
    const r = row('PREPARE p (int) AS INSERT INTO t VALUES ($1, $1 + 1)', ['integer']);
    for (const arg of ['1', '-1', '+ 2', "'3'", "E'4'", '$$5$$', 'NULL', 'true', "'6'::int", "'{7}'::int[]", "'8'::pg_catalog.int4::text", "'9'::character varying(10)", "'2026-11-24'::timestamp with time zone"]) {
      const sql = sqlOf(expandExecute(`EXECUTE p(${arg})`, r, classifyPg));
      assert.equal(sql, `INSERT INTO t VALUES (((${arg})::integer), ((${arg})::integer) + 1)`, arg);
    }
    for (const arg of ['random()::int', 'nextval(\'s\')', '1 + 1', '(1)', 'ARRAY[1]', "'1' || '2'", 'now()', '$1', "'1'::int + 1", 'current_date']) {
      const e = errorOf(expandExecute(`EXECUTE p(${arg})`, r, classifyPg));
      assert.equal(e.sqlstate, '0A000', arg);
      assert.match(e.message, /\$1 is used 2 times: its argument must be a constant/, arg);
    }
  });

  test('an argument the statement does not use must be a constant (it would not be evaluated): 0A000', () => {
    // postgres evaluates every argument of EXECUTE, used or not: nextval() here advances the sequence
    const r = row('PREPARE p (int, int) AS INSERT INTO t VALUES ($1)', ['integer', 'integer']);
    assert.equal(sqlOf(expandExecute('EXECUTE p(now()::int, 2)', r, classifyPg)), 'INSERT INTO t VALUES (((now()::int)::integer))');
    const e = errorOf(expandExecute("EXECUTE p(1, nextval('s'))", r, classifyPg));
    assert.equal(e.sqlstate, '0A000');
    assert.match(e.message, /\$2 is not used by the statement/);
  });

  test('the wrong number of arguments: 42601, as postgres', () => {
    const r = row('PREPARE p (int, int) AS SELECT $1, $2', ['integer', 'integer']);
    for (const exec of ['EXECUTE p', 'EXECUTE p(1)', 'EXECUTE p(1, 2, 3)', "EXECUTE p('1, 2')"]) {
      const e = errorOf(expandExecute(exec, r, classifyPg));
      assert.equal(e.sqlstate, '42601', exec);
      assert.equal(e.message, 'wrong number of parameters for prepared statement "p"');
    }
    assert.equal(errorOf(expandExecute('EXECUTE n(1)', row('PREPARE n AS SELECT 1', []), classifyPg)).sqlstate, '42601');
  });

  test('arguments postgres refuses in EXECUTE and the text would take: column references, subqueries, window functions', () => {
    // UPDATE t SET a = $1 with EXECUTE p(a + 1): postgres says column "a" does not exist, the
    // expanded text would add 1 to every row
    const r = row('PREPARE p (int) AS UPDATE t SET a = $1', ['integer']);
    const cases: Array<[string, string]> = [
      ['EXECUTE p(a + 1)', '42703'],
      ['EXECUTE p(coalesce(t.a, 0))', '42703'],
      ['EXECUTE p((SELECT max(a) FROM t))', '0A000'],
      ['EXECUTE p(1 + (EXISTS (SELECT 1))::int)', '0A000'],
      ['EXECUTE p(row_number() OVER ())', '42P20'],
    ];
    for (const [exec, sqlstate] of cases) assert.equal(errorOf(expandExecute(exec, r, classifyPg)).sqlstate, sqlstate, exec);
    // functions, keywords and constants are not columns
    assert.equal(sqlOf(expandExecute('EXECUTE p(length(current_user) + abs(-1))', r, classifyPg)), 'UPDATE t SET a = ((length(current_user) + abs(-1))::integer)');
  });

  test('a parameter of a domain with a length is refused (a cast would cut what EXECUTE refuses): 0A000', () => {
    const r: PreparedRow = { ...row('PREPARE p (int, short) AS INSERT INTO t VALUES ($1, $2)', ['integer', 'short']), lengthDomains: [2] };
    const e = errorOf(expandExecute("EXECUTE p(1, 'x')", r, classifyPg));
    assert.equal(e.sqlstate, '0A000');
    assert.match(e.message, /parameter \$2 is of a domain with a length or precision \(short\)/);
    assert.equal(sqlOf(expandExecute("EXECUTE p(1, 'x')", { ...r, lengthDomains: [] }, classifyPg)), "INSERT INTO t VALUES (((1)::integer), (('x')::short))");
  });

  test('unreadable texts and arguments are refused, never guessed', () => {
    // the PREPARE is not in the text pg_prepared_statements gives
    assert.equal(errorOf(expandExecute('EXECUTE p', row('SELECT 1', [], 'p'), classifyPg)).sqlstate, '0A000');
    // two PREPAREs of the name in one text: which holds depends on which failed
    const twice = row("PREPARE d AS SELECT 'first'; DEALLOCATE d; PREPARE d AS SELECT 'second'", [], 'd');
    assert.match(errorOf(expandExecute('EXECUTE d', twice, classifyPg)).message, /cannot read the text of prepared statement "d"/);
    // not an EXECUTE, or a bracket that does not close
    const r = row('PREPARE p (int) AS SELECT $1', ['integer']);
    assert.equal(errorOf(expandExecute('SELECT 1', r, classifyPg)).sqlstate, '42601');
    assert.equal(errorOf(expandExecute('EXECUTE p(1', r, classifyPg)).sqlstate, '42601');
    assert.equal(errorOf(expandExecute('EXECUTE p 1', r, classifyPg)).sqlstate, '42601');
  });

  test('preparedWrites: from the body; an unreadable body counts as a write', () => {
    assert.equal(preparedWrites(row('PREPARE p AS SELECT 1', []), classifyPg), false);
    assert.equal(preparedWrites(row('PREPARE p (int) AS DELETE FROM t WHERE a = $1', ['integer']), classifyPg), true);
    assert.equal(preparedWrites(row("PREPARE p AS SELECT nextval('s')", []), classifyPg), true);
    assert.equal(preparedWrites({ name: 'x', statement: 'INSERT INTO t VALUES (1)', fromSql: false, types: [] }, classifyPg), true);
    assert.equal(preparedWrites({ name: 'x', statement: 'SELECT 1', fromSql: false, types: [] }, classifyPg), false);
    assert.equal(preparedWrites(row('SELECT 1', [], 'p'), classifyPg), true);
  });
});

// ---- on a real postgres ----

/** every column as postgres' text */
const asText = { getTypeParser: () => (v: string) => v };

type Outcome = { rows: unknown[][] } | { code: string };

async function outcome(c: pg.Client, sql: string): Promise<Outcome> {
  try {
    const r = await c.query({ text: sql, rowMode: 'array', types: asText });
    return { rows: r.rows as unknown[][] };
  } catch (e) {
    return { code: (e as { code?: string }).code ?? (e as Error).message };
  }
}

async function readRows(c: pg.Client, names: string[]): Promise<Map<string, PreparedRow>> {
  const r = await c.query({ text: preparedQuery(names), rowMode: 'array', types: asText });
  return preparedRows(r.rows as Array<Array<string | null>>);
}

/** What the router does with an EXECUTE: look its name up in the session, expand it. */
async function expandLive(c: pg.Client, exec: string): Promise<Expansion> {
  const name = one(exec).prepared!.name!;
  const found = (await readRows(c, [name])).get(name);
  assert.ok(found, `${name} is prepared`);
  return expandExecute(one(exec).text, found, classifyPg);
}

describe('on a real postgres: an expanded EXECUTE gives what EXECUTE gives', () => {
  const dir = tempDir('recall-pgprep-');
  chmodSync(dir.path, 0o755);
  const db = new ManagedPostgres({ dataDir: join(dir.path, 'db'), port: 0, startTimeoutMs: 60000, stopTimeoutMs: 10000, autoRestart: false });
  let c: pg.Client;

  before(async () => {
    await db.start();
    c = new pg.Client({ ...db.dsn, database: 'postgres' });
    await c.connect();
    await c.query(`
      SET TimeZone = 'UTC';
      CREATE TYPE comp AS (f int, g text);
      CREATE SCHEMA other;
      CREATE TYPE other.mood AS ENUM ('sad', 'ok');
      CREATE DOMAIN public.short AS varchar(4);
      CREATE DOMAIN public.posint AS int CHECK (VALUE > 0);
      CREATE DOMAIN public.shorter AS short;
      CREATE TYPE "MyType" AS ENUM ('A', 'b');
      CREATE TABLE t (id int PRIMARY KEY, c char(5), b bit(3), v varchar(10), a int[], ts timestamptz, m other.mood, s short, p posint, q "MyType", x comp)`);
  });
  after(async () => {
    await c?.end().catch(() => undefined);
    await db.stop();
    dir.remove();
  });

  // [PREPARE, EXECUTE …]: each EXECUTE runs as it is, then expanded, on the same session
  const cases: Array<[string, ...string[]]> = [
    // character and bit parameters: regtype's `character` / `bit` cast to one character / bit
    ['PREPARE chi AS INSERT INTO t (id, c, b) VALUES ($1, $2, $3) RETURNING c, b', "EXECUTE chi(1, 'hello', B'101')", "EXECUTE chi(2, 'toolong', B'1')"],
    ['PREPARE ch2 (char(5), bit(3), character[], bit(2)[]) AS SELECT $1, $2, $3, $4', "EXECUTE ch2('abc', B'10', '{hello,x}', '{101}')"],
    // subscripts, fields and FETCH FIRST of a parameter
    ['PREPARE sub (int[], comp) AS SELECT $1[2], $1[1:2], $2.g, ($2).f', "EXECUTE sub('{5,6,7}', '(1,gee)')"],
    ['PREPARE ff (bigint) AS SELECT g FROM generate_series(1, 10) g ORDER BY g FETCH FIRST $1 ROWS ONLY', 'EXECUTE ff(3)'],
    ['PREPARE lim AS SELECT g FROM generate_series(1, 10) g ORDER BY g LIMIT $1 OFFSET $2', 'EXECUTE lim(2, 5)'],
    // qualified, quoted, domain, array, multi-word and length-limited types
    [
      'PREPARE ins (int, timestamp with time zone, character varying(10), int[], other.mood, public.posint, "MyType") AS ' +
        'INSERT INTO t (id, ts, v, a, m, p, q) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ts, v, a, m, p, q',
      "EXECUTE ins(10, '2026-11-24 10:00:00+02', 'it''s', '{1,2}', 'ok', 1, 'A')",
      "EXECUTE ins(11, now(), E'a\\'b', ARRAY[3], 'sad'::other.mood, '2', 'b')",
      "EXECUTE ins(12, '2026-11-24', 'way too long for ten', '{}', 'ok', 1, 'A')",
      "EXECUTE ins(13, '2026-11-24', 'x', '{}', 'ok', 0, 'A')",
      "EXECUTE ins(14, '2026-11-24', 'x', '{}', 'nope', 1, 'A')",
    ],
    // argument texts: quotes, dollar quotes, commas in calls and arrays, nested brackets
    [
      'PREPARE s3 (text, text, text) AS SELECT $1, $2, $3',
      "EXECUTE s3('a,b', E'\\'', $$c,d$$)",
      "EXECUTE s3($q$ x, 'y' $q$, concat('a', ',', 'b'), array_to_string(ARRAY['e', 'f'], ','))",
      "EXECUTE s3(format('%s,%s', 1, 2), (ARRAY['g', 'h'])[2], NULL)",
    ],
    // a constant used twice; an argument with its own casts
    ['PREPARE tw (int) AS SELECT $1, $1 * 2, $1::text || \'!\'', "EXECUTE tw('21')", 'EXECUTE tw(-3)', "EXECUTE tw('7'::int8::int)"],
    // the other statements of a PREPARE's text are left out
    ["SELECT 'before'; PREPARE m1 (int) AS SELECT $1 + 1; PREPARE m2 AS SELECT 'two'", 'EXECUTE m1(1)', 'EXECUTE m2'],
    // quoted and folded names
    ['PREPARE "MyStmt" (text) AS SELECT upper($1)', 'EXECUTE "MyStmt"(\'x\')'],
    ['PREPARE MixedCase (text) AS SELECT lower($1)', "EXECUTE MIXEDCASE('Y')"],
    // arguments postgres refuses the same way either way
    ['PREPARE bad (int) AS SELECT $1', "EXECUTE bad('x')", 'EXECUTE bad(1/0)'],
  ];

  test('rows and errors are equal, case by case', async () => {
    let rowsSeen = 0;
    let errorsSeen = 0;
    const unequal: string[] = [];
    for (const [prepare, ...execs] of cases) {
      await c.query(prepare);
      for (const exec of execs) {
        // one transaction (now() is the same in both), each run undone before the other
        await c.query('BEGIN; SAVEPOINT s');
        try {
          const direct = await outcome(c, exec);
          await c.query('ROLLBACK TO SAVEPOINT s');
          const x = await expandLive(c, exec);
          const expanded = await outcome(c, sqlOf(x));
          // all cases run; the ones that differ are listed together
          if (JSON.stringify(expanded) !== JSON.stringify(direct)) unequal.push(`${exec}: ${JSON.stringify(direct)}; as ${sqlOf(x)}: ${JSON.stringify(expanded)}`);
          if ('rows' in direct) rowsSeen++;
          else errorsSeen++;
        } finally {
          await c.query('ROLLBACK');
        }
      }
    }
    assert.deepEqual(unequal, []);
    assert.ok(rowsSeen >= 15 && errorsSeen >= 6, `${rowsSeen} with rows, ${errorsSeen} errors`);
  });

  test('preparedQuery: names with quotes and backslashes, folded and quoted; types spelled for a cast; domains with a length', async () => {
    await c.query(`PREPARE "it's \\ ""x""" AS SELECT 1`);
    await c.query('PREPARE FoldMe AS SELECT 1');
    await c.query('PREPARE dom (short, posint, short[], shorter, int, char(3)) AS SELECT $1, $2, $3, $4, $5, $6');
    await c.query({ name: 'parsed_s', text: 'SELECT $1::int', values: [1] });
    const rows = await readRows(c, ['it\'s \\ "x"', 'foldme', 'FoldMe', 'dom', 'parsed_s', 'absent']);
    assert.deepEqual([...rows.keys()].sort(), ['dom', 'foldme', 'it\'s \\ "x"', 'parsed_s']);
    assert.deepEqual(rows.get('dom'), {
      name: 'dom',
      statement: 'PREPARE dom (short, posint, short[], shorter, int, char(3)) AS SELECT $1, $2, $3, $4, $5, $6',
      fromSql: true,
      types: ['short', 'posint', 'short[]', 'shorter', 'integer', 'bpchar'],
      lengthDomains: [1, 3, 4],
    });
    assert.deepEqual(rows.get('parsed_s'), { name: 'parsed_s', statement: 'SELECT $1::int', fromSql: false, types: ['integer'], lengthDomains: [] });
    assert.equal((await readRows(c, ['none'])).size, 0);
  });

  test('a domain with a length: EXECUTE refuses a long value that its cast would cut (so the expansion is refused)', async () => {
    await c.query('PREPARE shortp (short) AS SELECT $1');
    assert.deepEqual(await outcome(c, "EXECUTE shortp('toolong')"), { code: '22001' });
    assert.deepEqual(await outcome(c, "SELECT (('toolong')::short)"), { rows: [['tool']] }, 'the cast cuts');
    assert.equal(errorOf(await expandLive(c, "EXECUTE shortp('toolong')")).sqlstate, '0A000');
  });

  test('a protocol-level statement: SQL EXECUTE runs it, and a later PREPARE of its name fails', async () => {
    await c.query({ name: 'wq', text: 'INSERT INTO t (id, v) VALUES ($1, $2) RETURNING id, v' , values: [100, 'x'] });
    await c.query('DELETE FROM t');
    assert.deepEqual(await outcome(c, 'PREPARE wq AS SELECT 1'), { code: '42P05' });
    const found = (await readRows(c, ['wq'])).get('wq')!;
    assert.equal(found.fromSql, false);
    assert.equal(preparedWrites(found, classifyPg), true, 'the name holds the INSERT, not the SELECT');
    // the tracker, fed as the router feeds it (Parse, then the PREPARE's text), looks it up
    const tr = new SqlPreparedTracker();
    tr.parsed('wq');
    tr.note(one('PREPARE wq AS SELECT 1'));
    assert.equal(tr.relayable('wq'), false);
    await c.query('BEGIN; SAVEPOINT s');
    try {
      const direct = await outcome(c, "EXECUTE wq(7, 'seven')");
      await c.query('ROLLBACK TO SAVEPOINT s');
      const x = await expandLive(c, "EXECUTE wq(7, 'seven')");
      assert.deepEqual(direct, { rows: [['7', 'seven']] });
      assert.deepEqual(await outcome(c, sqlOf(x)), direct);
    } finally {
      await c.query('ROLLBACK');
    }
  });

  test('two PREPAREs of one name in one text: postgres keeps the second here, the expansion refuses rather than pick', async () => {
    await c.query("PREPARE d1 AS SELECT 'first'; DEALLOCATE d1; PREPARE d1 AS SELECT 'second'");
    assert.deepEqual(await outcome(c, 'EXECUTE d1'), { rows: [['second']] });
    assert.equal(errorOf(await expandLive(c, 'EXECUTE d1')).sqlstate, '0A000');
  });

  test('arguments postgres refuses in EXECUTE are refused by the expansion too', async () => {
    await c.query('PREPARE upd (int) AS UPDATE t SET id = $1');
    for (const exec of ['EXECUTE upd(id + 1)', 'EXECUTE upd((SELECT 1))', 'EXECUTE upd(row_number() OVER ())']) {
      const direct = await outcome(c, exec);
      assert.ok('code' in direct, `${exec}: postgres refuses it`);
      assert.deepEqual({ code: errorOf(await expandLive(c, exec)).sqlstate }, direct, exec);
    }
  });
});
