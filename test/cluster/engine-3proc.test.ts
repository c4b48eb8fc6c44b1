// Three replication nodes as real OS processes on loopback, each with its own data
// directory. A stream of concurrent proposals runs while the leader is killed with
// SIGKILL: a new leader must appear within 2 s (default timeouts), no acknowledged
// entry may be missing or out of place on the survivors, and the killed node,
// restarted on its old data, must catch up to the same log.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { ProcCluster, type ProcNode } from '../engine/proc-cluster.js';

let cluster: ProcCluster | undefined;
after(async () => {
  await cluster?.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('kill -9 of the leader under load: new leader within 2 s, no acknowledged entry lost', { timeout: 120_000 }, async () => {
  cluster = await ProcCluster.start(3, ['--record', '--quiet']);
  const c = cluster;
  let leader: ProcNode = await c.waitLeader(10_000);
  const acked = new Map<string, number>(); // payload -> index
  let running = true;
  let errors = 0;
  const proposers = Array.from({ length: 16 }, async (_, p) => {
    for (let seq = 0; running; seq++) {
      const payload = `p${p}-${seq}`;
      const target = leader;
      const line = await target.command('propose', payload);
      const parts = line.split(' ');
      if (parts[0] === 'ok') {
        acked.set(payload, Number(parts[2]));
      } else {
        errors++;
        await sleep(20); // a leader change is under way; retry with a fresh payload
      }
    }
  });

  await sleep(1500);
  assert.ok(acked.size > 50, `proposals flow before the crash (${acked.size} acknowledged)`);
  const old = leader;
  const oldStatus = await old.status();
  const t0 = Date.now();
  old.kill9();
  let newLeader: ProcNode | undefined;
  while (Date.now() - t0 < 5000) {
    for (const n of c.nodes.filter((x) => x !== old)) {
      const s = await n.status();
      if (s?.role === 'leader' && s.term > oldStatus!.term) newLeader = n;
    }
    if (newLeader) break;
    await sleep(10);
  }
  const electionMs = Date.now() - t0;
  assert.ok(newLeader, 'a new leader was elected');
  assert.ok(electionMs < 2000, `new leader within 2 s (took ${electionMs} ms)`);
  console.log(`# new leader ${newLeader.id} elected ${electionMs} ms after kill -9 of leader ${old.id}`);
  leader = newLeader;
  const ackedBefore = acked.size;
  await sleep(1500);
  running = false;
  await Promise.all(proposers);
  assert.ok(acked.size > ackedBefore + 50, `proposals flow again under the new leader (${acked.size - ackedBefore} more)`);

  // Survivors: every acknowledged entry at its index, identical sequences.
  const survivors = c.nodes.filter((x) => x !== old);
  const maxAcked = Math.max(...acked.values());
  for (let i = 0; ; i++) {
    const st = await Promise.all(survivors.map((s) => s.status()));
    if (st.every((s) => s && s.applied >= maxAcked)) break;
    assert.ok(i < 500, 'survivors apply every acknowledged entry');
    await sleep(10);
  }
  const logs = await Promise.all(survivors.map((s) => s.applied()));
  for (const log of logs) {
    const byIndex = new Map(log.map(([index, , text]) => [index, text]));
    for (const [payload, index] of acked) assert.equal(byIndex.get(index), payload, `acknowledged ${payload} at ${index}`);
    for (let k = 1; k < log.length; k++) assert.ok(log[k]![0] > log[k - 1]![0], 'applied in increasing index order');
  }
  const n = Math.min(logs[0]!.length, logs[1]!.length);
  assert.deepEqual(logs[0]!.slice(0, n), logs[1]!.slice(0, n), 'survivors applied the same sequence');
  console.log(`# ${acked.size} acknowledged entries, ${errors} refused/failed proposals during the failover`);

  // The killed node restarts on its own data and catches up.
  await old.start();
  const target = (await leader.status())!.commit;
  for (let i = 0; ; i++) {
    const s = await old.status();
    if (s && s.applied >= target) break;
    assert.ok(i < 1000, 'restarted node catches up');
    await sleep(10);
  }
  const mine = await old.applied();
  const theirs = (await leader.applied()).filter(([index]) => index <= target);
  assert.deepEqual(mine.filter(([index]) => index <= target), theirs, 'restarted node has the same log');
});
