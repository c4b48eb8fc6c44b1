// RaftCore: the pure Raft state machine (modelled on etcd/raft's raft.go + RawNode).
// Driven by tick()/step()/propose(); hands back Ready batches; never touches I/O.
// Safety rules kept here: term and vote reach hardState in the same Ready as the
// messages that depend on them (the runtime persists before sending); a leader
// commits only entries of its own term, counted over a majority of voters;
// one membership change at a time, only once the leader has committed in its term.
import {
  ConfChangeType,
  EntryType,
  MessageType,
  Role,
  type ConfChange,
  type ConfState,
  type CoreConfig,
  type Entry,
  type HardState,
  type Message,
  type NodeId,
  type Ready,
  type ReadState,
  type Snapshot,
  type SoftState,
  type Storage,
} from './types.js';
import { RaftLog, entryBytes } from './raft-log.js';
import { Progress, ProgressState } from './progress.js';
import { ReadOnly } from './read-only.js';
import { assert, fail } from './assert.js';
import { decodeConfChange, encodeConfChange } from './codec.js';
import { SnapshotReceiver } from './snapshot-receive.js';
import { applyConfChange, confChangeValid, quorumOf, type Members } from './membership.js';

export type ProposeRefusal = 'not-leader' | 'queue-full' | 'transferring' | 'conf-change-pending' | 'conf-change-invalid';
export type ProposeResult = { ok: true; index: number; term: number } | { ok: false; reason: ProposeRefusal; leader: NodeId };
export type ReadIndexResult = { ok: true } | { ok: false; reason: 'not-leader' | 'queue-full'; leader: NodeId };

export interface ProgressStatus {
  readonly match: number;
  readonly next: number;
  readonly state: ProgressState;
  readonly inflight: number;
  readonly isLearner: boolean;
}

export interface CoreStatus {
  readonly id: NodeId;
  readonly role: Role;
  readonly term: number;
  readonly vote: NodeId;
  readonly leader: NodeId;
  readonly commit: number;
  readonly applied: number;
  readonly lastIndex: number;
  readonly firstIndex: number;
  /** Leader only: replication progress per peer (itself included). */
  readonly progress: ReadonlyMap<NodeId, ProgressStatus> | undefined;
  /** Membership as of the applied index. */
  readonly conf: ConfState;
}

/** Test-only fault switches (used by test/sim/broken.test.ts); production never sets them. */
export interface TestingKnobs {
  /** Grant votes without recording them in hardState (a vote not persisted before the reply). */
  readonly voteWithoutPersist?: boolean;
  /** Commit by counting replicas regardless of the entry's term (the Figure 8 bug). */
  readonly commitPreviousTermByCount?: boolean;
  /** A new leader appends no empty entry of its term (naive Raft; combine with the above for Figure 8). */
  readonly noNoopOnElection?: boolean;
}

const readRequestsMax = 4096;
const snapshotChunksInflightMin = 16;
type CampaignKind = 'pre' | 'elect' | 'transfer';

export class RaftCore {
  readonly id: NodeId;
  private readonly cfg: CoreConfig;
  private readonly knobs: TestingKnobs;
  readonly log: RaftLog;

  private term = 0;
  private vote: NodeId = 0;
  private role: Role = Role.Follower;
  private lead: NodeId = 0;
  private voters: NodeId[] = [];
  private learners: NodeId[] = [];
  private prs = new Map<NodeId, Progress>();
  private votes = new Map<NodeId, boolean>();
  private msgs: Message[] = [];
  private readStates: ReadState[] = [];
  private readOnly = new ReadOnly(readRequestsMax);
  /** Reads asked before this leader committed in its term; served once it has. */
  private pendingReads: { context: Uint8Array; from: NodeId }[] = [];
  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  private leadTransferee: NodeId = 0;
  private pendingConfIndex = 0;
  private snapRecv = new SnapshotReceiver();

  private prevSoft: SoftState;
  private prevHard: HardState;
  private readyOutstanding = false;
  /** Proposals were appended since the last Ready: send them with it. */
  private appendsDue = false;
  private highestCommitSeen = 0;

