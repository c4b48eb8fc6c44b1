// RaftNode: the runtime around the pure consensus core. It owns the durable log,
// the peer transport and the clock, and runs the Ready loop:
//   persist (one fsync for the whole batch) -> send -> apply committed -> advance.
// While a batch is being fsynced, new proposals accumulate in the core and leave
// together in the next Ready: that is the group commit.
//
// Proposals on a follower are rejected with NotLeaderError carrying the leader's
// id and peer address (not forwarded): Recall forwards whole SQL writes to the
// leader over the transport itself, and a forwarded raw entry would hide from the
// caller which node executed it.
import crypto from 'node:crypto';
import path from 'node:path';
import type { ConfChange, Entry, HardState, Message, NodeId, Ready, Snapshot } from '../consensus/types.js';
import { ConfChangeType, EntryType, MessageType, Role } from '../consensus/types.js';
import { DurableLog } from '../log/durable-log.js';
import { Transport, type TransportOptions } from '../transport/transport.js';
import { logger, type Logger } from '../util/log.js';
import { createCore, decodeConfChange, decodeMessage, encodeMessage, type ConsensusCore } from './core-binding.js';
import { coalesceMessages } from './coalesce.js';
import { ConfHistory } from './conf-history.js';
import { raftBatchEntries, raftMessagesDroppedTotal, raftProposalsTotal, raftSyncSeconds } from './metrics.js';
import { LostLeadershipError, MembershipError, NodeClosedError, NotLeaderError, ProposalDroppedError, TimeoutError } from './errors.js';

/** Transport channel of consensus messages; user channels start at CHANNEL_USER_MIN. */
export const CHANNEL_RAFT = 0;
/** Transport channel on which a leader announces a new member's address to the other members. */
export const CHANNEL_MEMBERS = 1;
export const CHANNEL_USER_MIN = 16;

export interface RaftNodeOptions {
  readonly id: NodeId;
  /** Every voter's peer address, this node's included (used as listen address unless `listen` is set). */
  readonly peers: ReadonlyMap<NodeId, string>;
  readonly dataDir: string;
  readonly clusterId: string;
  readonly secret: string | Uint8Array;
  readonly listen?: string;
  /**
   * Join an existing cluster instead of bootstrapping one: the node starts with no
   * voters (so it never campaigns) and learns the membership from the snapshot the
   * leader sends once it has added this node as a learner (addLearner). `peers` then
   * holds the existing members' addresses and this node's own.
   */
  readonly join?: boolean;
  /** Address of a member this node has no address for (e.g. added while it was down); see DESIGN.md. */
  readonly addressOf?: (id: NodeId) => string | undefined;
  /** One tick every tickMs; timeouts below are counted in ticks. */
  readonly tickMs?: number;
  readonly electionTimeoutTicks?: number;
  readonly heartbeatIntervalTicks?: number;
  readonly preVote?: boolean;
  readonly checkQuorum?: boolean;
  readonly leaderLease?: boolean;
  readonly appendBytesMax?: number;
  readonly inflightMessagesMax?: number;
  readonly inflightBytesMax?: number;
  readonly snapshotChunkBytesMax?: number;
  readonly proposalQueueMax?: number;
  readonly proposalTimeoutMs?: number;
  /** Largest proposal accepted (must stay below the transport's frameBytesMax, 16 MiB by default). */
  readonly entryBytesMax?: number;
  readonly segmentBytesMax?: number;
  /**
   * Send a leader's Append/Heartbeat messages before its own fsync of the same
   * batch (Raft thesis 10.2.1). Safe because nothing of that batch is applied or
   * acknowledged before the fsync completes; it overlaps the two disk writes.
   */
  readonly parallelAppend?: boolean;
  readonly transport?: Partial<TransportOptions>;
  /**
   * The applier's own durable applied index (Recall keeps it in its database):
   * committed entries up to it are not handed to onCommitted again after a restart.
   */
  readonly appliedIndex?: number;
  /** When applied - firstIndex exceeds this and a snapshotProvider is set, the log is compacted. */
  readonly compactEntriesMin?: number;
  /** Returns the user state at `index` (called after `index` was applied). */
  readonly snapshotProvider?: (index: number) => Promise<Uint8Array> | Uint8Array;
  /** Called with a snapshot received from the leader, before later entries are applied. */
  readonly snapshotInstaller?: (s: Snapshot) => Promise<void> | void;
  /** A broken disk or applier: the node cannot continue safely. Default: crash the process. */
  readonly onFatal?: (e: Error) => void;
}

