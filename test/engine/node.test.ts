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

  async function open(id: number): Promise<RaftNode> {
    const n = await RaftNode.open({ id, peers, dataDir: path.join(root, `n${id}`), clusterId: 't', secret: 'k', onFatal: (e) => assert.fail(e) });
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
    const l = await leader();
    const rs = await Promise.all(Array.from({ length: 200 }, (_, i) => l.propose(Buffer.from(`e${i}`))));
    const idx = rs.map((r) => r.index);
    assert.equal(new Set(idx).size, 200);
    const last = Math.max(...idx);
    for (let i = 0; i < 300 && [...nodes.values()].some((n) => n.status().applied < last); i++) await sleep(10);
    const seqs = [...applied.values()].map((es) => es.map((e) => `${e.index}:${Buffer.from(e.data).toString()}`));
    assert.deepEqual(seqs[0], seqs[1]);
    assert.deepEqual(seqs[0], seqs[2]);
    assert.equal(seqs[0]!.length, 200);
    const st = l.status();
    assert.equal(st.role, Role.Leader);
    assert.equal(st.leader, l.id);
    assert.ok(st.commit >= last);
    assert.equal(st.peers.length, 2);
    for (const p of st.peers) {
      assert.equal(p.connected, true);
      assert.ok(p.match >= last - 0, `peer ${p.id} match ${p.match}`);
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
});
