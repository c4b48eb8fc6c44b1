// One replica's replication: the Raft node, the applier, the write lane when this node leads,
// and the forwarding of writes and read-index requests to the leader over the peer link.
// The front ends call write(), linearizableIndex() and waitApplied(). What is particular to a
// database (the applier, the lane, how requests travel) comes from its Dialect (dialect.ts).
import crypto from 'node:crypto';
import { SqlError } from '../backend/mysql/client.js';
import { RaftNode, CHANNEL_USER_MIN, Role } from '../engine/node.js';
import { NotLeaderError } from '../engine/errors.js';
import { logger, type Logger } from '../util/log.js';
import type { CredentialSeal, Dialect, ReplicaApplier, ReplicaLane } from './dialect.js';
import { RecallErrors } from './errors.js';
import { replicationApplied, replicationDiverged, replicationWrites } from './metrics.js';
import { ResyncManager, type ResyncRunner, type ResyncStatus } from '../recovery/manager.js';
import type { ApplierPause } from '../recovery/types.js';
import type { Transport } from '../transport/transport.js';

const CHANNEL_EXEC = CHANNEL_USER_MIN;
const CHANNEL_END = CHANNEL_USER_MIN + 1;
const CHANNEL_READ_INDEX = CHANNEL_USER_MIN + 2;

export interface ReplicatorOptions {
  nodeId: number;
  /** peer addresses by node id (this node's included) */
  peers: ReadonlyMap<number, string>;
  listen: string;
  dataDir: string;
  clusterId: string;
  secret: string;
  /** Largest log entry (a client payload with its context, base64 included). */
  entryBytesMax: number;
  laneTimeoutMs: number;
  /** how long a write waits for a leader to be elected before it is refused */
  leaderWaitMs: number;
  /** how long a read waits for this replica to apply what the session needs */
  readWaitMs: number;
  tickMs?: number;
  /** Start as a new member of a running cluster (RaftNode join mode). */
  join?: boolean;
  /** Log kept below the applied index for replicas that were down; compacted when both are exceeded. */
  logRetainEntries: number;
  logRetainBytes: number;
  /** Resync a diverged replica on its own. */
  autoResync: boolean;
  /**
   * The full-resync methods, built by the caller (it owns the local database): the runner this
   * replica uses, and the donor services it offers to others. Without it a replica that needs a
   * resync says so and waits.
   */
  recovery?: (deps: { transport: Transport; applier: ApplierPause; log: Logger }) => { runner: ResyncRunner; close(): void };
}

/** The Raft snapshot of a SQL replica is "the database at index i": a marker, the data moves by resync. */
interface SnapshotMarker {
  kind: 'recall-sql';
  index: number;
}

export interface ReplicationStatus {
  role: string;
  term: number;
  leader: number;
  leaderAddress?: string;
  commit: number;
  applied: number;
  lastIndex: number;
  diverged: boolean;
  divergedReason?: string;
  laneOpen: boolean;
  lastError?: string;
  firstIndex: number;
  resync: ResyncStatus;
  peers: Array<{ id: number; address: string; match: number; lag: number; connected: boolean }>;
}

export class Replicator<Req = unknown, Res = unknown, A extends ReplicaApplier = ReplicaApplier> {
  private laneOpenTerm = -1;
  private wasLeader = false;
  private readonly stopRoleWatch: () => void;
  private readonly seal: CredentialSeal;

  private constructor(
    private readonly o: ReplicatorOptions,
    readonly node: RaftNode,
    readonly applier: A,
    private readonly lane: ReplicaLane<Req, Res>,
    private readonly dialect: Dialect<Req, Res, A>,
    private readonly log: Logger,
    delivered: { index: number },
    private readonly resync: ResyncManager,
    private readonly recovery: { close(): void } | null,
  ) {
    this.seal = credentialSeal(o.secret);
    node.onCommitted((entries) => {
      const last = entries[entries.length - 1];
      if (last && last.index > delivered.index) delivered.index = last.index;
      applier.notify();
    });
    node.transport.onRequest(CHANNEL_EXEC, (from, payload) => this.onForwarded(from, payload));
    node.transport.onMessage(CHANNEL_END, (_from, payload) => this.lane.endSession(payload.toString('utf8')));
    node.transport.onRequest(CHANNEL_READ_INDEX, async () => {
      const idx = await this.node.readIndex({ timeoutMs: o.leaderWaitMs });
      return Buffer.from(String(idx));
    });
    node.transport.onConnected((peer) => this.releaseOrphans(peer));
    // On the engine's tick timer rather than a timer of its own: one wake-up fewer every 20 ms.
    this.stopRoleWatch = node.everyTicks(20, () => this.watchRole());
    this.compactTimer = setInterval(() => void this.maybeCompact(), 1000);
    this.compactTimer.unref();
    if (!resync.resumeFromMarker() && applier.applied < node.storage.firstIndex() - 1) {
      resync.request(`the database holds index ${applier.applied} but the log starts after ${node.storage.firstIndex() - 1}`, node.storage.firstIndex() - 1);
    }
    applier.notify();
  }

