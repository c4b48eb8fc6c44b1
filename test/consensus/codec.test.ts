// Codec round trips (fast-check) and hostile input: decoding anything malformed
// must throw DecodeError and nothing else, because these bytes come from peers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  DecodeError,
  decodeConfChange,
  decodeEntry,
  decodeMessage,
  encodeConfChange,
  encodeEntry,
  encodeMessage,
} from '../../src/consensus/codec.js';
import { MessageType, type Entry, type Message } from '../../src/consensus/types.js';

const uint = fc.oneof(fc.nat(300), fc.nat(), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }));
const bytes = fc.uint8Array({ maxLength: 64 });
const entry: fc.Arbitrary<Entry> = fc.record({ term: uint, index: uint, type: fc.constantFrom(0, 1, 2), data: bytes });
const conf = fc.record({ voters: fc.array(fc.nat(1000), { maxLength: 7 }), learners: fc.array(fc.nat(1000), { maxLength: 3 }) });
const message: fc.Arbitrary<Message> = fc.record(
  {
    type: fc.integer({ min: MessageType.PreVote, max: MessageType.Propose }),
    from: uint,
    to: uint,
    term: uint,
    logIndex: uint,
    logTerm: uint,
    entries: fc.array(entry, { maxLength: 5 }),
    commit: uint,
    reject: fc.boolean(),
    rejectHint: uint,
    hintTerm: uint,
    snapshotMeta: fc.record({ index: uint, term: uint, conf }),
    chunkOffset: uint,
    chunkData: bytes,
    chunkLast: fc.boolean(),
    context: bytes,
    transfer: fc.boolean(),
  },
  { requiredKeys: ['type', 'from', 'to', 'term'] },
) as fc.Arbitrary<Message>;

test('messages round-trip', () => {
  fc.assert(
    fc.property(message, (m) => {
      assert.deepEqual(decodeMessage(encodeMessage(m)), structuredClone(m));
    }),
    { numRuns: 2000 },
  );
});

test('an append with entries is compact', () => {
  const m: Message = {
    type: MessageType.Append,
    from: 1,
    to: 2,
    term: 7,
    logIndex: 100,
    logTerm: 7,
    commit: 99,
    entries: [{ term: 7, index: 101, type: 0, data: new Uint8Array(100) }],
  };
  const b = encodeMessage(m);
  assert.ok(b.length < 100 + 20, `${b.length} bytes`);
  assert.equal(b[0], 1, 'version byte first');
});

test('entries and conf changes round-trip', () => {
  fc.assert(fc.property(entry, (e) => assert.deepEqual(decodeEntry(encodeEntry(e)), structuredClone(e))));
  fc.assert(
    fc.property(fc.record({ type: fc.constantFrom(0, 1, 2), node: uint }), (cc) => assert.deepEqual(decodeConfChange(encodeConfChange(cc)), structuredClone(cc))),
  );
});

function onlyDecodeErrors(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof DecodeError)) throw e;
  }
}

test('every truncation of a valid message is a DecodeError', () => {
  fc.assert(
    fc.property(message, (m) => {
      const b = encodeMessage(m);
      for (let i = 0; i < b.length; i++) assert.throws(() => decodeMessage(b.subarray(0, i)), DecodeError);
    }),
    { numRuns: 300 },
  );
});

test('random garbage and bit flips never throw anything but DecodeError', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
      onlyDecodeErrors(() => decodeMessage(b));
      onlyDecodeErrors(() => decodeEntry(b));
      onlyDecodeErrors(() => decodeConfChange(b));
    }),
    { numRuns: 5000 },
  );
  fc.assert(
    fc.property(message, fc.nat(), fc.nat(7), (m, at, bit) => {
      const b = encodeMessage(m);
      if (b.length === 0) return;
      b[at % b.length]! ^= 1 << bit;
      onlyDecodeErrors(() => decodeMessage(b));
    }),
    { numRuns: 3000 },
  );
});

test('hostile headers are refused clearly', () => {
  assert.throws(() => decodeMessage(new Uint8Array([])), /truncated/);
  assert.throws(() => decodeMessage(new Uint8Array([9, 5, 0, 1, 2, 3])), /unsupported version 9/);
  assert.throws(() => decodeMessage(new Uint8Array([1, 99, 0, 1, 2, 3])), /bad message type 99/);
  // Claims a billion entries in a few bytes.
  assert.throws(() => decodeMessage(new Uint8Array([1, 5, 4, 1, 2, 3, 0x80, 0x94, 0xeb, 0xdc, 0x03])), /too many entries/);
  // A varint longer than 2^53.
  assert.throws(() => decodeMessage(new Uint8Array([1, 5, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])), DecodeError);
  // Trailing bytes.
  const ok = encodeMessage({ type: MessageType.Heartbeat, from: 1, to: 2, term: 3, commit: 4 });
  assert.throws(() => decodeMessage(new Uint8Array([...ok, 0])), /trailing/);
});
