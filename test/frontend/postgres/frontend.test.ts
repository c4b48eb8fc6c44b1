// The PostgreSQL frontend against a real postgres: start-up (SSLRequest, GSSENCRequest, protocol
// versions, parameters), SCRAM and md5 authentication against the roles' verifiers with Recall's
// own re-login, cancel by key, simple and extended queries, COPY, notices, LISTEN/NOTIFY, error
// fields, Terminate and vanishing clients.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import pg from 'pg';
import { startPostgres, startFrontend, connect, ROLES, selfSignedCert, type TestPostgres } from './helpers.js';
import { RawClient, msg, typeOf } from './raw-client.js';
import type { PostgresFrontend } from '../../../src/frontend/postgres/server.js';
import { decodeBackendKeyData, decodeErrorFields, decodeParameterStatus, encodeQuery, encodeTerminate } from '../../../src/protocol/postgres/messages.js';
import { encodeCancelRequest, encodeGSSENCRequest, encodeSSLRequest, encodeStartupMessage } from '../../../src/protocol/postgres/startup.js';
import { parseStoredSecret, scramKeysFromPassword } from '../../../src/protocol/postgres/scram.js';

let db: TestPostgres;
let fe: PostgresFrontend;
let port: number;

before(async () => {
  db = await startPostgres();
  ({ frontend: fe, port } = await startFrontend(db, { auth: 'md5' }));
  await db.admin('CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)');
  await db.admin('GRANT ALL ON items TO alice, bob');
});

after(async () => {
  await fe?.close();
  await db?.stop();
});

async function expectError(p: Promise<unknown>, code: string, message?: string | RegExp): Promise<pg.DatabaseError> {
  try {
    await p;
  } catch (e) {
    const err = e as pg.DatabaseError;
    assert.equal(err.code, code, err.message);
    if (typeof message === 'string') assert.equal(err.message, message);
    else if (message) assert.match(err.message, message);
    return err;
  }
  assert.fail(`expected an error ${code}`);
}

async function waitFor(cond: () => Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return cond();
}

