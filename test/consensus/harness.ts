// A small deterministic cluster for the scenario scripts (etcd datadriven style):
// real RaftCores over MemStorage, an explicit message queue and partitions, and a
// transcript of what happened. Everything is deterministic (fixed seeds, FIFO queue).
import { ConfChangeType, EntryType, MessageType, type Entry, type Message, type Ready } from '../../src/consensus/types.js';
import { RaftCore } from '../../src/consensus/raft.js';
import { decodeConfChange } from '../../src/consensus/codec.js';
import { MemStorage } from '../sim/mem-storage.js';
import { Prng } from '../sim/prng.js';

const typeNames: Record<number, string> = {
  [MessageType.PreVote]: 'PreVote',
  [MessageType.PreVoteResponse]: 'PreVoteResp',
  [MessageType.Vote]: 'Vote',
  [MessageType.VoteResponse]: 'VoteResp',
  [MessageType.Append]: 'App',
  [MessageType.AppendResponse]: 'AppResp',
  [MessageType.Heartbeat]: 'Heartbeat',
  [MessageType.HeartbeatResponse]: 'HeartbeatResp',
  [MessageType.InstallSnapshot]: 'Snap',
  [MessageType.InstallSnapshotResponse]: 'SnapResp',
  [MessageType.TimeoutNow]: 'TimeoutNow',
  [MessageType.ReadIndex]: 'ReadIndex',
  [MessageType.ReadIndexResponse]: 'ReadIndexResp',
};

const dec = new TextDecoder();

export function fmtEntry(e: Entry): string {
  if (e.type === EntryType.Noop) return `${e.index}@${e.term} noop`;
  if (e.type === EntryType.ConfChange) {
    const cc = decodeConfChange(e.data);
    const t = ['add-learner', 'promote', 'remove'][cc.type];
    return `${e.index}@${e.term} ${t} ${cc.node}`;
  }
  return `${e.index}@${e.term} ${JSON.stringify(dec.decode(e.data))}`;
}

export function fmtMessage(m: Message): string {
  const parts = [`${m.from}->${m.to} ${typeNames[m.type] ?? m.type} term=${m.term}`];
  if (m.logIndex !== undefined || m.logTerm !== undefined) parts.push(m.logTerm !== undefined ? `log=${m.logIndex}@${m.logTerm}` : `index=${m.logIndex}`);
  if (m.entries && m.entries.length > 0) parts.push(`entries=[${m.entries.map(fmtEntry).join(', ')}]`);
  if (m.commit !== undefined) parts.push(`commit=${m.commit}`);
  if (m.reject) parts.push('reject');
  if (m.reject && m.rejectHint !== undefined) parts.push(`hint=${m.rejectHint}@${m.hintTerm}`);
  if (m.snapshotMeta) parts.push(`snap=${m.snapshotMeta.index}@${m.snapshotMeta.term}`);
  if (m.chunkOffset !== undefined) parts.push(`offset=${m.chunkOffset}`);
  if (m.chunkData) parts.push(`bytes=${m.chunkData.length}`);
  if (m.chunkLast) parts.push('last');
  if (m.context && m.context.length > 0) parts.push(`ctx=${dec.decode(m.context)}`);
  if (m.transfer) parts.push('transfer');
  return parts.join(' ');
}

interface Node {
  storage: MemStorage;
  core: RaftCore | undefined;
  applied: Entry[];
}

export class Harness {
  private nodes = new Map<number, Node>();
  private queue: Message[] = [];
  private blocked = new Set<string>();
  private captured: Message[] = [];
  private captureType: number | undefined;
  private preVote = true;
  private checkQuorum = true;
  private out: string[] = [];
  /** During `tick`, heartbeats are counted rather than listed (they would drown the transcript). */
  private quietHeartbeats = false;
  private heartbeats = 0;

  private say(s: string): void {
    this.out.push(s);
  }

  private core(id: number): RaftCore {
    const n = this.nodes.get(id);
    if (!n?.core) throw new Error(`node ${id} is not running`);
    return n.core;
  }

  /** The leader of the highest term (a deposed leader may not know it yet). */
  private leaderId(): number {
    let best = 0;
    let term = -1;
    for (const [id, n] of this.nodes) {
      const s = n.core?.basicStatus();
      if (s?.role === 'leader' && s.term > term) [best, term] = [id, s.term];
    }
    if (best === 0) throw new Error('no leader');
    return best;
  }

  private start(id: number): void {
    const n = this.nodes.get(id)!;
    const rng = new Prng(id);
    n.core = new RaftCore(
      {
        id,
        electionTimeoutTicks: 10,
        heartbeatIntervalTicks: 1,
        preVote: this.preVote,
        checkQuorum: this.checkQuorum,
        leaderLease: false,
        appendBytesMax: 1 << 20,
        inflightMessagesMax: 64,
        inflightBytesMax: 1 << 24,
        snapshotChunkBytesMax: 32,
        proposalQueueMax: 1000,
        random: () => rng.next(),
      },
      n.storage,
    );
  }

