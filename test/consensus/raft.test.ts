// RaftCore API behaviour not covered by the scenario scripts: refusals, batching,
// misuse caught by assertions, restart from storage.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RaftCore } from '../../src/consensus/raft.js';
import { AssertionError } from '../../src/consensus/assert.js';
import { MessageType, Role, type CoreConfig } from '../../src/consensus/types.js';
import { MemStorage } from '../sim/mem-storage.js';

function config(id: number, over: Partial<CoreConfig> = {}): CoreConfig {
  let x = id;
  return {
    id,
    electionTimeoutTicks: 10,
    heartbeatIntervalTicks: 1,
    preVote: false,
    checkQuorum: false,
    leaderLease: false,
    appendBytesMax: 1 << 20,
    inflightMessagesMax: 8,
    inflightBytesMax: 0,
    snapshotChunkBytesMax: 1024,
    proposalQueueMax: 3,
    random: () => ((x = (x * 48271) % 2147483647) / 2147483647),
    ...over,
  };
}

/** A single-voter core that has elected itself and persisted everything. */
function soloLeader(over: Partial<CoreConfig> = {}): { core: RaftCore; storage: MemStorage } {
  const storage = new MemStorage({ voters: [1], learners: [] });
  const core = new RaftCore(config(1, over), storage);
  core.campaign();
  drain(core, storage);
  return { core, storage };
}

function drain(core: RaftCore, storage: MemStorage): void {
  while (core.hasReady()) {
    const rd = core.ready();
    if (rd.entries.length) storage.append(rd.entries);
    if (rd.hardState) storage.setHardState(rd.hardState);
    core.advance(rd);
  }
}

const enc = (s: string) => new TextEncoder().encode(s);

test('a single voter elects itself and commits alone', () => {
  const { core, storage } = soloLeader();
  assert.equal(core.status().role, Role.Leader);
  const r = core.propose(enc('x'));
  assert.deepEqual(r, { ok: true, index: 2, term: 1 });
  const rd = core.ready();
  assert.deepEqual(rd.committedEntries.map((e) => e.index), [2]);
  storage.append(rd.entries);
  core.advance(rd);
  assert.equal(core.status().applied, 2);
});

test('proposals beyond proposalQueueMax uncommitted entries are refused', () => {
  const storage = new MemStorage({ voters: [1, 2, 3], learners: [] });
  const core = new RaftCore(config(1, { proposalQueueMax: 2 }), storage);
  core.campaign();
  drain(core, storage);
  // Win the election with one vote.
  core.step({ type: MessageType.VoteResponse, from: 2, to: 1, term: 1 });
  assert.equal(core.status().role, Role.Leader);
  // The no-op is uncommitted; one more fits, the next does not.
  assert.equal(core.propose(enc('a')).ok, true);
  assert.deepEqual(core.propose(enc('b')), { ok: false, reason: 'queue-full', leader: 1 });
});

test('a follower refuses proposals and names the leader', () => {
  const storage = new MemStorage({ voters: [1, 2, 3], learners: [] });
  const core = new RaftCore(config(2), storage);
  assert.deepEqual(core.propose(enc('a')), { ok: false, reason: 'not-leader', leader: 0 });
  core.step({ type: MessageType.Heartbeat, from: 1, to: 2, term: 3, commit: 0 });
  assert.deepEqual(core.propose(enc('a')), { ok: false, reason: 'not-leader', leader: 1 });
});

test('proposals between two Readys leave as one Append per follower', () => {
  const storage = new MemStorage({ voters: [1, 2, 3], learners: [] });
  const core = new RaftCore(config(1, { proposalQueueMax: 100 }), storage);
  core.campaign();
  drain(core, storage);
  core.step({ type: MessageType.VoteResponse, from: 2, to: 1, term: 1 });
  drain(core, storage);
  // Followers acknowledge the no-op so their progress is in replicate state.
  core.step({ type: MessageType.AppendResponse, from: 2, to: 1, term: 1, logIndex: 1 });
  core.step({ type: MessageType.AppendResponse, from: 3, to: 1, term: 1, logIndex: 1 });
  drain(core, storage);
  for (let i = 0; i < 10; i++) assert.equal(core.propose(enc(`p${i}`)).ok, true);
  const rd = core.ready();
  const appends = rd.messages.filter((m) => m.type === MessageType.Append);
  assert.equal(appends.length, 2);
  assert.deepEqual(appends.map((m) => m.entries?.length), [10, 10]);
  storage.append(rd.entries);
  core.advance(rd);
});

test('misuse of the Ready protocol is an assertion, not silent corruption', () => {
  const { core } = soloLeader();
  core.propose(enc('x'));
  assert.throws(() => core.advance({ entries: [], messages: [], committedEntries: [], readStates: [] }), AssertionError);
  const rd = core.ready();
  assert.throws(() => core.ready(), AssertionError);
  // Advancing without persisting the entries leaves the storage behind the commit.
  assert.throws(() => core.advance(rd), /commit 2 > last index 1/);
});

test('a restart resumes term, vote and log from storage and never runs below its last log term', () => {
  const { core, storage } = soloLeader();
  core.propose(enc('x'));
  drain(core, storage);
  const again = new RaftCore(config(1), storage);
  const s = again.status();
  assert.equal(s.term, 1);
  assert.equal(s.vote, 1);
  assert.equal(s.lastIndex, 2);
  // Entries durable but the hard state behind them (a crash between the two writes).
  storage.setHardState({ term: 0, vote: 0, commit: 0 });
  assert.equal(new RaftCore(config(1), storage).status().term, 1);
});

test('a restart with a snapshot newer than the stored commit index takes the snapshot as committed', () => {
  // A follower installed a snapshot at 10 from the leader and was killed before the commit
  // index that came with it reached the disk: stored commit 2, snapshot at 10.
  const storage = new MemStorage({ voters: [1, 2, 3], learners: [] });
  storage.applySnapshot({ meta: { index: 10, term: 1, conf: { voters: [1, 2, 3], learners: [] } }, data: enc('state@10') });
  storage.setHardState({ term: 1, vote: 0, commit: 2 });
  const core = new RaftCore(config(1), storage);
  assert.equal(core.status().commit, 10);
  assert.equal(core.status().applied, 10);
  // the invariant check runs at every tick (it threw here before)
  for (let i = 0; i < 30; i++) core.tick();
  assert.ok(core.status().commit >= 10);
});
