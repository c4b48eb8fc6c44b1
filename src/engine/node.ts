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
import { EntryType, MessageType, Role } from '../consensus/types.js';
import { DurableLog } from '../log/durable-log.js';
import { Transport, type TransportOptions } from '../transport/transport.js';
import { logger, type Logger } from '../util/log.js';
import { createCore, decodeMessage, encodeMessage, type ConsensusCore } from './core-binding.js';
import { coalesceMessages } from './coalesce.js';
import { raftBatchEntries, raftMessagesDroppedTotal, raftProposalsTotal, raftSyncSeconds } from './metrics.js';
import { LostLeadershipError, NodeClosedError, NotLeaderError, ProposalDroppedError, TimeoutError } from './errors.js';

/** Transport channel of consensus messages; user channels start at CHANNEL_USER_MIN. */
export const CHANNEL_RAFT = 0;
export const CHANNEL_USER_MIN = 16;

export interface RaftNodeOptions {
  readonly id: NodeId;
  /** Every voter's peer address, this node's included (used as listen address unless `listen` is set). */
  readonly peers: ReadonlyMap<NodeId, string>;
  readonly dataDir: string;
  readonly clusterId: string;
  readonly secret: string | Uint8Array;
  readonly listen?: string;
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
  private readSeq = 0;
  private ticks = 0;
  private readonly addresses: Map<NodeId, string>;
  private readonly onFatal: (e: Error) => void;
  private readonly mergedBytesMax: number;
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
    this.onFatal =
      opts.onFatal ??
      ((e) => {
        this.log.error('fatal error in raft node; exiting', { error: e.stack });
        process.nextTick(() => {
          throw e;
        });
      });
    transport.onMessage(CHANNEL_RAFT, (from, payload) => this.onPeerMessage(from, payload));
    transport.onUnreachable((peer) => {
      raftMessagesDroppedTotal.inc();
      this.core.reportUnreachable(peer);
    });
    this.tickTimer = setInterval(() => this.onTick(), opts.tickMs ?? 10);
  }

  static async open(opts: RaftNodeOptions): Promise<RaftNode> {
    const voters = [...opts.peers.keys()].sort((a, b) => a - b);
    if (!voters.includes(opts.id)) throw new Error(`node ${opts.id} is not among the peers ${voters.join(',')}`);
    const listen = opts.listen ?? opts.peers.get(opts.id)!;
    const storage = DurableLog.open(path.join(opts.dataDir, 'raft'), {
      bootstrapConf: { voters, learners: [] },
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
    };
  }

  /** Store a snapshot of the user state at an applied `index` and compact the log below it. */
  async snapshot(index: number, data: Uint8Array): Promise<void> {
    if (index > this.applied) throw new Error(`snapshot at ${index} beyond applied index ${this.applied}`);
    const conf = this.core.status().conf ?? this.storage.snapshot().meta.conf;
    const op = this.compaction.then(() => this.storage.compact({ meta: { index, term: this.storage.term(index), conf }, data }));
    this.compaction = op.catch(() => undefined);
    await op;
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

  private onTick(): void {
    if (this.closed || this.failed) return;
    if (++this.ticks % 5 === 0 && this.pending.size > 0) this.sweepTimeouts();
    this.core.tick();
    this.schedule();
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
    this.schedule();
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
    if (this.looping || this.failed) return;
    this.looping = true;
    try {
      while (!this.failed && this.core.hasReady()) await this.handleReady(this.core.ready());
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
    if (rd.snapshot) {
      await this.compaction; // never replace the log while a compaction is rewriting it
      await this.storage.applySnapshot(rd.snapshot);
    }
    if (rd.entries.length > 0) {
      this.failOverwritten(rd.entries[0]!.index, rd.entries);
      this.storage.append(rd.entries);
    }
    if (hs) this.storage.setHardState(hs);
    if (rd.snapshot || rd.entries.length > 0 || hs) {
      const t0 = performance.now();
      await this.storage.sync();
      raftSyncSeconds.observe((performance.now() - t0) / 1000);
      if (rd.entries.length > 0) raftBatchEntries.observe(rd.entries.length);
    }
    if (hs) {
      this.durable = hs;
      if (hs.term !== this.term) this.log.info('term changed', { term: hs.term, vote: hs.vote, index: this.storage.lastIndex() });
      this.term = hs.term;
      this.commit = hs.commit;
    }
    if (!early) this.sendAll(rd.messages);
    if (rd.snapshot) {
      this.log.info('installing snapshot from leader', { index: rd.snapshot.meta.index, term: rd.snapshot.meta.term });
      await this.opts.snapshotInstaller?.(rd.snapshot);
      this.applied = Math.max(this.applied, rd.snapshot.meta.index);
    }
    if (rd.committedEntries.length > 0) await this.apply(rd.committedEntries);
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
