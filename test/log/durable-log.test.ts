import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { DurableLog, LogCorruptionError } from '../../src/log/durable-log.js';
import { EntryType, type Entry, CompactedError, UnavailableError } from '../../src/consensus/types.js';
import { configureLogging } from '../../src/util/log.js';

configureLogging({ silent: true });
const conf = { voters: [1, 2, 3], learners: [] };
const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'recall-log-'));
after(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));
let n = 0;
const freshDir = (): string => path.join(tmpRoot, `d${n++}`);

function ent(index: number, term: number, size = 10): Entry {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = (index * 7 + term + i) & 0xff;
  return { index, term, type: EntryType.Normal, data };
}
const range = (lo: number, hi: number, term: number, size = 10): Entry[] =>
  Array.from({ length: hi - lo }, (_, k) => ent(lo + k, term, size));

function assertSame(a: readonly Entry[], b: readonly Entry[]): void {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) {
    assert.equal(a[i]!.index, b[i]!.index);
    assert.equal(a[i]!.term, b[i]!.term);
    assert.equal(a[i]!.type, b[i]!.type);
    assert.deepEqual(Buffer.from(a[i]!.data), Buffer.from(b[i]!.data));
  }
}

describe('DurableLog', () => {
  test('append, sync, reopen, read back across segments', async () => {
    const dir = freshDir();
    const l = DurableLog.open(dir, { bootstrapConf: conf, segmentBytesMax: 1000 });
    assert.equal(l.firstIndex(), 1);
    assert.equal(l.lastIndex(), 0);
    assert.equal(l.term(0), 0);
    const all = range(1, 301, 1, 20);
    for (let i = 0; i < all.length; i += 50) l.append(all.slice(i, i + 50));
    l.setHardState({ term: 1, vote: 2, commit: 250 });
    await l.sync();
    assert.ok(l.segmentFiles().length > 5, 'rolled over several segments');
    await l.close();
    const r = DurableLog.open(dir, { bootstrapConf: conf, segmentBytesMax: 1000, cacheBytesMax: 500 });
    assert.equal(r.lastIndex(), 300);
    assert.deepEqual(r.initialState().hardState, { term: 1, vote: 2, commit: 250 });
    assert.deepEqual(r.initialState().conf, conf);
    assertSame(r.entries(1, 301, Infinity), all); // mostly from files (small cache)
    assert.equal(r.entries(1, 301, 100).length, 5); // 20 bytes each, maxBytes 100
    assert.equal(r.entries(5, 301, 0).length, 1); // at least one
    assert.throws(() => r.term(301), UnavailableError);
    await r.close();
  });

  test('term/vote changes are durable after sync; commit is persisted lazily and on close', async () => {
    const dir = freshDir();
    const l = DurableLog.open(dir, { bootstrapConf: conf, commitPersistIntervalMs: 60_000 });
    l.append(range(1, 11, 1));
    l.setHardState({ term: 1, vote: 1, commit: 0 });
    await l.sync();
    l.setHardState({ term: 1, vote: 1, commit: 5 });
    await l.sync(); // commit-only change: not written yet (interval)
    // Simulate a crash: reopen without close.
    const crashed = DurableLog.open(dir, { bootstrapConf: conf });
    assert.deepEqual(crashed.initialState().hardState, { term: 1, vote: 1, commit: 0 });
    await crashed.close();
    await l.close();
    const r = DurableLog.open(dir, { bootstrapConf: conf });
    assert.deepEqual(r.initialState().hardState, { term: 1, vote: 1, commit: 5 });
    await r.close();
  });

  test('sync({commitDurable}) writes the commit index at once, inside the lazy interval', async () => {
    const dir = freshDir();
    const l = DurableLog.open(dir, { bootstrapConf: conf, commitPersistIntervalMs: 60_000 });
    l.append(range(1, 11, 1));
    l.setHardState({ term: 1, vote: 1, commit: 0 });
    await l.sync();
    l.setHardState({ term: 1, vote: 1, commit: 7 });
    await l.sync({ commitDurable: true }); // e.g. the batch committed a membership change
    // Simulate a crash: reopen without close; the commit must have survived.
    const crashed = DurableLog.open(dir, { bootstrapConf: conf });
    assert.deepEqual(crashed.initialState().hardState, { term: 1, vote: 1, commit: 7 });
    await crashed.close();
    await l.close();
  });

  test('truncation of a conflicting suffix, also across segment boundaries', async () => {
    const dir = freshDir();
    const l = DurableLog.open(dir, { bootstrapConf: conf, segmentBytesMax: 300 });
    l.append(range(1, 101, 1));
    l.append(range(40, 61, 2)); // replaces 40..100 by 40..60 of term 2
    assert.equal(l.lastIndex(), 60);
    assert.equal(l.term(39), 1);
    assert.equal(l.term(40), 2);
    const segFirsts = l.segmentFiles().map((f) => Number(path.basename(f).slice(0, 20)));
    const at = segFirsts.find((f) => f > 40)!; // exactly at a segment start, after the term-2 entries began
    assert.ok(at !== undefined && at <= 60);
    l.append(range(at, at + 3, 3));
    const last = at + 2;
    assert.equal(l.lastIndex(), last);
    await l.sync();
    await l.close();
    const r = DurableLog.open(dir, { bootstrapConf: conf, segmentBytesMax: 300 });
    assert.equal(r.lastIndex(), last);
    assertSame(r.entries(1, last + 1, Infinity), [...range(1, 40, 1), ...range(40, at, 2), ...range(at, last + 1, 3)]);
    await r.close();
  });

  test('compaction drops whole segments; received snapshot resets the log', async () => {
    const dir = freshDir();
    const l = DurableLog.open(dir, { bootstrapConf: conf, segmentBytesMax: 300 });
    l.append(range(1, 201, 1));
    await l.sync();
    const before = l.segmentFiles().length;
    await l.compact({ meta: { index: 150, term: 1, conf }, data: new Uint8Array([1, 2, 3]) });
    assert.ok(l.segmentFiles().length < before);
    assert.equal(l.firstIndex(), 151);
    assert.equal(l.term(150), 1);
    assert.throws(() => l.term(149), CompactedError);
    assert.throws(() => l.entries(100, 160, Infinity), CompactedError);
    l.append(range(201, 221, 2));
    await l.sync();
    await l.close();
    let r = DurableLog.open(dir, { bootstrapConf: { voters: [9], learners: [] }, segmentBytesMax: 300 });
    assert.equal(r.firstIndex(), 151);
    assert.equal(r.lastIndex(), 220);
    assert.deepEqual(r.snapshot().meta, { index: 150, term: 1, conf });
    assert.deepEqual([...r.snapshot().data], [1, 2, 3]);
    assert.deepEqual(r.initialState().conf, conf);
    assertSame(r.entries(151, 221, Infinity), [...range(151, 201, 1), ...range(201, 221, 2)]);
    await r.applySnapshot({ meta: { index: 500, term: 7, conf }, data: new Uint8Array([9]) });
    assert.equal(r.firstIndex(), 501);
    assert.equal(r.lastIndex(), 500);
    assert.equal(r.term(500), 7);
    r.append(range(501, 511, 7));
    await r.sync();
    await r.close();
    r = DurableLog.open(dir, { bootstrapConf: conf, segmentBytesMax: 300 });
    assert.equal(r.firstIndex(), 501);
    assert.equal(r.lastIndex(), 510);
    assert.equal(r.initialState().hardState.commit, 500);
    await r.close();
  });

  test('a torn tail is dropped at every cut offset of the last record', async () => {
    const dir = freshDir();
    const l = DurableLog.open(dir, { bootstrapConf: conf });
    l.append(range(1, 21, 1, 30));
    await l.sync();
    await l.close();
    const file = path.join(dir, fs.readdirSync(dir).find((f) => f.endsWith('.seg'))!);
    const full = fs.readFileSync(file);
    const recordBytes = full.length / 20;
    const lastStart = full.length - recordBytes;
    for (let cut = lastStart; cut < full.length; cut++) {
      fs.writeFileSync(file, full.subarray(0, cut));
      const r = DurableLog.open(dir, { bootstrapConf: conf });
      assert.equal(r.lastIndex(), 19, `cut at ${cut}`);
      assert.equal(fs.statSync(file).size, lastStart, 'torn bytes truncated away');
      r.append([ent(20, 2)]); // the log keeps working after recovery
      await r.sync();
      await r.close();
      const again = DurableLog.open(dir, { bootstrapConf: conf });
      assert.equal(again.term(20), 2);
      await again.close();
    }
    // Zero-filled tail (file extended but data never written) is torn too.
    fs.writeFileSync(file, Buffer.concat([full, Buffer.alloc(100)]));
    const z = DurableLog.open(dir, { bootstrapConf: conf });
    assert.equal(z.lastIndex(), 20);
    await z.close();
  });

  test('corruption in the middle refuses to open, naming file and offset', async () => {
    const dir = freshDir();
    const l = DurableLog.open(dir, { bootstrapConf: conf });
    l.append(range(1, 21, 1, 30));
    await l.sync();
    await l.close();
    const file = path.join(dir, fs.readdirSync(dir).find((f) => f.endsWith('.seg'))!);
    const full = fs.readFileSync(file);
    const recordBytes = full.length / 20;
    // Flip one byte in each of the first 19 records (header or payload): never a torn tail.
    for (let rec = 0; rec < 19; rec++) {
      for (const within of [0, 5, 10, recordBytes - 1]) {
        const bad = Buffer.from(full);
        bad[rec * recordBytes + within]! ^= 0x40;
        fs.writeFileSync(file, bad);
        assert.throws(
          () => DurableLog.open(dir, { bootstrapConf: conf }),
          (e: unknown) => e instanceof LogCorruptionError && e.file === file && e.offset === rec * recordBytes && e.message.includes(file),
          `record ${rec} byte ${within}`,
        );
      }
    }
    fs.writeFileSync(file, full);
    // A gap between segments refuses to open too.
    const l2 = DurableLog.open(dir, { bootstrapConf: conf, segmentBytesMax: 200 });
    l2.append(range(21, 40, 1, 30));
    await l2.sync();
    await l2.close();
    const segs = fs.readdirSync(dir).filter((f) => f.endsWith('.seg')).sort();
    assert.ok(segs.length >= 3);
    fs.rmSync(path.join(dir, segs[1]!));
    assert.throws(() => DurableLog.open(dir, { bootstrapConf: conf }), /gap/);
  });

  test('property: matches an array model through appends, truncations, compactions and reopens', async () => {
    type Op =
      | { k: 'append'; at: number; count: number; size: number }
      | { k: 'compact'; at: number }
      | { k: 'reopen' }
      | { k: 'crash' };
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 6, arbitrary: fc.record({ k: fc.constant('append' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 30 }), size: fc.integer({ min: 0, max: 200 }) }) },
      { weight: 1, arbitrary: fc.record({ k: fc.constant('compact' as const), at: fc.nat() }) },
      { weight: 1, arbitrary: fc.constant({ k: 'reopen' as const }) },
      { weight: 1, arbitrary: fc.constant({ k: 'crash' as const }) },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 25 }), async (ops) => {
        const dir = freshDir();
        const opts = { bootstrapConf: conf, segmentBytesMax: 2000, cacheBytesMax: 1500 };
        let l = DurableLog.open(dir, opts);
        let model: Entry[] = []; // model[k] is entry snapIndex+1+k
        let snapIndex = 0;
        let snapTerm = 0;
        let term = 1;
        try {
          for (const o of ops) {
            if (o.k === 'append') {
              const last = snapIndex + model.length;
              const at = snapIndex + 1 + (o.at % (model.length + 1));
              term++;
              const es = range(at, at + o.count, term, o.size);
              l.append(es);
              model = [...model.slice(0, at - snapIndex - 1), ...es];
              assert.ok(at <= last + 1);
              await l.sync();
            } else if (o.k === 'compact') {
              if (model.length === 0) continue;
              const i = snapIndex + 1 + (o.at % model.length);
              snapTerm = model[i - snapIndex - 1]!.term;
              await l.compact({ meta: { index: i, term: snapTerm, conf }, data: new Uint8Array([i & 0xff]) });
              model = model.slice(i - snapIndex);
              snapIndex = i;
            } else {
              if (o.k === 'reopen') await l.close();
              else (l as unknown as { segments: { fd: number }[] }).segments.forEach((s) => fs.closeSync(s.fd)); // synced, just abandoned
              l = DurableLog.open(dir, opts);
            }
            assert.equal(l.firstIndex(), snapIndex + 1);
            assert.equal(l.lastIndex(), snapIndex + model.length);
            assert.equal(l.term(snapIndex), snapTerm);
            if (model.length > 0) assertSame(l.entries(snapIndex + 1, snapIndex + model.length + 1, Infinity), model);
          }
        } finally {
          await l.close();
          fs.rmSync(dir, { recursive: true, force: true });
        }
      }),
      { numRuns: 60 },
    );
  });
});
