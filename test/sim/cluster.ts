// The simulated cluster: real RaftCores over MemStorage and an in-memory network,
// every choice drawn from one seeded Prng. It plays the runtime's role (persist a
// Ready, then send, then apply, then advance) and injects faults between steps.
import { ConfChangeType, EntryType, MessageType, type ConfState, type CoreConfig, type Entry, type Message, type Ready } from '../../src/consensus/types.js';
import { RaftCore, type TestingKnobs } from '../../src/consensus/raft.js';
import { Prng } from './prng.js';
import { encodeConfChange } from '../../src/consensus/codec.js';
import { MemStorage } from './mem-storage.js';
import { Checker, SimViolation, entryKey } from './checker.js';

export interface SimOptions {
  readonly nodes: number;
  readonly safetyTicks: number;
  readonly livenessTicks: number;
  readonly knobs?: TestingKnobs;
  /** Record a trace of events (the last `traceMax` are kept). */
  readonly traceMax?: number;
}

interface SimNode {
  readonly id: number;
  storage: MemStorage;
  core: RaftCore | undefined; // undefined while crashed
  /** The state machine: keys of applied entries, index i at [i-1]. Rebuilt from the snapshot on restart. */
  sm: string[];
  tickRate: number;
  removed: boolean;
  /** A Ready being written (slow disk); lost if the node crashes first. */
  writing?: { rd: Ready; early: boolean; doneAt: number } | undefined;
}

interface InFlight {
  readonly m: Message;
  readonly at: number;
}

interface Faults {
  loss: number;
  dup: number;
  delayMax: number;
  crash: number;
  tornWrite: number;
  partition: number;
  propose: number;
  confChange: number;
  snapshot: number;
  transfer: number;
  /** Ticks a Ready's write may take (0: synchronous). */
  diskDelayMax: number;
  parallelAppend: boolean;
}

export class Sim {
  readonly rng: Prng;
  readonly nodes = new Map<number, SimNode>();
  readonly checker = new Checker();
  private net: InFlight[] = [];
  /** blocked.has("a>b"): messages from a to b are dropped. */
  private blocked = new Set<string>();
  private now = 0;
  private nextNodeId: number;
  private proposals = 0;
  /** index -> key of proposals accepted by a leader and not yet seen committed. */
  readonly pending = new Map<number, string>();
  /** Proposed removals by index: the node retires once that exact entry is committed. */
  /** Read contexts -> the highest committed index when the read was asked. */
  private reads = new Map<string, number>();
  private readSeq = 0;
  private removals = new Map<number, { node: number; key: string }>();
  private faults: Faults;
  private readonly cfgBase: { -readonly [K in keyof Omit<CoreConfig, 'id' | 'random'>]: CoreConfig[K] };
  readonly trace: string[] = [];
  /** What happened, to show a run exercised the paths it should (printed by the cli with --stats). */
  readonly stats: Record<string, number> = {};
  private count(k: string): void {
    this.stats[k] = (this.stats[k] ?? 0) + 1;
  }

  constructor(
    readonly seed: number,
    readonly opts: SimOptions,
  ) {
    this.rng = new Prng(seed);
    const r = this.rng;
    const election = r.int(5, 15);
    this.cfgBase = {
      electionTimeoutTicks: election,
      heartbeatIntervalTicks: r.int(1, Math.max(1, Math.floor(election / 3))),
      preVote: r.chance(0.7),
      checkQuorum: r.chance(0.7),
      leaderLease: false,
      appendBytesMax: r.pick([32, 128, 1024, 65536]),
      inflightMessagesMax: r.int(1, 8),
      inflightBytesMax: r.pick([0, 256, 4096]),
      snapshotChunkBytesMax: r.pick([16, 64, 512, 65536]),
      proposalQueueMax: r.int(5, 100),
    };
    this.faults = this.randomFaults();
    const voters = Array.from({ length: opts.nodes }, (_, i) => i + 1);
    for (const id of voters) this.addNode(id, { voters, learners: [] });
    this.nextNodeId = opts.nodes + 1;
  }

