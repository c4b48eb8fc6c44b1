// Membership: one voter at a time, learners first (Raft thesis §4.1 single-server
// changes, with etcd's learners). Pure functions over the voter/learner lists.
import { ConfChangeType, type ConfChange, type ConfState, type NodeId } from './types.js';

export interface Members {
  voters: NodeId[];
  learners: NodeId[];
}

/**
 * Whether a leader may propose cc now. learnerMatch is the learner's replicated index;
 * a learner is promoted only once it holds everything committed, so the new quorum
 * does not stall waiting for it.
 */
export function confChangeValid(m: ConfState, cc: ConfChange, learnerMatch: number | undefined, committed: number): boolean {
  const isVoter = m.voters.includes(cc.node);
  const isLearner = m.learners.includes(cc.node);
  switch (cc.type) {
    case ConfChangeType.AddLearner:
      return cc.node > 0 && !isVoter && !isLearner;
    case ConfChangeType.PromoteLearner:
      return isLearner && learnerMatch !== undefined && learnerMatch >= committed;
    case ConfChangeType.RemoveNode:
      return (isLearner || isVoter) && !(isVoter && m.voters.length === 1);
    default:
      return false;
  }
}

/** Applies cc in place; false if it changes nothing (changes are idempotent, for replays after restart). */
export function applyConfChange(m: Members, cc: ConfChange): boolean {
  switch (cc.type) {
    case ConfChangeType.AddLearner:
      if (m.voters.includes(cc.node) || m.learners.includes(cc.node)) return false;
      m.learners.push(cc.node);
      return true;
    case ConfChangeType.PromoteLearner:
      if (!m.learners.includes(cc.node)) return false;
      m.learners = m.learners.filter((n) => n !== cc.node);
      m.voters.push(cc.node);
      m.voters.sort((a, b) => a - b);
      return true;
    case ConfChangeType.RemoveNode: {
      const had = m.voters.includes(cc.node) || m.learners.includes(cc.node);
      m.voters = m.voters.filter((n) => n !== cc.node);
      m.learners = m.learners.filter((n) => n !== cc.node);
      return had;
    }
    default:
      return false;
  }
}

/** Votes needed among `voters`. */
export function quorumOf(voters: readonly NodeId[]): number {
  return Math.floor(voters.length / 2) + 1;
}
