// The relay's header scanning with bytes split at every offset (TCP delivers them that way), on
// real socket pairs: everything the client sends reaches the backend unchanged, ReadyForQuery is
// found wherever it is cut and its status kept; with the routing hook, batches are whole, the one
// taken over is held back until earlier responses are through, and the relay resumes after it.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Relay, type QueryBatch } from '../../../src/frontend/postgres/relay.js';
import { encodeQuery, encodeReadyForQuery } from '../../../src/protocol/postgres/messages.js';
import { msg } from './raw-client.js';

let server: net.Server;
before(async () => {
  server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
});
after(() => server.close());

/** A connected pair: `near` is the end the relay owns (its 'data' is driven by the test), `far` the peer. */
async function pair(): Promise<{ near: net.Socket; far: net.Socket; received: () => Buffer }> {
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const far = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  const near = await accepted;
  near.pause(); // the test delivers 'data' itself, split where it wants
  const got: Buffer[] = [];
  far.on('data', (d) => got.push(d));
  return { near, far, received: () => Buffer.concat(got) };
}

async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
}

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
}

const clientBytes = Buffer.concat([
  encodeQuery('SELECT 1; SELECT 2'),
  msg('P', (w) => w.cstring('s').cstring('SELECT $1').int16(0)),
  msg('B', (w) => w.cstring('').cstring('s').int16(0).int16(1).int32(1).bytes(Buffer.from('7')).int16(0)),
  msg('E', (w) => w.cstring('').int32(0)),
  msg('S'),
]);
const backendBytes = Buffer.concat([
  msg('T', (w) => w.int16(0)),
  msg('D', (w) => w.int16(1).int32(1).bytes(Buffer.from('1'))),
  msg('C', (w) => w.cstring('SELECT 1')),
  encodeReadyForQuery(0x54), // 'T': in a transaction
  msg('1'),
  msg('2'),
  msg('C', (w) => w.cstring('SELECT 1')),
  encodeReadyForQuery(0x45), // 'E': failed transaction
]);

describe('plain relay', () => {
  test('client and backend bytes pass unchanged at every split; ReadyForQuery counted and read', async () => {
    for (let cut = 0; cut <= Math.max(clientBytes.length, backendBytes.length); cut++) {
      const c = await pair();
      const b = await pair();
      const fatal: string[] = [];
      const relay = new Relay(c.near, b.near, 1 << 20, { fatal: (e) => fatal.push(e.message), terminated: () => undefined, backendBroken: () => fatal.push('backend') });
      relay.attach(Buffer.alloc(0), Buffer.alloc(0));
      const cc = Math.min(cut, clientBytes.length);
      c.near.emit('data', clientBytes.subarray(0, cc));
      c.near.emit('data', clientBytes.subarray(cc));
      assert.equal(relay.pendingCount(), 2, `cut ${cut}`);
      const bc = Math.min(cut, backendBytes.length);
      b.near.emit('data', backendBytes.subarray(0, bc));
      if (bc === 26) assert.equal(relay.txStatus, 0x49, 'status not read before its byte arrived');
      b.near.emit('data', backendBytes.subarray(bc));
      assert.equal(relay.pendingCount(), 0, `cut ${cut}`);
      assert.equal(relay.txStatus, 0x45, `cut ${cut}`);
      assert.ok(relay.idle());
      await until(() => b.received().length === clientBytes.length && c.received().length === backendBytes.length);
      assert.deepEqual(b.received(), clientBytes, `cut ${cut}`);
      assert.deepEqual(c.received(), backendBytes, `cut ${cut}`);
      assert.deepEqual(fatal, []);
      relay.close();
      for (const s of [c.near, c.far, b.near, b.far]) s.destroy();
    }
  });

  test('a bad header anywhere in a split stream is refused, nothing of its chunk forwarded', async () => {
    const bad = Buffer.concat([encodeQuery('SELECT 1'), Buffer.from([0x7a, 0, 0, 0, 4])]);
    for (let cut = 0; cut <= bad.length; cut++) {
      const c = await pair();
      const b = await pair();
      const fatal: string[] = [];
      const relay = new Relay(c.near, b.near, 1 << 20, { fatal: (e) => fatal.push(e.message), terminated: () => undefined, backendBroken: () => undefined });
      relay.attach(Buffer.alloc(0), Buffer.alloc(0));
      c.near.emit('data', bad.subarray(0, cut));
      c.near.emit('data', bad.subarray(cut));
      assert.deepEqual(fatal, ['invalid frontend message type 122'], `cut ${cut}`);
      for (const s of [c.near, c.far, b.near, b.far]) s.destroy();
    }
  });
});

describe('routing hook', () => {
  test('whole batches are offered; a taken one waits for earlier responses; the relay resumes after it', async () => {
    const intercepted = Buffer.concat([
      msg('P', (w) => w.cstring('').cstring('INSERT INTERCEPT').int16(0)),
      msg('B', (w) => w.cstring('').cstring('').int16(0).int16(0).int16(0)),
      msg('E', (w) => w.cstring('').int32(0)),
      msg('S'),
    ]);
    const after = encodeQuery('SELECT 3');
    const all = Buffer.concat([clientBytes, intercepted, after]);
    for (let cut = 0; cut <= all.length; cut += 3) {
      const c = await pair();
      const b = await pair();
      const offered: QueryBatch[] = [];
      let taken: { batch: QueryBatch; leftover: Buffer; pendingAtIntercept: number } | null = null;
      const relay: Relay = new Relay(c.near, b.near, 1 << 20, {
        fatal: (e) => assert.fail(e.message),
        terminated: () => undefined,
        backendBroken: () => assert.fail('backend'),
        decide: (batch) => {
          offered.push({ ...batch, bytes: Buffer.from(batch.bytes) });
          return batch.bytes.includes('INTERCEPT');
        },
        intercept: (batch, leftover) => {
          taken = { batch, leftover, pendingAtIntercept: relay.pendingCount() };
        },
      });
      relay.attach(Buffer.alloc(0), Buffer.alloc(0));
      c.near.emit('data', all.subarray(0, cut));
      c.near.emit('data', all.subarray(cut));
      await settle();
      assert.equal(taken, null, 'held until the two earlier ReadyForQuery arrive');
      b.near.emit('data', backendBytes);
      await settle();
      assert.ok(taken, `cut ${cut}`);
      const t = taken as { batch: QueryBatch; leftover: Buffer; pendingAtIntercept: number };
      assert.equal(t.pendingAtIntercept, 0);
      assert.deepEqual(t.batch.bytes, intercepted);
      assert.equal(t.batch.end, 0x53);
      assert.equal(t.batch.txStatus, offered.length === 3 ? 0x49 : t.batch.txStatus);
      assert.deepEqual(offered.map((o) => String.fromCharCode(o.end)), ['Q', 'S', 'S']);
      assert.deepEqual(offered[1]!.bytes, clientBytes.subarray(encodeQuery('SELECT 1; SELECT 2').length));
      // the session answered it; the rest flows again
      relay.resume(t.leftover);
      await settle();
      if (t.leftover.length < after.length) c.near.emit('data', after.subarray(t.leftover.length));
      await until(() => b.received().length === clientBytes.length + after.length);
      assert.deepEqual(b.received(), Buffer.concat([clientBytes, after]), `cut ${cut}`);
      assert.equal(relay.pendingCount(), 1);
      relay.close();
      for (const s of [c.near, c.far, b.near, b.far]) s.destroy();
    }
  });
});
