// The relay must know where every response ends (with and without CLIENT_DEPRECATE_EOF): a
// command Recall answers itself is only answered once nothing is pending, so after each kind of
// response an unknown command must get its 1047 promptly. Raw packets, real mariadbd.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { TestMariaDB } from '../../harness/mariadb.js';
import type { MysqlFrontend } from '../../../src/frontend/mysql/server.js';
import { decodeErr } from '../../../src/protocol/mysql/generic.js';
import { CLIENT_DEPRECATE_EOF, CLIENT_PROTOCOL_41, COM_QUERY, COM_STMT_EXECUTE, COM_STMT_FETCH, COM_STMT_PREPARE, COM_STMT_CLOSE, COM_FIELD_LIST, COM_STATISTICS, COM_STMT_RESET, COM_SET_OPTION, COM_INIT_DB, COM_RESET_CONNECTION } from '../../../src/protocol/mysql/constants.js';
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

function int4(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
}

/** Send an unknown command and read until its 1047 arrives; fails if the relay still thinks a response is pending. */
async function framingIntact(r: Raw): Promise<number> {
  r.send(Buffer.from([0x60]), 0);
  let packets = 0;
  for (;;) {
    const p = await r.read(2000);
    assert.ok(p, 'no 1047: the relay lost track of where a response ends');
    packets++;
    if (p.payload[0] === 0xff && decodeErr(p.payload, CLIENT_PROTOCOL_41).errno === 1047) return packets - 1;
  }
}

for (const deprecateEof of [false, true]) {
  describe(`response framing, DEPRECATE_EOF ${deprecateEof ? 'on' : 'off'}`, () => {
    const caps = deprecateEof ? CAPS | CLIENT_DEPRECATE_EOF : CAPS;
    const query = (sql: string): Buffer => Buffer.concat([Buffer.from([COM_QUERY]), Buffer.from(sql)]);

    test('text result sets, multi results, procedures, errors, OKs', async () => {
      const r = new Raw(fe.port);
      try {
        await r.login('app', 'app-pw', caps);
        for (const sql of ['SELECT id, v, n FROM t ORDER BY id', 'SELECT 1; SELECT 2, 3; DO 1', 'CALL two_sets()', 'SELECT * FROM nope', 'SET @a = 1', 'SELECT 1 FROM t WHERE 0']) {
          r.send(query(sql), 0);
          const n = await framingIntact(r);
          assert.ok(n >= 1, sql);
        }
      } finally {
        r.close();
      }
    });

    test('prepared statements, a cursor with COM_STMT_FETCH, and the small commands', async () => {
      const r = new Raw(fe.port);
      try {
        await r.login('app', 'app-pw', caps);
        r.send(Buffer.concat([Buffer.from([COM_STMT_PREPARE]), Buffer.from('SELECT id, v FROM t WHERE id > ? ORDER BY id')]), 0);
        const prep = await r.read();
        assert.equal(prep?.payload[0], 0x00);
        const stmtId = prep!.payload.readUInt32LE(1);
        await framingIntact(r);
        // execute with CURSOR_TYPE_READ_ONLY and one LONGLONG parameter 0
        const exec = Buffer.concat([
          Buffer.from([COM_STMT_EXECUTE]), int4(stmtId), Buffer.from([1]), int4(1),
          Buffer.from([0x00, 0x01, 0x08, 0x00]), Buffer.alloc(8),
        ]);
        r.send(exec, 0);
        await framingIntact(r);
        r.send(Buffer.concat([Buffer.from([COM_STMT_FETCH]), int4(stmtId), int4(1)]), 0);
        assert.ok((await framingIntact(r)) >= 2, 'a row and its terminator');
        r.send(Buffer.concat([Buffer.from([COM_STMT_RESET]), int4(stmtId)]), 0);
        await framingIntact(r);
        // executed without a cursor: a binary result set
        exec[5] = 0;
        r.send(exec, 0);
        await framingIntact(r);
        r.send(Buffer.concat([Buffer.from([COM_STMT_CLOSE]), int4(stmtId)]), 0); // no response
        await framingIntact(r);
        r.send(Buffer.concat([Buffer.from([COM_FIELD_LIST]), Buffer.from('t\0')]), 0);
        assert.ok((await framingIntact(r)) >= 4);
        r.send(Buffer.from([COM_STATISTICS]), 0);
        assert.equal(await framingIntact(r), 1);
        r.send(Buffer.from([COM_SET_OPTION, 0, 0]), 0);
        await framingIntact(r);
        r.send(Buffer.concat([Buffer.from([COM_INIT_DB]), Buffer.from('app')]), 0);
        await framingIntact(r);
        r.send(Buffer.from([COM_RESET_CONNECTION]), 0);
        await framingIntact(r);
        // pipelined: two queries written at once, both answered, then the intercept
        r.socket.write(Buffer.concat([encode(query('SELECT 1')), encode(query('SELECT 2'))]));
        assert.ok((await framingIntact(r)) >= 6);
      } finally {
        r.close();
      }
    });
  });
}

function encode(payload: Buffer): Buffer {
  const b = Buffer.alloc(4 + payload.length);
  b.writeUIntLE(payload.length, 0, 3);
  payload.copy(b, 4);
  return b;
}
