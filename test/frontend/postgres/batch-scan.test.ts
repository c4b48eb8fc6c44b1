// scanBatch (what the router's decide reads of every batch) against decodeBatch (the full
// decoder the router uses for batches it takes): the same names, SQL and types; a Bind's raw
// message decodes to the same values later; malformed batches throw, truncated ones at every cut.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { scanBatch } from '../../../src/frontend/postgres/batch-scan.js';
import { decodeBatch } from '../../../src/replication/pg/batch.js';
import { Writer } from '../../../src/protocol/postgres/writer.js';
import { msg } from './raw-client.js';

const name = fc.oneof(fc.constant(''), fc.string({ minLength: 1, maxLength: 8 }).filter((s) => !s.includes('\0')));
const sql = fc.string({ maxLength: 40 }).filter((s) => !s.includes('\0'));

const message = fc.oneof(
  fc.tuple(sql).map(([q]) => msg('Q', (w) => w.cstring(q))),
  fc.tuple(name, sql, fc.array(fc.integer({ min: 0, max: 0xffffffff }), { maxLength: 4 })).map(([n, q, types]) =>
    msg('P', (w) => {
      w.cstring(n).cstring(q).int16(types.length);
      for (const t of types) w.int32(t | 0);
    })),
  fc.tuple(name, name, fc.array(fc.integer({ min: 0, max: 1 }), { maxLength: 3 }), fc.array(fc.option(fc.uint8Array({ maxLength: 6 })), { maxLength: 4 }), fc.array(fc.integer({ min: 0, max: 1 }), { maxLength: 3 }))
    .map(([portal, stmt, formats, values, results]) =>
      msg('B', (w) => {
        w.cstring(portal).cstring(stmt).int16(formats.length);
        for (const f of formats) w.int16(f);
        w.int16(values.length);
        for (const v of values) {
          if (v === null) w.int32(-1);
          else w.int32(v.length).bytes(v);
        }
        w.int16(results.length);
        for (const r of results) w.int16(r);
      })),
  fc.tuple(fc.constantFrom('S', 'P'), name, fc.boolean()).map(([k, n, close]) => msg(close ? 'C' : 'D', (w) => w.int8(k.charCodeAt(0)).cstring(n))),
  fc.tuple(name, fc.integer({ min: 0, max: 100 })).map(([p, rows]) => msg('E', (w) => w.cstring(p).int32(rows))),
  fc.constant(msg('S')),
  fc.constant(msg('H')),
);

describe('scanBatch', () => {
  test('reads what decodeBatch reads (fast-check)', () => {
    fc.assert(fc.property(fc.array(message, { minLength: 1, maxLength: 8 }), (msgs) => {
      const bytes = Buffer.concat(msgs);
      const scanned = scanBatch(bytes);
      const decoded = decodeBatch(bytes);
      assert.equal(scanned.length, decoded.length);
      scanned.forEach((s, i) => {
        const d = decoded[i]!;
        assert.equal(s.t, d.t);
        if (s.t === 'Query' && d.t === 'Query') assert.equal(s.sql, d.sql);
        if (s.t === 'Parse' && d.t === 'Parse') assert.deepEqual([s.name, s.sql, s.types], [d.name, d.sql, d.types]);
        if ((s.t === 'Describe' || s.t === 'Close') && (d.t === 'Describe' || d.t === 'Close')) assert.deepEqual([s.kind, s.name], [d.kind, d.name]);
        if (s.t === 'Execute' && d.t === 'Execute') assert.equal(s.portal, d.portal);
        if (s.t === 'Bind' && d.t === 'Bind') {
          assert.deepEqual([s.portal, s.stmt], [d.portal, d.stmt]);
          assert.deepEqual(decodeBatch(Buffer.from(s.raw)), [d], 'the raw Bind decodes to the same values');
        }
      });
    }), { numRuns: 500 });
  });

  test('a message cut short or a Bind whose values overrun it is refused', () => {
    const bind = msg('B', (w) => w.cstring('p').cstring('s').int16(1).int16(0).int16(2).int32(3).bytes(Buffer.from('abc')).int32(-1).int16(0));
    assert.equal(scanBatch(bind).length, 1);
    // shorten the length field: the body no longer holds what its counts announce
    for (let cut = 1; cut < bind.length - 5; cut++) {
      const bad = Buffer.from(bind.subarray(0, bind.length - cut));
      bad.writeInt32BE(bad.length - 1, 1);
      assert.throws(() => scanBatch(bad), /invalid/, `cut ${cut}`);
    }
    // a batch whose last message is incomplete
    const q = msg('Q', (w) => w.cstring('SELECT 1'));
    const two = Buffer.concat([q, msg('S')]);
    for (let cut = 1; cut < two.length; cut++) if (cut !== q.length) assert.throws(() => scanBatch(two.subarray(0, cut)), /invalid/, `prefix ${cut}`);
    assert.throws(() => scanBatch(msg('D', (w) => w.int8(0x58).cstring('x'))), /DESCRIBE message subtype X/);
    assert.throws(() => scanBatch(msg('d', (w) => w.bytes(Buffer.from('x')))), /unexpected message type/);
    assert.throws(() => scanBatch(new Writer().int8(0x51).int32(2).message(0x51).subarray(5)), /invalid message/);
  });
});
