// ConfHistory: the membership at a given applied index, for snapshots.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfHistory } from '../../src/engine/conf-history.js';
import { encodeConfChange } from '../../src/consensus/codec.js';
import { ConfChangeType, EntryType, type Entry } from '../../src/consensus/types.js';

const cc = (index: number, type: ConfChangeType, node: number): Entry => ({ term: 1, index, type: EntryType.ConfChange, data: encodeConfChange({ type, node }) });
const normal = (index: number): Entry => ({ term: 1, index, type: EntryType.Normal, data: new Uint8Array([1]) });

test('membership at each index follows the applied ConfChanges', () => {
  const h = new ConfHistory(10, { voters: [1, 2, 3], learners: [] });
  h.apply([normal(11), cc(12, ConfChangeType.AddLearner, 4), normal(13), cc(14, ConfChangeType.PromoteLearner, 4), cc(15, ConfChangeType.RemoveNode, 1)]);
  assert.deepEqual(h.at(10), { voters: [1, 2, 3], learners: [] });
  assert.deepEqual(h.at(11), { voters: [1, 2, 3], learners: [] });
  assert.deepEqual(h.at(12), { voters: [1, 2, 3], learners: [4] });
  assert.deepEqual(h.at(13), { voters: [1, 2, 3], learners: [4] });
  assert.deepEqual(h.at(14), { voters: [1, 2, 3, 4], learners: [] });
  assert.deepEqual(h.at(99), { voters: [2, 3, 4], learners: [] });
  assert.throws(() => h.at(9), /no longer known/);
  // Re-delivered entries (after a restart) change nothing.
  h.apply([cc(12, ConfChangeType.AddLearner, 4), cc(14, ConfChangeType.PromoteLearner, 4)]);
  assert.deepEqual(h.at(99), { voters: [2, 3, 4], learners: [] });
  h.prune(14);
  assert.deepEqual(h.at(14), { voters: [1, 2, 3, 4], learners: [] });
  assert.throws(() => h.at(13), /no longer known/);
  h.reset(20, { voters: [5], learners: [6] });
  assert.deepEqual(h.at(25), { voters: [5], learners: [6] });
  assert.throws(() => h.at(19), /no longer known/);
});