  private randomFaults(): Faults {
    const r = this.rng;
    if (r.chance(0.3)) {
      // Churn: leaders come and go while proposals are in flight, which is where
      // uncommitted entries of old terms get re-replicated (Raft's Figure 8).
      this.cfgBase.appendBytesMax = 32;
      this.cfgBase.inflightMessagesMax = 1;
      this.cfgBase.electionTimeoutTicks = r.int(4, 6);
      this.cfgBase.heartbeatIntervalTicks = 1;
      return {
        loss: r.pick([0.05, 0.1, 0.2]),
        dup: 0.01,
        delayMax: r.pick([0, 1]),
        crash: r.pick([0.005, 0.01, 0.02]),
        tornWrite: 0.01,
        partition: r.pick([0.03, 0.05, 0.1]),
        propose: 0.5,
        confChange: 0,
        snapshot: 0.005,
        transfer: 0.01,
        diskDelayMax: r.pick([0, 0, 2]),
        parallelAppend: r.chance(0.5),
      };
    }
    return {
      loss: r.pick([0, 0.01, 0.05, 0.2, 0.4]),
      dup: r.pick([0, 0.01, 0.05]),
      delayMax: r.pick([0, 1, 3, 8]),
      crash: r.pick([0, 0.002, 0.01, 0.03]),
      tornWrite: r.pick([0, 0.01, 0.05]),
      partition: r.pick([0, 0.01, 0.03]),
      propose: r.pick([0.05, 0.2, 0.5]),
      confChange: r.pick([0, 0.005, 0.02]),
      snapshot: r.pick([0, 0.01, 0.05]),
      transfer: r.pick([0, 0.003, 0.01]),
      diskDelayMax: r.pick([0, 0, 1, 3]),
      parallelAppend: r.chance(0.5),
    };
  }

  log(s: string): void {
    const max = this.opts.traceMax ?? 0;
    if (max <= 0) return;
    this.trace.push(`t=${this.now} ${s}`);
    if (this.trace.length > max) this.trace.shift();
  }

  private config(id: number): CoreConfig & { testingKnobs?: TestingKnobs } {
    const rnd = this.rng.fork();
    return { ...this.cfgBase, id, random: () => rnd.next(), ...(this.opts.knobs ? { testingKnobs: this.opts.knobs } : {}) };
  }

  private addNode(id: number, conf: ConfState): void {
    const storage = new MemStorage(conf);
    const n: SimNode = { id, storage, core: undefined, sm: [], tickRate: 1 - this.rng.next() * 0.3, removed: false };
    this.nodes.set(id, n);
    this.start(n);
  }

  private start(n: SimNode): void {
    n.core = new RaftCore(this.config(n.id), n.storage);
    // The state machine is as durable as the snapshot; later entries are re-applied.
    n.sm = decodeSm(n.storage.snap.data);
    this.log(`start ${n.id} term=${n.storage.hard.term} vote=${n.storage.hard.vote} commit=${n.storage.hard.commit} last=${n.storage.lastIndex()}`);
  }

  private crash(n: SimNode, why: string): void {
    this.count(`crash.${why}`);
    n.core = undefined;
    n.writing = undefined;
    this.log(`crash ${n.id} (${why})`);
  }

  // ---- the runtime's Ready loop ----