export interface PeerStatus {
  readonly id: NodeId;
  readonly address: string;
  readonly match: number;
  readonly lag: number;
  readonly connected: boolean;
}

export interface NodeStatus {
  readonly id: NodeId;
  readonly role: Role;
  readonly term: number;
  readonly leader: NodeId;
  readonly leaderAddress: string | undefined;
  readonly commit: number;
  readonly applied: number;
  readonly firstIndex: number;
  readonly lastIndex: number;
  readonly peers: readonly PeerStatus[];
  /** The membership as the core sees it now (applied ConfChanges included). */
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

interface PendingProposal {
  readonly term: number;
  readonly resolve: (r: { index: number; term: number }) => void;
  readonly reject: (e: Error) => void;
  /** Checked by a periodic sweep: a timer per proposal costs more than the proposal at 50k/s. */
  readonly deadline: number;
  readonly timeoutMs: number;
}

interface PendingRead {
  readonly resolve: (index: number) => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout;
  index: number; // -1 until the read state arrives
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ConfChangeNames: Record<number, string> = { [ConfChangeType.AddLearner]: 'add-learner', [ConfChangeType.PromoteLearner]: 'promote', [ConfChangeType.RemoveNode]: 'remove' };

/** A small seeded PRNG (mulberry32) for the core's randomised timeouts. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class RaftNode {
  private readonly log: Logger;
  private readonly tickTimer: NodeJS.Timeout;
  private readonly pending = new Map<number, PendingProposal>();
  private readonly reads = new Map<string, PendingRead>();
  private committedCb: ((entries: Entry[]) => Promise<void> | void) | undefined;
  private role: Role = Role.Follower;
  private leader: NodeId = 0;
  private term = 0;
  private commit = 0;
  private applied: number;
  private durable: HardState;
  private scheduled = false;
  private looping = false;
  private closed = false;
  private failed: Error | undefined;
  private compacting = false;
  /** Last log index known durable here (fsynced by an earlier Ready). */
  private durableLast = 0;
  private readSeq = 0;
  private ticks = 0;
  private readonly tickHooks: { readonly every: number; readonly fn: () => void }[] = [];
  private readonly addresses: Map<NodeId, string>;
  private readonly onFatal: (e: Error) => void;
  private readonly mergedBytesMax: number;
  private readonly confs: ConfHistory;
  /** The last local compaction, so that a received snapshot waits for it. */
  private compaction: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly id: NodeId,
    private readonly opts: RaftNodeOptions,
    readonly storage: DurableLog,
    private readonly core: ConsensusCore,
    readonly transport: Transport,
  ) {
    this.log = logger('engine', { nodeId: id });
    this.addresses = new Map(opts.peers);
    // Merged Appends stay well below the transport's frame limit.
    this.mergedBytesMax = Math.max(opts.appendBytesMax ?? 1024 * 1024, 4 * 1024 * 1024);
    const hs = storage.initialState().hardState;
    this.durable = hs;
    this.term = hs.term;
    this.commit = hs.commit;
    this.applied = Math.max(storage.snapshot().meta.index, Math.min(opts.appliedIndex ?? 0, storage.lastIndex()));
    this.durableLast = storage.lastIndex(); // recovered from disk
    const snap = storage.snapshot().meta;
    this.confs = new ConfHistory(snap.index, snap.conf);
    if (this.applied > snap.index) this.confs.apply(storage.entries(snap.index + 1, this.applied + 1, Number.MAX_SAFE_INTEGER));
    this.onFatal =
      opts.onFatal ??
      ((e) => {
        this.log.error('fatal error in raft node; exiting', { error: e.stack });
        process.nextTick(() => {
          throw e;
        });
      });
    transport.onMessage(CHANNEL_RAFT, (from, payload) => this.onPeerMessage(from, payload));
    transport.onMessage(CHANNEL_MEMBERS, (from, payload) => this.onMemberAnnounce(from, payload));
    transport.onUnreachable((peer) => {
      raftMessagesDroppedTotal.inc();
      this.core.reportUnreachable(peer);
    });
    this.tickTimer = setInterval(() => this.onTick(), opts.tickMs ?? 10);
    // Members added after `peers` was written (a restart after a membership change).
    const conf = core.status().conf;
    for (const m of conf ? [...conf.voters, ...conf.learners] : []) {
      if (m === id || this.addresses.has(m)) continue;
      const address = opts.addressOf?.(m);
      if (address) this.addPeer(m, address);
      else this.log.warn('no address for a member; it cannot be reached from here', { node: m });
    }
  }

