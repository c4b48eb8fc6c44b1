// What the Replicator (Raft node, forwarding to the leader, read index, compaction, resync) needs
// from a database dialect: an applier that applies committed entries to the local database, a
// write lane that executes writes on the leader, and the codecs of the lane's requests and results
// as they travel over the peer link. MySQL's is mysql-dialect.ts; PostgreSQL's lives in pg/.
import type { Entry } from '../consensus/types.js';
import type { Logger } from '../util/log.js';
import type { SqlError } from '../backend/mysql/client.js';
import type { ApplierPause } from '../recovery/types.js';
import type { ResyncApplier } from '../recovery/manager.js';

export interface ApplierBaseDeps {
  nodeId: number;
  log: Logger;
  /** committed entries [lo, hi) from the durable log */
  entries(lo: number, hi: number): Entry[];
  commitIndex(): number;
  /** The first index still in the log: below it entries were compacted away. */
  firstIndex(): number;
  onDiverged?(reason: string): void;
  /** The database lacks entries the log no longer has: only a full resync helps. */
  onGap?(applied: number, firstIndex: number): void;
}

export interface ApplierStatus {
  applied: number;
  diverged: boolean;
  divergedReason?: string;
  lastError?: string;
  paused?: boolean;
}

/** The applier as the Replicator and the resync see it. */
export interface ReplicaApplier extends ApplierPause, ResyncApplier {
  /** highest index whose effects are in the local database */
  readonly applied: number;
  readonly diverged: { index: number; reason: string } | null;
  readonly gap: { applied: number; firstIndex: number } | null;
  /** Create Recall's bookkeeping schema if needed and read the applied index. */
  open(): Promise<void>;
  /** The commit index advanced. */
  notify(): void;
  waitApplied(index: number, timeoutMs: number): Promise<boolean>;
  status(): ApplierStatus;
  close(): void;
}

export interface LaneBaseDeps {
  nodeId: number;
  log: Logger;
  laneTimeoutMs: number;
  propose(data: Buffer): Promise<{ index: number; term: number }>;
  /** resolves when this node may execute writes (leader, caught up); throws SqlError otherwise */
  ready(): Promise<void>;
  /** the local database connection failed (not an SQL error): the leader should step aside */
  databaseFailed(why: string): void;
}

/** The write lane as the Replicator sees it. */
export interface ReplicaLane<Req, Res> {
  submit(req: Req): Promise<Res>;
  /** The client session ended: roll back its lane transaction, if any. */
  endSession(session: string): void;
  /** Leadership was lost: roll back whatever runs, failing it with `err`. */
  abort(err: Error): void;
  /** The session holding the lane in a transaction, if any. */
  holderSession(): string | null;
  close(): Promise<void>;
}

/** Seals and opens credentials that travel to the leader (AES-GCM under the cluster secret). */
export interface CredentialSeal {
  seal(plain: Buffer): string;
  open(sealed: string): Buffer;
}

export interface Dialect<Req, Res, A extends ReplicaApplier = ReplicaApplier> {
  readonly name: 'mysql' | 'postgres';
  createApplier(deps: ApplierBaseDeps): A;
  createLane(deps: LaneBaseDeps, applier: A): ReplicaLane<Req, Res>;
  /** The client session a request belongs to (`<nodeId>:<id>`), for orphan detection. */
  sessionOf(req: Req): string;
  encodeRequest(req: Req, seal: CredentialSeal): Buffer;
  /** Throws on a malformed request (a peer speaking nonsense). */
  decodeRequest(payload: Buffer, seal: CredentialSeal): Req;
  encodeResult(r: Res | SqlError): Buffer;
  /** Throws SqlError for an error result. */
  decodeResult(payload: Buffer): Res;
  /** Whether a request whose forwarding failed may have run on the leader (outcome unknown). */
  mayHaveRun(req: Req): boolean;
}
