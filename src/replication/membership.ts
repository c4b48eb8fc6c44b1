// Membership changes of a running cluster: add a replica (learner, catch-up, then voter),
// remove one, replace a dead one, list the members. The engine (RaftNode) does the Raft
// part and allows one pending change; this class adds what an operator needs around it:
// any member accepts a request and forwards it to the leader over transport channel 21,
// requests are checked first so that mistakes get a plain answer (unknown node, already a
// member, removing the last voter), a new replica is promoted only once its *database*
// has caught up (not just its Raft log), and the progress of a change is visible to
// `recall join` while it waits.
import type { NodeId } from '../consensus/types.js';
import { MembershipError, NotLeaderError } from '../engine/errors.js';
import { Role, type RaftNode } from '../engine/node.js';
import { logger, type Logger } from '../util/log.js';
import { parseHostPort } from '../util/ports.js';

/** Transport channel of membership requests (follower -> leader, leader -> learner). */
export const CHANNEL_MEMBERSHIP = 21;

export interface MembershipOptions {
  node: RaftNode;
  /** This replica's own peer address, as the others reach it. */
  selfAddress: string;
  /** The local database's applied index (the replicator's applier); Raft's when absent. */
  appliedIndex?: () => number;
  /** This replica's full resync, if one runs (shown while it joins). */
  resync?: () => ResyncSummary | undefined;
  /** Longest a new replica may take to receive the database and catch up; default 30 min. */
  catchUpTimeoutMs?: number;
  /** Longest one ConfChange may take to commit; default 15 s. */
  changeTimeoutMs?: number;
  /** A learner's database counts as caught up within this many entries of the commit index. */
  catchUpSlackEntries?: number;
}

export interface MemberInfo {
  id: NodeId;
  role: 'voter' | 'learner';
  address?: string;
  leader: boolean;
  /** Leader's view: last log index known replicated on the member. */
  match?: number;
  connected?: boolean;
  /** A learner's database applied index, as it last reported it to the leader. */
  applied?: number;
}

/** What a joining replica reports of its full resync (src/recovery: ResyncStatus). */
export interface ResyncSummary {
  state: string;
  progress?: { phase: string; bytes: number; totalBytes?: number; bytesPerSec: number; etaSec?: number };
}

export interface ChangeProgress {
  op: 'add' | 'remove' | 'replace';
  id: NodeId;
  phase: 'adding-learner' | 'catching-up' | 'promoting' | 'removing';
  startedAt: string;
  match?: number;
  applied?: number;
  commit?: number;
  /** The learner's resync, while it receives the database. */
  resync?: ResyncSummary;
}

export interface MembershipView {
  /** The node that answered (the leader, unless none is known). */
  from: NodeId;
  leader: NodeId;
  term: number;
  commit: number;
  voters: NodeId[];
  learners: NodeId[];
  members: MemberInfo[];
  change?: ChangeProgress;
  /** True when no leader answered and this is one member's own (possibly stale) view. */
  local?: boolean;
}

export type MembershipErrorCode = 'bad-request' | 'no-leader' | 'not-leader' | 'unknown-node' | 'already-member' | 'last-voter' | 'busy' | 'not-caught-up' | 'no-snapshot' | 'failed';

const httpStatusOf: Record<MembershipErrorCode, number> = {
  'bad-request': 400,
  'unknown-node': 404,
  'already-member': 409,
  'last-voter': 409,
  busy: 409,
  'no-leader': 503,
  'not-leader': 503,
  'no-snapshot': 503,
  'not-caught-up': 504,
  failed: 500,
};

/** A refused or failed membership request; `status` is the HTTP status the admin API answers with. */
export class MembershipRequestError extends Error {
  readonly status: number;
  constructor(readonly code: MembershipErrorCode, message: string) {
    super(message);
    this.name = 'MembershipRequestError';
    this.status = httpStatusOf[code];
  }
}

export interface AddOptions {
  /** Promote to voter once caught up (default true); false leaves it a learner. */
  voter?: boolean;
  /** Override of catchUpTimeoutMs for this request. */
  timeoutMs?: number;
}

/**
 * `again`: a repeat of a forwarded request whose answer was lost (the link to the leader broke
 * after it was sent; a removed leader's links are dropped as soon as the others apply its
 * removal). It may have been done already, so the state it asks for counts as success.
 */
type Request =
  | { op: 'list' }
  | { op: 'add'; id: NodeId; address: string; voter: boolean; timeoutMs: number; again?: boolean }
  | { op: 'remove'; id: NodeId; again?: boolean }
  | { op: 'replace'; deadId: NodeId; id: NodeId; address: string; timeoutMs: number; again?: boolean }
  | { op: 'progress' };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Attempts at reaching the leader while one is being elected or moves. */
