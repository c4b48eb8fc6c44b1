// caching_sha2_password step by step with a raw client, against a frontend that offers
// mysql_native_password (the client answers for caching_sha2 anyway, as MySQL 8.4+ clients do,
// and gets an AuthSwitchRequest to caching_sha2_password with the same scramble, as MariaDB and
// MySQL 8 send): full authentication with the RSA public key first, then the fast path from the
// cache; libmariadb's empty token for a plugin the server did not name; a client answering with
// an unknown plugin gets an AuthSwitchRequest to mysql_native_password.
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

/**
 * Handshake, then HandshakeResponse41 for `plugin` with `token` computed on the handshake's
 * scramble; a caching_sha2 answer to a native handshake is switched once (same scramble) and
 * answered with the token again. Returns the scramble; the server's next packet has seq 4.
 */
async function hello(
  r: Raw,
  plugin: string,
  token: (scramble: Buffer) => Buffer,
  first?: Buffer,
  switchTo = plugin,
): Promise<Buffer> {
  const hs = decodeHandshakeV10((await r.read())!.payload);
  assert.equal(hs.authPluginName, 'mysql_native_password');
  r.send(
    encodeHandshakeResponse41({
      capabilities: CAPS, maxPacketSize: 1 << 24, charset: 45, username: 'app', authResponse: first ?? token(hs.authPluginData),
      database: 'app', authPluginName: plugin, attributes: [],
    }),
    1,
  );
  const sw = (await r.read())!;
  assert.equal(sw.seq, 2);
  assert.equal(sw.payload[0], 0xfe, 'AuthSwitchRequest');
  const req = decodeAuthSwitchRequest(sw.payload);
  assert.equal(req.pluginName, switchTo);
  assert.deepEqual(req.pluginData, hs.authPluginData, 'the switch keeps the handshake scramble');
  r.send(token(req.pluginData), 3);
  return hs.authPluginData;
}

test('caching_sha2_password: full authentication over RSA, then the fast path', async () => {
  // 1st connection: the cache is empty, so full authentication
  const r = new Raw(fe.port);
  try {
    const scramble = await hello(r, 'caching_sha2_password', (s) => cachingSha2Token('app-pw', s));
    const more = (await r.read())!;
    assert.equal(more.seq, 4);
    assert.deepEqual([...more.payload], [0x01, 0x04]); // perform_full_authentication
    r.send(Buffer.from([0x02]), 5); // request the public key
    const key = (await r.read())!;
    assert.equal(key.payload[0], 0x01);
    const pem = key.payload.subarray(1).toString();
    assert.match(pem, /BEGIN PUBLIC KEY/);
    const enc = publicEncrypt({ key: pem, padding: cryptoConstants.RSA_PKCS1_OAEP_PADDING }, xor(Buffer.from('app-pw\0'), scramble));
    r.send(enc, 7);
    const ok = (await r.read())!;
    assert.equal(ok.payload[0], 0x00, 'OK after full authentication');
    assert.equal(ok.seq, 8);
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
    w.send(Buffer.from([0x02]), 5);
    const pem = (await w.read())!.payload.subarray(1).toString();
    w.send(publicEncrypt({ key: pem, padding: cryptoConstants.RSA_PKCS1_OAEP_PADDING }, xor(Buffer.from('wrong\0'), scramble)), 7);
    const err = decodeErr((await w.read())!.payload, CLIENT_PROTOCOL_41);
    assert.equal(err.errno, 1045);
  } finally {
    w.close();
  }
});

test('libmariadb with --default-auth=caching_sha2_password: empty token, switch, then the fast path', async () => {
  // libmariadb withholds the scramble from a plugin the handshake did not name and sends an empty
  // token; Recall must switch (it used to take the empty token for an empty password: 1045).
  const r = new Raw(fe.port);
  try {
    await hello(r, 'caching_sha2_password', (s) => cachingSha2Token('app-pw', s), Buffer.alloc(0));
    const next = (await r.read())!;
    assert.equal(next.seq, 4);
    assert.equal(next.payload[0], 0x01, 'AuthMoreData (fast path or full authentication), not an ERR');
  } finally {
    r.close();
  }
});

test('an unknown client plugin gets an AuthSwitchRequest to mysql_native_password', async () => {
  const r = new Raw(fe.port);
  try {
    await hello(r, 'some_plugin', (s) => nativeToken('app-pw', s), Buffer.from('junk'), 'mysql_native_password');
    const ok = (await r.read())!;
    assert.equal(ok.seq, 4);
    assert.equal(ok.payload[0], 0x00);
  } finally {
    r.close();
  }
});
