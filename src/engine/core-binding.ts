// The one place where the runtime meets the concrete consensus core and codec
// (src/consensus). The runtime depends only on the narrow ConsensusCore view below.
import type { ConfChange, ConfState, CoreConfig, Message, NodeId, Ready, Role, Storage } from '../consensus/types.js';
import { RaftCore } from '../consensus/raft.js';
import { encodeMessage as encode, decodeMessage as decode, decodeConfChange as decodeCc } from '../consensus/codec.js';

export type ProposeResult = { ok: true; index: number; term: number } | { ok: false; reason: string; leader: NodeId };

export interface CoreStatus {
  readonly role: Role;
  readonly term: number;
  readonly leader: NodeId;
  readonly commit: number;
  /** Leader only: replication progress per peer. */
  readonly progress?: ReadonlyMap<NodeId, { readonly match: number }>;
  readonly conf?: ConfState;
}

export interface ConsensusCore {
  tick(): void;
  step(m: Message): void;
  propose(data: Uint8Array): ProposeResult;
  proposeConfChange(cc: ConfChange): ProposeResult;
  readIndex(ctx: Uint8Array): { ok: true } | { ok: false; reason: string; leader: NodeId };
  transferLeadership(to: NodeId): void;
  hasReady(): boolean;
  ready(): Ready;
  advance(rd: Ready): void;
  status(): CoreStatus;
  /** status() without the progress and membership views (for hot paths). */
  basicStatus(): { readonly role: Role; readonly term: number; readonly leader: NodeId; readonly commit: number };
  reportUnreachable(peer: NodeId): void;
  reportSnapshot(peer: NodeId, ok: boolean): void;
}

export function createCore(config: CoreConfig & { readonly applied?: number }, storage: Storage): ConsensusCore {
  return new RaftCore(config, storage);
}

export function encodeMessage(m: Message): Uint8Array {
  return encode(m);
}

export function decodeMessage(b: Uint8Array): Message {
  return decode(b);
}

export function decodeConfChange(b: Uint8Array): ConfChange {
  return decodeCc(b);
}

export { applyConfChange } from '../consensus/membership.js';