const forwardAttemptsMax = 10;
const progressPollMs = 250;

export class Membership {
  private readonly node: RaftNode;
  private readonly log: Logger;
  private readonly catchUpTimeoutMs: number;
  private readonly changeTimeoutMs: number;
  private readonly slack: number;
  private change: ChangeProgress | undefined;
  private readonly learnerApplied = new Map<NodeId, number>();

  constructor(private readonly o: MembershipOptions) {
    this.node = o.node;
    this.log = logger('membership', { nodeId: o.node.id });
    this.catchUpTimeoutMs = o.catchUpTimeoutMs ?? 30 * 60_000;
    this.changeTimeoutMs = o.changeTimeoutMs ?? 15_000;
    this.slack = o.catchUpSlackEntries ?? 1000;
    this.node.transport.onRequest(CHANNEL_MEMBERSHIP, (from, payload) => this.onRequest(from, payload));
  }

  list(): Promise<MembershipView> {
    return this.route({ op: 'list' }, 5000);
  }

  /** Add node `id` listening for peers at `address`; resolves with the membership after. */
  async add(id: NodeId, address: string, opts: AddOptions = {}): Promise<MembershipView> {
    checkId(id);
    checkAddress(address);
    const timeoutMs = opts.timeoutMs ?? this.catchUpTimeoutMs;
    return this.route({ op: 'add', id, address, voter: opts.voter ?? true, timeoutMs }, timeoutMs + this.changeTimeoutMs * 2);
  }

  async remove(id: NodeId): Promise<MembershipView> {
    checkId(id);
    return this.route({ op: 'remove', id }, this.changeTimeoutMs * 2);
  }

  /** Add `id` at `address` (as a voter, once caught up), then remove `deadId`. */
  async replace(deadId: NodeId, id: NodeId, address: string, opts: { timeoutMs?: number } = {}): Promise<MembershipView> {
    checkId(deadId);
    checkId(id);
    checkAddress(address);
    if (deadId === id) throw new MembershipRequestError('bad-request', 'replace: the new node id must differ from the removed one');
    const timeoutMs = opts.timeoutMs ?? this.catchUpTimeoutMs;
    return this.route({ op: 'replace', deadId, id, address, timeoutMs }, timeoutMs + this.changeTimeoutMs * 3);
  }

  /** This member's own view, without asking the leader (for /status). */
  localView(): MembershipView {
    const st = this.node.status();
    const isLeader = st.role === Role.Leader;
    const peers = new Map(st.peers.map((p) => [p.id, p]));
    const member = (id: NodeId, role: 'voter' | 'learner'): MemberInfo => {
      const p = peers.get(id);
      const self = id === st.id;
      return {
        id,
        role,
        address: self ? this.o.selfAddress : p?.address,
        leader: id === st.leader,
        ...(isLeader ? { match: self ? st.lastIndex : (p?.match ?? 0) } : {}),
        ...(!self && p ? { connected: p.connected } : {}),
        ...(role === 'learner' && this.learnerApplied.has(id) ? { applied: this.learnerApplied.get(id) } : {}),
      };
    };
    return {
      from: st.id,
      leader: st.leader,
      term: st.term,
      commit: st.commit,
      voters: [...st.voters].sort((a, b) => a - b),
      learners: [...st.learners].sort((a, b) => a - b),
      members: [...st.voters.map((id) => member(id, 'voter')), ...st.learners.map((id) => member(id, 'learner'))].sort((a, b) => a.id - b.id),
      ...(this.change && isLeader ? { change: { ...this.change } } : {}),
    };
  }

  // ---- routing: here when leader, else to the leader ----

  private async route(req: Request, timeoutMs: number): Promise<MembershipView> {
    for (let attempt = 1; ; attempt++) {
      const st = this.node.status();
      try {
        if (st.role === Role.Leader) return await this.execute(req);
        if (!st.leader) throw new MembershipRequestError('no-leader', 'no leader is known (an election may be under way, or this node has not joined yet); retry in a moment');
        return await this.forward(st.leader, req, timeoutMs);
      } catch (e) {
        if (e instanceof AnswerLostError) {
          if (req.op !== 'list' && req.op !== 'progress') req = { ...req, again: true };
          e = e.cause;
        }
        const retry = e instanceof MembershipRequestError && (e.code === 'no-leader' || e.code === 'not-leader');
        // A list needs no leader: this member's view is better than nothing.
        if (retry && req.op === 'list' && attempt >= 3) return { ...this.localView(), local: true };
        if (!retry || attempt >= forwardAttemptsMax) throw e;
        await sleep(300);
      }
    }
  }