  /** Persist, send (queue), apply, advance: one Ready of one node. Returns it. */
  private handleReady(id: number, verbose: boolean): Ready | undefined {
    const n = this.nodes.get(id)!;
    if (!n.core || !n.core.hasReady()) return undefined;
    const before = n.core.basicStatus();
    const rd = n.core.ready();
    if (rd.snapshot) n.storage.applySnapshot(rd.snapshot);
    if (rd.entries.length > 0) n.storage.append(rd.entries);
    if (rd.hardState) n.storage.setHardState(rd.hardState);
    if (verbose) {
      if (rd.softState) this.say(`${id}: ${rd.softState.role} leader=${rd.softState.leader}`);
      if (rd.hardState) this.say(`${id}: hardState term=${rd.hardState.term} vote=${rd.hardState.vote} commit=${rd.hardState.commit}`);
      if (rd.snapshot) this.say(`${id}: snapshot ${rd.snapshot.meta.index}@${rd.snapshot.meta.term} voters=${rd.snapshot.meta.conf.voters.join(',')}`);
      if (rd.entries.length > 0) this.say(`${id}: entries ${rd.entries.map(fmtEntry).join(', ')}`);
      if (rd.committedEntries.length > 0) this.say(`${id}: committed ${rd.committedEntries.map(fmtEntry).join(', ')}`);
      for (const m of rd.messages) this.say(`${id}: send ${fmtMessage(m)}`);
    } else if (rd.softState && rd.softState.role !== before.role) {
      // role changes are reported by the caller
    }
    for (const m of rd.messages) this.queue.push(m);
    n.applied.push(...rd.committedEntries);
    for (const r of rd.readStates) this.say(`${id}: read ${dec.decode(r.context)} at index ${r.index}`);
    n.core.advance(rd);
    return rd;
  }

  private deliverAll(filter?: (m: Message) => boolean): number {
    const now = this.queue.filter((m) => !filter || filter(m));
    this.queue = this.queue.filter((m) => filter && !filter(m));
    for (const m of now) {
      const n = this.nodes.get(m.to);
      const quiet = this.quietHeartbeats && (m.type === MessageType.Heartbeat || m.type === MessageType.HeartbeatResponse);
      if (quiet) this.heartbeats++;
      if (this.blocked.has(`${m.from}>${m.to}`)) {
        if (quiet) continue;
        this.say(`${fmtMessage(m)} DROPPED`);
        continue;
      }
      if (this.captureType === m.type) {
        this.captured.push(m);
        this.say(`${fmtMessage(m)} CAPTURED`);
        continue;
      }
      if (!n?.core) {
        this.say(`${fmtMessage(m)} DROPPED (down)`);
        continue;
      }
      if (!quiet) this.say(fmtMessage(m));
      const before = n.core.basicStatus();
      n.core.step(m);
      this.roleChange(m.to, before);
    }
    return now.length;
  }

  private roleChange(id: number, before: { role: string; term: number }): void {
    const after = this.core(id).basicStatus();
    if (after.role !== before.role || after.term !== before.term) this.say(`  ${id} is ${after.role} term=${after.term}`);
  }

  private stabilize(): void {
    for (let round = 0; round < 1000; round++) {
      let any = false;
      for (const id of this.nodes.keys()) if (this.handleReady(id, false)) any = true;
      if (this.deliverAll() > 0) any = true;
      if (!any) return;
    }
    throw new Error('stabilize did not converge');
  }

  private statusLine(id: number): string {
    const n = this.nodes.get(id)!;
    if (!n.core) return `${id}: down (durable term=${n.storage.hard.term} vote=${n.storage.hard.vote} commit=${n.storage.hard.commit} last=${n.storage.lastIndex()})`;
    const s = n.core.status();
    return `${id}: ${s.role} term=${s.term} vote=${s.vote} leader=${s.leader} commit=${s.commit} applied=${s.applied} last=${s.lastIndex} first=${s.firstIndex} voters=${s.conf.voters.join(',')}${s.conf.learners.length ? ` learners=${s.conf.learners.join(',')}` : ''}`;
  }