  /**
   * Takes a Ready like the runtime does. With a slow disk the write completes some
   * ticks later while the core keeps stepping messages; with parallel append a
   * leader's Appends/Heartbeats leave before its own fsync (as src/engine does).
   */
  private handleReady(n: SimNode): void {
    const core = n.core;
    if (!core || n.writing || !core.hasReady()) return;
    const rd: Ready = core.ready();
    const s = n.storage;
    if (rd.softState || (rd.hardState && (rd.hardState.term !== s.hard.term || rd.hardState.vote !== s.hard.vote))) {
      const st = core.basicStatus();
      this.log(`node ${n.id} ${st.role} term=${st.term} vote=${rd.hardState?.vote ?? s.hard.vote} leader=${st.leader} last=${core.log.lastIndex()}@${core.log.lastTerm()} commit=${st.commit}`);
    }
    const early =
      this.faults.parallelAppend &&
      !rd.snapshot &&
      (!rd.hardState || (rd.hardState.term === s.hard.term && rd.hardState.vote === s.hard.vote)) &&
      rd.messages.length > 0 &&
      rd.messages.every((m) => m.type === MessageType.Append || m.type === MessageType.Heartbeat);
    if (early) for (const m of rd.messages) this.sendMsg(m);
    const delay = this.faults.diskDelayMax > 0 ? this.rng.int(0, this.faults.diskDelayMax) : 0;
    if (delay === 0) this.completeReady(n, rd, early);
    else n.writing = { rd, early, doneAt: this.now + delay };
  }

  private completeReady(n: SimNode, rd: Ready, early: boolean): void {
    const core = n.core!;
    const s = n.storage;
    n.writing = undefined;
    if (this.rng.chance(this.faults.tornWrite) && (rd.entries.length > 0 || rd.hardState)) {
      // Crash during the write: nothing was fsynced; a prefix of the entries may be on disk
      // (the last record torn off), the hard state file was not renamed into place.
      if (!rd.snapshot && rd.entries.length > 1 && this.rng.chance(0.5)) {
        const part = rd.entries.slice(0, rd.entries.length - 1);
        this.checker.beforeAppend(n.id, s, part);
        s.append(part);
        this.checker.persisted(n.id, s, part);
      }
      this.crash(n, 'torn write');
      return;
    }
    if (rd.snapshot) {
      this.checkSnapshot(n, rd.snapshot.data, core.basicStatus().term);
      s.applySnapshot(rd.snapshot);
    }
    if (rd.entries.length > 0) {
      this.checker.beforeAppend(n.id, s, rd.entries);
      s.append(rd.entries);
      this.checker.persisted(n.id, s, rd.entries);
    }
    if (rd.hardState) {
      s.setHardState(rd.hardState);
      this.checker.hardState(n.id, s);
    }
    if (this.rng.chance(this.faults.crash / 4)) {
      this.crash(n, 'after fsync, before send');
      return;
    }
    if (!early) for (const m of rd.messages) this.sendMsg(m);
    if (rd.snapshot) {
      n.sm = decodeSm(rd.snapshot.data);
      this.count('snapshot.installed');
    }
    if (rd.softState?.role === 'leader') this.count('elected');
    for (const rs of rd.readStates) {
      // Linearizable: the read point covers everything committed before the read began.
      const key = Buffer.from(rs.context).toString('hex');
      const before = this.reads.get(key);
      if (before === undefined) throw new SimViolation(`node ${n.id} got a read state for unknown context ${key}`);
      if (rs.index < before) throw new SimViolation(`read ${key} on node ${n.id} at index ${rs.index} misses entries committed up to ${before} before it began`);
      this.count('read.served');
    }
    for (const e of rd.committedEntries) {
      this.checker.applied(n.id, n.sm.length + 1, e, core.basicStatus().term);
      n.sm.push(entryKey(e));
      if (this.pending.get(e.index) !== undefined) this.pending.delete(e.index);
    }
    core.advance(rd);
  }

  private checkSnapshot(n: SimNode, data: Uint8Array, term: number): void {
    const sm = decodeSm(data);
    for (let i = 0; i < sm.length; i++) this.checker.commit(i + 1, sm[i]!, `snapshot for node ${n.id}`, term);
  }

  // ---- network ----

  private sendMsg(m: Message): void {
    if (this.blocked.has(`${m.from}>${m.to}`)) return;
    if (this.rng.chance(this.faults.loss)) return;
    const copies = this.rng.chance(this.faults.dup) ? 2 : 1;
    for (let i = 0; i < copies; i++) this.net.push({ m, at: this.now + this.rng.int(0, this.faults.delayMax) });
  }