  static async open(opts: RaftNodeOptions): Promise<RaftNode> {
    const voters = [...opts.peers.keys()].sort((a, b) => a - b);
    const listen = opts.listen ?? opts.peers.get(opts.id);
    if (!listen) throw new Error(`node ${opts.id} has no listen address (not among the peers ${voters.join(',')})`);
    // A joining node must not count itself (or anyone) as a voter before the leader's
    // snapshot tells it the real membership: it would elect itself alone.
    const storage = DurableLog.open(path.join(opts.dataDir, 'raft'), {
      bootstrapConf: opts.join ? { voters: [], learners: [] } : { voters, learners: [] },
      segmentBytesMax: opts.segmentBytesMax,
      nodeId: opts.id,
    });
    // An applied entry was committed; the commit index on disk may lag (it is persisted lazily).
    const applied = Math.min(opts.appliedIndex ?? 0, storage.lastIndex());
    const hs0 = storage.initialState().hardState;
    if (applied > hs0.commit) storage.setHardState({ ...hs0, commit: applied });
    const core = createCore(
      {
        applied: applied > 0 ? applied : undefined,
        id: opts.id,
        electionTimeoutTicks: opts.electionTimeoutTicks ?? 30,
        heartbeatIntervalTicks: opts.heartbeatIntervalTicks ?? 3,
        preVote: opts.preVote ?? true,
        checkQuorum: opts.checkQuorum ?? true,
        leaderLease: opts.leaderLease ?? false,
        appendBytesMax: opts.appendBytesMax ?? 1024 * 1024,
        inflightMessagesMax: opts.inflightMessagesMax ?? 256,
        inflightBytesMax: opts.inflightBytesMax ?? 32 * 1024 * 1024,
        snapshotChunkBytesMax: opts.snapshotChunkBytesMax ?? 1024 * 1024,
        proposalQueueMax: opts.proposalQueueMax ?? 100_000,
        random: seededRandom(crypto.randomBytes(4).readUInt32LE(0) ^ opts.id),
      },
      storage,
    );
    const peers = new Map([...opts.peers].filter(([id]) => id !== opts.id));
    let transport: Transport;
    try {
      transport = await Transport.start({ ...opts.transport, id: opts.id, clusterId: opts.clusterId, secret: opts.secret, listen, peers });
    } catch (e) {
      await storage.close();
      throw e;
    }
    const node = new RaftNode(opts.id, opts, storage, core, transport);
    node.log.info('raft node started', { term: node.term, commit: node.commit, lastIndex: storage.lastIndex(), listen: `${listen.split(':')[0]}:${transport.port}` });
    return node;
  }

  /** Make a (new) member reachable before proposing its ConfChange; inbound links are accepted from known peers only. */
  addPeer(id: NodeId, address: string): void {
    this.addresses.set(id, address);
    this.transport.addPeer(id, address);
  }

  removePeer(id: NodeId): void {
    this.addresses.delete(id);
    this.transport.removePeer(id);
  }

  /** Register the applier: called with committed entries in log order, one batch at a time. */
  onCommitted(cb: (entries: Entry[]) => Promise<void> | void): void {
    this.committedCb = cb;
  }

  /** Replicate `data`; resolves once committed (and handed to onCommitted) with its index and term. */
  propose(data: Uint8Array, opts: { timeoutMs?: number } = {}): Promise<{ index: number; term: number }> {
    // An entry must fit in one transport frame, or it could never be replicated.
    const max = this.opts.entryBytesMax ?? 8 * 1024 * 1024;
    if (data.length > max) return Promise.reject(new ProposalDroppedError(`entry of ${data.length} bytes exceeds entryBytesMax ${max}`));
    return this.track(() => this.core.propose(data), opts.timeoutMs ?? this.opts.proposalTimeoutMs ?? 5000);
  }

