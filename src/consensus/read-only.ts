// Pending linearizable reads on the leader (etcd/raft read_only.go, ReadOnlySafe):
// a read at the commit index is released once a majority has answered a heartbeat
// that carried its context, which proves this node was still the leader.
import type { NodeId } from './types.js';

export interface ReadRequest {
  readonly index: number;
  readonly context: Uint8Array;
  /** Who asked: this node (0 = local) or a follower that forwarded the read. */
  readonly from: NodeId;
  readonly acks: Set<NodeId>;
}

export function contextKey(c: Uint8Array): string {
  let s = '';
  for (const b of c) s += b.toString(16).padStart(2, '0');
  return s;
}

export class ReadOnly {
  private queue: { key: string; req: ReadRequest }[] = [];

  constructor(private readonly requestsMax: number) {}

  get size(): number {
    return this.queue.length;
  }

  add(index: number, context: Uint8Array, from: NodeId, self: NodeId): boolean {
    const key = contextKey(context);
    if (this.queue.some((q) => q.key === key)) return true;
    if (this.queue.length >= this.requestsMax) return false;
    this.queue.push({ key, req: { index, context, from, acks: new Set([self]) } });
    return true;
  }

  /** Records an ack; returns the requests released (in order) once `quorum` holds for one of them. */
  ack(context: Uint8Array, from: NodeId, hasQuorum: (acks: Set<NodeId>) => boolean): ReadRequest[] {
    const key = contextKey(context);
    const at = this.queue.findIndex((q) => q.key === key);
    if (at < 0) return [];
    const req = this.queue[at]!.req;
    req.acks.add(from);
    if (!hasQuorum(req.acks)) return [];
    // Everything queued before it was also confirmed by this round.
    const done = this.queue.splice(0, at + 1).map((q) => q.req);
    return done;
  }

  reset(): void {
    this.queue = [];
  }
}