  private deliver(): void {
    const due: InFlight[] = [];
    const later: InFlight[] = [];
    for (const f of this.net) (f.at <= this.now ? due : later).push(f);
    this.net = later;
    // Reorder what is due.
    for (let i = due.length - 1; i > 0; i--) {
      const j = this.rng.int(0, i);
      [due[i], due[j]] = [due[j]!, due[i]!];
    }
    for (const f of due) {
      const n = this.nodes.get(f.m.to);
      if (!n?.core || this.blocked.has(`${f.m.from}>${f.m.to}`)) continue;
      this.count(`msg.${msgNames[f.m.type] ?? f.m.type}`);
      n.core.step(f.m);
      this.afterStep(n);
    }
  }

  private afterStep(n: SimNode): void {
    this.handleReady(n);
    for (const x of this.nodes.values()) if (x.core) this.checker.role(x.id, x.core);
  }

  // ---- faults and client actions ----

  private live(): SimNode[] {
    return [...this.nodes.values()].filter((n) => n.core && !n.removed);
  }

  private leader(): SimNode | undefined {
    let best: SimNode | undefined;
    for (const n of this.nodes.values()) {
      const s = n.core?.basicStatus();
      if (s && s.role === 'leader' && (!best || s.term > best.core!.basicStatus().term)) best = n;
    }
    return best;
  }

  private changePartition(): void {
    const ids = [...this.nodes.keys()];
    this.blocked.clear();
    const kind = this.rng.int(0, 3);
    if (kind === 0) {
      this.log('heal');
      return;
    }
    const a = ids.filter(() => this.rng.chance(0.5));
    const b = ids.filter((i) => !a.includes(i));
    if (kind === 1) {
      for (const x of a) for (const y of b) this.blocked.add(`${x}>${y}`).add(`${y}>${x}`);
      this.log(`partition ${a.join(',')}|${b.join(',')}`);
    } else if (kind === 2) {
      for (const x of a) for (const y of b) this.blocked.add(`${x}>${y}`);
      this.log(`one-way ${a.join(',')}>|${b.join(',')}`);
    } else if (ids.length >= 3) {
      // Bridge: x and y cannot talk, everyone else reaches both.
      const x = this.rng.pick(ids);
      const y = this.rng.pick(ids.filter((i) => i !== x));
      this.blocked.add(`${x}>${y}`).add(`${y}>${x}`);
      this.log(`bridge cut ${x}-${y}`);
    }
  }

  private propose(): void {
    // Any node that believes it leads gets proposals, stale leaders too: their
    // uncommitted entries are what a later leader must not commit by counting.
    const leaders = [...this.nodes.values()].filter((n) => n.core?.basicStatus().role === 'leader');
    const target = leaders.length > 0 && this.rng.chance(0.9) ? this.rng.pick(leaders) : this.rng.pick([...this.nodes.values()]);
    if (!target.core) return;
    const data = new TextEncoder().encode(`p${this.proposals++}`);
    const r = target.core.propose(data);
    if (r.ok) {
      this.pending.set(r.index, `${r.term}/${EntryType.Normal}/${Buffer.from(data).toString('hex')}`);
      this.log(`propose on ${target.id} -> ${r.index}@${r.term}`);
    }
    this.afterStep(target);
  }

  private read(): void {
    const n = this.rng.pick([...this.nodes.values()]);
    if (!n.core) return;
    const ctx = new TextEncoder().encode(`r${this.readSeq++}`);
    this.reads.set(Buffer.from(ctx).toString('hex'), this.checker.committedMax);
    n.core.readIndex(ctx);
    this.afterStep(n);
  }