async function backendsNamed(app: string): Promise<number> {
  const r = await db.admin('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [app]);
  return r.rows[0].n as number;
}

describe('authentication', () => {
  test('SCRAM-SHA-256: Recall recovers ClientKey and logs in to postgres as the role', async () => {
    const c = await connect(port, { application_name: 'scram-login' });
    try {
      const r = await c.query('SELECT current_user AS u, pg_backend_pid() AS pid, current_database() AS d');
      assert.deepEqual(r.rows[0], { u: 'alice', pid: (c as unknown as { processID: number }).processID, d: 'app' });
      // the ClientKey the session holds is the one derived from the password and the stored salt
      const v = parseStoredSecret((await db.admin("SELECT rolpassword FROM pg_authid WHERE rolname = 'alice'")).rows[0].rolpassword);
      assert.ok(v && v.kind === 'scram');
      const expected = scramKeysFromPassword(ROLES.alice, v.salt, v.iterations).clientKey;
      const s = fe.sessionsList().find((x) => x.parameters.get('application_name') === 'scram-login');
      assert.ok(s && s.credential?.kind === 'scram');
      assert.deepEqual(s.credential.clientKey, expected);
      assert.equal(s.user, 'alice');
      assert.equal(s.state, 'idle');
      // postgres itself authenticated Recall's session (pg_hba: md5 for everyone but the superuser, over the socket)
      const m = await db.admin("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'scram-login' AND usename = 'alice'");
      assert.equal(m.rows[0].n, 1);
    } finally {
      await c.end();
    }
  });

  test('md5: the stored hash verifies the client and logs in to postgres', async () => {
    const c = await connect(port, { user: 'bob', password: ROLES.bob, application_name: 'md5-login' });
    try {
      assert.equal((await c.query('SELECT current_user AS u')).rows[0].u, 'bob');
      const s = fe.sessionsList().find((x) => x.parameters.get('application_name') === 'md5-login');
      assert.equal(s?.credential?.kind, 'md5');
    } finally {
      await c.end();
    }
  });

  test('wrong password, unknown role and role without password: the same 28P01 as postgres', async () => {
    const direct = await expectError(
      connect(db.port, { password: 'wrong' }),
      '28P01',
      'password authentication failed for user "alice"',
    );
    const viaRecall = await expectError(connect(port, { password: 'wrong' }), '28P01', direct.message);
    assert.equal(viaRecall.severity, 'FATAL');
    await expectError(connect(port, { user: 'bob', password: 'wrong' }), '28P01', 'password authentication failed for user "bob"');
    await expectError(connect(port, { user: 'nosuchrole', password: 'x' }), '28P01', 'password authentication failed for user "nosuchrole"');
    await expectError(connect(port, { user: 'nopw', password: 'x' }), '28P01', 'password authentication failed for user "nopw"');
  });

  test('refusals after authentication come from postgres itself', async () => {
    await expectError(connect(port, { user: 'nologin', password: 'y' }), '28P01');
    await expectError(connect(port, { user: 'nologin', password: 'x' }), '28000', 'role "nologin" is not permitted to log in');
    await expectError(connect(port, { database: 'nosuchdb' }), '3D000', 'database "nosuchdb" does not exist');
  });

  test('a password changed while Recall runs is used at once', async () => {
    await db.admin("ALTER ROLE bob PASSWORD 'bob-new'");
    try {
      await expectError(connect(port, { user: 'bob', password: ROLES.bob }), '28P01');
      const c = await connect(port, { user: 'bob', password: 'bob-new' });
      await c.end();
    } finally {
      await db.admin(`SET password_encryption = 'md5'; ALTER ROLE bob PASSWORD '${ROLES.bob}'`);
    }
  });

  test('auth scram-sha-256 refuses a role with an md5 verifier; trust asks nothing', async () => {
    const strict = await startFrontend(db, { auth: 'scram-sha-256' });
    const trust = await startFrontend(db, { auth: 'trust' });
    try {
      await expectError(connect(strict.port, { user: 'bob', password: ROLES.bob }), '28P01', 'password authentication failed for user "bob"');
      const a = await connect(strict.port);
      await a.end();
      const t = await connect(trust.port, { user: 'postgres', password: undefined, database: 'postgres' });
      assert.equal((await t.query('SELECT current_user AS u')).rows[0].u, 'postgres');
      await t.end();
      // trust gives Recall no credential: a role postgres asks a password of cannot log in
      await expectError(connect(trust.port, { password: undefined }), '28000', /cannot log in to the local database/);
    } finally {
      await strict.frontend.close();
      await trust.frontend.close();
    }
  });
});

describe('start-up', () => {
  test('SSLRequest is answered N without TLS, GSSENCRequest N; the startup then proceeds', async () => {
    const c = await RawClient.connect(port);
    try {
      c.write(encodeGSSENCRequest());
      assert.equal(await c.readByte(), 'N');
      c.write(encodeSSLRequest());
      assert.equal(await c.readByte(), 'N');
      const msgs = await c.login('alice', ROLES.alice, 'app', [['application_name', 'raw-start'], ['options', '-c search_path=custom']]);
      const types = msgs.map(typeOf);
      assert.equal(types.at(-1), 'Z');
      const params = new Map(msgs.filter((m) => typeOf(m) === 'S').map((m) => Object.values(decodeParameterStatus(m)) as [string, string]));
      assert.equal(params.get('application_name'), 'raw-start');
      assert.equal(params.get('client_encoding'), 'UTF8');
      assert.ok(params.has('server_version'));
      const key = decodeBackendKeyData(msgs.find((m) => typeOf(m) === 'K')!);
      c.write(encodeQuery("SELECT pg_backend_pid()::text, current_setting('search_path')"));
      const rows = (await c.readUntil('Z')).filter((m) => typeOf(m) === 'D');
      const row = rows[0]!;
      const pidLen = row.readInt32BE(7);
      assert.equal(Number(row.toString('utf8', 11, 11 + pidLen)), key.processId);
      assert.equal(row.toString('utf8', 11 + pidLen + 4), 'custom');
    } finally {
      c.end();
    }
  });

  test('TLS when configured: SSLRequest gets S and the session runs over TLS', async () => {
    const tlsFe = await startFrontend(db, { auth: 'md5', tls: selfSignedCert() });
    try {
      const c = await connect(tlsFe.port, { ssl: { rejectUnauthorized: false } });
      const r = await c.query('SELECT 1 AS one');
      assert.equal(r.rows[0].one, 1);
      const s = tlsFe.frontend.sessionsList()[0];
      assert.equal(s?.isTls, true);
      await c.end();
      // and without TLS the client still gets in (tlsRequired is off)
      const plain = await connect(tlsFe.port);
      await plain.end();
    } finally {
      await tlsFe.frontend.close();
    }
    const strict = await startFrontend(db, { auth: 'md5', tls: selfSignedCert(), tlsRequired: true });
    try {
      await expectError(connect(strict.port), '28000', /requires TLS/);
      const c = await connect(strict.port, { ssl: { rejectUnauthorized: false } });
      await c.end();
    } finally {
      await strict.frontend.close();
    }
  });

  test('unsupported protocol 2.0 gets 0A000; 3.1 and _pq_ options get NegotiateProtocolVersion', async () => {
    const c = await RawClient.connect(port);
    c.write(encodeStartupMessage([['user', 'alice']], 2, 0));
    const e = decodeErrorFields(await c.read());
    assert.equal(e.get('C'), '0A000');
    assert.equal(e.get('M'), 'unsupported frontend protocol 2.0: server supports 3.0 to 3.0');
    await c.closed();
    const d = await RawClient.connect(port);
    try {
      const msgs = await d.login('alice', ROLES.alice, 'app', [['_pq_.some_extension', 'on']], [3, 1]);
      const v = msgs.find((m) => typeOf(m) === 'v');
      assert.ok(v, 'NegotiateProtocolVersion sent');
      assert.equal(v.readInt32BE(5), 0);
      assert.equal(v.readInt32BE(9), 1);
      assert.equal(v.toString('utf8', 13, v.length - 1), '_pq_.some_extension');
      assert.equal(typeOf(msgs.at(-1)!), 'Z');
    } finally {
      d.end();
    }
  });
});

describe('routing hook point', () => {
  test('a batch decide() takes is answered by intercept(); the session then relays again', async () => {
    const seen: string[] = [];
    const answer = (extended: boolean, txStatus: number) =>
      Buffer.concat([
        ...(extended ? [msg('1'), msg('2')] : []),
        msg('T', (w) => w.int16(1).cstring('answer').int32(0).int16(0).int32(25).int16(-1).int32(-1).int16(0)),
        msg('D', (w) => w.int16(1).int32(13).bytes(Buffer.from('from the hook'))),
        msg('C', (w) => w.cstring('SELECT 1')),
        msg('Z', (w) => w.int8(txStatus)),
      ]);
    const hooked = await startFrontend(db, {
      auth: 'md5',
      decide: (_s, batch) => {
        seen.push(`${String.fromCharCode(batch.end)}:${String.fromCharCode(batch.txStatus)}`);
        return batch.bytes.includes('recall_hook');
      },
      intercept: (s, batch, leftover) => {
        assert.equal(s.state, 'intercepted');
        setTimeout(() => {
          s.socket.write(answer(batch.bytes[0] === 0x50, s.txStatus));
          s.resume(leftover);
        }, 10);
      },
    });
    try {
      const c = await connect(hooked.port);
      assert.deepEqual((await c.query("SELECT 'recall_hook'")).rows, [{ answer: 'from the hook' }]);
      assert.deepEqual((await c.query('SELECT 2 AS x')).rows, [{ x: 2 }]);
      await c.query('BEGIN');
      assert.deepEqual((await c.query({ text: "SELECT 'recall_hook', $1::int", values: [1] })).rows, [{ answer: 'from the hook' }]);
      assert.deepEqual((await c.query({ name: 'n', text: 'SELECT $1::int AS y', values: [3] })).rows, [{ y: 3 }]);
      await c.query('COMMIT');
      await c.end();
      assert.deepEqual(seen, ['Q:I', 'Q:I', 'Q:I', 'S:T', 'S:T', 'Q:T']);
    } finally {
      await hooked.frontend.close();
    }
  });
});

describe('limits and failures', () => {
  test('connectionsMax: one more client gets 53300 as from postgres', async () => {
    const one = await startFrontend(db, { auth: 'md5', connectionsMax: 1 });
    try {
      const a = await connect(one.port);
      await expectError(connect(one.port), '53300', 'sorry, too many clients already');
      await a.end();
      for (let i = 0; i < 50 && one.frontend.stats().connections > 0; i++) await new Promise((r) => setTimeout(r, 20));
      const b = await connect(one.port);
      await b.end();
    } finally {
      await one.frontend.close();
    }
  });

  test('an unreachable local database: 57P03 with the reason, after authentication', async () => {
    const lost = await startFrontend(db, { auth: 'md5', backend: { host: '127.0.0.1', port: 1 } });
    try {
      await expectError(connect(lost.port), '57P03', /cannot reach the local database at 127\.0\.0\.1:1/);
      // the password is still checked first
      await expectError(connect(lost.port, { password: 'wrong' }), '28P01');
    } finally {
      await lost.frontend.close();
    }
  });
});

describe('queries', () => {
  let c: pg.Client;
  before(async () => {
    c = await connect(port, { application_name: 'queries' });
  });
  after(async () => {
    await c?.end();
  });

  test('simple query with several statements', async () => {
    const r = (await c.query("SELECT 1 AS a; SELECT 'x' AS b, 2 AS c; INSERT INTO items VALUES (100, 'multi')")) as unknown as pg.QueryResult[];
    assert.equal(r.length, 3);
    assert.deepEqual(r[0]!.rows, [{ a: 1 }]);
    assert.deepEqual(r[1]!.rows, [{ b: 'x', c: 2 }]);
    assert.equal(r[2]!.command, 'INSERT');
    assert.equal(r[2]!.rowCount, 1);
  });

  test('named and unnamed prepared statements, arrays', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await c.query({ name: 'ins', text: 'INSERT INTO items VALUES ($1, $2) RETURNING id', values: [200 + i, `n${i}`] });
      assert.deepEqual(r.rows, [{ id: 200 + i }]);
    }
    const a = await c.query({ text: 'SELECT id, name FROM items WHERE id >= $1 ORDER BY id', values: [200], rowMode: 'array' });
    assert.deepEqual(a.rows, [[200, 'n0'], [201, 'n1'], [202, 'n2']]);
  });

  test('extended query: named portal, row limit and PortalSuspended, binary results, Close, Flush', async () => {
    const r = await RawClient.connect(port);
    try {
      await r.login('alice', ROLES.alice, 'app');
      r.write(
        Buffer.concat([
          msg('P', (w) => w.cstring('s1').cstring('SELECT g AS n FROM generate_series(1, $1::int) g').int16(0)),
          msg('B', (w) => w.cstring('p1').cstring('s1').int16(0).int16(1).int32(1).bytes(Buffer.from('5')).int16(1).int16(1)),
          msg('D', (w) => w.int8('P'.charCodeAt(0)).cstring('p1')),
          msg('E', (w) => w.cstring('p1').int32(2)),
          msg('H'),
        ]),
      );
      const first = [await r.read(), await r.read(), await r.read(), await r.read(), await r.read(), await r.read()];
      assert.deepEqual(first.map(typeOf), ['1', '2', 'T', 'D', 'D', 's']);
      // binary int4 results: length 4, big-endian values
      assert.equal(first[3]!.readInt32BE(7), 4);
      assert.equal(first[3]!.readInt32BE(11), 1);
      assert.equal(first[4]!.readInt32BE(11), 2);
      r.write(Buffer.concat([msg('E', (w) => w.cstring('p1').int32(0)), msg('C', (w) => w.int8('S'.charCodeAt(0)).cstring('s1')), msg('S')]));
      const rest = await r.readUntil('Z');
      assert.deepEqual(rest.map(typeOf), ['D', 'D', 'D', 'C', '3', 'Z']);
      assert.equal(rest[2]!.readInt32BE(11), 5);
      assert.equal(rest[3]!.toString('utf8', 5, rest[3]!.length - 1), 'SELECT 3');
      // unnamed statement and portal, text format; an error skips to Sync
      r.write(
        Buffer.concat([
          msg('P', (w) => w.cstring('').cstring('SELECT 1/0').int16(0)),
          msg('B', (w) => w.cstring('').cstring('').int16(0).int16(0).int16(0)),
          msg('E', (w) => w.cstring('').int32(0)),
          msg('S'),
          msg('P', (w) => w.cstring('').cstring("SELECT 'ok'").int16(0)),
          msg('B', (w) => w.cstring('').cstring('').int16(0).int16(0).int16(0)),
          msg('E', (w) => w.cstring('').int32(0)),
          msg('S'),
        ]),
      );
      const errRun = await r.readUntil('Z');
      // 1/0 is folded while planning: the error comes at Bind, and Execute is skipped up to Sync
      assert.deepEqual(errRun.map(typeOf), ['1', 'E', 'Z']);
      assert.equal(decodeErrorFields(errRun[1]!).get('C'), '22012');
      const okRun = await r.readUntil('Z');
      assert.deepEqual(okRun.map(typeOf), ['1', '2', 'D', 'C', 'Z']);
    } finally {
      r.end();
    }
  });

  test('COPY FROM STDIN and TO STDOUT, CopyFail', async () => {
    const r = await RawClient.connect(port);
    try {
      await r.login('alice', ROLES.alice, 'app');
      r.write(encodeQuery('COPY items FROM STDIN'));
      assert.equal(typeOf(await r.read()), 'G');
      r.write(Buffer.concat([msg('d', (w) => w.bytes(Buffer.from('300\tcopied one\n301\tcopied'))), msg('d', (w) => w.bytes(Buffer.from(' two\n'))), msg('c')]));
      const done = await r.readUntil('Z');
      assert.equal(done[0]!.toString('utf8', 5, done[0]!.length - 1), 'COPY 2');
      r.write(encodeQuery('COPY items FROM STDIN'));
      assert.equal(typeOf(await r.read()), 'G');
      r.write(msg('f', (w) => w.cstring('client gave up')));
      const failed = await r.readUntil('Z');
      assert.equal(decodeErrorFields(failed[0]!).get('C'), '57014');
      r.write(encodeQuery('COPY (SELECT id, name FROM items WHERE id >= 300 ORDER BY id) TO STDOUT'));
      const out = await r.readUntil('Z');
      assert.deepEqual(out.map(typeOf), ['H', 'd', 'd', 'c', 'C', 'Z']);
      assert.equal(Buffer.concat(out.filter((m) => typeOf(m) === 'd').map((m) => m.subarray(5))).toString(), '300\tcopied one\n301\tcopied two\n');
    } finally {
      r.end();
    }
  });

  test('NoticeResponse and ErrorResponse with every field as postgres sends them', async () => {
    const notices: Array<{ message?: string; detail?: string; hint?: string }> = [];
    c.on('notice', (n) => notices.push(n));
    await c.query("DO $$ BEGIN RAISE NOTICE 'hello %', 42 USING DETAIL = 'some detail', HINT = 'a hint'; END $$");
    assert.equal(notices.length, 1);
    assert.equal(notices[0]!.message, 'hello 42');
    assert.equal(notices[0]!.detail, 'some detail');
    assert.equal(notices[0]!.hint, 'a hint');
    const d = await connect(db.port, { database: 'app' });
    try {
      const sql = "INSERT INTO items VALUES (1, 'a'), (1, 'b')";
      const direct = await expectError(d.query(sql), '23505');
      const via = await expectError(c.query(sql), '23505');
      for (const k of ['severity', 'code', 'message', 'detail', 'schema', 'table', 'constraint', 'file', 'line', 'routine'] as const) {
        assert.equal(via[k], direct[k], k);
      }
      assert.equal(via.constraint, 'items_pkey');
      await expectError(c.query('SELECT nosuchcolumn FROM items'), '42703');
      assert.equal((await expectError(c.query('SELECT nosuchcolumn FROM items'), '42703')).position, '8');
    } finally {
      await d.end();
    }
  });

  test('LISTEN/NOTIFY: the notification reaches the listener asynchronously', async () => {
    const other = await connect(port, { user: 'bob', password: ROLES.bob });
    try {
      await c.query('LISTEN recall_chan');
      const got = new Promise<pg.Notification>((res) => c.once('notification', res));
      await other.query("NOTIFY recall_chan, 'payload 1'");
      const n = await got;
      assert.equal(n.channel, 'recall_chan');
      assert.equal(n.payload, 'payload 1');
    } finally {
      await other.end();
    }
  });
});