  private readonly compactTimer: NodeJS.Timeout;
  private compacting = false;

  /**
   * Retention: keep at least logRetainEntries entries and logRetainBytes bytes below what this
   * replica's database has applied, so that a replica that was down for a while catches up from
   * the log; older entries are discarded and a replica that still needs them gets a full resync.
   */
  private async maybeCompact(): Promise<void> {
    if (this.compacting || this.resync.active || this.applier.gap || this.applier.diverged) return;
    const storage = this.node.storage;
    const applied = Math.min(this.applier.applied, this.node.status().applied);
    const first = storage.firstIndex();
    const target = Math.min(applied - this.o.logRetainEntries, storage.compactionBoundForBytes(this.o.logRetainBytes));
    const slack = Math.max(1, Math.floor(this.o.logRetainEntries / 4));
    if (target < first + slack) return;
    this.compacting = true;
    try {
      await this.node.snapshot(target, markerOf(target));
    } catch (e) {
      this.log.warn('log compaction failed', { index: target, error: (e as Error).message });
    } finally {
      this.compacting = false;
    }
  }

  static async start<Req, Res, A extends ReplicaApplier>(o: ReplicatorOptions, dialect: Dialect<Req, Res, A>): Promise<Replicator<Req, Res, A>> {
    const log = logger('replication', { nodeId: o.nodeId });
    let node: RaftNode | null = null;
    const delivered = { index: 0 };
    const rep: { r?: Replicator<Req, Res, A> } = {};
    const applier = dialect.createApplier({
      nodeId: o.nodeId,
      log,
      entries: (lo, hi) => node!.storage.entries(lo, Math.min(hi, node!.storage.lastIndex() + 1), 64 * 1024 * 1024),
      // Only what the engine has handed over as committed: the core's commit index can run ahead of
      // the log on disk (a follower learns the commit index before its stale suffix is replaced).
      commitIndex: () => delivered.index,
      firstIndex: () => node!.storage.firstIndex(),
      onDiverged: (reason) => {
        replicationDiverged.set(1);
        if (o.autoResync) rep.r?.resync.request(`diverged: ${reason}`, 0);
      },
      onGap: (applied, first) => rep.r?.resync.request(`the log was compacted past this database (applied ${applied}, log starts at ${first})`, first - 1),
    });
    await applier.open();
    delivered.index = applier.applied;
    log.debug('local database applied index', { applied: applier.applied });
    const entryBytesMax = o.entryBytesMax;
    node = await RaftNode.open({
      id: o.nodeId,
      peers: o.peers,
      listen: o.listen,
      dataDir: o.dataDir,
      clusterId: o.clusterId,
      secret: o.secret,
      appliedIndex: applier.applied,
      join: o.join ?? false,
      entryBytesMax,
      tickMs: o.tickMs,
      transport: { frameBytesMax: entryBytesMax + (1 << 20), queueBytesMax: Math.max(32 << 20, 2 * entryBytesMax) },
      // compaction is the replicator's (retention below the database's applied index, maybeCompact)
      compactEntriesMin: Number.MAX_SAFE_INTEGER,
      // Only asked for when a learner is added to a log never compacted: the marker says "the
      // database at index", which the applier must have reached (the log below goes away).
      snapshotProvider: async (index) => {
        if (!(await applier.waitApplied(index, 30_000))) throw new Error(`the local database has not applied ${index} (at ${applier.applied})`);
        return markerOf(index);
      },
      snapshotInstaller: (s) => {
        let m: SnapshotMarker | null = null;
        try {
          m = JSON.parse(Buffer.from(s.data).toString('utf8')) as SnapshotMarker;
        } catch {
          m = null;
        }
        if (m?.kind !== 'recall-sql') log.warn('snapshot from the leader is not a Recall SQL marker; resyncing anyway', { index: s.meta.index });
        if (applier.applied >= s.meta.index) return; // the database already holds it
        rep.r?.resync.request(`the leader sent a snapshot at index ${s.meta.index} (this replica lacks entries the log no longer has)`, s.meta.index);
      },
    });
    const n = node;
    const lane = dialect.createLane({
      nodeId: o.nodeId,
      laneTimeoutMs: o.laneTimeoutMs,
      log,
      propose: (data) => n.propose(data, { timeoutMs: Math.max(5000, o.laneTimeoutMs) }),
      ready: () => rep.r!.laneReady(),
      databaseFailed: (why) => rep.r?.stepAside(why),
    }, applier);
    const recovery = o.recovery?.({ transport: n.transport, applier, log }) ?? null;
    const resync = new ResyncManager({
      dataDir: o.dataDir,
      log,
      applier,
      runner: recovery?.runner ?? {
        method: 'snapshot',
        run: () => Promise.reject(new Error('no resync method is configured for this replica')),
      },
      candidates: () => donorCandidates(n),
      logFloor: () => n.storage.firstIndex() - 1,
      stepDown: async () => {
        if (n.status().role === Role.Leader) await n.transferLeadership(undefined, 5000);
      },
      context: { transport: n.transport },
    });
    rep.r = new Replicator(o, n, applier, lane, dialect, log, delivered, resync, recovery);
    return rep.r;
  }

