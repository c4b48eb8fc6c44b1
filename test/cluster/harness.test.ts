// The cluster harness itself: the fault relay on its own (forward, cut, heal, blackhole,
// delay), then 3 real recall processes with managed mariadbd: a leader is agreed, /status
// has the agreed replication fields, cut(i) disconnects node i from both peers and only
// them, heal(i) reconnects, kill/restart of a follower, and stop() leaves nothing behind.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { existsSync } from 'node:fs';
import { FaultRelay } from '../harness/fault-relay.js';
import { startCluster, type TestCluster, type NodeStatus } from '../harness/cluster.js';
import { alive } from '../harness/process.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function echoServer(): Promise<{ port: number; close(): Promise<void> }> {
  const socks = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    socks.add(s);
    s.on('error', () => undefined);
    s.on('close', () => socks.delete(s));
    s.pipe(s);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return {
    port: (srv.address() as net.AddressInfo).port,
    close: () => {
      for (const s of socks) s.destroy();
      return new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

/** Connects, sends `msg`, resolves with what came back within `waitMs`, or the error/close. */
async function roundTrip(port: number, msg: string, waitMs = 500): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    const done = (v: string) => {
      clearTimeout(t);
      s.destroy();
      resolve(v);
    };
    const t = setTimeout(() => done(got || 'timeout'), waitMs);
    s.on('data', (b) => {
      got += b.toString();
      if (got.length >= msg.length) done(got);
    });
    s.on('error', (e: NodeJS.ErrnoException) => done(`error:${e.code ?? e.message}`));
    s.on('close', () => done(got || 'closed'));
    s.write(msg);
  });
}

test('fault relay: forwards, cut resets, blackhole swallows, heal restores, delay delays', async () => {
  const echo = await echoServer();
  const relay = await FaultRelay.start({ targetPort: echo.port, name: 'test' });
  try {
    assert.equal(await roundTrip(relay.port, 'hello'), 'hello');

    // An open connection dies on cut('reset').
    const s = net.connect(relay.port, '127.0.0.1');
    s.on('error', () => undefined);
    await new Promise((r) => s.once('connect', r));
    const closed = new Promise((r) => s.once('close', r));
    await sleep(50);
    relay.cut('reset');
    await closed;
    const r = await roundTrip(relay.port, 'x');
    assert.ok(r === 'closed' || r.startsWith('error:'), `a new connection is refused while cut (got ${r})`);

    relay.heal();
    assert.equal(await roundTrip(relay.port, 'again'), 'again');

    relay.cut('blackhole');
    assert.equal(await roundTrip(relay.port, 'void', 400), 'timeout', 'blackholed bytes never come back');
    relay.heal();
    assert.equal(await roundTrip(relay.port, 'back'), 'back');

    relay.setDelayMs(300);
    const t0 = Date.now();
    assert.equal(await roundTrip(relay.port, 'slow', 2000), 'slow');
    const took = Date.now() - t0;
    assert.ok(took >= 550, `two hops of 300 ms delay (took ${took} ms)`);
  } finally {
    await relay.close();
    await echo.close();
  }
});

let cluster: TestCluster | undefined;
after(async () => {
  await cluster?.stop();
});

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

function connectedTo(s: NodeStatus | undefined, peerId: number): boolean | undefined {
  return s?.replication?.peers.find((p) => p.id === peerId)?.connected;
}

test('cluster harness: 3 nodes, leader, /status shape, cut and heal, restart, clean stop', { timeout: 300_000 }, async () => {
  const t0 = Date.now();
  cluster = await startCluster({ size: 3 });
  const c = cluster;
  try {
    console.log(`# 3 nodes ready in ${Date.now() - t0} ms`);
    const leader = await c.waitLeader(20_000);
    console.log(`# leader node ${leader + 1} after ${Date.now() - t0} ms`);

    for (const n of c.nodes) {
      const s = await c.status(n.index);
      assert.equal(s.nodeId, n.nodeId);
      assert.equal(s.database.reachable, true);
      const r = s.replication;
      assert.ok(r, `node ${n.nodeId} /status has replication`);
      assert.ok(['leader', 'follower'].includes(r.role), `role ${r.role}`);
      assert.equal(r.leader, leader + 1);
      for (const k of ['term', 'commit', 'applied', 'lastIndex'] as const) assert.equal(typeof r[k], 'number', k);
      assert.equal(r.diverged, false);
      assert.equal(typeof r.laneOpen, 'boolean');
      assert.equal(r.laneOpen, n.index === leader ? r.laneOpen : false, 'only the leader may have an open lane');
      assert.deepEqual(r.peers.map((p) => p.id).sort(), c.nodes.filter((m) => m !== n).map((m) => m.nodeId));
      // Each node dials the others through its own relays.
      for (const p of r.peers) assert.equal(p.address, c.relay(n.index, p.id - 1).address);
      // The managed database is where the harness says it is.
      const rows = await c.dbQuery(n.index, 'SELECT @@port AS port');
      assert.equal(Number(rows[0]!.port), n.dbPort);
    }
    await waitFor('all links up', 10_000, async () => {
      const sts = await Promise.all(c.nodes.map((n) => c.tryStatus(n.index)));
      return sts.every((s) => s?.replication?.peers.every((p) => p.connected)) ? true : undefined;
    });

    // Cut a follower: it loses both peers, the other two still see each other.
    const f = (leader + 1) % 3;
    const other = (leader + 2) % 3;
    c.cut(f);
    await waitFor('cut node disconnected', 10_000, async () => {
      const [sf, sl, so] = await Promise.all([c.tryStatus(f), c.tryStatus(leader), c.tryStatus(other)]);
      const ok =
        connectedTo(sf, leader + 1) === false &&
        connectedTo(sf, other + 1) === false &&
        connectedTo(sl, f + 1) === false &&
        connectedTo(so, f + 1) === false &&
        connectedTo(sl, other + 1) === true &&
        connectedTo(so, leader + 1) === true;
      return ok ? true : undefined;
    });
    // The majority keeps its leader.
    assert.equal(await c.waitLeader(10_000), leader);
    c.heal(f);
    await waitFor('healed node reconnected', 15_000, async () => {
      const sts = await Promise.all(c.nodes.map((n) => c.tryStatus(n.index)));
      return sts.every((s) => s?.replication?.peers.every((p) => p.connected)) ? true : undefined;
    });
    await c.waitConverged(20_000);

    // kill -9 and restart a follower on its data.
    const dataDir = c.nodes[f]!.dataDir;
    const dbPid = c.nodes[f]!.dbPid();
    assert.ok(dbPid && alive(dbPid), 'managed mariadbd found by its pid file');
    await c.kill(f);
    assert.equal(c.nodes[f]!.running(), false);
    await c.restart(f);
    assert.ok(existsSync(dataDir));
    await c.waitConverged(30_000);
    assert.equal(await c.waitLeader(10_000), leader);
  } catch (err) {
    console.log(c.dumpLogs());
    throw err;
  }

  const pids = c.nodes.flatMap((n) => [n.pid(), n.dbPid()]).filter((p): p is number => p !== undefined);
  assert.equal(pids.length, 6, 'three recall and three mariadbd processes');
  const dirs = c.nodes.map((n) => n.dataDir);
  await c.stop();
  // An orphan's zombie may linger a moment until init reaps it.
  const gone = Date.now() + 5000;
  while (pids.some(alive) && Date.now() < gone) await sleep(100);
  for (const pid of pids) assert.equal(alive(pid), false, `process ${pid} stopped`);
  for (const d of dirs) assert.equal(existsSync(d), false, `${d} removed`);
});
