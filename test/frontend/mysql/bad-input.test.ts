// Bad input against a running frontend over raw sockets: malformed, truncated, oversized and
// out-of-order packets, unknown commands, stalls, and a fast-check fuzz of mutated packets.
// Each gets the protocol's error packet where one is possible and a closed connection where
// the stream cannot be trusted; a mysql2 session opened before keeps working throughout.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import mysql from 'mysql2/promise';
import type { TestMariaDB } from '../../harness/mariadb.js';
import type { MysqlFrontend } from '../../../src/frontend/mysql/server.js';
import { encodePacket, type Packet } from '../../../src/protocol/mysql/packets.js';
import { decodeErr } from '../../../src/protocol/mysql/generic.js';
import { CLIENT_PROTOCOL_41, COM_PING, COM_QUERY } from '../../../src/protocol/mysql/constants.js';
import { startDb, startFrontend } from './helpers.js';
import { Raw } from './raw-client.js';

let db: TestMariaDB;
let fe: { frontend: MysqlFrontend; port: number };
let strict: { frontend: MysqlFrontend; port: number };
let bystander: mysql.Connection;

function errOf(p: Packet | null): { errno: number; sqlState: string; message: string } {
  assert.ok(p, 'expected an error packet');
  assert.equal(p.payload[0], 0xff, `expected ERR, got 0x${p.payload[0]?.toString(16)}`);
  return decodeErr(p.payload, CLIENT_PROTOCOL_41);
}

async function bystanderWorks(): Promise<void> {
  const [rows] = await bystander.query('SELECT 41 + 1 AS x');
  assert.deepEqual(rows, [{ x: 42 }]);
}

before(async () => {
  db = await startDb();
  fe = await startFrontend(db);
  strict = await startFrontend(db, { maxPacketBytes: 1024 * 1024, netReadTimeoutMs: 300, connectTimeoutMs: 500 });
  bystander = await mysql.createConnection({ host: '127.0.0.1', port: fe.port, user: 'app', password: 'app-pw', database: 'app' });
});

after(async () => {
  bystander?.destroy();
  await fe?.frontend.close();
  await strict?.frontend.close();
  await db?.stop();
});

describe('handshake phase', () => {
  test('a malformed HandshakeResponse gets 1043 Bad handshake and a close', async () => {
    const r = new Raw(fe.port);
    await r.read();
    r.send(Buffer.from('hello'), 1);
    const e = errOf(await r.read());
    assert.equal(e.errno, 1043);
    assert.equal(e.sqlState, '08S01');
    await r.closed;
    await bystanderWorks();
  });

  test('a wrong sequence id gets 1156 and a close', async () => {
    const r = new Raw(fe.port);
    await r.read();
    r.send(Buffer.alloc(40, 1), 7);
    assert.equal(errOf(await r.read()).errno, 1156);
    await r.closed;
  });

  test('a client that says nothing is closed after connectTimeoutMs', async () => {
    const r = new Raw(strict.port);
    const t0 = Date.now();
    await r.closed;
    assert.ok(Date.now() - t0 < 5000);
  });
});

