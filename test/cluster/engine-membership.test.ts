// Membership change across real OS processes: a 4th process joins a 3-process
// cluster under a stream of proposals (add-learner, promote), the leader is then
// killed with SIGKILL, the new leader removes it, and every acknowledged entry is
// at its index on the three live nodes, the joined one included (it got the
// founders' entries by snapshot).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { ProcCluster, ProcNode, freePort } from '../engine/proc-cluster.js';

let cluster: ProcCluster | undefined;
after(async () => {
  await cluster?.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('a process joins, is promoted, survives the leader kill -9 and the dead leader is removed', { timeout: 120_000 }, async () => {
  cluster = await ProcCluster.start(3, ['--record', '--quiet']);
  const c = cluster;
  let leader: ProcNode = await c.waitLeader(10_000);
  const acked = new Map<string, number>();
  let running = true;
  const proposers = Array.from({ length: 8 }, async (_, p) => {
    for (let seq = 0; running; seq++) {
      const payload = `p${p}-${seq}`;
      const parts = (await leader.command('propose', payload)).split(' ');
      if (parts[0] === 'ok') acked.set(payload, Number(parts[2]));
      else await sleep(20);
    }
  });
  await sleep(500);

  const port = await freePort();
  const peersArg = [...c.nodes.map((n) => `${n.id}=127.0.0.1:${n.peerPort}`), `4=127.0.0.1:${port}`].join(',');
  const joiner = new ProcNode(4, port, path.join(c.root, 'n4'), peersArg, ['--record', '--quiet', '--join']);
  c.nodes.push(joiner);
  await joiner.start();
  const add = await leader.command('add-learner', 4, `127.0.0.1:${port}`);
  assert.match(add, /^ok /, add);
  const promote = await leader.command('promote', 4);
  assert.match(promote, /^ok /, promote);
  const bad = await leader.command('promote', 4);
  assert.match(bad, /^err \d+ MembershipError /, bad);
  for (let i = 0; i < 300 && (await joiner.status())?.role !== 'follower'; i++) await sleep(10);
  await sleep(500);

  const old = leader;
  old.kill9();
  leader = await c.waitLeader(5000, [old.id]);
  assert.notEqual(leader.id, old.id);
  const removed = await leader.command('remove', old.id);
  assert.match(removed, /^ok /, removed);
  const ackedBefore = acked.size;
  await sleep(1000);
  running = false;
  await Promise.all(proposers);
  assert.ok(acked.size > ackedBefore + 50, `proposals flow in the new membership (${acked.size - ackedBefore} more)`);

  const live = c.nodes.filter((n) => n !== old);
  assert.equal(live.length, 3);
  const maxAcked = Math.max(...acked.values());
  for (let i = 0; ; i++) {
    const st = await Promise.all(live.map((s) => s.status()));
    if (st.every((s) => s && s.applied >= maxAcked)) break;
    assert.ok(i < 1000, 'live nodes apply every acknowledged entry');
    await sleep(10);
  }
  for (const n of live) {
    const byIndex = new Map((await n.applied()).map(([index, , text]) => [index, text]));
    for (const [payload, index] of acked) assert.equal(byIndex.get(index), payload, `node ${n.id}: acknowledged ${payload} at ${index}`);
    const voters = (await n.status())?.voters;
    assert.deepEqual(voters, live.map((x) => x.id).sort(), `node ${n.id} voters`);
  }
  console.log(`# ${acked.size} acknowledged entries; node 4 joined and node ${old.id} (leader) was killed and removed`);
});
