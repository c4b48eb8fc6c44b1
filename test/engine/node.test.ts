// Three RaftNodes in one process over real sockets and real data directories.
import { test, describe, after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RaftNode } from '../../src/engine/node.js';
import { NotLeaderError } from '../../src/engine/errors.js';
import { EntryType, Role, type Entry } from '../../src/consensus/types.js';
import { configureLogging } from '../../src/util/log.js';
import { freePort } from './proc-cluster.js';

configureLogging({ silent: !process.env.DEBUG_LOG, debug: !!process.env.DEBUG_LOG });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('RaftNode (3 nodes, one process)', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'recall-node-'));
  const nodes = new Map<number, RaftNode>();
  const applied = new Map<number, Entry[]>();
  let peers: Map<number, string>;

  async function open(id: number, appliedIndex?: number): Promise<RaftNode> {
    const n = await RaftNode.open({ id, peers, dataDir: path.join(root, `n${id}`), clusterId: 't', secret: 'k', appliedIndex, onFatal: (e) => assert.fail(e) });
    applied.set(id, []);
    n.onCommitted((es) => {
      applied.get(id)!.push(...es.filter((e) => e.type === EntryType.Normal));
    });
    nodes.set(id, n);
    return n;
  }

  async function leader(timeoutMs = 5000, exclude = 0): Promise<RaftNode> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      const ls = [...nodes.values()].filter((n) => n.id !== exclude && n.status().role === Role.Leader);
      if (ls.length === 1) return ls[0]!;
      await sleep(10);
    }
    throw new Error('no leader');
  }

  before(async () => {
    peers = new Map();
    for (const id of [1, 2, 3]) peers.set(id, `127.0.0.1:${await freePort()}`);
    for (const id of [1, 2, 3]) await open(id);
  });
  after(async () => {
    for (const n of nodes.values()) await n.close();
    fs.rmSync(root, { recursive: true, force: true });
  });

  test('elects a leader and commits proposals on every node in order', async () => {
    // On a loaded machine a leader change can happen mid-test: retry outcome-unknown
    // failures on the current leader (a retried entry may then be committed twice).
    const proposeRetry = async (data: string): Promise<{ index: number }> => {
      for (let attempt = 0; ; attempt++) {
        try {
          return await (await leader()).propose(Buffer.from(data));
        } catch (e) {
          if (attempt > 20) throw e;
          await sleep(20);
        }
      }
    };
    const rs = await Promise.all(Array.from({ length: 200 }, (_, i) => proposeRetry(`e${i}`)));
    const idx = rs.map((r) => r.index);
    assert.equal(new Set(idx).size, 200);
    const last = Math.max(...idx);
    for (let i = 0; i < 500 && [...nodes.values()].some((n) => n.status().applied < last); i++) await sleep(10);
    const seqs = [...applied.values()].map((es) => es.filter((e) => e.index <= last).map((e) => `${e.index}:${Buffer.from(e.data).toString()}`));
    assert.deepEqual(seqs[0], seqs[1]);
    assert.deepEqual(seqs[0], seqs[2]);
    for (let i = 0; i < 200; i++) assert.ok(seqs[0]!.some((x) => x.endsWith(`:e${i}`)), `e${i} applied`);
    const l = await leader();
    for (let i = 0; i < 200 && l.status().peers.some((p) => p.match < last || !p.connected); i++) await sleep(10);
    const st = l.status();
    assert.equal(st.role, Role.Leader);
    assert.equal(st.leader, l.id);
    assert.ok(st.commit >= last);
    assert.equal(st.peers.length, 2);
    for (const p of st.peers) {
      assert.equal(p.connected, true);
      assert.ok(p.match >= last, `peer ${p.id} match ${p.match} >= ${last}`);
    }
  });

  test('a follower refuses proposals with NotLeaderError naming the leader and its address', async () => {
    const l = await leader();
    const f = [...nodes.values()].find((n) => n !== l)!;
    await assert.rejects(f.propose(Buffer.from('x')), (e: unknown) => e instanceof NotLeaderError && e.leader === l.id && e.leaderAddress === peers.get(l.id));
  });

  test('readIndex on leader and follower returns an applied index', async () => {
    const l = await leader();
    const r = await l.propose(Buffer.from('before-read'));
    for (const n of nodes.values()) {
      const i = await n.readIndex({ timeoutMs: 3000 });
      assert.ok(i >= r.index, `node ${n.id} read index ${i} >= ${r.index}`);
      assert.ok(n.status().applied >= i);
    }
  });

  test('leadership transfer hands over to a caught-up peer', async () => {
    const l = await leader();
    assert.equal(await l.transferLeadership(), true);
    const l2 = await leader(3000, l.id);
    assert.notEqual(l2.id, l.id);
    await l2.propose(Buffer.from('after-transfer'));
  });

  test('a restarted node recovers its log from disk and catches up', async () => {
    const l = await leader();
    const victim = [...nodes.values()].find((n) => n !== l)!;
    await victim.close();
    nodes.delete(victim.id);
    const r = await l.propose(Buffer.from('while-down'));
    const again = await open(victim.id);
    assert.ok(again.storage.lastIndex() >= r.index - 1, 'log recovered from disk');
    for (let i = 0; i < 500 && again.status().applied < r.index; i++) await sleep(10);
    assert.ok(again.status().applied >= r.index);
    const seq = applied.get(victim.id)!.map((e) => Buffer.from(e.data).toString());
    assert.ok(seq.includes('while-down'));
    assert.ok(seq.includes('e0'), 'entries re-delivered from the start after restart');
  });

  test('with the applier\'s appliedIndex, a restart re-delivers only later entries', async () => {
    const l = await leader();
    const victim = [...nodes.values()].find((n) => n !== l)!;
    const appliedBefore = victim.status().applied;
    await victim.close();
    nodes.delete(victim.id);
    const r = await l.propose(Buffer.from('after-applied'));
    const again = await open(victim.id, appliedBefore);
    assert.equal(again.status().applied, appliedBefore);
    for (let i = 0; i < 500 && again.status().applied < r.index; i++) await sleep(10);
    const got = applied.get(victim.id)!;
    assert.ok(got.length > 0 && got.every((e) => e.index > appliedBefore), 'nothing at or below appliedIndex re-delivered');
    assert.ok(got.some((e) => Buffer.from(e.data).toString() === 'after-applied'));
  });
});