  /** Run a write (or a statement of a lane transaction) on the leader, here or over the peer link. */
  async write(req: Req): Promise<Res> {
    if (this.applier.diverged && this.isLeader()) throw RecallErrors.diverged(this.applier.diverged.reason);
    const leader = await this.awaitLeader();
    replicationWrites.inc({ path: leader === this.o.nodeId ? 'local' : 'forwarded' });
    if (leader === this.o.nodeId) return this.lane.submit(req);
    return this.forward(leader, req);
  }

  endSession(session: string): void {
    this.lane.endSession(session);
    const leader = this.node.status().leader;
    if (leader && leader !== this.o.nodeId) this.node.transport.send(leader, CHANNEL_END, Buffer.from(session, 'utf8'));
  }

  /** The index a linearizable read must wait for (ReadIndex on the leader). */
  async linearizableIndex(): Promise<number> {
    const leader = await this.awaitLeader();
    if (leader === this.o.nodeId) {
      try {
        return await this.node.readIndex({ timeoutMs: this.o.leaderWaitMs });
      } catch (e) {
        throw RecallErrors.noLeader(`read index: ${(e as Error).message}`);
      }
    }
    if (!this.node.transport.isConnected(leader)) throw RecallErrors.noLeader(`leader ${leader} not connected`);
    try {
      const b = await this.node.transport.request(leader, CHANNEL_READ_INDEX, Buffer.alloc(0), this.o.leaderWaitMs);
      return Number(Buffer.from(b).toString('utf8'));
    } catch (e) {
      throw RecallErrors.noLeader(`read index from leader ${leader}: ${(e as Error).message}`);
    }
  }

  /** Wait until the local database has applied `index`; SqlError after readWaitMs. */
  async waitApplied(index: number): Promise<void> {
    if (this.applier.applied >= index) return;
    if (await this.applier.waitApplied(index, this.o.readWaitMs)) return;
    if (this.applier.diverged) throw RecallErrors.diverged(this.applier.diverged.reason);
    throw RecallErrors.readTimeout(index, this.applier.applied, this.o.readWaitMs);
  }

  get applied(): number {
    return this.applier.applied;
  }

  /** Why this replica refuses reads (diverged, resyncing), or null. */
  get diverged(): string | null {
    return this.resync.describe() ?? this.applier.diverged?.reason ?? null;
  }

  isLeader(): boolean {
    return this.node.status().role === Role.Leader;
  }

  /** Caught up enough to serve: not diverged, and applied what this node knows committed. */
  readiness(): string | undefined {
    const resync = this.resync.describe();
    if (resync) return resync;
    if (this.applier.diverged) return `replica diverged: ${this.applier.diverged.reason}`;
    const st = this.node.status();
    if (st.leader === 0) return 'no leader known';
    if (this.applier.applied + 1000 < st.commit) return `catching up: applied ${this.applier.applied} of ${st.commit}`;
    return undefined;
  }

