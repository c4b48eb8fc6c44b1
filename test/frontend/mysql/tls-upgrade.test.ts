// The TLS upgrade after an SSLRequest, with the bytes arriving the ways TCP may deliver them:
// the ClientHello in the same segment as the SSLRequest (a loaded client or a relay in between
// coalesces them), the SSLRequest split with the ClientHello behind its second half, and apart.
// A ClientHello lost at the upgrade shows as a stall until connectTimeoutMs (F1 in
// test/compat/FINDINGS.md), so each case must finish well within that.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { Duplex } from 'node:stream';
import type { TestMariaDB } from '../../harness/mariadb.js';
import type { MysqlFrontend } from '../../../src/frontend/mysql/server.js';
import { PacketFramer, encodePacket } from '../../../src/protocol/mysql/packets.js';
import { decodeHandshakeV10, encodeHandshakeResponse41, encodeSslRequest } from '../../../src/protocol/mysql/handshake.js';
import { nativeToken } from '../../../src/protocol/mysql/auth.js';
import { CLIENT_SSL } from '../../../src/protocol/mysql/constants.js';
import { selfSignedCert, startDb, startFrontend } from './helpers.js';
import { CAPS } from './raw-client.js';

let db: TestMariaDB;
let fe: { frontend: MysqlFrontend; port: number };

before(async () => {
  db = await startDb();
  fe = await startFrontend(db, { tls: selfSignedCert(), connectTimeoutMs: 10_000 });
});

after(async () => {
  await fe?.frontend.close();
  await db?.stop();
});

type Delivery = 'coalesced' | 'split-sslrequest' | 'apart';

/**
 * Connects, sends the SSLRequest and the TLS ClientHello as `delivery` says, logs in as app over
 * TLS and returns the first byte of the server's answer (0x00 = OK).
 */
async function loginOverTls(delivery: Delivery): Promise<number> {
  const raw = net.connect({ host: '127.0.0.1', port: fe.port });
  raw.setNoDelay(true);
  try {
    const framer = new PacketFramer(1 << 20);
    const hsPayload = await new Promise<Buffer>((resolve, reject) => {
      const onData = (d: Buffer): void => {
        framer.push(d);
        const p = framer.next();
        if (p) {
          raw.off('data', onData);
          resolve(p.payload);
        }
      };
      raw.on('data', onData);
      raw.once('error', reject);
    });
    const hs = decodeHandshakeV10(hsPayload);
    assert.ok(hs.capabilities & CLIENT_SSL, 'TLS offered');
    const sslRequest = encodePacket(encodeSslRequest({ capabilities: CAPS | CLIENT_SSL, maxPacketSize: 1 << 24, charset: 45 }), 1);
    // The TLS client writes into this shim; its first write (the ClientHello) goes out with the SSLRequest.
    let first = true;
    const shim = new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        if (!first) return void raw.write(chunk, cb);
        first = false;
        if (delivery === 'coalesced') raw.write(Buffer.concat([sslRequest, chunk]), cb);
        else if (delivery === 'split-sslrequest') {
          raw.write(sslRequest.subarray(0, 10));
          setTimeout(() => raw.write(Buffer.concat([sslRequest.subarray(10), chunk]), cb), 20);
        } else {
          raw.write(sslRequest);
          setTimeout(() => raw.write(chunk, cb), 20);
        }
      },
    });
    raw.on('data', (d: Buffer) => shim.push(d));
    raw.on('end', () => shim.push(null));
    const secure = tls.connect({ socket: shim, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve);
      secure.once('error', reject);
      secure.once('close', () => reject(new Error('closed before TLS was established')));
    });
    const resp = encodeHandshakeResponse41({
      capabilities: CAPS | CLIENT_SSL, maxPacketSize: 1 << 24, charset: 45, username: 'app',
      authResponse: nativeToken('app-pw', hs.authPluginData), database: 'app', authPluginName: 'mysql_native_password', attributes: [],
    });
    secure.write(encodePacket(resp, 2));
    const answer = new PacketFramer(1 << 20);
    const head = await new Promise<number>((resolve, reject) => {
      secure.on('data', (d: Buffer) => {
        answer.push(d);
        const p = answer.next();
        if (p) resolve(p.payload[0]!);
      });
      secure.once('close', () => reject(new Error('closed before the login answer')));
    });
    secure.destroy();
    return head;
  } finally {
    raw.destroy();
  }
}

for (const delivery of ['coalesced', 'split-sslrequest', 'apart'] as const) {
  test(`TLS upgrade with SSLRequest and ClientHello ${delivery}`, { timeout: 30_000 }, async () => {
    for (let i = 0; i < 5; i++) {
      const t0 = Date.now();
      assert.equal(await loginOverTls(delivery), 0x00, `login ${i}: OK over TLS`);
      assert.ok(Date.now() - t0 < 5000, `login ${i} took ${Date.now() - t0} ms (a stall)`);
    }
  });
}
