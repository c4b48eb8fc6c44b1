// Bad input written as raw bytes to Recall's PostgreSQL port: each gets an ErrorResponse with the
// SQLSTATE postgres uses (08P01 for protocol violations) and a close of that session only; the
// frontend keeps serving, and the backend session of a refused client is closed.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startPostgres, startFrontend, connect, ROLES, type TestPostgres } from './helpers.js';
import { RawClient, msg, typeOf } from './raw-client.js';
import type { PostgresFrontend } from '../../../src/frontend/postgres/server.js';
import { decodeErrorFields, encodeSASLInitialResponse } from '../../../src/protocol/postgres/messages.js';
import { encodeSSLRequest, encodeStartupMessage } from '../../../src/protocol/postgres/startup.js';

let db: TestPostgres;
let fe: PostgresFrontend;
let port: number;

before(async () => {
  db = await startPostgres();
  ({ frontend: fe, port } = await startFrontend(db, { auth: 'md5', messageBytesMax: 1024 * 1024, authTimeoutMs: 1000 }));
});

after(async () => {
  await fe?.close();
  await db?.stop();
});

/** The ErrorResponse the server sends, then its close. */
async function refusal(c: RawClient): Promise<Map<string, string>> {
  const m = await c.read();
  assert.equal(typeOf(m), 'E', `expected an ErrorResponse, got ${typeOf(m)}`);
  await c.closed();
  return decodeErrorFields(m);
}

async function loggedIn(app: string): Promise<RawClient> {
  const c = await RawClient.connect(port);
  const msgs = await c.login('alice', ROLES.alice, 'app', [['application_name', app]]);
  assert.equal(typeOf(msgs.at(-1)!), 'Z');
  return c;
}

async function stillServes(): Promise<void> {
  const c = await connect(port);
  assert.equal((await c.query('SELECT 1 AS one')).rows[0].one, 1);
  await c.end();
}

describe('start-up phase', () => {
  test('startup packet lengths outside 8..10000 get 08P01', async () => {
    for (const len of [0x7fffffff, 10001, 4, -1]) {
      const c = await RawClient.connect(port);
      const b = Buffer.alloc(8);
      b.writeInt32BE(len, 0);
      c.write(b);
      const e = await refusal(c);
      assert.equal(e.get('C'), '08P01');
      assert.equal(e.get('M'), 'invalid length of startup packet');
      assert.equal(e.get('S'), 'FATAL');
    }
  });

  test('no user, bad layout, unencrypted data after SSLRequest', async () => {
    let c = await RawClient.connect(port);
    c.write(encodeStartupMessage([['database', 'app']]));
    let e = await refusal(c);
    assert.deepEqual([e.get('C'), e.get('M')], ['28000', 'no PostgreSQL user name specified in startup packet']);
    c = await RawClient.connect(port);
    const good = encodeStartupMessage([['user', 'alice']]);
    const bad = Buffer.from(good.subarray(0, good.length - 1));
    bad.writeInt32BE(bad.length, 0);
    c.write(bad);
    e = await refusal(c);
    assert.deepEqual([e.get('C'), e.get('M')], ['08P01', 'invalid startup packet layout: expected terminator as last byte']);
    c = await RawClient.connect(port);
    c.write(Buffer.concat([encodeSSLRequest(), encodeStartupMessage([['user', 'alice']])]));
    e = await refusal(c);
    assert.deepEqual([e.get('C'), e.get('M')], ['08P01', 'received unencrypted data after SSL request']);
  });

  test('authentication exchange violations', async () => {
    let c = await RawClient.connect(port);
    c.write(encodeStartupMessage([['user', 'alice'], ['database', 'app']]));
    assert.equal(typeOf(await c.read()), 'R');
    c.write(msg('Q', (w) => w.cstring('SELECT 1')));
    let e = await refusal(c);
    assert.equal(e.get('C'), '08P01');
    c = await RawClient.connect(port);
    c.write(encodeStartupMessage([['user', 'alice'], ['database', 'app']]));
    await c.read();
    c.write(encodeSASLInitialResponse('SCRAM-SHA-1', 'n,,n=,r=abc'));
    e = await refusal(c);
    assert.deepEqual([e.get('C'), e.get('M')], ['08P01', 'client selected an invalid SASL authentication mechanism']);
    c = await RawClient.connect(port);
    c.write(encodeStartupMessage([['user', 'alice'], ['database', 'app']]));
    await c.read();
    c.write(encodeSASLInitialResponse('SCRAM-SHA-256', 'garbage'));
    e = await refusal(c);
    assert.deepEqual([e.get('C'), e.get('M')], ['08P01', 'malformed SCRAM message']);
  });

  test('a client silent during start-up is closed after authTimeoutMs', async () => {
    const c = await RawClient.connect(port);
    const t0 = Date.now();
    c.write(Buffer.from([0, 0]));
    await c.closed();
    const took = Date.now() - t0;
    assert.ok(took >= 900 && took < 5000, `closed after ${took} ms`);
  });

  test('random bytes as a first packet never crash the frontend', async () => {
    for (let i = 0; i < 60; i++) {
      const c = await RawClient.connect(port);
      const junk = randomBytes(1 + (i % 40));
      if (i % 3 === 0 && junk.length >= 4) junk.writeInt32BE(Math.max(8, junk.length), 0);
      c.write(junk);
      c.socket.end();
      await c.closed();
    }
    await stillServes();
  });
});