describe('RaftNode snapshots', () => {
  test('a follower behind a compacted log receives the snapshot and then the rest', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'recall-snap-'));
    const peers = new Map<number, string>();
    for (const id of [1, 2, 3]) peers.set(id, `127.0.0.1:${await freePort()}`);
    const nodes = new Map<number, RaftNode>();
    const installed: { index: number; data: string }[] = [];
    const seen = new Map<number, string[]>();
    const open = async (id: number) => {
      const n = await RaftNode.open({
        id, peers, dataDir: path.join(root, `n${id}`), clusterId: 't', secret: 'k', onFatal: (e) => assert.fail(e),
        snapshotInstaller: (s) => {
          installed.push({ index: s.meta.index, data: Buffer.from(s.data).toString() });
        },
      });
      seen.set(id, []);
      n.onCommitted((es) => {
        seen.get(id)!.push(...es.filter((e) => e.type === EntryType.Normal).map((e) => Buffer.from(e.data).toString()));
      });
      nodes.set(id, n);
      return n;
    };
    try {
      for (const id of [1, 2, 3]) await open(id);
      let l: RaftNode | undefined;
      for (let i = 0; i < 500 && !l; i++) {
        l = [...nodes.values()].find((n) => n.status().role === Role.Leader);
        if (!l) await sleep(10);
      }
      assert.ok(l);
      const lagging = [...nodes.values()].find((n) => n !== l)!;
      const lagId = lagging.id;
      await lagging.close();
      nodes.delete(lagId);
      let last = 0;
      for (let i = 0; i < 50; i++) last = (await l.propose(Buffer.from(`s${i}`))).index;
      for (let i = 0; i < 100 && l.status().applied < last; i++) await sleep(10);
      await l.snapshot(last, Buffer.from(`state@${last}`));
      assert.equal(l.storage.firstIndex(), last + 1);
      const after = await l.propose(Buffer.from('after-snapshot'));
      const back = await open(lagId);
      for (let i = 0; i < 500 && back.status().applied < after.index; i++) await sleep(10);
      assert.ok(back.status().applied >= after.index, 'caught up past the snapshot');
      assert.deepEqual(installed, [{ index: last, data: `state@${last}` }]);
      assert.ok(seen.get(lagId)!.includes('after-snapshot'));
      assert.ok(!seen.get(lagId)!.includes('s49'), 'entries covered by the snapshot are not re-applied');
      assert.equal(back.storage.snapshot().meta.index, last, 'snapshot persisted on the follower');
    } finally {
      for (const n of nodes.values()) await n.close();
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('RaftNode without a quorum', () => {
  test('proposals fail with outcome-unknown errors, then NotLeader once the leader steps down', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'recall-noq-'));
    const peers = new Map<number, string>();
    for (const id of [1, 2, 3]) peers.set(id, `127.0.0.1:${await freePort()}`);
    const nodes: RaftNode[] = [];
    try {
      for (const id of [1, 2, 3]) {
        nodes.push(await RaftNode.open({ id, peers, dataDir: path.join(root, `n${id}`), clusterId: 't', secret: 'k', onFatal: (e) => assert.fail(e) }));
      }
      let l: RaftNode | undefined;
      for (let i = 0; i < 500 && !l; i++) {
        l = nodes.find((n) => n.status().role === Role.Leader);
        if (!l) await sleep(10);
      }
      assert.ok(l);
      await l.propose(Buffer.from('ok'));
      for (const n of nodes) if (n !== l) await n.close();
      const pending = l.propose(Buffer.from('no-quorum'), { timeoutMs: 300 });
      await assert.rejects(pending, (e: unknown) => e instanceof Error && (e.name === 'TimeoutError' || e.name === 'LostLeadershipError'));
      // check-quorum: a leader that hears from no majority steps down within an election timeout or two.
      for (let i = 0; i < 300 && l.status().role === Role.Leader; i++) await sleep(10);
      assert.notEqual(l.status().role, Role.Leader);
      await assert.rejects(l.propose(Buffer.from('x')), NotLeaderError);
      await assert.rejects(l.readIndex({ timeoutMs: 200 }), (e: unknown) => e instanceof Error && /NotLeader|Timeout/.test(e.name));
    } finally {
      for (const n of nodes) await n.close();
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('RaftNode alone', () => {
  test('a one-replica cluster elects itself and commits', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'recall-one-'));
    const peers = new Map([[1, `127.0.0.1:${await freePort()}`]]);
    let n = await RaftNode.open({ id: 1, peers, dataDir: root, clusterId: 't', secret: 'k', onFatal: (e) => assert.fail(e) });
    try {
      for (let i = 0; i < 300 && n.status().role !== Role.Leader; i++) await sleep(10);
      const r = await n.propose(Buffer.from('solo'));
      assert.ok(r.index >= 1);
      assert.equal(await n.readIndex(), n.status().applied);
      await n.close();
      n = await RaftNode.open({ id: 1, peers, dataDir: root, clusterId: 't', secret: 'k', onFatal: (e) => assert.fail(e) });
      assert.ok(n.storage.lastIndex() >= r.index);
      for (let i = 0; i < 300 && n.status().role !== Role.Leader; i++) await sleep(10);
      const r2 = await n.propose(Buffer.from('solo-2'));
      assert.ok(r2.index > r.index && r2.term > r.term);
    } finally {
      await n.close();
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