  proposeConfChange(cc: ConfChange, opts: { timeoutMs?: number } = {}): Promise<{ index: number; term: number }> {
    return this.track(() => this.core.proposeConfChange(cc), opts.timeoutMs ?? this.opts.proposalTimeoutMs ?? 5000);
  }

  /**
   * Leader only: add `id` (listening at `address`) as a non-voting learner. Resolves once
   * the change is committed and applied. The learner receives a snapshot first (it
   * carries the membership), so a log still starting at index 1 is compacted here,
   * which needs a snapshotProvider.
   */
  async addLearner(id: NodeId, address: string, opts: { timeoutMs?: number } = {}): Promise<{ index: number; term: number }> {
    this.requireLeader();
    if (!Number.isSafeInteger(id) || id <= 0 || id === this.id) throw new MembershipError('invalid', `bad node id ${id}`);
    const conf = this.core.status().conf;
    if (conf && (conf.voters.includes(id) || conf.learners.includes(id))) throw new MembershipError('invalid', `node ${id} is already a member`);
    if (this.storage.firstIndex() <= 1) {
      // The bootstrap membership is not in the log: without a snapshot the learner would
      // replay the log from index 1 and end up with a membership that lacks the founders.
      const provider = this.opts.snapshotProvider;
      if (!provider) throw new MembershipError('no-snapshot', 'the log was never compacted and no snapshotProvider is set');
      const index = this.applied;
      await this.snapshot(index, await provider(index));
    }
    this.addPeer(id, address);
    this.announce(id, address);
    return this.changeConf({ type: ConfChangeType.AddLearner, node: id }, opts.timeoutMs);
  }

  /** Leader only: wait until learner `id` holds everything committed, then make it a voter. */
  async promote(id: NodeId, opts: { timeoutMs?: number } = {}): Promise<{ index: number; term: number }> {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const end = performance.now() + timeoutMs;
    for (;;) {
      this.requireLeader();
      const st = this.core.status();
      if (!st.conf?.learners.includes(id)) throw new MembershipError('invalid', `node ${id} is not a learner (voters ${st.conf?.voters.join(',')})`);
      const match = st.progress?.get(id)?.match ?? 0;
      if (match >= st.commit) {
        try {
          return await this.changeConf({ type: ConfChangeType.PromoteLearner, node: id }, Math.max(1, end - performance.now()));
        } catch (e) {
          // The commit index may have moved past the learner in between: wait and retry.
          if (!(e instanceof MembershipError && e.reason === 'invalid')) throw e;
        }
      }
      if (performance.now() > end) throw new MembershipError('not-caught-up', `learner ${id} at ${match}, commit ${st.commit}, after ${timeoutMs} ms`);
      await sleep(20);
    }
  }

  /**
   * Leader only: remove voter or learner `id`. Removing this node itself steps it down
   * once applied; the others elect a leader after an election timeout.
   */
  removeNode(id: NodeId, opts: { timeoutMs?: number } = {}): Promise<{ index: number; term: number }> {
    return this.changeConf({ type: ConfChangeType.RemoveNode, node: id }, opts.timeoutMs);
  }