  constructor(config: CoreConfig & { readonly testingKnobs?: TestingKnobs }, storage: Storage) {
    this.cfg = config;
    this.id = config.id;
    this.knobs = config.testingKnobs ?? {};
    assert(config.heartbeatIntervalTicks > 0 && config.electionTimeoutTicks > config.heartbeatIntervalTicks, 'electionTimeoutTicks must exceed heartbeatIntervalTicks > 0');
    const { hardState, conf } = storage.initialState();
    const snapIndex = storage.firstIndex() - 1;
    const applied = Math.max(config.applied ?? snapIndex, snapIndex);
    // The commit index is made durable lazily (a restarted node relearns it from the leader), so
    // the stored one can lag: after a snapshot from the leader was installed and before the next
    // commit index reached the disk, a kill -9 left commit 27 beside a snapshot at 227. Whatever
    // a snapshot covers or was applied is committed.
    this.log = new RaftLog(storage, Math.max(hardState.commit, applied), applied);
    assert(hardState.commit <= this.log.lastIndex(), `hard state commit ${hardState.commit} beyond last index ${this.log.lastIndex()}`);
    this.voters = [...conf.voters];
    this.learners = [...conf.learners];
    // Membership changes applied after the snapshot (idempotent if conf already has them).
    if (applied > snapIndex) for (const e of this.log.slice(snapIndex + 1, applied + 1, Number.MAX_SAFE_INTEGER)) this.applyEntryConf(e);
    this.term = hardState.term;
    this.vote = hardState.vote;
    // Entries can be durable while the hard state written after them is not (a crash
    // between the two writes). Never run at a term below our own log's, or we could
    // campaign at a term whose leader we already followed.
    const lastTerm = this.log.lastTerm();
    if (lastTerm > this.term) {
      this.term = lastTerm;
      this.vote = 0;
    }
    this.becomeFollower(this.term, 0);
    this.prevSoft = { role: this.role, leader: this.lead };
    this.prevHard = this.hardState();
    this.highestCommitSeen = this.log.committed;
  }

  // ---- public interface ----------------------------------------------------

  tick(): void {
    if (this.role === Role.Leader) this.tickHeartbeat();
    else this.tickElection();
    this.checkInvariants();
  }

  step(m: Message): void {
    this.stepInner(m);
    this.checkInvariants();
  }

  propose(data: Uint8Array): ProposeResult {
    const r = this.proposeEntry(EntryType.Normal, data);
    this.checkInvariants();
    return r;
  }

  proposeConfChange(cc: ConfChange): ProposeResult {
    let r: ProposeResult;
    if (this.role !== Role.Leader) r = this.refuse('not-leader');
    else if (this.pendingConfIndex > this.log.applied || this.log.term(this.log.committed) !== this.term) r = this.refuse('conf-change-pending');
    else if (!this.confChangeValid(cc)) r = this.refuse('conf-change-invalid');
    else {
      r = this.proposeEntry(EntryType.ConfChange, encodeConfChange(cc));
      if (r.ok) this.pendingConfIndex = r.index;
    }
    this.checkInvariants();
    return r;
  }

  readIndex(context: Uint8Array): ReadIndexResult {
    if (this.role !== Role.Leader) {
      if (this.lead === 0) return { ok: false, reason: 'not-leader', leader: 0 };
      this.send({ type: MessageType.ReadIndex, to: this.lead, context });
      return { ok: true };
    }
    const ok = this.leaderRead(context, 0);
    this.checkInvariants();
    return ok ? { ok: true } : { ok: false, reason: 'queue-full', leader: this.id };
  }

  /** Start an election now (a pre-vote first when enabled), as if the election timeout had fired. */
  campaign(): void {
    this.hup(this.cfg.preVote ? 'pre' : 'elect');
    this.checkInvariants();
  }

  transferLeadership(to: NodeId): void {
    if (this.role !== Role.Leader || to === this.id || !this.voters.includes(to)) return;
    if (this.leadTransferee === to) return;
    this.leadTransferee = to;
    // The transfer must finish within an election timeout or it is abandoned.
    this.electionElapsed = 0;
    const pr = this.prs.get(to)!;
    if (pr.match === this.log.lastIndex()) this.send({ type: MessageType.TimeoutNow, to });
    else this.sendAppend(to, true);
    this.checkInvariants();
  }

  reportUnreachable(peer: NodeId): void {
    const pr = this.prs.get(peer);
    if (this.role === Role.Leader && pr && pr.state === ProgressState.Replicate) pr.becomeProbe();
  }

  reportSnapshot(peer: NodeId, ok: boolean): void {
    const pr = this.prs.get(peer);
    if (this.role !== Role.Leader || !pr || pr.state !== ProgressState.Snapshot) return;
    if (!ok) pr.pendingSnapshot = 0;
    pr.becomeProbe();
  }

  hasReady(): boolean {
    // The soft and hard state compared field by field (as softState()/hardState() would build
    // them): called after every tick and message, mostly to find nothing.
    const ps = this.prevSoft;
    const ph = this.prevHard;
    return (
      this.role !== ps.role ||
      this.lead !== ps.leader ||
      this.term !== ph.term ||
      this.vote !== ph.vote ||
      this.log.committed !== ph.commit ||
      this.log.unstable.entries.length > 0 ||
      this.log.hasPendingSnapshot() ||
      this.msgs.length > 0 ||
      this.readStates.length > 0 ||
      this.log.hasNextCommittedEntries()
    );
  }