  private async forward(leader: NodeId, req: Request, timeoutMs: number): Promise<MembershipView> {
    let reply: Uint8Array;
    // Not connected: the request is refused before it leaves, so it surely was not done.
    const sent = this.node.transport.isConnected(leader);
    try {
      reply = await this.node.transport.request(leader, CHANNEL_MEMBERSHIP, Buffer.from(JSON.stringify(req)), timeoutMs);
    } catch (e) {
      // Before the leader answered: a lost link is worth a retry, a timeout is not (the change may be under way).
      const msg = (e as Error).message;
      if ((e as Error).name === 'RequestTimeoutError') throw new MembershipRequestError('failed', `the leader (node ${leader}) did not answer within ${timeoutMs} ms: ${msg}; the change may still complete, check with recall members`);
      const err = new MembershipRequestError('not-leader', `cannot reach the leader (node ${leader}): ${msg}`);
      throw sent && (e as Error).name !== 'RemoteError' ? new AnswerLostError(err) : err;
    }
    return decodeReply(reply);
  }

  private async onRequest(from: NodeId, payload: Buffer): Promise<Uint8Array> {
    let req: Request;
    try {
      req = parseRequest(payload);
    } catch (e) {
      this.log.warn('malformed membership request from peer', { peer: from, error: (e as Error).message });
      return encodeReply(new MembershipRequestError('bad-request', `malformed membership request: ${(e as Error).message}`));
    }
    if (req.op === 'progress') return Buffer.from(JSON.stringify({ applied: this.appliedIndex(), raftApplied: this.node.status().applied, resync: this.resyncSummary() }));
    try {
      if (this.node.status().role !== Role.Leader) {
        const l = this.node.status().leader;
        throw new MembershipRequestError('not-leader', `node ${this.node.id} is no longer the leader${l ? ` (node ${l} is)` : ''}`);
      }
      // recall join polls the list every second: only changes are worth an info line.
      if (req.op === 'list') this.log.debug('membership list forwarded by a peer', { peer: from });
      else this.log.info('membership request forwarded by a peer', { peer: from, op: req.op, node: req.id });
      return encodeReply(await this.execute(req));
    } catch (e) {
      return encodeReply(e);
    }
  }

  // ---- on the leader ----

  private async execute(req: Request): Promise<MembershipView> {
    if (req.op === 'list' || req.op === 'progress') return this.localView();
    if (this.change) {
      const c = this.change;
      throw new MembershipRequestError('busy', `another membership change is in progress (${c.op} node ${c.id}, ${c.phase}, since ${c.startedAt}); one change at a time`);
    }
    if (req.again && this.alreadyDone(req)) {
      this.log.info('membership request repeated after a lost answer: already done', { op: req.op, node: req.id });
      return this.localView();
    }
    this.change = { op: req.op, id: req.id, phase: req.op === 'remove' ? 'removing' : 'adding-learner', startedAt: new Date().toISOString() };
    try {
      if (req.op === 'add') await this.doAdd(req.id, req.address, req.voter, req.timeoutMs);
      else if (req.op === 'remove') await this.doRemove(req.id);
      else {
        this.validateRemove(req.deadId);
        // Repeated after a lost answer, the new node may be a voter already.
        if (!(req.again && this.node.status().voters.includes(req.id))) await this.doAdd(req.id, req.address, true, req.timeoutMs);
        this.change = { ...this.change, phase: 'removing' };
        await this.doRemove(req.deadId);
      }
    } catch (e) {
      throw translate(e);
    } finally {
      this.change = undefined;
    }
    return this.localView();
  }

  private async doAdd(id: NodeId, address: string, voter: boolean, timeoutMs: number): Promise<void> {
    const st = this.node.status();
    if (st.voters.includes(id)) throw new MembershipRequestError('already-member', `node ${id} is already a voter (voters ${st.voters.join(',')})`);
    const end = performance.now() + timeoutMs;
    // The learner's database must reach at least this index: everything committed when it was
    // added (which is past the snapshot it starts from), not just "within slack of the commit".
    let floor = st.commit;
    if (st.learners.includes(id)) {
      // A learner left by an earlier add that timed out or was asked to stay a learner: continue.
      this.log.info('node is already a learner; continuing with its promotion', { node: id });
    } else {
      this.log.info('adding learner', { node: id, address, term: st.term, commit: st.commit });
      floor = (await this.node.addLearner(id, address, { timeoutMs: this.changeTimeoutMs })).index;
    }
    if (!voter) return;
    this.change = { ...this.change!, phase: 'catching-up' };
    await this.waitDatabase(id, floor, end, timeoutMs);
    this.change = { ...this.change!, phase: 'promoting' };
    this.log.info('promoting learner', { node: id });
    await this.node.promote(id, { timeoutMs: Math.max(this.changeTimeoutMs, end - performance.now()) });
    this.learnerApplied.delete(id);
    this.log.info('node added as voter', { node: id, voters: this.node.status().voters.join(',') });
  }

