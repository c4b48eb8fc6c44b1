// The simulator's checks must catch a broken core. Each case switches on a
// test-only fault in RaftCore (config.testingKnobs) and runs seeds until one fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TestingKnobs } from '../../src/consensus/raft.js';
import { runSeed } from './run.js';

const seedsMax = 2000;

function firstFailure(knobs: TestingKnobs): { seed: number; error: string } | undefined {
  for (let s = 1; s <= seedsMax; s++) {
    // Longer safety phases make multi-leader histories (Figure 8) likely enough.
    const r = runSeed(s, { knobs, safetyTicks: 1000 });
    if (!r.ok) return { seed: s, error: r.error ?? '' };
  }
  return undefined;
}

test('a core that replies to a vote before recording it is caught', () => {
  const f = firstFailure({ voteWithoutPersist: true });
  assert.ok(f, `not caught within ${seedsMax} seeds`);
  assert.match(f.error, /two leaders in term|leader completeness|overwritten|log matching|committed/);
});

test('a core that commits a previous-term entry by counting replicas is caught', () => {
  const f = firstFailure({ commitPreviousTermByCount: true });
  assert.ok(f, `not caught within ${seedsMax} seeds`);
  assert.match(f.error, /leader completeness|overwritten|committed/);
});

test('a naive core (no election no-op, commit by counting) is caught', () => {
  const f = firstFailure({ commitPreviousTermByCount: true, noNoopOnElection: true });
  assert.ok(f, `not caught within ${seedsMax} seeds`);
});

test('the same seeds pass with the real core', () => {
  for (let s = 1; s <= 30; s++) {
    const r = runSeed(s, { safetyTicks: 1000 });
    assert.equal(r.ok, true, `seed ${s}: ${r.error}`);
  }
});