  ready(): Ready {
    assert(!this.readyOutstanding, 'ready() called again before advance()');
    if (this.appendsDue) {
      this.appendsDue = false;
      if (this.role === Role.Leader) for (const id of this.prs.keys()) if (id !== this.id) this.sendAppend(id, false);
    }
    const ss = this.softState();
    const hs = this.hardState();
    const committedEntries = this.log.nextCommittedEntries();
    const rd: {
      softState?: SoftState;
      hardState?: HardState;
      entries: Entry[];
      snapshot?: Snapshot;
      messages: Message[];
      committedEntries: Entry[];
      readStates: ReadState[];
    } = {
      entries: [...this.log.unstable.entries],
      messages: this.msgs,
      committedEntries,
      readStates: this.readStates,
    };
    if (ss.role !== this.prevSoft.role || ss.leader !== this.prevSoft.leader) rd.softState = ss;
    if (!hardStateEqual(hs, this.prevHard)) rd.hardState = hs;
    if (this.log.unstable.snapshot) rd.snapshot = this.log.unstable.snapshot;
    this.prevSoft = ss;
    this.prevHard = hs;
    this.msgs = [];
    this.readStates = [];
    if (committedEntries.length > 0) this.log.applying = committedEntries[committedEntries.length - 1]!.index;
    this.readyOutstanding = true;
    return rd;
  }

  advance(rd: Ready): void {
    assert(this.readyOutstanding, 'advance() without ready()');
    this.readyOutstanding = false;
    if (rd.snapshot) {
      this.log.unstable.stableSnapTo(rd.snapshot.meta.index);
      this.log.applied = Math.max(this.log.applied, rd.snapshot.meta.index);
      this.log.applying = Math.max(this.log.applying, this.log.applied);
    }
    if (rd.entries.length > 0) {
      const last = rd.entries[rd.entries.length - 1]!;
      this.log.unstable.stableTo(last.index, last.term);
    }
    for (const e of rd.committedEntries) {
      this.log.applied = e.index;
      if (e.type === EntryType.ConfChange) this.applyEntryConf(e);
    }
    this.checkInvariants();
  }

  /** Role, term, leader and commit without allocating the progress view (hot paths, simulator). */
  basicStatus(): { role: Role; term: number; leader: NodeId; commit: number } {
    return { role: this.role, term: this.term, leader: this.lead, commit: this.log.committed };
  }

  status(): CoreStatus {
    let progress: Map<NodeId, ProgressStatus> | undefined;
    if (this.role === Role.Leader) {
      progress = new Map();
      for (const [id, pr] of this.prs) {
        progress.set(id, { match: pr.match, next: pr.next, state: pr.state, inflight: pr.inflights.count, isLearner: pr.isLearner });
      }
    }
    return {
      id: this.id,
      role: this.role,
      term: this.term,
      vote: this.vote,
      leader: this.lead,
      commit: this.log.committed,
      applied: this.log.applied,
      lastIndex: this.log.lastIndex(),
      firstIndex: this.log.firstIndex(),
      progress,
      conf: { voters: [...this.voters], learners: [...this.learners] },
    };
  }

  // ---- state transitions ---------------------------------------------------

  private softState(): SoftState {
    return { role: this.role, leader: this.lead };
  }

  private hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  private promotable(): boolean {
    return this.voters.includes(this.id);
  }

  private quorum(): number {
    return quorumOf(this.voters);
  }

  private reset(term: number): void {
    if (term !== this.term) {
      this.term = term;
      this.vote = 0;
    }
    this.lead = 0;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTimeout = this.cfg.electionTimeoutTicks + Math.floor(this.cfg.random() * this.cfg.electionTimeoutTicks);
    this.leadTransferee = 0;
    this.votes.clear();
    this.pendingConfIndex = 0;
    this.readOnly.reset();
    this.pendingReads = [];
    this.resetProgress();
  }

  private resetProgress(): void {
    const next = this.log.lastIndex() + 1;
    this.prs = new Map();
    for (const id of this.voters) this.prs.set(id, this.newProgress(next, false));
    for (const id of this.learners) this.prs.set(id, this.newProgress(next, true));
    const self = this.prs.get(this.id);
    if (self) self.match = this.log.lastIndex();
  }

  private newProgress(next: number, learner: boolean): Progress {
    return new Progress(next, learner, this.cfg.inflightMessagesMax, this.cfg.inflightBytesMax);
  }

  private becomeFollower(term: number, lead: NodeId): void {
    this.reset(term);
    this.lead = lead;
    this.role = Role.Follower;
  }