describe('after login', () => {
  test('unknown message type: 08P01 and both sides closed', async () => {
    const c = await loggedIn('bad-type');
    c.write(Buffer.from([0x7a, 0, 0, 0, 4]));
    const e = await refusal(c);
    assert.deepEqual([e.get('C'), e.get('M')], ['08P01', 'invalid frontend message type 122']);
    const n = await db.admin("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'bad-type'");
    for (let i = 0; i < 50 && n.rows[0].n !== 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
      n.rows[0].n = (await db.admin("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'bad-type'")).rows[0].n;
    }
    assert.equal(n.rows[0].n, 0);
  });

  test('oversized messages are refused from the header alone', async () => {
    // a Query announcing 1 MiB + 1 (over messageBytesMax): refused before any body byte is sent
    let c = await loggedIn('big-query');
    const h = Buffer.alloc(5);
    h[0] = 0x51;
    h.writeInt32BE(1024 * 1024 + 1, 1);
    c.write(h);
    let e = await refusal(c);
    assert.deepEqual([e.get('C'), e.get('M')], ['08P01', 'invalid message length']);
    // a Sync is a small message (postgres' 10000-byte limit)
    c = await loggedIn('big-sync');
    h[0] = 0x53;
    h.writeInt32BE(20000, 1);
    c.write(h);
    e = await refusal(c);
    assert.equal(e.get('C'), '08P01');
    // a length below 4
    c = await loggedIn('short');
    h[0] = 0x51;
    h.writeInt32BE(3, 1);
    c.write(h);
    e = await refusal(c);
    assert.equal(e.get('M'), 'invalid message length');
    // a Query just under the limit passes
    c = await loggedIn('near-limit');
    const sql = `SELECT length('${'x'.repeat(1024 * 1024 - 100)}')`;
    c.write(msg('Q', (w) => w.cstring(sql)));
    const r = await c.readUntil('Z');
    assert.deepEqual(r.map(typeOf), ['T', 'D', 'C', 'Z']);
    c.end();
    await stillServes();
  });

  test('a malformed message postgres itself refuses is relayed with its error', async () => {
    const c = await loggedIn('bad-bind');
    // Bind naming a statement that does not exist, then Sync
    c.write(Buffer.concat([msg('B', (w) => w.cstring('').cstring('nosuch').int16(0).int16(0).int16(0)), msg('S')]));
    const r = await c.readUntil('Z');
    assert.equal(decodeErrorFields(r[0]!).get('C'), '26000');
    c.end();
  });
});