  status(): ReplicationStatus {
    const st = this.node.status();
    const a = this.applier.status();
    return {
      role: st.role,
      term: st.term,
      leader: st.leader,
      ...(st.leaderAddress ? { leaderAddress: st.leaderAddress } : {}),
      commit: st.commit,
      applied: a.applied,
      lastIndex: st.lastIndex,
      diverged: a.diverged,
      ...(a.divergedReason ? { divergedReason: a.divergedReason } : {}),
      laneOpen: st.role === Role.Leader && this.laneOpenTerm === st.term,
      ...(a.lastError ? { lastError: a.lastError } : {}),
      firstIndex: st.firstIndex,
      resync: this.resync.status(),
      peers: st.peers.map((p) => ({ id: p.id, address: p.address, match: p.match, lag: p.lag, connected: p.connected })),
    };
  }

  async close(): Promise<void> {
    this.stopRoleWatch();
    clearInterval(this.compactTimer);
    await this.resync.close();
    this.recovery?.close();
    await this.lane.close();
    await this.node.close({ graceful: true });
    this.applier.close();
  }

  // ---- internals ----

  /** The lane may execute once this leader has applied everything committed before its term. */
  private async laneReady(): Promise<void> {
    const end = performance.now() + this.o.laneTimeoutMs;
    for (;;) {
      const st = this.node.status();
      if (st.role !== Role.Leader) throw RecallErrors.notApplied(st.leader ? `leadership moved to node ${st.leader}` : 'leadership lost');
      if (this.applier.diverged) throw RecallErrors.diverged(this.applier.diverged.reason);
      // Open: every committed entry must be in the database before the next write executes (a
      // commit that failed after quorum is replayed by the applier first).
      if (this.laneOpenTerm === st.term && this.applier.applied >= Math.min(st.commit, this.node.storage.lastIndex())) return;
      // commit must have reached this term's first entry, and the database must hold all of it
      let termOfCommit = -1;
      try {
        termOfCommit = this.node.storage.term(st.commit);
      } catch {
        termOfCommit = -1;
      }
      if (this.laneOpenTerm !== st.term && termOfCommit === st.term && this.applier.applied >= st.commit) {
        this.laneOpenTerm = st.term;
        this.log.debug('write lane open', { term: st.term, applied: this.applier.applied });
        return;
      }
      if (performance.now() > end) throw RecallErrors.notApplied(`this new leader has not caught up (applied ${this.applier.applied}, commit ${st.commit})`);
      this.applier.notify();
      await sleep(2);
    }
  }

  private steppingAside = false;

  /** The local database is failing: a leader hands leadership to a peer whose database works. */
  stepAside(why: string): void {
    if (this.steppingAside || !this.isLeader()) return;
    this.steppingAside = true;
    this.log.warn('this replica cannot lead now: transferring leadership', { why });
    this.node
      .transferLeadership()
      .catch(() => false)
      .finally(() => setTimeout(() => (this.steppingAside = false), 2000).unref());
  }

  /**
   * A transaction forwarded by a follower that died or lost its link holds the lane until the
   * lane timeout: nobody will ever finish it. End it when the link to its origin is down, or was
   * re-established (a restarted follower does not know its old sessions).
   */
  private releaseOrphans(reconnected?: number): void {
    const h = this.lane.holderSession();
    if (!h || !this.isLeader()) return;
    const origin = Number(h.split(':', 1)[0]);
    if (!origin || origin === this.o.nodeId) return;
    if (origin === reconnected || !this.node.transport.isConnected(origin)) {
      this.log.info('rolling back a transaction whose replica went away', { session: h, node: origin });
      this.lane.endSession(h);
    }
  }

  // Runs every 20 ms: it reads the core's role and leader once (basicStatus, no peer list). Nothing
  // in here changes them synchronously (stepAside only starts a transfer), so one read serves all.
  private watchRole(): void {
    this.releaseOrphans();
    const st = this.node.basicStatus();
    if (this.forwards.size > 0) {
      const now = st.leader;
      for (const f of this.forwards) if (now !== 0 && now !== f.leader) f.cancel(`leadership moved from node ${f.leader} to node ${now}`);
    }
    const leader = st.role === Role.Leader;
    const lastError = this.applier.status().lastError;
    if (lastError && leader) this.stepAside(`applier: ${lastError}`);
    // A replica whose database is being replaced cannot run the write lane: its log may be
    // complete, so it can win an election, but it must hand leadership on.
    if (this.resync.active && leader) this.stepAside(`resync in progress`);
    replicationApplied.set(this.applier.applied);
    if (this.wasLeader && !leader) {
      this.log.info('leadership lost: rolling back the write lane');
      this.lane.abort(RecallErrors.txnAborted('the leader changed; the transaction was rolled back'));
    }
    this.wasLeader = leader;
  }