  /**
   * Raft's match index says the learner holds the log; its database may still be loading the
   * snapshot (a full resync). A voter that cannot apply yet counts against the quorum's
   * headroom, so wait until the learner reports its database at `floor` or later and within
   * `slack` of the commit (under write load it may never be exactly at the commit).
   */
  private async waitDatabase(id: NodeId, floor: number, end: number, timeoutMs: number): Promise<void> {
    let unreachableSince = 0;
    for (;;) {
      const st = this.node.status();
      if (st.role !== Role.Leader) throw new NotLeaderError(st.leader, st.leaderAddress, ' (leadership moved while the learner was catching up; ask again)');
      if (!st.learners.includes(id)) throw new MembershipRequestError('failed', `node ${id} is no longer a learner (removed meanwhile?)`);
      const match = st.peers.find((p) => p.id === id)?.match ?? 0;
      let applied: number | undefined;
      let resync: ResyncSummary | undefined;
      try {
        const r = JSON.parse(Buffer.from(await this.node.transport.request(id, CHANNEL_MEMBERSHIP, Buffer.from('{"op":"progress"}'), 2000)).toString('utf8')) as { applied?: unknown; resync?: unknown };
        if (typeof r.applied === 'number') applied = r.applied;
        resync = parseResync(r.resync);
        unreachableSince = 0;
      } catch {
        unreachableSince ||= performance.now();
      }
      if (applied !== undefined) this.learnerApplied.set(id, applied);
      const { resync: _old, ...rest } = this.change!;
      this.change = { ...rest, match, commit: st.commit, ...(applied !== undefined ? { applied } : {}), ...(resync ? { resync } : {}) };
      if (applied !== undefined && applied >= floor && applied + this.slack >= st.commit && match + this.slack >= st.commit) return;
      if (performance.now() > end) {
        const where = applied === undefined ? `its database did not answer${unreachableSince ? ` for ${Math.round((performance.now() - unreachableSince) / 1000)} s` : ''}` : `its database at ${applied} (needs ${floor} or later)`;
        throw new MembershipRequestError('not-caught-up', `learner ${id} not caught up after ${Math.round(timeoutMs / 1000)} s: log at ${match}, ${where}, commit ${st.commit}; it stays a learner (remove it, or run the same join again to continue)`);
      }
      await sleep(progressPollMs);
    }
  }

  /** Whether the membership already is what `req` asks for. */
  private alreadyDone(req: Exclude<Request, { op: 'list' } | { op: 'progress' }>): boolean {
    const st = this.node.status();
    const member = (id: NodeId) => st.voters.includes(id) || st.learners.includes(id);
    if (req.op === 'remove') return !member(req.id);
    const added = req.op === 'add' && !req.voter ? member(req.id) : st.voters.includes(req.id);
    return added && (req.op !== 'replace' || !member(req.deadId));
  }

  private validateRemove(id: NodeId): void {
    const st = this.node.status();
    const isVoter = st.voters.includes(id);
    if (!isVoter && !st.learners.includes(id)) {
      throw new MembershipRequestError('unknown-node', `node ${id} is not a member (voters ${st.voters.join(',') || 'none'}; learners ${st.learners.join(',') || 'none'})`);
    }
    if (isVoter && st.voters.length === 1) throw new MembershipRequestError('last-voter', `node ${id} is the last voter; removing it would leave no one to decide anything`);
  }

  private async doRemove(id: NodeId): Promise<void> {
    this.validateRemove(id);
    this.log.info('removing node', { node: id, self: id === this.node.id });
    // Removing the leader itself: it steps down once the change is applied and the others elect a new one.
    await this.node.removeNode(id, { timeoutMs: this.changeTimeoutMs });
    this.learnerApplied.delete(id);
    this.log.info('node removed', { node: id, voters: this.node.status().voters.join(',') });
  }

  private resyncSummary(): ResyncSummary | undefined {
    try {
      return parseResync(this.o.resync?.());
    } catch {
      return undefined;
    }
  }

