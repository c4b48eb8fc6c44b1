// The contract between the pure consensus core (src/consensus), its runtime
// (src/engine: durable log + transport + timers) and the simulator (test/sim).
// Modelled on etcd/raft's RawNode: the core is driven by step()/tick()/propose(),
// and hands back a Ready batch; the runtime persists, sends, applies, then advance().
// Nothing here may import node:* or touch the clock, disk, network or Math.random.

/** Replica identifier, stable for the life of the cluster (a small positive integer). */
export type NodeId = number;

export const enum EntryType {
  /** Opaque user data (a replicated SQL envelope, for Recall). */
  Normal = 0,
  /** Appended by a new leader at the start of its term; commits earlier-term entries. */
  Noop = 1,
  /** Membership change; data is an encoded ConfChange. */
  ConfChange = 2,
}

export interface Entry {
  readonly term: number;
  readonly index: number;
  readonly type: EntryType;
  readonly data: Uint8Array;
}

/** What must be durable before any message that depends on it is sent. */
export interface HardState {
  readonly term: number;
  /** 0 = no vote in this term. */
  readonly vote: NodeId;
  readonly commit: number;
}

export interface ConfState {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

export const enum ConfChangeType {
  AddLearner = 0,
  PromoteLearner = 1,
  RemoveNode = 2,
}

export interface ConfChange {
  readonly type: ConfChangeType;
  readonly node: NodeId;
}

export interface SnapshotMeta {
  readonly index: number;
  readonly term: number;
  readonly conf: ConfState;
}

/** A snapshot: user state at meta.index. data is opaque to the core. */
export interface Snapshot {
  readonly meta: SnapshotMeta;
  readonly data: Uint8Array;
}

export const enum MessageType {
  PreVote = 1,
  PreVoteResponse = 2,
  Vote = 3,
  VoteResponse = 4,
  Append = 5,
  AppendResponse = 6,
  Heartbeat = 7,
  HeartbeatResponse = 8,
  InstallSnapshot = 9,
  InstallSnapshotResponse = 10,
  TimeoutNow = 11,
  ReadIndex = 12,
  ReadIndexResponse = 13,
  /** A follower forwarding a proposal it received to the leader. */
  Propose = 14,
}

/**
 * One message between cores. Not every field is meaningful for every type; the
 * codec (src/consensus/codec.ts) encodes exactly the fields of each type.
 */
export interface Message {
  readonly type: MessageType;
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
  /** Append: index/term of the entry preceding `entries`. Vote: last log index/term. */
  readonly logIndex?: number;
  readonly logTerm?: number;
  readonly entries?: readonly Entry[];
  readonly commit?: number;
  /** Responses: rejected or granted. */
  readonly reject?: boolean;
  /** AppendResponse on reject: a hint for fast backtracking (follower's last index / conflicting term). */
  readonly rejectHint?: number;
  readonly hintTerm?: number;
  /** InstallSnapshot: chunked snapshot transfer. */
  readonly snapshotMeta?: SnapshotMeta;
  readonly chunkOffset?: number;
  readonly chunkData?: Uint8Array;
  readonly chunkLast?: boolean;
  /** ReadIndex request id (opaque to the core, echoed back). */
  readonly context?: Uint8Array;
  /** Vote/PreVote caused by a leadership transfer (bypasses leader stickiness). */
  readonly transfer?: boolean;
}

/** A linearizable read can be served once the local applied index reaches `index`. */
export interface ReadState {
  readonly index: number;
  readonly context: Uint8Array;
}

export const enum Role {
  Follower = 'follower',
  PreCandidate = 'pre-candidate',
  Candidate = 'candidate',
  Leader = 'leader',
}

export interface SoftState {
  readonly role: Role;
  readonly leader: NodeId; // 0 = unknown
}

/**
 * One batch of work for the runtime. Order of handling:
 *  1. persist snapshot (if any), then entries (truncating a conflicting suffix), then hardState, fsync;
 *  2. only then send messages;
 *  3. apply committedEntries in order (and install a received snapshot before them);
 *  4. call advance(ready).
 */
export interface Ready {
  readonly softState?: SoftState;
  readonly hardState?: HardState;
  /** Entries to append to stable storage (may overwrite a conflicting suffix from entries[0].index). */
  readonly entries: readonly Entry[];
  /** A snapshot received from the leader, to persist and hand to the state machine. */
  readonly snapshot?: Snapshot;
  readonly messages: readonly Message[];
  readonly committedEntries: readonly Entry[];
  readonly readStates: readonly ReadState[];
}

/**
 * The read-only view of stable storage that the core needs (implemented by src/log
 * in production and by an in-memory log in the simulator).
 */
export interface Storage {
  initialState(): { hardState: HardState; conf: ConfState };
  /** Entries in [lo, hi), at most maxBytes of data (always at least one entry if any exist). */
  entries(lo: number, hi: number, maxBytes: number): Entry[];
  /** Term of entry i; throws Compacted if i < firstIndex()-1, Unavailable if i > lastIndex(). */
  term(i: number): number;
  firstIndex(): number;
  lastIndex(): number;
  snapshot(): Snapshot;
}

export class CompactedError extends Error {
  constructor(index: number) {
    super(`log entry ${index} is compacted`);
    this.name = 'CompactedError';
  }
}
export class UnavailableError extends Error {
  constructor(index: number) {
    super(`log entry ${index} is not available`);
    this.name = 'UnavailableError';
  }
}

/** Core configuration; every limit is named with its qualifier last. */
export interface CoreConfig {
  readonly id: NodeId;
  readonly electionTimeoutTicks: number; // randomised in [electionTimeoutTicks, 2*electionTimeoutTicks)
  readonly heartbeatIntervalTicks: number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  readonly leaderLease: boolean; // serve ReadIndex from a lease; off by default
  readonly appendBytesMax: number; // data bytes per Append message
  readonly inflightMessagesMax: number; // Append messages in flight per follower
  readonly inflightBytesMax: number; // bytes in flight per follower
  readonly snapshotChunkBytesMax: number;
  readonly proposalQueueMax: number; // uncommitted entries a leader accepts before refusing proposals
  /** Seeded randomness (the runtime passes a seeded PRNG; the simulator its own). */
  readonly random: () => number;
  /**
   * Optional (added with the core): the index the state machine has applied durably. Entries up to
   * it are not handed out again after a restart. Default: the snapshot index (storage.firstIndex()-1).
   */
  readonly applied?: number;
}