  private confChange(): void {
    const l = this.leader();
    if (!l?.core) return;
    const conf = l.core.status().conf;
    const r = this.rng.int(0, 2);
    if (r === 0 && conf.learners.length === 0 && this.nextNodeId <= this.opts.nodes + 3) {
      const id = this.nextNodeId;
      const res = l.core.proposeConfChange({ type: ConfChangeType.AddLearner, node: id });
      if (res.ok) {
        this.nextNodeId++;
        // A joining node is started with the membership of the moment (as an operator
        // would list the peers); the log from the leader then brings it up to date.
        this.addNode(id, conf);
        this.count('conf.addLearner');
        this.log(`add-learner ${id} at ${res.index}`);
      }
    } else if (r === 1 && conf.learners.length > 0) {
      const id = conf.learners[0]!;
      const res = l.core.proposeConfChange({ type: ConfChangeType.PromoteLearner, node: id });
      if (res.ok) {
        this.count('conf.promote');
        this.log(`promote ${id} at ${res.index}`);
      }
    } else if (r === 2 && conf.voters.length > 3) {
      const id = this.rng.pick(conf.voters);
      const res = l.core.proposeConfChange({ type: ConfChangeType.RemoveNode, node: id });
      if (res.ok) {
        this.removals.set(res.index, { node: id, key: `${res.term}/${EntryType.ConfChange}/${Buffer.from(encodeConfChange({ type: ConfChangeType.RemoveNode, node: id })).toString('hex')}` });
        this.count('conf.remove');
        this.log(`remove ${id} at ${res.index}`);
      }
    }
    this.afterStep(l);
  }

  private takeSnapshot(n: SimNode): void {
    const core = n.core;
    if (!core) return;
    const st = core.status();
    const idx = st.applied;
    if (idx <= n.storage.snap.meta.index || idx > n.storage.lastIndex()) return;
    const data = encodeSm(n.sm.slice(0, idx));
    n.storage.compact({ meta: { index: idx, term: n.storage.term(idx), conf: st.conf }, data });
    this.count('compact');
    this.log(`snapshot ${n.id} at ${idx}`);
  }

  /** Nodes a membership change removed stop for good (ids are never reused). */
  private retireRemoved(): void {
    for (const [i, r] of this.removals) {
      const k = this.checker.committed.get(i);
      if (k === undefined) continue;
      this.removals.delete(i);
      if (k !== r.key) continue;
      const n = this.nodes.get(r.node);
      if (n && !n.removed) {
        n.removed = true;
        n.core = undefined;
        n.writing = undefined;
        this.log(`retire ${n.id}`);
      }
    }
  }

  // ---- the run ----

  private stepTime(safety: boolean): void {
    this.now++;
    const f = this.faults;
    if (safety) {
      if (this.rng.chance(f.partition)) this.changePartition();
      for (const n of this.nodes.values()) {
        if (n.removed) continue;
        if (n.core && this.rng.chance(f.crash)) this.crash(n, 'random');
        else if (!n.core && this.rng.chance(0.05)) this.start(n);
      }
      if (this.rng.chance(f.confChange)) this.confChange();
      if (this.rng.chance(f.transfer)) {
        const l = this.leader();
        if (l?.core) {
          const to = this.rng.pick(l.core.status().conf.voters);
          l.core.transferLeadership(to);
          this.log(`transfer ${l.id} -> ${to}`);
          this.afterStep(l);
        }
      }
    }
    if (this.rng.chance(f.snapshot)) {
      const n = this.rng.pick([...this.nodes.values()]);
      this.takeSnapshot(n);
    }
    for (const n of this.nodes.values()) {
      if (n.core && n.writing && n.writing.doneAt <= this.now) {
        this.completeReady(n, n.writing.rd, n.writing.early);
        this.afterStep(n);
      }
    }
    if (this.rng.chance(f.propose)) this.propose();
    if (this.rng.chance(f.propose / 3)) this.read();
    for (const n of this.nodes.values()) {
      if (!n.core) continue;
      if (this.rng.next() < n.tickRate) {
        n.core.tick();
        this.afterStep(n);
      }
    }
    this.deliver();
    for (const n of this.nodes.values()) this.afterStep(n);
    this.retireRemoved();
  }

