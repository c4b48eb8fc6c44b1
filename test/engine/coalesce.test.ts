import { test } from 'node:test';
import assert from 'node:assert/strict';
import { coalesceMessages } from '../../src/engine/coalesce.js';
import { EntryType, MessageType, type Entry, type Message } from '../../src/consensus/types.js';

const e = (index: number, term = 2): Entry => ({ index, term, type: EntryType.Normal, data: new Uint8Array(10) });
const app = (to: number, prev: number, n: number, commit: number, term = 2): Message => ({
  type: MessageType.Append, from: 1, to, term, logIndex: prev, logTerm: 2, commit,
  entries: Array.from({ length: n }, (_, k) => e(prev + 1 + k, term)),
});

test('contiguous Appends to the same peer merge; order per peer is kept', () => {
  const hb: Message = { type: MessageType.Heartbeat, from: 1, to: 2, term: 2, commit: 5 };
  const msgs = [app(2, 10, 1, 5), app(3, 10, 1, 5), app(2, 11, 2, 6), app(3, 11, 1, 6), hb, app(2, 13, 1, 7), app(2, 20, 1, 7)];
  const out = coalesceMessages(msgs, 1 << 20);
  assert.deepEqual(out.map((m) => [m.type, m.to, m.logIndex, m.entries?.length, m.commit]), [
    [MessageType.Append, 2, 10, 3, 6],
    [MessageType.Append, 3, 10, 2, 6],
    [MessageType.Heartbeat, 2, undefined, undefined, 5],
    [MessageType.Append, 2, 13, 1, 7], // after the heartbeat: not merged across it
    [MessageType.Append, 2, 20, 1, 7], // not contiguous
  ]);
  assert.equal(msgs[0]!.entries!.length, 1, "the core's message objects are not mutated");
  assert.equal(coalesceMessages(msgs, 15).length, msgs.length, 'no merge fits in 15 bytes');
  assert.equal(coalesceMessages(msgs, 25).length, msgs.length - 1, 'only the 10+10 byte merge fits in 25 bytes');
});

test('successive accepting AppendResponses collapse into the last; rejections stay', () => {
  const r = (logIndex: number, reject = false): Message => ({ type: MessageType.AppendResponse, from: 2, to: 1, term: 2, logIndex, reject });
  const out = coalesceMessages([r(5), r(6), r(8), r(9, true), r(10)], 1 << 20);
  assert.deepEqual(out.map((m) => [m.logIndex, m.reject]), [[8, false], [9, true], [10, false]]);
});