describe('cancel and session end', () => {
  test('CancelRequest with the key Recall gave cancels that backend query fast; a wrong key does nothing', async () => {
    const c = await connect(port);
    try {
      const { processID, secretKey } = c as unknown as { processID: number; secretKey: number };
      const sendCancel = (pid: number, key: number) =>
        new Promise<void>((res) => {
          const s = net.connect(port, '127.0.0.1', () => s.end(encodeCancelRequest(pid, key)));
          s.on('close', () => res());
          s.on('error', () => res());
        });
      const t0 = Date.now();
      const slow = c.query('SELECT pg_sleep(1.5) AS s');
      await new Promise((r) => setTimeout(r, 300));
      await sendCancel(processID, secretKey ^ 1);
      assert.deepEqual((await slow).rows, [{ s: '' }]);
      assert.ok(Date.now() - t0 >= 1400);
      const t1 = Date.now();
      const q = c.query('SELECT pg_sleep(10)');
      await new Promise((r) => setTimeout(r, 300));
      await sendCancel(processID, secretKey);
      await expectError(q, '57014', 'canceling statement due to user request');
      assert.ok(Date.now() - t1 < 3000, `cancelled after ${Date.now() - t1} ms`);
      // the session stays usable
      assert.equal((await c.query('SELECT 7 AS x')).rows[0].x, 7);
    } finally {
      await c.end();
    }
  });

  test("a backend terminated by the server: the client gets postgres' own FATAL once, then the close", async () => {
    const r = await RawClient.connect(port);
    const start = await r.login('alice', ROLES.alice, 'app', [['application_name', 'to-terminate']]);
    const key = decodeBackendKeyData(start.find((m) => typeOf(m) === 'K')!);
    await db.admin('SELECT pg_terminate_backend($1)', [key.processId]);
    const m = await r.read();
    const e = decodeErrorFields(m);
    assert.deepEqual([e.get('S'), e.get('C'), e.get('M')], ['FATAL', '57P01', 'terminating connection due to administrator command']);
    await r.closed();
    assert.equal(r.ch.buffered(), 0, 'nothing after the FATAL');
  });

  test('Terminate closes both sides; a vanished client closes its backend session', async () => {
    const c = await connect(port, { application_name: 'terminating' });
    await c.query('SELECT 1');
    assert.equal(await backendsNamed('terminating'), 1);
    await c.end();
    assert.ok(await waitFor(async () => (await backendsNamed('terminating')) === 0, 5000), 'backend gone after Terminate');
    const r = await RawClient.connect(port);
    await r.login('alice', ROLES.alice, 'app', [['application_name', 'vanishing']]);
    r.write(encodeQuery('BEGIN'));
    await r.readUntil('Z');
    assert.equal(await backendsNamed('vanishing'), 1);
    r.socket.destroy();
    assert.ok(await waitFor(async () => (await backendsNamed('vanishing')) === 0, 5000), 'backend gone after the client vanished');
    // a raw Terminate is forwarded and the connection closes
    const t = await RawClient.connect(port);
    await t.login('alice', ROLES.alice, 'app', [['application_name', 'raw-terminate']]);
    t.write(encodeTerminate());
    await t.closed();
    assert.ok(await waitFor(async () => (await backendsNamed('raw-terminate')) === 0, 5000));
    assert.equal(fe.stats().connections, 0);
  });
});