  /** Runs both phases; throws SimViolation on a safety or liveness failure. */
  run(): { ticks: number; committed: number } {
    for (let t = 0; t < this.opts.safetyTicks; t++) this.stepTime(true);
    // Liveness: heal everything; a leader must emerge and commit a fresh proposal on every member.
    this.blocked.clear();
    this.faults = { ...this.faults, delayMax: Math.min(this.faults.delayMax, 1), loss: 0, dup: 0, crash: 0, tornWrite: 0, partition: 0, confChange: 0, transfer: 0, propose: 0 };
    for (const n of this.nodes.values()) if (!n.core && !n.removed) this.start(n);
    this.log('liveness phase');
    let marker: number | undefined;
    let markerTerm = 0;
    for (let t = 0; t < this.opts.livenessTicks; t++) {
      this.stepTime(false);
      const l = this.leader();
      // A marker proposed to a leader that was then deposed may never commit: propose again.
      if (marker !== undefined && l?.core && l.core.basicStatus().term !== markerTerm && !this.checker.committed.has(marker)) marker = undefined;
      if (marker === undefined && l?.core) {
        const r = l.core.propose(new TextEncoder().encode('liveness'));
        if (r.ok) {
          marker = r.index;
          markerTerm = r.term;
          this.log(`liveness marker ${r.index}@${r.term} on ${l.id}`);
        }
        this.afterStep(l);
      }
      if (marker !== undefined && this.checker.committed.has(marker)) {
        const members = this.live().filter((n) => {
          const c = this.leader()?.core?.status().conf;
          return c ? c.voters.includes(n.id) : true;
        });
        if (members.every((n) => n.sm.length >= marker!)) {
          const k = this.checker.committed.get(marker)!;
          if (!k.endsWith(Buffer.from('liveness').toString('hex'))) {
            // The marker was overwritten by a newer leader: propose again.
            marker = undefined;
            continue;
          }
          for (const [i] of this.pending) if (i <= marker) this.pending.delete(i);
          return { ticks: this.now, committed: this.checker.committedMax };
        }
      }
    }
    const st = [...this.nodes.values()]
      .filter((n) => !n.removed)
      .map((n) => (n.core ? `${n.id}:${JSON.stringify(n.core.basicStatus())}/applied=${n.sm.length}` : `${n.id}:down`));
    const l = this.leader()?.core?.status();
    if (l?.progress) st.push(`progress of ${l.id}: ${JSON.stringify([...l.progress])} first=${l.firstIndex}`);
    throw new SimViolation(`liveness: no leader committed a proposal on every member within ${this.opts.livenessTicks} ticks after healing (marker=${marker}; ${st.join(' ')})`);
  }
}

const msgNames: Record<number, string> = {
  [MessageType.PreVote]: 'PreVote',
  [MessageType.PreVoteResponse]: 'PreVoteResponse',
  [MessageType.Vote]: 'Vote',
  [MessageType.VoteResponse]: 'VoteResponse',
  [MessageType.Append]: 'Append',
  [MessageType.AppendResponse]: 'AppendResponse',
  [MessageType.Heartbeat]: 'Heartbeat',
  [MessageType.HeartbeatResponse]: 'HeartbeatResponse',
  [MessageType.InstallSnapshot]: 'InstallSnapshot',
  [MessageType.InstallSnapshotResponse]: 'InstallSnapshotResponse',
  [MessageType.TimeoutNow]: 'TimeoutNow',
  [MessageType.ReadIndex]: 'ReadIndex',
  [MessageType.ReadIndexResponse]: 'ReadIndexResponse',
};

function encodeSm(keys: readonly string[]): Uint8Array {
  return new TextEncoder().encode(keys.join('\n'));
}

function decodeSm(data: Uint8Array): string[] {
  if (data.length === 0) return [];
  return new TextDecoder().decode(data).split('\n');
}

export { SimViolation, MessageType };
export type { Entry };