  private becomePreCandidate(): void {
    assert(this.role !== Role.Leader, 'leader cannot become pre-candidate');
    // Term and vote are left alone: a pre-vote changes nothing durable.
    this.votes.clear();
    this.lead = 0;
    this.role = Role.PreCandidate;
  }

  private becomeCandidate(): void {
    assert(this.role !== Role.Leader, 'leader cannot become candidate');
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = Role.Candidate;
  }

  private becomeLeader(): void {
    assert(this.role === Role.Candidate, 'only a candidate becomes leader');
    this.reset(this.term);
    this.lead = this.id;
    this.role = Role.Leader;
    this.prs.get(this.id)?.becomeReplicate();
    // No conf change until everything up to here (possibly an earlier-term change) is applied.
    this.pendingConfIndex = this.log.lastIndex();
    if (this.knobs.noNoopOnElection) return;
    this.appendEntries([{ term: this.term, index: this.log.lastIndex() + 1, type: EntryType.Noop, data: new Uint8Array(0) }]);
  }

  private campaignAs(kind: CampaignKind): void {
    if (!this.promotable()) return;
    let voteType: MessageType;
    let term: number;
    if (kind === 'pre') {
      this.becomePreCandidate();
      voteType = MessageType.PreVote;
      term = this.term + 1;
    } else {
      this.becomeCandidate();
      voteType = MessageType.Vote;
      term = this.term;
    }
    const won = this.poll(this.id, true);
    if (won === 'won') {
      if (kind === 'pre') this.campaignAs('elect');
      else this.becomeLeader();
      return;
    }
    for (const id of this.voters) {
      if (id === this.id) continue;
      this.send({
        type: voteType,
        to: id,
        term,
        logIndex: this.log.lastIndex(),
        logTerm: this.log.lastTerm(),
        ...(kind === 'transfer' ? { transfer: true } : {}),
      });
    }
  }

  private poll(id: NodeId, granted: boolean): 'won' | 'lost' | 'pending' {
    if (!this.votes.has(id)) this.votes.set(id, granted);
    let yes = 0;
    let no = 0;
    for (const v of this.voters) {
      const g = this.votes.get(v);
      if (g === true) yes++;
      else if (g === false) no++;
    }
    if (yes >= this.quorum()) return 'won';
    if (no >= this.quorum()) return 'lost';
    return 'pending';
  }

