// Property: rewritePgWrite changes exactly the calls of time/random/uuid functions and nothing
// else — not a byte outside them, not a call-looking text inside strings, dollar quotes, quoted
// identifiers or comments — and what it leaves has no such call. Statements are generated from
// fragments whose positions the generator records, so the expected edits are known.
import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { loadPgParser } from '../../src/sql/pg-parse.js';
import { rewritePgWrite, splice, type PgWriteContext } from '../../src/sql/pg-rewrite.js';
import { classifyPg } from '../../src/sql/pg-classify.js';

interface Piece {
  text: string;
  /** a call Recall must rewrite */
  call: boolean;
}

const CALLS = [
  'now()', 'NOW ( )', 'pg_catalog.now()', 'now(/* ) */)', 'Now(\n)', 'current_timestamp', 'CURRENT_TIMESTAMP(3)',
  'current_time ( 2 )', 'current_time', 'localtimestamp', 'LOCALTIMESTAMP /* p */ (0)', 'localtime(6)', 'current_date',
  'statement_timestamp()', 'clock_timestamp()', 'transaction_timestamp()', 'timeofday()', 'random()', 'gen_random_uuid()',
  '"now"()', 'pg_catalog."random"()',
];
const NOISE = [
  "'now()'", "E'\\'now()\\\\'", "$$ random() $$", "$q$now();$q$", '"current_date"', '1', '2.5e3', "'é😀 current_timestamp'",
  "U&'\\0061'", "B'101'", "'a'\n  'b'", 'NULL', "'it''s now()'", 'now_x', 'x.now', "interval '1 day'", 'array[1, 2]', '$1',
];
const SEPARATORS = [', ', ',', ' ,\n', ', /* now() */ ', ', -- random()\n', ',/*/* nested */ current_date */'];
const GAPS = ['; ', ';\n', ' ; /* now() */ ', ';;', '; -- gen_random_uuid()\n'];

const piece = fc.oneof(
  fc.constantFrom(...CALLS).map((text): Piece => ({ text, call: true })),
  fc.constantFrom(...NOISE).map((text): Piece => ({ text, call: false })),
  // a call inside an expression: the call's span is inside the piece
  fc.tuple(fc.constantFrom(...CALLS), fc.constantFrom(...NOISE)).map(([c, n]): Piece[] => [
    { text: 'coalesce(', call: false }, { text: c, call: true }, { text: `, ${n})`, call: false },
  ]),
);

const statement = fc.tuple(
  fc.constantFrom('insert', 'select', 'update'),
  fc.array(piece, { minLength: 1, maxLength: 6 }),
  fc.array(fc.constantFrom(...SEPARATORS), { minLength: 6, maxLength: 6 }),
).map(([kind, items, seps]) => {
  const flat = items.map((i) => (Array.isArray(i) ? i : [i]));
  const out: Piece[] = [];
  const list = (): void =>
    flat.forEach((p, i) => {
      if (i > 0) out.push({ text: seps[i - 1]!, call: false });
      out.push(...p);
    });
  if (kind === 'insert') {
    out.push({ text: 'INSERT INTO "T ""x""" VALUES (', call: false });
    list();
    out.push({ text: ')', call: false });
  } else if (kind === 'select') {
    out.push({ text: 'SELECT ', call: false });
    list();
  } else {
    // UPDATE evaluates per row: no random()/uuid there (refused); time calls only
    out.push({ text: 'UPDATE t SET a = row(', call: false });
    flat.forEach((p, i) => {
      if (i > 0) out.push({ text: seps[i - 1]!, call: false });
      out.push(...p.map((x) => (x.call && /random|uuid/i.test(x.text) ? { text: 'now()', call: true } : x)));
    });
    out.push({ text: ') WHERE k = 1', call: false });
  }
  return out;
});

const script = fc.tuple(fc.array(statement, { minLength: 1, maxLength: 3 }), fc.array(fc.constantFrom(...GAPS), { minLength: 3, maxLength: 3 }), fc.boolean())
  .map(([stmts, gaps, lead]) => {
    const pieces: Piece[] = lead ? [{ text: '/* lead now() */ ', call: false }] : [];
    stmts.forEach((s, i) => {
      if (i > 0) pieces.push({ text: gaps[i - 1]!, call: false });
      pieces.push(...s);
    });
    let at = 0;
    const spans: [number, number][] = [];
    for (const p of pieces) {
      if (p.call) spans.push([at, at + p.text.length]);
      at += p.text.length;
    }
    return { sql: pieces.map((p) => p.text).join(''), spans };
  });

function ctx(): PgWriteContext {
  let n = 0;
  return {
    transactionTimestamp: '2026-11-24 01:02:03.456789+00',
    statementTimestamp: '2026-11-24 01:02:03.5+00',
    random: () => ((n++ * 0.618033988749895) % 1),
    uuid: () => `00000000-0000-4000-8000-${String(n++).padStart(12, '0')}`,
  };
}

describe('rewritePgWrite splicing', () => {
  before(() => loadPgParser());

  test('edits cover exactly the generated calls; everything else is byte-identical; no call is left', () => {
    fc.assert(
      fc.property(script, ({ sql, spans }) => {
        const r = rewritePgWrite(sql, ctx());
        assert.ok(r.ok, `${sql}\n${r.ok ? '' : r.refusal.message}`);
        const edits = [...r.edits].sort((a, b) => a.start - b.start);
        assert.deepEqual(edits.map((e) => [e.start, e.end]), spans, sql);
        // outside the edits, the output is the input: walk both
        let inAt = 0;
        let outAt = 0;
        for (const e of edits) {
          const kept = sql.slice(inAt, e.start);
          assert.equal(r.sql.slice(outAt, outAt + kept.length), kept);
          outAt += kept.length;
          assert.equal(r.sql.slice(outAt, outAt + e.text.length), e.text);
          outAt += e.text.length;
          inAt = e.end;
        }
        assert.equal(r.sql.slice(outAt), sql.slice(inAt));
        assert.equal(splice(sql, r.edits), r.sql);
        // the output parses and has nothing left to rewrite
        const again = rewritePgWrite(r.sql, ctx());
        assert.ok(again.ok && !again.changed, r.sql);
      }),
      { numRuns: 500 },
    );
  });

  test('any text from a client: classification and rewriting answer, never throw', () => {
    const words = ['SELECT', 'INSERT INTO t', 'VALUES', '(', ')', ',', ';', "'", '"', '$$', '$a$', 'E\'', '/*', '*/', '--', '\n',
      'now()', 'random()', 'current_timestamp', 'DEFAULT', 'FROM', 'WITH x AS', 'UPDATE t SET a =', 'é', '😀', '1', 'ON CONFLICT', 'RETURNING *'];
    const text = fc.oneof(fc.string({ maxLength: 60 }), fc.array(fc.constantFrom(...words), { maxLength: 20 }).map((w) => w.join(' ')));
    fc.assert(
      fc.property(text, (sql) => {
        const st = classifyPg(sql);
        assert.ok(Array.isArray(st));
        const r = rewritePgWrite(sql, ctx());
        assert.ok(r.ok || typeof r.refusal.message === 'string');
      }),
      { numRuns: 1500 },
    );
  });

  test('splice refuses overlapping edits (a broken invariant, not bad input)', () => {
    assert.throws(() => splice('abcdef', [{ start: 1, end: 3, text: 'x' }, { start: 2, end: 4, text: 'y' }]), /overlapping/);
    assert.equal(splice('abcdef', [{ start: 4, end: 5, text: 'E' }, { start: 0, end: 0, text: '>' }]), '>abcdEf');
  });
});