  private async awaitLeader(): Promise<number> {
    const end = performance.now() + this.o.leaderWaitMs;
    for (;;) {
      const st = this.node.status();
      if (st.leader && (st.leader === this.o.nodeId || this.node.transport.isConnected(st.leader))) return st.leader;
      if (performance.now() > end) throw RecallErrors.noLeader(st.leader ? `leader ${st.leader} is not connected` : 'no leader elected');
      await sleep(20);
    }
  }

  private readonly forwards = new Set<{ leader: number; cancel: (why: string) => void }>();

  private async forward(leader: number, req: Req): Promise<Res> {
    const payload = this.dialect.encodeRequest(req, this.seal);
    let reply: Uint8Array;
    // A leader that went silent (partitioned, frozen) would hold this until the request times
    // out: once another leader is elected the answer is settled as unknown right away.
    let f: { leader: number; cancel: (why: string) => void } | undefined;
    const cancelled = new Promise<never>((_, reject) => {
      f = { leader, cancel: (why) => reject(new Error(why)) };
    });
    this.forwards.add(f!);
    try {
      reply = await Promise.race([this.node.transport.request(leader, CHANNEL_EXEC, payload, this.o.laneTimeoutMs * 2 + 10_000), cancelled]);
    } catch (e) {
      if (this.dialect.mayHaveRun(req)) throw RecallErrors.outcomeUnknown(`forwarding to leader ${leader} failed: ${(e as Error).message}`);
      throw RecallErrors.txnAborted(`forwarding to leader ${leader} failed: ${(e as Error).message}`);
    } finally {
      this.forwards.delete(f!);
    }
    return this.dialect.decodeResult(Buffer.from(reply));
  }

  private async onForwarded(from: number, payload: Buffer): Promise<Uint8Array> {
    let req: Req;
    try {
      req = this.dialect.decodeRequest(payload, this.seal);
    } catch (e) {
      this.log.warn('undecodable forwarded write from peer', { peer: from, error: (e as Error).message });
      return this.dialect.encodeResult(new SqlError(1047, '08S01', 'Recall: malformed forwarded request'));
    }
    try {
      if (!this.isLeader()) throw RecallErrors.notApplied(`node ${this.o.nodeId} is no longer the leader`);
      return this.dialect.encodeResult(await this.lane.submit(req));
    } catch (e) {
      return this.dialect.encodeResult(e instanceof SqlError ? e : RecallErrors.outcomeUnknown((e as Error).message));
    }
  }
}

/** Sealed credentials remembered per side (a session sends the same credential with every request). */
const SEALS_MAX = 256;

/**
 * The key that seals credentials sent to the leader: derived from the cluster secret. A session
 * forwards the same credential with each statement: the follower seals it once (the same sealed
 * text then travels with every request, which tells an observer of the peer link no more than
 * the session id beside it) and the leader opens each sealed text once.
 */
function credentialSeal(secret: string): CredentialSeal {
  const key = crypto.createHash('sha256').update('recall-credential\u0000').update(secret).digest();
  const sealed = new Map<string, string>();
  const opened = new Map<string, Buffer>();
  const remember = <V>(m: Map<string, V>, k: string, v: V): V => {
    if (m.size >= SEALS_MAX) m.delete(m.keys().next().value as string);
    m.set(k, v);
    return v;
  };
  return {
    seal(plain) {
      const k = plain.toString('base64');
      const have = sealed.get(k);
      if (have !== undefined) return have;
      const iv = crypto.randomBytes(12);
      const c = crypto.createCipheriv('aes-256-gcm', key, iv);
      const enc = Buffer.concat([c.update(plain), c.final()]);
      return remember(sealed, k, Buffer.concat([iv, c.getAuthTag(), enc]).toString('base64'));
    },
    open(text) {
      const have = opened.get(text);
      if (have !== undefined) return have;
      const raw = Buffer.from(text, 'base64');
      const d = crypto.createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
      d.setAuthTag(raw.subarray(12, 28));
      return remember(opened, text, Buffer.concat([d.update(raw.subarray(28)), d.final()]));
    },
  };
}

function markerOf(index: number): Uint8Array {
  const m: SnapshotMarker = { kind: 'recall-sql', index };
  return Buffer.from(JSON.stringify(m));
}

/** Donors for a full resync, best first: connected followers with the most log, then the leader. */
function donorCandidates(n: RaftNode): number[] {
  const st = n.status();
  return st.peers
    .filter((p) => p.connected && p.id !== st.id)
    .sort((a, b) => Number(a.id === st.leader) - Number(b.id === st.leader) || b.match - a.match)
    .map((p) => p.id);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export { NotLeaderError };