  private hup(kind: CampaignKind): void {
    if (this.role === Role.Leader || !this.promotable()) return;
    // A committed membership change must be applied first, or we would count votes in the old one.
    if (this.log.hasUnappliedConfChange()) return;
    this.campaignAs(kind);
  }

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.hup(this.cfg.preVote ? 'pre' : 'elect');
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    for (const [id, pr] of this.prs) {
      const ss = pr.snapshotSend;
      if (!ss) continue;
      ss.idleTicks++;
      if (ss.idleTicks > 4 * this.cfg.electionTimeoutTicks) {
        // No progress for long: start over (possibly with a newer snapshot).
        pr.pendingSnapshot = 0;
        pr.becomeProbe();
        this.sendAppend(id, true);
      } else if (ss.idleTicks % this.cfg.electionTimeoutTicks === 0) {
        // Chunks or acks were lost: resend from what the follower confirmed.
        ss.sent = ss.acked;
        this.sendSnapshotChunks(id, pr);
      }
    }
    if (this.electionElapsed >= this.cfg.electionTimeoutTicks) {
      this.electionElapsed = 0;
      if (this.cfg.checkQuorum) {
        if (!this.quorumActive()) {
          this.becomeFollower(this.term, 0);
          return;
        }
      }
      this.leadTransferee = 0;
    }
    if (this.heartbeatElapsed >= this.cfg.heartbeatIntervalTicks) {
      this.heartbeatElapsed = 0;
      this.bcastHeartbeat(undefined);
    }
  }

  /** Check-quorum: were a majority of voters heard from since the last round? Resets the marks. */
  private quorumActive(): boolean {
    let active = 0;
    for (const id of this.voters) {
      const pr = this.prs.get(id);
      if (id === this.id || pr?.recentActive) active++;
    }
    for (const [id, pr] of this.prs) pr.recentActive = id === this.id;
    return active >= this.quorum();
  }

  // ---- message handling ----------------------------------------------------

  private stepInner(m: Message): void {
    if (m.to !== this.id || m.from === this.id) return;
    if (m.term > this.term) {
      if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
        // Leader stickiness: while we hear from a live leader, ignore would-be disruptors.
        const inLease = this.cfg.checkQuorum && this.lead !== 0 && this.electionElapsed < this.cfg.electionTimeoutTicks;
        if (!m.transfer && inLease) return;
      }
      if (m.type === MessageType.PreVote) {
        // A pre-vote does not move our term.
      } else if (m.type === MessageType.PreVoteResponse && !m.reject) {
        // The term in a granted pre-vote response is the term we would campaign at.
      } else if (m.type === MessageType.Append || m.type === MessageType.Heartbeat || m.type === MessageType.InstallSnapshot) {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, 0);
      }
    } else if (m.term < this.term) {
      if ((this.cfg.checkQuorum || this.cfg.preVote) && (m.type === MessageType.Heartbeat || m.type === MessageType.Append)) {
        // Tell a stale leader about the newer term, so it steps down (and a
        // partitioned pre-voting node cannot be stranded behind it).
        this.send({ type: MessageType.AppendResponse, to: m.from });
      } else if (m.type === MessageType.PreVote) {
        this.send({ type: MessageType.PreVoteResponse, to: m.from, reject: true });
      }
      return;
    }

    if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
      this.handleVoteRequest(m);
      return;
    }
    switch (this.role) {
      case Role.Leader:
        this.stepLeader(m);
        break;
      case Role.Candidate:
      case Role.PreCandidate:
        this.stepCandidate(m);
        break;
      default:
        this.stepFollower(m);
    }
  }

  private handleVoteRequest(m: Message): void {
    const canVote = this.vote === m.from || (this.vote === 0 && this.lead === 0) || (m.type === MessageType.PreVote && m.term > this.term);
    const respType = m.type === MessageType.Vote ? MessageType.VoteResponse : MessageType.PreVoteResponse;
    if (canVote && this.log.isUpToDate(m.logIndex ?? 0, m.logTerm ?? 0)) {
      this.send({ type: respType, to: m.from, term: m.term });
      if (m.type === MessageType.Vote) {
        this.electionElapsed = 0;
        if (!this.knobs.voteWithoutPersist) this.vote = m.from;
      }
    } else {
      this.send({ type: respType, to: m.from, term: this.term, reject: true });
    }
  }

  private stepLeader(m: Message): void {
    const pr = this.prs.get(m.from);
    switch (m.type) {
      case MessageType.ReadIndex:
        if (!this.leaderRead(m.context ?? new Uint8Array(0), m.from)) return;
        return;
      case MessageType.AppendResponse:
        if (!pr) return;
        pr.recentActive = true;
        this.handleAppendResponse(m, pr);
        return;
      case MessageType.HeartbeatResponse:
        if (!pr) return;
        pr.recentActive = true;
        pr.probeSent = false;
        if (pr.state === ProgressState.Replicate && pr.inflights.full()) pr.inflights.freeFirstOne();
        if (pr.match < this.log.lastIndex()) this.sendAppend(m.from, true);
        if (m.context && m.context.length > 0) {
          const done = this.readOnly.ack(m.context, m.from, (acks) => this.voters.filter((v) => acks.has(v)).length >= this.quorum());
          for (const r of done) this.releaseRead(r.index, r.context, r.from);
        }
        return;
      case MessageType.InstallSnapshotResponse:
        if (!pr) return;
        pr.recentActive = true;
        this.handleSnapshotAck(m, pr);
        return;
      default:
        return;
    }
  }

  private handleAppendResponse(m: Message, pr: Progress): void {
    const index = m.logIndex ?? 0;
    if (m.reject) {
      let nextProbe = m.rejectHint ?? 0;
      if ((m.hintTerm ?? 0) > 0) nextProbe = this.log.findConflictByTerm(nextProbe, m.hintTerm!)[0];
      if (pr.maybeDecrTo(index, nextProbe)) {
        if (pr.state === ProgressState.Replicate) pr.becomeProbe();
        this.sendAppend(m.from, true);
      }
      return;
    }
    const oldPaused = pr.isPaused();
    if (!pr.maybeUpdate(index)) return;
    if (pr.state === ProgressState.Probe) pr.becomeReplicate();
    else if (pr.state === ProgressState.Snapshot && pr.match >= pr.pendingSnapshot) {
      pr.becomeProbe();
      pr.becomeReplicate();
    } else if (pr.state === ProgressState.Replicate) pr.inflights.freeLE(index);

    if (this.maybeCommit()) this.bcastAppend();
    else if (oldPaused) this.sendAppend(m.from, true);
    while (this.sendAppend(m.from, false)) {
      // Keep the pipeline full.
    }
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) this.send({ type: MessageType.TimeoutNow, to: m.from });
  }

  private stepCandidate(m: Message): void {
    const myResp = this.role === Role.PreCandidate ? MessageType.PreVoteResponse : MessageType.VoteResponse;
    switch (m.type) {
      case MessageType.Append:
        this.becomeFollower(m.term, m.from);
        this.handleAppend(m);
        return;
      case MessageType.Heartbeat:
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        return;
      case MessageType.InstallSnapshot:
        this.becomeFollower(m.term, m.from);
        this.handleSnapshotChunk(m);
        return;
      case myResp: {
        const r = this.poll(m.from, !m.reject);
        if (r === 'won') {
          if (this.role === Role.PreCandidate) this.campaignAs('elect');
          else {
            this.becomeLeader();
            this.bcastAppend();
          }
        } else if (r === 'lost') {
          this.becomeFollower(this.term, 0);
        }
        return;
      }
      default:
        return;
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case MessageType.Append:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleAppend(m);
        return;
      case MessageType.Heartbeat:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleHeartbeat(m);
        return;
      case MessageType.InstallSnapshot:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleSnapshotChunk(m);
        return;
      case MessageType.TimeoutNow:
        this.hup('transfer');
        return;
      case MessageType.ReadIndexResponse:
        this.readStates.push({ index: m.logIndex ?? 0, context: m.context ?? new Uint8Array(0) });
        return;
      default:
        return;
    }
  }

  private handleAppend(m: Message): void {
    const prev = m.logIndex ?? 0;
    if (prev < this.log.committed) {
      this.send({ type: MessageType.AppendResponse, to: m.from, logIndex: this.log.committed });
      return;
    }
    const lastnewi = this.log.maybeAppend(prev, m.logTerm ?? 0, m.commit ?? 0, m.entries ?? []);
    if (lastnewi >= 0) {
      this.send({ type: MessageType.AppendResponse, to: m.from, logIndex: lastnewi });
      return;
    }
    const [hintIndex, hintTerm] = this.log.findConflictByTerm(Math.min(prev, this.log.lastIndex()), m.logTerm ?? 0);
    this.send({ type: MessageType.AppendResponse, to: m.from, logIndex: prev, reject: true, rejectHint: hintIndex, hintTerm });
  }

  private handleHeartbeat(m: Message): void {
    this.log.commitTo(Math.min(m.commit ?? 0, this.log.lastIndex()));
    this.send({ type: MessageType.HeartbeatResponse, to: m.from, ...(m.context ? { context: m.context } : {}) });
  }

  private handleSnapshotChunk(m: Message): void {
    const r = this.snapRecv.receive(m);
    if (r.kind === 'ignore') return;
    if (r.kind === 'reject') {
      this.send({ type: MessageType.InstallSnapshotResponse, to: m.from, reject: true, chunkOffset: r.received });
      return;
    }
    if (r.kind === 'partial') {
      this.send({ type: MessageType.InstallSnapshotResponse, to: m.from, chunkOffset: r.received });
      return;
    }
    const s = r.snapshot;
    this.send({ type: MessageType.InstallSnapshotResponse, to: m.from, chunkOffset: s.data.length, chunkLast: true });
    if (this.restore(s)) this.send({ type: MessageType.AppendResponse, to: m.from, logIndex: this.log.lastIndex() });
    else this.send({ type: MessageType.AppendResponse, to: m.from, logIndex: this.log.committed });
  }

  private restore(s: Snapshot): boolean {
    if (s.meta.index <= this.log.committed) return false;
    if (this.log.matchTerm(s.meta.index, s.meta.term)) {
      // We already hold that entry: fast-forward the commit instead.
      this.log.commitTo(s.meta.index);
      return false;
    }
    this.log.restore(s);
    this.voters = [...s.meta.conf.voters];
    this.learners = [...s.meta.conf.learners];
    this.resetProgress();
    return true;
  }

  // ---- leader: sending -----------------------------------------------------

  private send(m: Partial<Message> & { type: MessageType; to: NodeId }): void {
    assert(m.to !== this.id, 'message to self');
    const msg: Message = { ...m, from: this.id, term: m.term ?? this.term };
    this.msgs.push(msg);
  }

  private bcastAppend(): void {
    for (const id of this.prs.keys()) if (id !== this.id) this.sendAppend(id, true);
  }

  private bcastHeartbeat(context: Uint8Array | undefined): void {
    for (const [id, pr] of this.prs) {
      if (id === this.id) continue;
      this.send({
        type: MessageType.Heartbeat,
        to: id,
        // A follower may not have the leader's committed entries yet.
        commit: Math.min(pr.match, this.log.committed),
        ...(context ? { context } : {}),
      });
    }
  }

  /** Sends an Append (or starts a snapshot) to `to`; false if nothing was sent. */
  private sendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.prs.get(to);
    if (!pr || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    let ents: Entry[] | undefined;
    if (prevTerm !== undefined && pr.next >= this.log.firstIndex()) ents = this.log.entriesFrom(pr.next, this.cfg.appendBytesMax);
    if (prevTerm === undefined || ents === undefined) return this.startSnapshot(to, pr);
    if (ents.length === 0 && !sendIfEmpty) return false;
    this.send({ type: MessageType.Append, to, logIndex: prevIndex, logTerm: prevTerm, entries: ents, commit: this.log.committed });
    if (ents.length > 0) {
      if (pr.state === ProgressState.Replicate) {
        const last = ents[ents.length - 1]!.index;
        pr.next = last + 1;
        pr.inflights.add(last, ents.reduce((n, e) => n + entryBytes(e), 0));
      } else if (pr.state === ProgressState.Probe) pr.probeSent = true;
    } else if (pr.state === ProgressState.Probe) pr.probeSent = true;
    return true;
  }

  private startSnapshot(to: NodeId, pr: Progress): boolean {
    if (!pr.recentActive) return false;
    const snap = this.log.storage.snapshot();
    assert(snap.meta.index > 0, 'a follower needs compacted entries but storage has no snapshot');
    pr.becomeSnapshot(snap);
    this.sendSnapshotChunks(to, pr);
    return true;
  }

  private sendSnapshotChunks(to: NodeId, pr: Progress): void {
    const ss = pr.snapshotSend;
    if (!ss) return;
    const chunk = Math.max(1, this.cfg.snapshotChunkBytesMax);
    // Bytes in flight are bounded like Appends (inflightBytesMax), but always allow a
    // few chunks even when Appends go strictly one at a time.
    const windowBytes = Math.max(
      chunk * snapshotChunksInflightMin,
      this.cfg.inflightBytesMax > 0 ? this.cfg.inflightBytesMax : chunk * this.cfg.inflightMessagesMax,
    );
    const total = ss.snapshot.data.length;
    do {
      if (ss.sent > total || (ss.sent === total && total > 0)) break;
      const end = Math.min(total, ss.sent + chunk);
      this.send({
        type: MessageType.InstallSnapshot,
        to,
        snapshotMeta: ss.snapshot.meta,
        chunkOffset: ss.sent,
        chunkData: ss.snapshot.data.subarray(ss.sent, end),
        chunkLast: end === total,
      });
      ss.sent = end === total ? total + 1 : end; // total+1 marks "last chunk sent" (also for empty data)
    } while (ss.sent - ss.acked < windowBytes);
  }

  private handleSnapshotAck(m: Message, pr: Progress): void {
    const ss = pr.snapshotSend;
    if (pr.state !== ProgressState.Snapshot || !ss) return;
    const off = Math.min(m.chunkOffset ?? 0, ss.snapshot.data.length);
    if (m.reject) {
      // A gap: the follower has `off` bytes (0 if it lost the transfer, e.g. restarted).
      // Go back to there; a stale gap report (below what was acknowledged since) only
      // rewinds to the acknowledged offset.
      const at = off === 0 ? 0 : Math.max(ss.acked, off);
      // Chunks overtaken by others each report the same gap: go back once per gap.
      if (at === ss.rewoundAt) return;
      ss.rewoundAt = at;
      ss.acked = at;
      ss.sent = at;
      ss.idleTicks = 0;
      this.sendSnapshotChunks(m.from, pr);
      return;
    }
    if (off > ss.acked) {
      ss.acked = off;
      ss.idleTicks = 0;
      // The follower kept what it had from an earlier attempt: resume after it.
      if (off > ss.sent && off < ss.snapshot.data.length) ss.sent = off;
    }
    // Once the last chunk is in, the follower's AppendResponse moves us on.
    if (!m.chunkLast) this.sendSnapshotChunks(m.from, pr);
  }

  // ---- leader: proposals, commit, reads ------------------------------------

  private refuse(reason: ProposeRefusal): ProposeResult {
    return { ok: false, reason: this.role === Role.Leader || reason !== 'not-leader' ? reason : 'not-leader', leader: this.lead };
  }

  private proposeEntry(type: EntryType, data: Uint8Array): ProposeResult {
    if (this.role !== Role.Leader) return this.refuse('not-leader');
    if (this.leadTransferee !== 0) return this.refuse('transferring');
    if (!this.prs.has(this.id)) return this.refuse('not-leader');
    if (this.log.lastIndex() - this.log.committed >= this.cfg.proposalQueueMax) return this.refuse('queue-full');
    const index = this.log.lastIndex() + 1;
    this.appendEntries([{ term: this.term, index, type, data }]);
    // Appends go out when the runtime takes the next Ready, so the proposals made
    // in between travel together (one Append per follower instead of one each).
    this.appendsDue = true;
    return { ok: true, index, term: this.term };
  }

  private appendEntries(ents: Entry[]): void {
    this.log.append(ents);
    this.prs.get(this.id)?.maybeUpdate(this.log.lastIndex());
    this.maybeCommit();
  }

  private maybeCommit(): boolean {
    const matches = this.voters.map((id) => this.prs.get(id)?.match ?? 0).sort((a, b) => b - a);
    if (matches.length === 0) return false;
    const mci = matches[this.quorum() - 1]!;
    if (mci <= this.log.committed) return false;
    // Only an entry of the current term is committed by counting (Raft §5.4.2).
    if (this.log.term(mci) !== this.term && !this.knobs.commitPreviousTermByCount) return false;
    this.log.commitTo(mci);
    if (this.log.term(this.log.committed) === this.term) this.servePendingReads();
    return true;
  }

  private leaderRead(context: Uint8Array, from: NodeId): boolean {
    if (this.log.term(this.log.committed) !== this.term) {
      // Our commit index may lag until we commit in our term (the no-op does that).
      if (this.pendingReads.length >= readRequestsMax) return false;
      this.pendingReads.push({ context, from });
      return true;
    }
    const index = this.log.committed;
    if (this.voters.length === 1 || (this.cfg.leaderLease && this.cfg.checkQuorum)) {
      this.releaseRead(index, context, from);
      return true;
    }
    if (!this.readOnly.add(index, context, from, this.id)) return false;
    this.bcastHeartbeat(context);
    return true;
  }

  private servePendingReads(): void {
    const reads = this.pendingReads;
    this.pendingReads = [];
    for (const r of reads) this.leaderRead(r.context, r.from);
  }

  private releaseRead(index: number, context: Uint8Array, from: NodeId): void {
    if (from === 0 || from === this.id) this.readStates.push({ index, context });
    else this.send({ type: MessageType.ReadIndexResponse, to: from, logIndex: index, context });
  }

  // ---- membership ----------------------------------------------------------

  private confChangeValid(cc: ConfChange): boolean {
    const conf = { voters: this.voters, learners: this.learners };
    return confChangeValid(conf, cc, this.prs.get(cc.node)?.match, this.log.committed);
  }

  private applyEntryConf(e: Entry): void {
    if (e.type !== EntryType.ConfChange) return;
    const cc = decodeConfChange(e.data);
    const m: Members = { voters: this.voters, learners: this.learners };
    if (!applyConfChange(m, cc)) return;
    this.voters = m.voters;
    this.learners = m.learners;
    if (this.role !== Role.Leader) return;
    const next = this.log.lastIndex() + 1;
    switch (cc.type) {
      case ConfChangeType.AddLearner:
        this.prs.set(cc.node, this.newProgress(next, true));
        // Start catching the learner up now rather than at the next heartbeat.
        this.sendAppend(cc.node, true);
        break;
      case ConfChangeType.PromoteLearner: {
        const pr = this.prs.get(cc.node);
        if (pr) pr.isLearner = false;
        else this.prs.set(cc.node, this.newProgress(next, false));
        break;
      }
      case ConfChangeType.RemoveNode:
        this.prs.delete(cc.node);
        if (this.leadTransferee === cc.node) this.leadTransferee = 0;
        break;
    }
    if (!this.promotable()) {
      // Removed (or never a voter): hand over by stepping down; the rest elect a leader.
      this.becomeFollower(this.term, 0);
      return;
    }
    if (this.maybeCommit()) this.bcastAppend();
  }

  // ---- invariants ----------------------------------------------------------

  // Runs after every tick, step and advance (hundreds of times a second on an idle node): the
  // conditions are checked first and a message is only built for a broken one.
  private checkInvariants(): void {
    const log = this.log;
    if (log.committed > log.lastIndex()) fail(`commit ${log.committed} > last index ${log.lastIndex()}`);
    if (log.committed < this.highestCommitSeen) fail(`commit went back from ${this.highestCommitSeen} to ${log.committed}`);
    this.highestCommitSeen = log.committed;
    if (!(log.applied <= log.applying && log.applying <= log.committed)) fail(`applied ${log.applied} / applying ${log.applying} / commit ${log.committed} out of order`);
    if (log.firstIndex() - 1 > log.lastIndex()) fail('first index beyond last index + 1');
    if (this.role === Role.Leader) {
      if (this.lead !== this.id) fail('leader does not know itself as leader');
      if (this.vote !== this.id) fail('leader did not vote for itself');
      const self = this.prs.get(this.id);
      if (self && self.match !== log.lastIndex()) fail(`leader's own match ${self.match} != last index ${log.lastIndex()}`);
    }
    if (this.role === Role.Candidate && this.vote !== this.id) fail('candidate did not vote for itself');
  }
}

function hardStateEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}
