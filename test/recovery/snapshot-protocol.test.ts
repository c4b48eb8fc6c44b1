// The snapshot transfer codec: round trips, and every truncated, extended or random payload is
// refused with a SnapshotProtocolError (what the donor turns into a RemoteError), never a crash.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import {
  decodeBeginReply,
  decodeReadReply,
  decodeRequest,
  encodeBegin,
  encodeBeginReply,
  encodeEnd,
  encodeRead,
  encodeReadReply,
  encodeReadReplyHead,
  READ_REPLY_HEAD_BYTES,
  SNAPSHOT_PROTOCOL_VERSION,
  SnapshotProtocolError,
} from '../../src/recovery/snapshot-protocol.js';

describe('snapshot protocol codec', () => {
  const session = 0xfedcba9876543210n;

  test('requests round-trip', () => {
    assert.deepEqual(decodeRequest(encodeBegin(1234)), { op: 'begin', version: SNAPSHOT_PROTOCOL_VERSION, minIndex: 1234 });
    assert.deepEqual(decodeRequest(encodeRead(session, 2 ** 40 + 3, 4 << 20, 2 ** 40)), { op: 'read', session, offset: 2 ** 40 + 3, length: 4 << 20, ack: 2 ** 40 });
    assert.deepEqual(decodeRequest(encodeEnd(session)), { op: 'end', session });
  });

  test('replies round-trip', () => {
    assert.deepEqual(decodeBeginReply(encodeBeginReply({ session, index: 99, estimatedBytes: 5e9 })), { session, index: 99, estimatedBytes: 5e9 });
    const data = Buffer.from('some xbstream bytes');
    const rep = { eof: true, crc: crc32(data), spooled: 500, total: 500, data };
    assert.deepEqual(decodeReadReply(encodeReadReply(rep)), rep);
    const open = decodeReadReply(encodeReadReply({ eof: false, crc: 0, spooled: 7, data: Buffer.alloc(0) }));
    assert.equal(open.total, undefined);
    assert.equal(open.eof, false);
    assert.equal(encodeReadReplyHead(rep, data.length).length, READ_REPLY_HEAD_BYTES);
  });

  test('every truncation and any trailing byte is refused', () => {
    for (const whole of [encodeBegin(1), encodeRead(session, 1, 2, 0), encodeEnd(session)]) {
      for (let n = 0; n < whole.length; n++) assert.throws(() => decodeRequest(whole.subarray(0, n)), SnapshotProtocolError);
      assert.throws(() => decodeRequest(Buffer.concat([whole, Buffer.from([0])])), /trailing/);
    }
    const reply = encodeReadReply({ eof: false, crc: 1, spooled: 3, data: Buffer.from('abc') });
    for (let n = 0; n < reply.length; n++) assert.throws(() => decodeReadReply(reply.subarray(0, n)), SnapshotProtocolError);
    const begin = encodeBeginReply({ session, index: 1, estimatedBytes: 2 });
    for (let n = 0; n < begin.length; n++) assert.throws(() => decodeBeginReply(begin.subarray(0, n)), SnapshotProtocolError);
  });

  test('values beyond 2^53 are refused rather than rounded', () => {
    const b = encodeBegin(0);
    b.writeBigUInt64BE(2n ** 53n, 2);
    assert.throws(() => decodeRequest(b), /out of range/);
  });

  test('random bytes decode or throw SnapshotProtocolError, nothing else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
        for (const decode of [decodeRequest, decodeReadReply, decodeBeginReply]) {
          try {
            decode(bytes);
          } catch (e) {
            if (!(e instanceof SnapshotProtocolError)) throw e;
          }
        }
      }),
      { numRuns: 2000 },
    );
  });
});
