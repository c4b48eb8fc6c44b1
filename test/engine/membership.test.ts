// Membership changes through RaftNode, in-process nodes over real sockets and data
// directories: grow 3 -> 5 under load, shrink 5 -> 3 (the leader removed too), and
// replace a dead node. The state machine is index -> data, snapshotted as JSON, so a
// joining node gets the founders' state (and the membership) by InstallSnapshot.
import { test, describe, after, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CHANNEL_MEMBERS, RaftNode } from '../../src/engine/node.js';
import { MembershipError, NotLeaderError } from '../../src/engine/errors.js';
import { EntryType, Role } from '../../src/consensus/types.js';
import { configureLogging } from '../../src/util/log.js';
import { freePort } from './proc-cluster.js';

configureLogging({ silent: !process.env.DEBUG_LOG, debug: !!process.env.DEBUG_LOG });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('RaftNode membership changes', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'recall-members-'));
  const nodes = new Map<number, RaftNode>();
  const state = new Map<number, Map<number, string>>();
  const addrs = new Map<number, string>();
  const acked: string[] = [];
  let writing = false;
  let writers: Promise<void>[] = [];
  let seq = 0;

  async function open(id: number, join = false): Promise<RaftNode> {
    if (!addrs.has(id)) addrs.set(id, `127.0.0.1:${await freePort()}`);
    const sm = new Map<number, string>();
    state.set(id, sm);
    const n = await RaftNode.open({
      id,
      // A joining node knows the founders' addresses (and its own); founders know each other.
      peers: new Map(join ? addrs : [...addrs].filter(([k]) => k <= 3)),
      join,
      addressOf: (peer) => addrs.get(peer),
      dataDir: path.join(root, `n${id}`),
      clusterId: 'members',
      secret: 'k',
      onFatal: (e) => assert.fail(e),
      snapshotProvider: (index) => Buffer.from(JSON.stringify([...sm].filter(([i]) => i <= index))),
      snapshotInstaller: (s) => {
        sm.clear();
        for (const [i, d] of JSON.parse(Buffer.from(s.data).toString()) as [number, string][]) sm.set(i, d);
      },
    });
    // An in-memory state machine: restore it from the local snapshot (the log below it is gone).
    for (const [i, d] of JSON.parse(Buffer.from(n.storage.snapshot().data).toString() || '[]') as [number, string][]) sm.set(i, d);
    n.onCommitted((es) => {
      for (const e of es) if (e.type === EntryType.Normal) sm.set(e.index, Buffer.from(e.data).toString());
    });
    nodes.set(id, n);
    return n;
  }

  async function stop(id: number): Promise<void> {
    const n = nodes.get(id)!;
    nodes.delete(id);
    await n.close();
  }

  async function leader(timeoutMs = 8000): Promise<RaftNode> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      const ls = [...nodes.values()].filter((n) => n.status().role === Role.Leader);
      if (ls.length === 1) return ls[0]!;
      await sleep(10);
    }
    throw new Error('no leader');
  }

  function startWriters(count = 4): void {
    writing = true;
    writers = Array.from({ length: count }, async () => {
      while (writing) {
        const l = [...nodes.values()].find((n) => n.status().role === Role.Leader);
        if (!l) {
          await sleep(10);
          continue;
        }
        const d = `w${seq++}`;
        try {
          await l.propose(Buffer.from(d), { timeoutMs: 3000 });
          acked.push(d);
        } catch {
          await sleep(10); // outcome unknown or not leader: not counted as acknowledged
        }
      }
    });
  }

  async function stopWriters(): Promise<void> {
    writing = false;
    await Promise.all(writers);
  }

  /** Every acknowledged entry is in the state of every listed node, and they agree. */
  async function checkAll(ids: number[]): Promise<void> {
    const l = await leader();
    // A fresh no-op-free barrier: one more entry committed after everything acknowledged.
    const { index } = await l.propose(Buffer.from('barrier'));
    for (let i = 0; i < 800 && ids.some((id) => nodes.get(id)!.status().applied < index); i++) await sleep(10);
    const want = new Set(acked);
    const ref = [...state.get(ids[0]!)!].filter(([i]) => i <= index).sort((a, b) => a[0] - b[0]);
    for (const id of ids) {
      assert.ok(nodes.get(id)!.status().applied >= index, `node ${id} applied up to ${index}`);
      const sm = state.get(id)!;
      const have = new Set(sm.values());
      const missing = [...want].filter((d) => !have.has(d));
      assert.deepEqual(missing, [], `node ${id} misses acknowledged entries`);
      assert.deepEqual([...sm].filter(([i]) => i <= index).sort((a, b) => a[0] - b[0]), ref, `node ${id} agrees with node ${ids[0]}`);
    }
  }

  async function waitVoters(ids: number[], voters: number[], timeoutMs = 5000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end && ids.some((id) => nodes.get(id)!.status().voters.join(',') !== voters.join(','))) await sleep(10);
    for (const id of ids) assert.deepEqual(nodes.get(id)!.status().voters, voters, `voters seen by node ${id}`);
  }

  before(async () => {
    for (const id of [1, 2, 3]) addrs.set(id, `127.0.0.1:${await freePort()}`);
    for (const id of [1, 2, 3]) await open(id);
  });
  after(async () => {
    writing = false;
    await Promise.all(writers);
    for (const n of nodes.values()) await n.close();
    fs.rmSync(root, { recursive: true, force: true });
  });

  test('refuses changes on a follower and invalid changes on the leader', async () => {
    const l = await leader();
    const f = [...nodes.values()].find((n) => n !== l)!;
    await assert.rejects(f.addLearner(9, '127.0.0.1:1'), NotLeaderError);
    await assert.rejects(l.removeNode(9), (e) => e instanceof MembershipError && e.reason === 'invalid');
    await assert.rejects(l.promote(f.id), (e) => e instanceof MembershipError && e.reason === 'invalid');
    await assert.rejects(l.addLearner(f.id, addrs.get(f.id)!), (e) => e instanceof MembershipError && e.reason === 'invalid');
    // Garbage member announcements from a peer are logged and ignored.
    const peersBefore = l.status().peers.map((p) => p.id);
    for (const junk of ['{', '{"id":-1,"address":"x:1"}', '{"id":5,"address":"no port"}', '[]']) f.transport.send(l.id, CHANNEL_MEMBERS, Buffer.from(junk));
    await sleep(100);
    assert.deepEqual(l.status().peers.map((p) => p.id), peersBefore);
    assert.equal(l.status().role, Role.Leader);
  });

  test('a learner that never catches up is not promoted, and can be removed', async () => {
    const l = await leader();
    await l.addLearner(8, `127.0.0.1:${await freePort()}`); // nothing listens there
    assert.deepEqual(l.status().learners, [8]);
    await assert.rejects(l.promote(8, { timeoutMs: 300 }), (e) => e instanceof MembershipError && e.reason === 'not-caught-up');
    await assert.rejects(l.addLearner(8, `127.0.0.1:${await freePort()}`), (e) => e instanceof MembershipError && e.reason === 'invalid' && /already a member/.test(e.message));
    await l.removeNode(8);
    assert.deepEqual(l.status().learners, []);
    assert.deepEqual(l.status().voters, [1, 2, 3]);
  });

  test('a joining node does not campaign on its own', async () => {
    const n = await open(7, true);
    await sleep(1200); // two maximal election timeouts
    assert.equal(n.status().role, Role.Follower);
    assert.equal(n.status().term, 0);
    assert.deepEqual(n.status().voters, []);
    await stop(7);
    addrs.delete(7);
  });

  test('grows 3 -> 5 under a stream of proposals', async () => {
    startWriters();
    await sleep(200);
    for (const id of [4, 5]) {
      await open(id, true);
      const l = await leader();
      await l.addLearner(id, addrs.get(id)!);
      await l.promote(id);
      await sleep(100);
    }
    await sleep(300);
    await stopWriters();
    assert.ok(acked.length > 50, `only ${acked.length} proposals acknowledged`);
    await waitVoters([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]);
    await checkAll([1, 2, 3, 4, 5]);
  });

  test('a joined node and a founder restart with the membership from disk', async () => {
    for (const [id, join] of [[4, true], [1, false]] as const) {
      await stop(id);
      await open(id, join);
      // From its snapshot and log (the ConfChanges are re-applied with the committed entries).
      await waitVoters([id], [1, 2, 3, 4, 5]);
    }
    await checkAll([1, 2, 3, 4, 5]);
    // The founder, restarted with the founders' addresses only, reaches the added nodes.
    const n1 = nodes.get(1)!;
    for (let i = 0; i < 300 && n1.status().peers.filter((p) => p.connected).length < 4; i++) await sleep(10);
    assert.deepEqual(
      n1.status().peers.filter((p) => p.connected).map((p) => p.id).sort(),
      [2, 3, 4, 5],
    );
  });

  test('shrinks 5 -> 3, removing a follower and then the leader', async () => {
    startWriters();
    await sleep(200);
    let l = await leader();
    const follower = [...nodes.keys()].find((id) => id !== l.id)!;
    await l.removeNode(follower);
    await stop(follower);
    l = await leader();
    const oldLeader = l.id;
    await l.removeNode(oldLeader);
    // It steps down once the removal is applied and never campaigns again.
    for (let i = 0; i < 200 && l.status().role === Role.Leader; i++) await sleep(10);
    assert.notEqual(l.status().role, Role.Leader);
    const rest = [...nodes.keys()].filter((id) => id !== oldLeader);
    assert.equal(rest.length, 3);
    nodes.delete(oldLeader); // out of leader(): it must not be needed any more
    const before = acked.length;
    const nl = await leader();
    assert.ok(rest.includes(nl.id));
    for (let i = 0; i < 300 && acked.length < before + 50; i++) await sleep(10);
    await stopWriters();
    assert.ok(acked.length >= before + 50, 'the remaining 3 keep committing');
    assert.notEqual(l.status().role, Role.Leader);
    await l.close();
    await waitVoters(rest, rest.sort((a, b) => a - b));
    await checkAll(rest);
  });

  test('replaces a dead node', async () => {
    const l0 = await leader();
    const dead = [...nodes.keys()].find((id) => id !== l0.id)!;
    await stop(dead);
    startWriters();
    await open(6, true);
    let l = await leader();
    await l.addLearner(6, addrs.get(6)!);
    await l.promote(6);
    l = await leader();
    await l.removeNode(dead);
    await sleep(300);
    await stopWriters();
    const live = [...nodes.keys()].sort((a, b) => a - b);
    assert.equal(live.length, 3);
    assert.ok(live.includes(6));
    await waitVoters(live, live);
    await checkAll(live);
  });
});
