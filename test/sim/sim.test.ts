// The simulator over the real core: thousands of seeded runs with faults, then healing.
// A failure names its seed; replay it with `npm run sim -- --seed N --verbose`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runSeed } from './run.js';

const seeds = Number(process.env.RECALL_SIM_SEEDS ?? 2000);

test(`simulator: ${seeds} seeds (3 and 5 nodes), zero safety or liveness violations`, () => {
  const failures: string[] = [];
  let committed = 0;
  let elected = 0;
  let snapshots = 0;
  for (let s = 1; s <= seeds; s++) {
    const r = runSeed(s, { traceMax: 30 });
    committed += r.committed;
    elected += r.stats['elected'] ?? 0;
    snapshots += r.stats['snapshot.installed'] ?? 0;
    if (!r.ok) failures.push(`seed ${s}: ${r.error}\n${r.trace.join('\n')}`);
    if (failures.length >= 3) break;
  }
  assert.deepEqual(failures, []);
  // The runs did real work: entries committed, leaders elected, snapshots shipped.
  assert.ok(committed > seeds * 5, `only ${committed} entries committed over ${seeds} seeds`);
  assert.ok(elected > seeds, `only ${elected} elections over ${seeds} seeds`);
  assert.ok(snapshots > 0, 'no snapshot was ever installed');
});

test('simulator: a seed replays exactly', () => {
  const a = runSeed(4242, { traceMax: 100000 });
  const b = runSeed(4242, { traceMax: 100000 });
  assert.equal(a.ok, true, a.error);
  assert.deepEqual(a.trace, b.trace);
  assert.deepEqual(a.stats, b.stats);
  assert.ok(a.trace.length > 10);
});

test('simulator: longer safety phases (1,000 ticks) also hold', () => {
  for (let s = 1; s <= 100; s++) {
    const r = runSeed(s, { safetyTicks: 1000, traceMax: 30 });
    assert.equal(r.ok, true, `seed ${s}: ${r.error}\n${r.trace.join('\n')}`);
  }
});
