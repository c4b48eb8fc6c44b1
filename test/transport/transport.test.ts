import { test, describe, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import crypto from 'node:crypto';
import { Transport, PeerUnavailableError, RemoteError } from '../../src/transport/transport.js';
import { FrameDecoder, FrameType, encodeFrame } from '../../src/transport/frame.js';
import { authMac, decodeHello, encodeHello, newNonce } from '../../src/transport/handshake.js';
import { configureLogging } from '../../src/util/log.js';

configureLogging({ silent: !process.env.DEBUG_LOG, debug: !!process.env.DEBUG_LOG });

const started: Transport[] = [];
const sockets: (net.Socket | net.Server)[] = [];
afterEach(async () => {
  for (const t of started.splice(0)) await t.close();
  for (const s of sockets.splice(0)) (s instanceof net.Server ? s.close() : s.destroy());
});

async function start(id: number, opts: Partial<Parameters<typeof Transport.start>[0]> = {}): Promise<Transport> {
  const t = await Transport.start({ id, clusterId: 'c1', secret: 's3cret', listen: '127.0.0.1:0', peers: new Map(), backoffMaxMs: 100, ...opts });
  started.push(t);
  return t;
}

async function until(cond: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function pair(a: Transport, b: Transport, ida: number, idb: number): Promise<void> {
  a.addPeer(idb, `127.0.0.1:${b.port}`);
  b.addPeer(ida, `127.0.0.1:${a.port}`);
  await until(() => a.isConnected(idb) && b.isConnected(ida), 5000, 'connection');
}

describe('frame decoder', () => {
  test('decodes frames split at every offset', () => {
    const frames = [encodeFrame(FrameType.Data, Buffer.from('hello')), encodeFrame(FrameType.Request, Buffer.alloc(300, 7))];
    const all = Buffer.concat(frames);
    for (let cut = 0; cut <= all.length; cut++) {
      const d = new FrameDecoder(1024);
      const got = [...d.push(all.subarray(0, cut)), ...d.push(all.subarray(cut))];
      assert.equal(got.length, 2);
      assert.equal(got[0]!.body.toString(), 'hello');
      assert.equal(got[1]!.body.length, 300);
    }
    assert.throws(() => new FrameDecoder(100).push(encodeFrame(FrameType.Data, Buffer.alloc(200))), /exceeds frameBytesMax/);
    const badVersion = encodeFrame(FrameType.Data, Buffer.alloc(3));
    badVersion[4] = 99;
    assert.throws(() => new FrameDecoder(100).push(badVersion), /version/);
  });
});

describe('transport', () => {
  test('authenticated peers exchange messages and requests in both directions', async () => {
    const a = await start(1);
    const b = await start(2);
    await pair(a, b, 1, 2);
    const got: string[] = [];
    b.onMessage(7, (from, p) => got.push(`${from}:${p.toString()}`));
    a.onMessage(7, (from, p) => got.push(`${from}:${p.toString()}`));
    b.onRequest(9, (from, p) => Buffer.from(`echo ${from} ${p.toString()}`));
    b.onRequest(10, () => {
      throw new Error('nope');
    });
    assert.equal(a.send(2, 7, Buffer.from('x')), true);
    assert.equal(b.send(1, 7, Buffer.from('y')), true);
    await until(() => got.length === 2);
    assert.deepEqual(got.sort(), ['1:x', '2:y']);
    assert.equal(Buffer.from(await a.request(2, 9, Buffer.from('hi'), 1000)).toString(), 'echo 1 hi');
    await assert.rejects(a.request(2, 10, Buffer.alloc(0), 1000), (e: unknown) => e instanceof RemoteError && /nope/.test(e.message));
    await assert.rejects(a.request(2, 11, Buffer.alloc(0), 1000), /no handler/);
  });

  test('wrong secret and wrong cluster id are rejected', async () => {
    for (const bad of [{ secret: 'other' }, { clusterId: 'c2' }]) {
      const a = await start(1);
      const b = await start(2, bad);
      a.addPeer(2, `127.0.0.1:${b.port}`);
      b.addPeer(1, `127.0.0.1:${a.port}`);
      const unreachable: number[] = [];
      a.onUnreachable((p) => unreachable.push(p));
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(a.isConnected(2), false);
      assert.equal(b.isConnected(1), false);
      assert.equal(a.send(2, 1, Buffer.from('x')), false);
      assert.deepEqual(unreachable, [2]);
      await assert.rejects(a.request(2, 1, Buffer.alloc(0), 100), PeerUnavailableError);
      const st = a.peerStatus()[0]!;
      assert.match(st.lastError, bad.secret ? /authentication failed|rejected/ : /cluster|rejected/);
      await a.close();
      await b.close();
    }
  });

  test('garbage from a raw socket and a forged handshake do not crash the node', async () => {
    const a = await start(1);
    const b = await start(2);
    await pair(a, b, 1, 2);
    const raw = net.connect(b.port, '127.0.0.1');
    sockets.push(raw);
    raw.on('error', () => {});
    raw.resume();
    const closed = new Promise((r) => raw.on('close', r));
    raw.write(crypto.randomBytes(5000));
    await closed;
    // A well-formed hello with a made-up MAC.
    const forged = net.connect(b.port, '127.0.0.1');
    sockets.push(forged);
    forged.on('error', () => {});
    let rejectReason = '';
    const dec = new FrameDecoder(1 << 20);
    forged.on('data', (d: Buffer) => {
      for (const f of dec.push(d)) if (f.type === FrameType.Reject) rejectReason = f.body.toString();
    });
    const forgedClosed = new Promise((r) => forged.on('close', r));
    forged.write(encodeFrame(FrameType.Hello, encodeHello({ clusterId: 'c1', nodeId: 1, nonce: newNonce() })));
    forged.write(encodeFrame(FrameType.Auth, crypto.randomBytes(32)));
    await forgedClosed;
    assert.match(rejectReason, /authentication failed/);
    // The real link still works.
    const got: string[] = [];
    b.onMessage(1, (_f, p) => got.push(p.toString()));
    a.send(2, 1, Buffer.from('still alive'));
    await until(() => got.length === 1);
  });

  test('reconnects after the peer restarts on the same port', async () => {
    const a = await start(1);
    let b = await start(2);
    const port = b.port;
    await pair(a, b, 1, 2);
    await b.close();
    await until(() => !a.isConnected(2), 5000, 'disconnect');
    b = await start(2, { listen: `127.0.0.1:${port}`, peers: new Map([[1, `127.0.0.1:${a.port}`]]) });
    await until(() => a.isConnected(2), 5000, 'reconnect');
    const got: string[] = [];
    b.onMessage(3, (_f, p) => got.push(p.toString()));
    a.send(2, 3, Buffer.from('again'));
    await until(() => got.length === 1);
  });

  test('an oversized frame is rejected and the link is dropped, then re-established', async () => {
    const a = await start(1);
    const b = await start(2, { frameBytesMax: 64 * 1024 });
    await pair(a, b, 1, 2);
    const got: number[] = [];
    b.onMessage(1, (_f, p) => got.push(p.length));
    assert.equal(a.send(2, 1, Buffer.alloc(100 * 1024)), true); // accepted locally, refused by b
    await until(() => !a.isConnected(2), 5000, 'disconnect');
    assert.match(a.peerStatus()[0]!.lastError, /rejected|closed/);
    await until(() => a.isConnected(2), 5000, 'reconnect');
    a.send(2, 1, Buffer.alloc(1000));
    await until(() => got.length === 1);
    assert.deepEqual(got, [1000]);
  });

  test('the send queue is bounded in bytes; excess is dropped and reported', async () => {
    // A fake peer that authenticates properly and then never reads.
    const secret = Buffer.from('s3cret');
    const server = net.createServer((s) => {
      const mine = { clusterId: 'c1', nodeId: 2, nonce: newNonce() };
      s.write(encodeFrame(FrameType.Hello, encodeHello(mine)));
      const dec = new FrameDecoder(1 << 20);
      s.on('error', () => {});
      s.on('data', (d: Buffer) => {
        for (const f of dec.push(d)) {
          if (f.type === FrameType.Hello) {
            const theirs = decodeHello(f.body)!;
            s.write(encodeFrame(FrameType.Auth, authMac(secret, 'c1', mine, theirs)));
          } else if (f.type === FrameType.Auth) {
            s.pause(); // stop reading: the kernel buffers fill, then a's queue
          }
        }
      });
      sockets.push(s);
    });
    sockets.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const queueBytesMax = 1024 * 1024;
    const a = await start(1, { queueBytesMax });
    a.addPeer(2, `127.0.0.1:${(server.address() as net.AddressInfo).port}`);
    await until(() => a.isConnected(2), 5000, 'connection');
    let dropped = 0;
    a.onUnreachable(() => dropped++);
    const payload = Buffer.alloc(64 * 1024);
    let accepted = 0;
    for (let i = 0; i < 2000; i++) {
      if (a.send(2, 1, payload)) accepted++;
      assert.ok(a.peerStatus()[0]!.queuedBytes <= queueBytesMax, 'queue bound respected');
      if (i % 50 === 0) await new Promise((r) => setImmediate(r));
    }
    assert.ok(dropped > 0, 'some messages were dropped');
    assert.equal(accepted + dropped, 2000);
    assert.ok(accepted * payload.length < 2000 * payload.length);
  });
});