  private appliedIndex(): number {
    return this.o.appliedIndex?.() ?? this.node.status().applied;
  }
}

/** A forwarded request whose answer was lost after it was sent. */
class AnswerLostError extends Error {
  constructor(override readonly cause: MembershipRequestError) {
    super(cause.message);
    this.name = 'AnswerLostError';
  }
}

/** A resync summary from a peer (or our own status), reduced to what the progress shows. */
function parseResync(v: unknown): ResyncSummary | undefined {
  if (!v || typeof v !== 'object') return undefined;
  const r = v as { state?: unknown; progress?: Record<string, unknown> };
  if (typeof r.state !== 'string' || r.state === 'idle') return undefined;
  const p = r.progress;
  const n = (x: unknown) => (typeof x === 'number' && Number.isFinite(x) ? x : undefined);
  return {
    state: r.state,
    ...(p && typeof p === 'object' && typeof p.phase === 'string'
      ? { progress: { phase: p.phase, bytes: n(p.bytes) ?? 0, bytesPerSec: n(p.bytesPerSec) ?? 0, ...(n(p.totalBytes) !== undefined ? { totalBytes: n(p.totalBytes) } : {}), ...(n(p.etaSec) !== undefined ? { etaSec: n(p.etaSec) } : {}) } }
      : {}),
  };
}

function checkId(id: unknown): asserts id is NodeId {
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id <= 0) throw new MembershipRequestError('bad-request', `node id must be a positive integer, not ${JSON.stringify(id)}`);
}

function checkAddress(address: unknown): asserts address is string {
  if (typeof address !== 'string' || !parseHostPort(address) || parseHostPort(address)!.port === 0) {
    throw new MembershipRequestError('bad-request', `peer address must be host:port, not ${JSON.stringify(address)}`);
  }
}

/** Engine errors -> errors with a code and an HTTP status. */
export function translate(e: unknown): MembershipRequestError {
  if (e instanceof MembershipRequestError) return e;
  if (e instanceof NotLeaderError) return new MembershipRequestError(e.leader ? 'not-leader' : 'no-leader', e.message);
  if (e instanceof MembershipError) {
    const code: MembershipErrorCode = e.reason === 'pending' ? 'busy' : e.reason === 'invalid' ? 'bad-request' : e.reason;
    return new MembershipRequestError(code, e.message);
  }
  return new MembershipRequestError('failed', (e as Error)?.message ?? String(e));
}

function parseRequest(payload: Buffer): Request {
  const v = JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
  if (!v || typeof v !== 'object') throw new Error('not an object');
  const timeoutMs = typeof v.timeoutMs === 'number' && v.timeoutMs > 0 ? v.timeoutMs : 30 * 60_000;
  switch (v.op) {
    case 'list':
    case 'progress':
      return { op: v.op };
    case 'add':
      checkId(v.id);
      checkAddress(v.address);
      return { op: 'add', id: v.id, address: v.address, voter: v.voter !== false, timeoutMs, again: v.again === true };
    case 'remove':
      checkId(v.id);
      return { op: 'remove', id: v.id, again: v.again === true };
    case 'replace':
      checkId(v.id);
      checkId(v.deadId);
      checkAddress(v.address);
      return { op: 'replace', id: v.id, deadId: v.deadId, address: v.address, timeoutMs, again: v.again === true };
    default:
      throw new Error(`unknown op ${JSON.stringify(v.op)}`);
  }
}

function encodeReply(r: MembershipView | unknown): Buffer {
  if (r instanceof Error || !(r && typeof r === 'object' && 'members' in r)) {
    const e = translate(r);
    return Buffer.from(JSON.stringify({ error: { code: e.code, message: e.message } }));
  }
  return Buffer.from(JSON.stringify({ ok: r }));
}

function decodeReply(b: Uint8Array): MembershipView {
  let v: { ok?: MembershipView; error?: { code?: string; message?: string } };
  try {
    v = JSON.parse(Buffer.from(b).toString('utf8')) as typeof v;
  } catch {
    throw new MembershipRequestError('failed', 'malformed answer from the leader');
  }
  if (v.error) {
    const code = (typeof v.error.code === 'string' && v.error.code in httpStatusOf ? v.error.code : 'failed') as MembershipErrorCode;
    throw new MembershipRequestError(code, String(v.error.message ?? 'membership change failed on the leader'));
  }
  if (!v.ok || !Array.isArray(v.ok.members)) throw new MembershipRequestError('failed', 'malformed answer from the leader');
  return v.ok;
}