  run(cmd: string, args: string[]): string {
    this.out = [];
    const ids = (xs: string[]) => xs.map(Number);
    switch (cmd) {
      case 'add-nodes': {
        const count = Number(args[0]);
        for (const a of args.slice(1)) {
          const [k, v] = a.split('=');
          if (k === 'prevote') this.preVote = v === 'true';
          if (k === 'checkquorum') this.checkQuorum = v === 'true';
        }
        const voters = Array.from({ length: count }, (_, i) => i + 1);
        for (const id of voters) {
          this.nodes.set(id, { storage: new MemStorage({ voters, learners: [] }), core: undefined, applied: [] });
          this.start(id);
        }
        this.say(`voters=${voters.join(',')} prevote=${this.preVote} checkquorum=${this.checkQuorum}`);
        break;
      }
      case 'campaign': {
        const id = Number(args[0]);
        const before = this.core(id).basicStatus();
        this.core(id).campaign();
        this.roleChange(id, before);
        break;
      }
      case 'tick': {
        // tick N [ids...]: N ticks on the given (default: all running) nodes, stabilizing after each.
        const n = Number(args[0]);
        const who = args.length > 1 ? ids(args.slice(1)) : [...this.nodes.keys()];
        this.quietHeartbeats = true;
        this.heartbeats = 0;
        for (let i = 0; i < n; i++) {
          for (const id of who) {
            const node = this.nodes.get(id);
            if (!node?.core) continue;
            const before = node.core.basicStatus();
            node.core.tick();
            this.roleChange(id, before);
          }
          this.stabilize();
        }
        this.quietHeartbeats = false;
        this.say(`(${this.heartbeats} heartbeat messages)`);
        break;
      }
      case 'stabilize':
        this.stabilize();
        break;
      case 'ready':
        if (!this.handleReady(Number(args[0]), true)) this.say('no ready');
        break;
      case 'deliver': {
        const to = args.length > 0 ? Number(args[0]) : undefined;
        this.deliverAll(to === undefined ? undefined : (m) => m.to === to);
        break;
      }
      case 'propose': {
        const id = Number(args[0]);
        const r = this.core(id).propose(new TextEncoder().encode(args.slice(1).join(' ')));
        this.say(r.ok ? `ok index=${r.index} term=${r.term}` : `refused ${r.reason} leader=${r.leader}`);
        break;
      }
      case 'read': {
        const r = this.core(Number(args[0])).readIndex(new TextEncoder().encode(args[1] ?? 'r'));
        this.say(r.ok ? 'ok' : `refused ${r.reason}`);
        break;
      }
      case 'partition': {
        // partition 1 2|3 : groups separated by '|', no traffic between groups
        this.blocked.clear();
        const groups = args.join(' ').split('|').map((g) => ids(g.trim().split(/\s+/).filter(Boolean)));
        for (const a of groups) for (const b of groups) if (a !== b) for (const x of a) for (const y of b) this.blocked.add(`${x}>${y}`);
        this.say(`partitioned ${groups.map((g) => g.join(',')).join(' | ')}`);
        break;
      }
      case 'heal':
        this.blocked.clear();
        break;
      case 'crash':
        // What it already sent stays in the network; what it held in memory is gone.
        this.nodes.get(Number(args[0]))!.core = undefined;
        break;
      case 'restart': {
        const id = Number(args[0]);
        this.start(id);
        this.say(this.statusLine(id));
        break;
      }
      case 'status':
        for (const id of args.length ? ids(args) : [...this.nodes.keys()]) this.say(this.statusLine(id));
        break;
      case 'log': {
        const n = this.nodes.get(Number(args[0]))!;
        const s = n.storage;
        this.say(`snapshot ${s.snap.meta.index}@${s.snap.meta.term}; ${s.ents.map(fmtEntry).join(', ') || 'no entries'}`);
        break;
      }
      case 'transfer': {
        const from = Number(args[0]);
        this.core(from).transferLeadership(Number(args[1]));
        break;
      }
      case 'snapshot': {
        // snapshot ID INDEX: compact ID's log at an applied index
        const id = Number(args[0]);
        const index = Number(args[1]);
        const n = this.nodes.get(id)!;
        const data = new TextEncoder().encode(n.applied.filter((e) => e.index <= index).map(fmtEntry).join('\n'));
        n.storage.compact({ meta: { index, term: n.storage.term(index), conf: this.core(id).status().conf }, data });
        this.say(`${id}: first index now ${n.storage.firstIndex()}`);
        break;
      }
      case 'propose-leader': {
        const id = this.leaderId();
        const r = this.core(id).propose(new TextEncoder().encode(args.join(' ')));
        this.say(r.ok ? `ok on ${id} index=${r.index} term=${r.term}` : `refused ${r.reason}`);
        break;
      }
      case 'capture':
        if (args[0] === 'off') {
          this.captureType = undefined;
          break;
        }
        // capture TYPE: messages of that type are set aside instead of delivered
        this.captureType = Object.entries(typeNames).find(([, v]) => v === args[0])?.[0] as unknown as number;
        this.captureType = this.captureType === undefined ? undefined : Number(this.captureType);
        break;
      case 'replay-captured': {
        this.captureType = undefined;
        this.queue.push(...this.captured);
        this.captured = [];
        this.deliverAll();
        break;
      }
      case 'add-learner':
      case 'promote':
      case 'remove': {
        const node = Number(args[0]);
        const type = cmd === 'add-learner' ? ConfChangeType.AddLearner : cmd === 'promote' ? ConfChangeType.PromoteLearner : ConfChangeType.RemoveNode;
        const l = this.leaderId();
        const r = this.core(l).proposeConfChange({ type, node });
        this.say(r.ok ? `ok index=${r.index} on ${l}` : `refused ${r.reason}`);
        if (r.ok && cmd === 'add-learner') {
          this.nodes.set(node, { storage: new MemStorage(this.core(l).status().conf), core: undefined, applied: [] });
          this.start(node);
        }
        break;
      }
      default:
        throw new Error(`unknown command ${cmd}`);
    }
    return this.out.join('\n');
  }
}