describe('command phase', () => {
  test('an unknown command gets 1047 and the session goes on', async () => {
    const r = new Raw(fe.port);
    await r.login();
    r.send(Buffer.from([0x60, 1, 2, 3]), 0);
    const e = errOf(await r.read());
    assert.equal(e.errno, 1047);
    assert.equal(e.sqlState, '08S01');
    r.send(Buffer.from([COM_PING]), 0);
    assert.equal((await r.read())?.payload[0], 0x00);
    r.close();
  });

  test('a command split into single bytes is reassembled', async () => {
    const r = new Raw(fe.port);
    await r.login();
    const bytes = encodePacket(Buffer.concat([Buffer.from([COM_QUERY]), Buffer.from('SELECT 7')]), 0);
    for (const b of bytes) {
      r.socket.write(Buffer.from([b]));
      await new Promise((res) => setTimeout(res, 2));
    }
    const colCount = await r.read();
    assert.equal(colCount?.payload[0], 1);
    r.close();
  });

  test('a command with a wrong sequence id gets 1156 and a close', async () => {
    const r = new Raw(fe.port);
    await r.login();
    r.send(Buffer.from([COM_PING]), 3);
    assert.equal(errOf(await r.read()).errno, 1156);
    await r.closed;
    await bystanderWorks();
  });

  test('a packet over maxPacketBytes gets 1153 and a close', async () => {
    const r = new Raw(strict.port);
    await r.login();
    // announce 2 MiB; only the header is needed for the refusal
    const header = Buffer.from([0, 0, 0x20, 0]);
    r.socket.write(Buffer.concat([header, Buffer.from([COM_QUERY])]));
    const e = errOf(await r.read());
    assert.equal(e.errno, 1153);
    assert.equal(e.sqlState, '08S01');
    await r.closed;
  });

  test('a client stalling mid-packet is closed after netReadTimeoutMs', async () => {
    const r = new Raw(strict.port);
    await r.login();
    r.socket.write(Buffer.from([100, 0, 0, 0, COM_QUERY, 0x53, 0x45]));
    const e = errOf(await r.read(5000));
    assert.equal(e.errno, 1159);
    await r.closed;
  });
});

describe('live fuzz', () => {
  const valid = [
    Buffer.concat([Buffer.from([COM_QUERY]), Buffer.from('SELECT 1')]),
    Buffer.from([COM_PING]),
    Buffer.concat([Buffer.from([0x16]), Buffer.from('SELECT ?')]), // COM_STMT_PREPARE
    Buffer.from([0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0]), // COM_STMT_EXECUTE of a maybe-unknown id
    Buffer.from([0x02]), // COM_INIT_DB with no name
    Buffer.from([0x11, 0x61, 0x00]), // truncated COM_CHANGE_USER
    Buffer.from([0x17]), // COM_STMT_EXECUTE without a statement id
    Buffer.from([0x19, 1]), // truncated COM_STMT_CLOSE
    Buffer.from([0x1c]), // truncated COM_STMT_FETCH
  ];
  const mutatedPacket = fc
    .tuple(fc.constantFrom(...valid), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), fc.integer({ min: 0, max: 3 }), fc.boolean())
    .map(([base, edits, seq, headerLies]) => {
      const b = Buffer.from(base);
      for (const [pos, v] of edits) b[pos % b.length] = v;
      const framed = encodePacket(b, seq === 3 ? 5 : 0);
      if (headerLies) framed.writeUIntLE(b.length + 3, 0, 3); // announce more than is sent
      return framed;
    });
  const garbage = fc.uint8Array({ minLength: 1, maxLength: 64 }).map((u) => Buffer.from(u));

  test('mutated and garbage packets after login: errors or closes, never a crash', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.oneof(mutatedPacket, garbage), { minLength: 1, maxLength: 4 }), async (packets) => {
        const r = new Raw(fe.port);
        try {
          await r.login();
          for (const p of packets) r.socket.write(p);
          // whatever comes back must be well-framed packets; any ERR must carry a number and SQLSTATE
          for (let p = await r.read(150); p; p = await r.read(150)) {
            if (p.payload[0] === 0xff) {
              const e = decodeErr(p.payload, CLIENT_PROTOCOL_41);
              assert.ok(e.errno >= 1000 && e.errno < 5000, `errno ${e.errno}`);
              assert.match(e.sqlState, /^[0-9A-Z]{5}$/);
            }
          }
        } finally {
          r.close();
        }
      }),
      { numRuns: 60 },
    );
    await bystanderWorks();
  });

  test('garbage before the handshake response', async () => {
    await fc.assert(
      fc.asyncProperty(garbage, async (g) => {
        const r = new Raw(fe.port);
        try {
          await r.read();
          r.socket.write(g);
          const p = await r.read(200);
          if (p && p.payload[0] === 0xff) assert.ok([1043, 1045, 1156, 1153].includes(decodeErr(p.payload, CLIENT_PROTOCOL_41).errno));
        } finally {
          r.close();
        }
      }),
      { numRuns: 40 },
    );
    await bystanderWorks();
    // every fuzz connection is gone again
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(fe.frontend.stats().connections, 1);
  });
});
