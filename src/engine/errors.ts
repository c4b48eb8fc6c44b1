// Typed errors of RaftNode.propose()/readIndex(). Every one except NotLeaderError
// means "outcome unknown": the entry may still commit, so a caller must not report
// success, and may retry only if its entries are idempotent or deduplicated.
import type { NodeId } from '../consensus/types.js';

export class NotLeaderError extends Error {
  /** leader 0 = unknown (an election is under way). */
  constructor(readonly leader: NodeId, readonly leaderAddress: string | undefined, detail = '') {
    super(leader ? `not the leader; the leader is node ${leader} at ${leaderAddress ?? '?'}${detail}` : `not the leader and no leader is known yet${detail}`);
    this.name = 'NotLeaderError';
  }
}

export class TimeoutError extends Error {
  constructor(what: string, readonly timeoutMs: number) {
    super(`${what} timed out after ${timeoutMs} ms (outcome unknown)`);
    this.name = 'TimeoutError';
  }
}

export class LostLeadershipError extends Error {
  constructor(readonly index: number, detail: string) {
    super(`entry ${index}: ${detail} (outcome unknown, retry)`);
    this.name = 'LostLeadershipError';
  }
}

export class ProposalDroppedError extends Error {
  constructor(reason: string) {
    super(`proposal refused: ${reason}`);
    this.name = 'ProposalDroppedError';
  }
}

export class NodeClosedError extends Error {
  constructor() {
    super('raft node is closed');
    this.name = 'NodeClosedError';
  }
}

/** A membership change refused or abandoned: not leader, another change pending, invalid, or a learner that did not catch up. */
export class MembershipError extends Error {
  constructor(readonly reason: 'pending' | 'invalid' | 'not-caught-up' | 'no-snapshot', detail: string) {
    super(`membership change refused (${reason}): ${detail}`);
    this.name = 'MembershipError';
  }
}
