// caching_sha2_password step by step with a raw client, against a frontend that offers
// mysql_native_password (the client answers for caching_sha2 anyway, as MySQL 8.4+ clients do):
// full authentication with the RSA public key first, then the fast path from the cache; a
// client answering with an unknown plugin gets an AuthSwitchRequest to mysql_native_password.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { publicEncrypt, constants as cryptoConstants } from 'node:crypto';
import type { TestMariaDB } from '../../harness/mariadb.js';
import type { MysqlFrontend } from '../../../src/frontend/mysql/server.js';
import { decodeAuthSwitchRequest, decodeHandshakeV10, encodeHandshakeResponse41 } from '../../../src/protocol/mysql/handshake.js';
import { decodeErr } from '../../../src/protocol/mysql/generic.js';
import { cachingSha2Token, nativeToken, xor } from '../../../src/protocol/mysql/auth.js';
import { CLIENT_PROTOCOL_41 } from '../../../src/protocol/mysql/constants.js';
import { startDb, startFrontend } from './helpers.js';
import { CAPS, Raw } from './raw-client.js';

let db: TestMariaDB;
let fe: { frontend: MysqlFrontend; port: number };

before(async () => {
  db = await startDb();
  fe = await startFrontend(db);
});

after(async () => {
  await fe?.frontend.close();
  await db?.stop();
});

async function hello(r: Raw, plugin: string, token: (scramble: Buffer) => Buffer): Promise<Buffer> {
  const hs = decodeHandshakeV10((await r.read())!.payload);
  assert.equal(hs.authPluginName, 'mysql_native_password');
  r.send(
    encodeHandshakeResponse41({
      capabilities: CAPS, maxPacketSize: 1 << 24, charset: 45, username: 'app', authResponse: token(hs.authPluginData),
      database: 'app', authPluginName: plugin, attributes: [],
    }),
    1,
  );
  return hs.authPluginData;
}

test('caching_sha2_password: full authentication over RSA, then the fast path', async () => {
  // 1st connection: the cache is empty, so full authentication
  const r = new Raw(fe.port);
  try {
    const scramble = await hello(r, 'caching_sha2_password', (s) => cachingSha2Token('app-pw', s));
    const more = (await r.read())!;
    assert.equal(more.seq, 2);
    assert.deepEqual([...more.payload], [0x01, 0x04]); // perform_full_authentication
    r.send(Buffer.from([0x02]), 3); // request the public key
    const key = (await r.read())!;
    assert.equal(key.payload[0], 0x01);
    const pem = key.payload.subarray(1).toString();
    assert.match(pem, /BEGIN PUBLIC KEY/);
    const enc = publicEncrypt({ key: pem, padding: cryptoConstants.RSA_PKCS1_OAEP_PADDING }, xor(Buffer.from('app-pw\0'), scramble));
    r.send(enc, 5);
    const ok = (await r.read())!;
    assert.equal(ok.payload[0], 0x00, 'OK after full authentication');
    assert.equal(ok.seq, 6);
  } finally {
    r.close();
  }
  // 2nd connection: fast path (0x01 0x03) straight to OK
  const f = new Raw(fe.port);
  try {
    await hello(f, 'caching_sha2_password', (s) => cachingSha2Token('app-pw', s));
    const fast = (await f.read())!;
    assert.deepEqual([...fast.payload], [0x01, 0x03]);
    assert.equal((await f.read())!.payload[0], 0x00);
  } finally {
    f.close();
  }
  // a wrong password on the fast path is not accepted
  const w = new Raw(fe.port);
  try {
    const scramble = await hello(w, 'caching_sha2_password', (s) => cachingSha2Token('wrong', s));
    const more = (await w.read())!;
    assert.deepEqual([...more.payload], [0x01, 0x04]); // not in the cache: full authentication
    w.send(Buffer.from([0x02]), 3);
    const pem = (await w.read())!.payload.subarray(1).toString();
    w.send(publicEncrypt({ key: pem, padding: cryptoConstants.RSA_PKCS1_OAEP_PADDING }, xor(Buffer.from('wrong\0'), scramble)), 5);
    const err = decodeErr((await w.read())!.payload, CLIENT_PROTOCOL_41);
    assert.equal(err.errno, 1045);
  } finally {
    w.close();
  }
});

test('an unknown client plugin gets an AuthSwitchRequest to mysql_native_password', async () => {
  const r = new Raw(fe.port);
  try {
    await hello(r, 'some_plugin', () => Buffer.from('junk'));
    const sw = (await r.read())!;
    assert.equal(sw.payload[0], 0xfe);
    const req = decodeAuthSwitchRequest(sw.payload);
    assert.equal(req.pluginName, 'mysql_native_password');
    assert.equal(req.pluginData.length, 20);
    r.send(nativeToken('app-pw', req.pluginData), sw.seq + 1);
    assert.equal((await r.read())!.payload[0], 0x00);
  } finally {
    r.close();
  }
});
