// Codec of CHANNEL_RSYNC and the checks on what reaches rsync's argv.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  checkProtected,
  checkRsyncHost,
  checkSyncPath,
  decodeInfoReply,
  decodeQuiesceReply,
  decodeReleaseReply,
  decodeRenewReply,
  decodeRequest,
  encodeInfo,
  encodeInfoReply,
  encodeQuiesce,
  encodeQuiesceReply,
  encodeRelease,
  encodeReleaseReply,
  encodeRenew,
  encodeRenewReply,
  newRsyncSession,
  RsyncProtocolError,
} from '../../src/recovery/rsync-protocol.js';

describe('rsync protocol', () => {
  const session = 0xfedcba9876543210n;

  test('requests round-trip; every truncation and trailing byte is an error', () => {
    const cases = [
      [encodeInfo(), { op: 'info', version: 1 }],
      [encodeQuiesce(session, 123456789012), { op: 'quiesce', version: 1, session, minIndex: 123456789012 }],
      [encodeRenew(session), { op: 'renew', session }],
      [encodeRelease(session), { op: 'release', session }],
    ] as const;
    for (const [bytes, want] of cases) {
      assert.deepEqual(decodeRequest(bytes), want);
      for (let cut = 0; cut < bytes.length; cut++) assert.throws(() => decodeRequest(bytes.subarray(0, cut)), RsyncProtocolError);
      assert.throws(() => decodeRequest(Buffer.concat([bytes, Buffer.from([0])])), /trailing/);
    }
    assert.throws(() => decodeRequest(Buffer.from([0x7a])), /unknown op 0x7a/);
    const future = encodeQuiesce(session, 1);
    future[1] = 2;
    assert.throws(() => decodeRequest(future), /protocol version 2/);
    const huge = encodeQuiesce(session, 1);
    huge.writeBigUInt64BE(2n ** 63n, 10);
    assert.throws(() => decodeRequest(huge), /out of range/);
  });

  test('replies round-trip; truncations are errors', () => {
    const info = { busy: true, nowMs: 1_700_000_000_123, syncPath: '/var/lib/mysql' };
    const quiesce = { index: 777, leaseMs: 15000, syncPath: '/var/lib/mysql' };
    const release = { held: false, restartError: 'startServer failed: ünïcode' };
    const cases: [Buffer, (b: Buffer) => unknown, unknown][] = [
      [encodeInfoReply(info), decodeInfoReply, info],
      [encodeQuiesceReply(quiesce), decodeQuiesceReply, quiesce],
      [encodeRenewReply(15000), decodeRenewReply, 15000],
      [encodeReleaseReply(release), decodeReleaseReply, release],
    ];
    for (const [bytes, decode, want] of cases) {
      assert.deepEqual(decode(bytes), want);
      for (let cut = 0; cut < bytes.length; cut++) assert.throws(() => decode(bytes.subarray(0, cut)), RsyncProtocolError);
    }
    assert.throws(() => encodeInfoReply({ busy: false, nowMs: 0, syncPath: '/' + 'x'.repeat(5000) }), /exceeds/);
  });

  test('session ids are random 64-bit values', () => {
    const ids = new Set(Array.from({ length: 100 }, () => newRsyncSession()));
    assert.equal(ids.size, 100);
    for (const id of ids) assert.ok(id >= 0n && id < 2n ** 64n);
  });

  test('syncPath must be absolute, normal, not the root, without control characters', () => {
    assert.equal(checkSyncPath('/var/lib/mysql/', 'syncPath'), '/var/lib/mysql');
    assert.equal(checkSyncPath('/var/lib/mysql', 'syncPath'), '/var/lib/mysql');
    assert.throws(() => checkSyncPath('', 'syncPath'), /syncPath is empty/);
    assert.throws(() => checkSyncPath('  ', 'syncPath'), /syncPath is empty/);
    assert.throws(() => checkSyncPath(undefined, 'syncPath'), /syncPath is empty/);
    assert.throws(() => checkSyncPath('var/lib/mysql', 'syncPath'), /not an absolute path/);
    assert.throws(() => checkSyncPath('./data', 'syncPath'), /not an absolute path/);
    assert.throws(() => checkSyncPath('/', 'syncPath'), /root directory/);
    assert.throws(() => checkSyncPath('//', 'syncPath'), /root directory/);
    assert.throws(() => checkSyncPath('/var/lib/../mysql', 'syncPath'), /not in normal form/);
    assert.throws(() => checkSyncPath('/var/lib/../../', 'syncPath'), /root directory/);
    assert.throws(() => checkSyncPath('/var//lib', 'syncPath'), /not in normal form/);
    assert.throws(() => checkSyncPath('/var/lib/mysql\n/etc', 'syncPath'), /control characters/);
  });

  test("Recall's own directories may not lie inside syncPath", () => {
    checkProtected('/var/lib/mysql', ['/var/lib/recall', '/var/lib/mysql-old', '/var/lib']);
    assert.throws(() => checkProtected('/var/lib/mysql', ['/var/lib/mysql']), /holds \/var\/lib\/mysql, which a resync would delete/);
    assert.throws(() => checkProtected('/var/lib', ['/var/lib/recall/']), /holds \/var\/lib\/recall/);
  });

  test('donor hosts cannot be read as options or paths; IPv6 literals get brackets', () => {
    assert.equal(checkRsyncHost('10.0.0.2'), '10.0.0.2');
    assert.equal(checkRsyncHost('db-2.example.com'), 'db-2.example.com');
    assert.equal(checkRsyncHost('mysql@db2'), 'mysql@db2');
    assert.equal(checkRsyncHost('::1'), '[::1]');
    assert.equal(checkRsyncHost('[fe80::1]'), '[fe80::1]');
    for (const bad of ['', '-e sh', '-oProxyCommand=x', 'a b', 'host;rm', 'h/x', 'h\n']) assert.throws(() => checkRsyncHost(bad), /not a host/);
  });
});