  /** A linearizable read point: resolves with an index once this node has applied up to it. */
  readIndex(opts: { timeoutMs?: number } = {}): Promise<number> {
    if (this.closed || this.failed) return Promise.reject(this.failed ?? new NodeClosedError());
    const timeoutMs = opts.timeoutMs ?? this.opts.proposalTimeoutMs ?? 5000;
    const ctx = Buffer.allocUnsafe(12);
    ctx.writeUInt32BE(this.id, 0);
    ctx.writeDoubleBE(++this.readSeq, 4);
    const key = ctx.toString('hex');
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.reads.delete(key);
        reject(new TimeoutError('read index', timeoutMs));
      }, timeoutMs);
      const r = this.core.readIndex(ctx);
      if (!r.ok) {
        clearTimeout(timer);
        reject(r.reason === 'not-leader' ? new NotLeaderError(r.leader, r.leader ? this.addresses.get(r.leader) : undefined) : new ProposalDroppedError(`read index: ${r.reason}`));
        return;
      }
      this.reads.set(key, { resolve, reject, timer, index: -1 });
      this.schedule();
    });
  }

  /** Hand leadership to the most up-to-date connected peer (or `to`); resolves when this node is no longer leader. */
  async transferLeadership(to?: NodeId, timeoutMs = 2000): Promise<boolean> {
    if (this.role !== Role.Leader) return false;
    const target = to ?? this.bestTransferTarget();
    if (!target) return false;
    this.log.info('transferring leadership', { to: target, term: this.term });
    this.core.transferLeadership(target);
    this.schedule();
    const end = Date.now() + timeoutMs;
    while (this.role === Role.Leader && Date.now() < end && !this.closed) await new Promise((r) => setTimeout(r, 10));
    return this.role !== Role.Leader;
  }

  /** Role, term, leader and commit as the core sees them now; cheap (no peer list), for timers that poll. */
  basicStatus(): { readonly role: Role; readonly term: number; readonly leader: NodeId; readonly commit: number } {
    return this.core.basicStatus();
  }

  status(): NodeStatus {
    const s = this.core.status();
    const links = new Map(this.transport.peerStatus().map((p) => [p.id, p]));
    const last = this.storage.lastIndex();
    const peers: PeerStatus[] = [];
    for (const [id, address] of this.addresses) {
      if (id === this.id) continue;
      const match = s.progress?.get(id)?.match ?? 0;
      peers.push({ id, address, match, lag: s.role === Role.Leader ? Math.max(0, last - match) : 0, connected: links.get(id)?.connected ?? false });
    }
    return {
      id: this.id,
      role: s.role,
      term: s.term,
      leader: s.leader,
      leaderAddress: s.leader ? this.addresses.get(s.leader) : undefined,
      commit: s.commit,
      applied: this.applied,
      firstIndex: this.storage.firstIndex(),
      lastIndex: last,
      peers,
      voters: s.conf?.voters ?? [],
      learners: s.conf?.learners ?? [],
    };
  }

  /** Store a snapshot of the user state at an applied `index` and compact the log below it. */
  async snapshot(index: number, data: Uint8Array): Promise<void> {
    if (index > this.applied) throw new Error(`snapshot at ${index} beyond applied index ${this.applied}`);
    const conf = this.confs.at(index);
    const op = this.compaction.then(() => this.storage.compact({ meta: { index, term: this.storage.term(index), conf }, data }));
    this.compaction = op.catch(() => undefined);
    await op;
    this.confs.prune(index);
    this.log.info('log compacted', { index, term: this.term, firstIndex: this.storage.firstIndex() });
  }

  /** Stop. graceful: hand leadership over first so the cluster does not wait for an election timeout. */
  async close(opts: { graceful?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    if (opts.graceful && this.role === Role.Leader) {
      try {
        await this.transferLeadership();
      } catch (e) {
        this.log.warn('leadership transfer on close failed', { error: (e as Error).message });
      }
    }
    this.closed = true;
    clearInterval(this.tickTimer);
    while (this.looping) await new Promise((r) => setTimeout(r, 1));
    await this.compaction;
    this.failAll(() => new NodeClosedError());
    await this.transport.close();
    await this.storage.close();
    this.log.info('raft node closed', { term: this.term, commit: this.commit, applied: this.applied });
  }

  // ---- internals ----

  private requireLeader(): void {
    if (this.closed || this.failed) throw this.failed ?? new NodeClosedError();
    const s = this.core.status();
    if (s.role !== Role.Leader) throw new NotLeaderError(s.leader, s.leader ? this.addresses.get(s.leader) : undefined);
  }

  /** Propose cc, retrying while an earlier change (or the new leader's no-op) is not yet applied. */
  private async changeConf(cc: ConfChange, timeoutMs = this.opts.proposalTimeoutMs ?? 5000): Promise<{ index: number; term: number }> {
    const end = performance.now() + timeoutMs;
    for (;;) {
      try {
        return await this.proposeConfChange(cc, { timeoutMs: Math.max(1, end - performance.now()) });
      } catch (e) {
        if (!(e instanceof ProposalDroppedError)) throw e;
        const conf = this.core.status().conf;
        const what = `${ConfChangeNames[cc.type]} ${cc.node} (voters ${conf?.voters.join(',')}; learners ${conf?.learners.join(',')})`;
        if (e.message.includes('conf-change-invalid')) throw new MembershipError('invalid', what);
        if (!e.message.includes('conf-change-pending')) throw e;
        if (performance.now() > end) throw new MembershipError('pending', `another change is not yet applied: ${what}`);
        await sleep(10);
      }
    }
  }

  /** Tell the other members where a new node listens, so they accept and reach it. */
  private announce(id: NodeId, address: string): void {
    const payload = Buffer.from(JSON.stringify({ id, address }));
    for (const peer of this.addresses.keys()) if (peer !== this.id && peer !== id) this.transport.send(peer, CHANNEL_MEMBERS, payload);
  }

  private onMemberAnnounce(from: NodeId, payload: Buffer): void {
    if (this.closed) return;
    let m: unknown;
    try {
      m = JSON.parse(payload.toString('utf8'));
    } catch {
      m = undefined;
    }
    const { id, address } = (m ?? {}) as { id?: unknown; address?: unknown };
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id <= 0 || typeof address !== 'string' || !/^[^:\s]+:\d{1,5}$/.test(address)) {
      this.log.warn('bad member announcement from peer', { peer: from });
      return;
    }
    if (id === this.id) return;
    this.log.info('member address announced', { peer: from, node: id, address });
    this.addPeer(id, address);
  }

  /** Keep the transport in step with a committed membership change. */
  private onConfChangeApplied(e: Entry): void {
    let cc: ConfChange;
    try {
      cc = decodeConfChange(e.data);
    } catch {
      return; // the core applied it already; an undecodable one it would have refused
    }
    this.log.info('membership change applied', { change: ConfChangeNames[cc.type], node: cc.node, index: e.index });
    if (cc.node === this.id) return;
    if (cc.type === ConfChangeType.RemoveNode) {
      this.removePeer(cc.node);
      return;
    }
    if (this.transport.peerStatus().some((p) => p.id === cc.node)) return;
    const address = this.addresses.get(cc.node) ?? this.opts.addressOf?.(cc.node);
    if (address) this.addPeer(cc.node, address);
    else this.log.warn('no address for new member; it cannot be reached from here', { node: cc.node });
  }

  private track(
    fn: () => { ok: true; index: number; term: number } | { ok: false; reason: string; leader: NodeId },
    timeoutMs: number,
  ): Promise<{ index: number; term: number }> {
    if (this.closed || this.failed) return Promise.reject(this.failed ?? new NodeClosedError());
    const r = fn();
    if (!r.ok) {
      if (r.reason === 'not-leader') {
        raftProposalsTotal.inc({ outcome: 'not_leader' });
        return Promise.reject(new NotLeaderError(r.leader, r.leader ? this.addresses.get(r.leader) : undefined));
      }
      raftProposalsTotal.inc({ outcome: 'dropped' });
      return Promise.reject(new ProposalDroppedError(r.reason));
    }
    this.schedule();
    return new Promise((resolve, reject) => {
      this.pending.set(r.index, { term: r.term, resolve, reject, deadline: performance.now() + timeoutMs, timeoutMs });
    });
  }

  private sweepTimeouts(): void {
    const now = performance.now();
    for (const [index, p] of this.pending) {
      if (p.deadline > now) continue;
      this.pending.delete(index);
      raftProposalsTotal.inc({ outcome: 'timeout' });
      p.reject(new TimeoutError(`proposal at index ${index}`, p.timeoutMs));
    }
  }

  /**
   * Run `fn` about every `periodMs` (rounded to whole ticks) from the tick timer, after the
   * core's tick, until the returned function is called or the node stops. For the runtime's own
   * periodic checks: a separate setInterval would wake the process once more per period.
   */
  everyTicks(periodMs: number, fn: () => void): () => void {
    const hook = { every: Math.max(1, Math.round(periodMs / (this.opts.tickMs ?? 10))), fn };
    this.tickHooks.push(hook);
    return () => {
      const i = this.tickHooks.indexOf(hook);
      if (i >= 0) this.tickHooks.splice(i, 1);
    };
  }

  private onTick(): void {
    if (this.closed || this.failed) return;
    if (++this.ticks % 5 === 0 && this.pending.size > 0) this.sweepTimeouts();
    this.core.tick();
    // Most ticks change nothing (a follower counting towards its election timeout): the Ready
    // loop would find nothing to do, so it is not woken. Anything that makes a Ready later
    // (a message, a proposal, the next tick) schedules it itself.
    if (this.core.hasReady()) this.schedule();
    // Last: a hook that throws (an uncaught exception, as from its own timer) cannot cost the core its tick.
    for (const h of this.tickHooks) if (this.ticks % h.every === 0) h.fn();
  }

  private onPeerMessage(from: NodeId, payload: Buffer): void {
    if (this.closed || this.failed) return;
    let m: Message;
    try {
      m = decodeMessage(payload);
    } catch (e) {
      this.log.warn('undecodable message from peer', { peer: from, error: (e as Error).message });
      return;
    }
    if (m.from !== from || m.to !== this.id) {
      this.log.warn('message with wrong addressing from peer', { peer: from, from: m.from, to: m.to });
      return;
    }
    this.core.step(m);
    // As in onTick: a leader's heartbeat responses mostly produce nothing to persist or send.
    if (this.core.hasReady()) this.schedule();
  }

  private schedule(): void {
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.runLoop();
    });
  }

  private async runLoop(): Promise<void> {
    // closed: a loop scheduled just before close() must not touch the storage close() shuts
    if (this.looping || this.failed || this.closed) return;
    this.looping = true;
    try {
      while (!this.failed && !this.closed && this.core.hasReady()) await this.handleReady(this.core.ready());
    } catch (e) {
      this.failed = e as Error;
      clearInterval(this.tickTimer);
      this.failAll(() => this.failed!);
      this.onFatal(this.failed);
    } finally {
      this.looping = false;
    }
  }

  private sendAll(msgs: readonly Message[]): void {
    for (const m of coalesceMessages(msgs, this.mergedBytesMax)) {
      if (m.to === this.id) continue;
      const sent = this.transport.send(m.to, CHANNEL_RAFT, encodeMessage(m));
      // A lost chunk would stall the transfer: let the core restart it.
      if (!sent && m.type === MessageType.InstallSnapshot) this.core.reportSnapshot(m.to, false);
    }
  }

  private async handleReady(rd: Ready): Promise<void> {
    const hs = rd.hardState;
    const termVoteDurable = !hs || (hs.term === this.durable.term && hs.vote === this.durable.vote);
    const early =
      (this.opts.parallelAppend ?? true) &&
      !rd.snapshot &&
      termVoteDurable &&
      rd.messages.length > 0 &&
      rd.messages.every((m) => m.type === MessageType.Append || m.type === MessageType.Heartbeat);
    if (early) this.sendAll(rd.messages);
    // Committed entries that were already durable here before this Ready need not wait for this
    // Ready's fsync of new entries: applying them now takes an fsync off every commit's latency
    // under load. Membership changes still wait (their commit index is made durable first).
    // Only entries that are in storage as they are now: this Ready's entries may replace a suffix
    // (a follower's stale entries), and an applier reading the log must not see the old ones.
    let committed = rd.committedEntries;
    if (!rd.snapshot && committed.length > 0) {
      const stored = Math.min(this.durableLast, (rd.entries[0]?.index ?? Number.MAX_SAFE_INTEGER) - 1);
      let n = 0;
      while (n < committed.length && committed[n]!.index <= stored && committed[n]!.type !== EntryType.ConfChange) n++;
      if (n > 0) {
        await this.apply(committed.slice(0, n));
        committed = committed.slice(n);
      }
    }
    if (rd.snapshot) {
      await this.compaction; // never replace the log while a compaction is rewriting it
      await this.storage.applySnapshot(rd.snapshot);
    }
    if (rd.entries.length > 0) {
      this.failOverwritten(rd.entries[0]!.index, rd.entries);
      this.storage.append(rd.entries);
    }
    if (hs) this.storage.setHardState(hs);
    // A committed membership change makes the commit index durable before it is applied (see DurableLog.sync).
    const confCommitted = committed.some((e) => e.type === EntryType.ConfChange);
    if (rd.snapshot || rd.entries.length > 0 || hs || confCommitted) {
      const t0 = performance.now();
      await this.storage.sync({ commitDurable: confCommitted });
      this.durableLast = this.storage.lastIndex();
      // Only syncs that made something durable: a Ready that carries nothing but a new commit
      // index calls sync() too, which then writes nothing (the commit is persisted lazily), and
      // counting those halved the apparent fsync time.
      if (rd.snapshot || rd.entries.length > 0 || !termVoteDurable || confCommitted) raftSyncSeconds.observe((performance.now() - t0) / 1000);
      if (rd.entries.length > 0) raftBatchEntries.observe(rd.entries.length);
    }
    if (hs) {
      this.durable = hs;
      if (hs.term !== this.term) this.log.debug('term changed', { term: hs.term, vote: hs.vote, index: this.storage.lastIndex() });
      this.term = hs.term;
      this.commit = hs.commit;
    }
    if (!early) this.sendAll(rd.messages);
    if (rd.snapshot) {
      this.log.info('installing snapshot from leader', { index: rd.snapshot.meta.index, term: rd.snapshot.meta.term });
      await this.opts.snapshotInstaller?.(rd.snapshot);
      this.applied = Math.max(this.applied, rd.snapshot.meta.index);
      this.confs.reset(rd.snapshot.meta.index, rd.snapshot.meta.conf);
    }
    if (committed.length > 0) await this.apply(committed);
    if (rd.softState) this.onSoftState(rd.softState.role, rd.softState.leader);
    for (const rs of rd.readStates) {
      const p = this.reads.get(Buffer.from(rs.context).toString('hex'));
      if (p) p.index = rs.index;
    }
    this.resolveReads();
    this.core.advance(rd);
  }

  private async apply(entries: readonly Entry[]): Promise<void> {
    if (this.committedCb) await this.committedCb(entries as Entry[]);
    this.confs.apply(entries);
    for (const e of entries) if (e.type === EntryType.ConfChange) this.onConfChangeApplied(e);
    for (const e of entries) {
      const p = this.pending.get(e.index);
      if (!p) continue;
      this.pending.delete(e.index);
      if (e.term === p.term) {
        raftProposalsTotal.inc({ outcome: 'committed' });
        p.resolve({ index: e.index, term: e.term });
      } else p.reject(new LostLeadershipError(e.index, `another leader's entry (term ${e.term}) was committed at this index`));
    }
    this.applied = entries[entries.length - 1]!.index;
    this.maybeCompact();
  }

  private onSoftState(role: Role, leader: NodeId): void {
    if (role !== this.role || leader !== this.leader) {
      this.log.info('role changed', { role, leader, term: this.term, index: this.storage.lastIndex() });
    }
    const wasLeader = this.role === Role.Leader;
    this.role = role;
    this.leader = leader;
    if (wasLeader && role !== Role.Leader) {
      // The entries may still commit under the next leader, but this node can no
      // longer tell: the caller gets "outcome unknown" promptly rather than a timeout.
      for (const [index, p] of this.pending) {
        raftProposalsTotal.inc({ outcome: 'lost_leadership' });
        p.reject(new LostLeadershipError(index, 'leadership lost before commit'));
      }
      this.pending.clear();
    }
  }

  /** Entries about to replace a suffix of our log: proposals at those indexes are lost. */
  private failOverwritten(from: number, entries: readonly Entry[]): void {
    if (this.pending.size === 0 || from > this.storage.lastIndex()) return;
    for (const e of entries) {
      const p = this.pending.get(e.index);
      if (p && p.term !== e.term) {
        this.pending.delete(e.index);
        p.reject(new LostLeadershipError(e.index, `overwritten by term ${e.term}`));
      }
    }
  }

  private resolveReads(): void {
    for (const [key, r] of this.reads) {
      if (r.index >= 0 && r.index <= this.applied) {
        this.reads.delete(key);
        clearTimeout(r.timer);
        r.resolve(r.index);
      }
    }
  }

  private maybeCompact(): void {
    const provider = this.opts.snapshotProvider;
    const min = this.opts.compactEntriesMin ?? 100_000;
    if (!provider || this.compacting || this.applied - this.storage.firstIndex() < min) return;
    this.compacting = true;
    const index = this.applied;
    void (async () => {
      try {
        await this.snapshot(index, await provider(index));
      } catch (e) {
        this.log.warn('log compaction failed', { index, error: (e as Error).message });
      } finally {
        this.compacting = false;
      }
    })();
  }

  private bestTransferTarget(): NodeId | undefined {
    const st = this.status();
    const up = st.peers.filter((p) => p.connected).sort((a, b) => b.match - a.match);
    return up[0]?.id;
  }

  private failAll(mk: () => Error): void {
    for (const p of this.pending.values()) p.reject(mk());
    this.pending.clear();
    for (const r of this.reads.values()) {
      clearTimeout(r.timer);
      r.reject(mk());
    }
    this.reads.clear();
  }
}

export { EntryType, Role };
