// Safety checks shared by every simulated node: they see what each node made
// durable, applied, and its role, and throw SimViolation on the first breach.
import type { Entry } from '../../src/consensus/types.js';
import type { RaftCore } from '../../src/consensus/raft.js';
import type { MemStorage } from './mem-storage.js';

export class SimViolation extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SimViolation';
  }
}

function fail(msg: string): never {
  throw new SimViolation(msg);
}

export function entryKey(e: Entry): string {
  return `${e.term}/${e.type}/${Buffer.from(e.data).toString('hex')}`;
}

export class Checker {
  /** term -> the node that led it. */
  private leaders = new Map<number, number>();
  /** index -> key of the committed entry. */
  readonly committed = new Map<number, string>();
  /** index -> a term no lower than the one in which it was committed (the observer's term). */
  private commitTerm = new Map<number, number>();
  committedMax = 0;
  /** "index/term" -> key and previous term (log matching, checked entry by entry). */
  private seen = new Map<string, { key: string; prevTerm: number }>();
  /** node -> highest durable commit index (never decreases, also across restarts). */
  private durableCommit = new Map<number, number>();

  /** Entries a node has just made durable. */
  persisted(node: number, storage: MemStorage, ents: readonly Entry[]): void {
    for (const e of ents) {
      const prevTerm = e.index - 1 === storage.snap.meta.index ? storage.snap.meta.term : storage.entry(e.index - 1)?.term ?? -1;
      const k = `${e.index}/${e.term}`;
      const key = entryKey(e);
      const had = this.seen.get(k);
      if (!had) this.seen.set(k, { key, prevTerm });
      else if (had.key !== key || (prevTerm >= 0 && had.prevTerm >= 0 && had.prevTerm !== prevTerm)) {
        fail(`log matching: node ${node} has entry ${k} = ${key} (prev term ${prevTerm}) but another node has ${had.key} (prev term ${had.prevTerm})`);
      }
    }
  }

  /**
   * Entries about to overwrite a node's log: an entry at or below the node's own durable
   * commit index must never be replaced. (Above it, even a globally committed entry may
   * be replaced on a node that never learned of the commit, by a stale leader of an
   * older term; Raft only promises it to every later leader, checked in role().)
   */
  beforeAppend(node: number, storage: MemStorage, ents: readonly Entry[]): void {
    for (const e of ents) {
      if (e.index > storage.hard.commit) break;
      const old = storage.entry(e.index);
      if (old && entryKey(e) !== entryKey(old)) fail(`node ${node} overwrote entry ${e.index} (${entryKey(old)}) at or below its commit ${storage.hard.commit} with ${entryKey(e)}`);
      const c = this.committed.get(e.index);
      if (c !== undefined && c !== entryKey(e)) fail(`node ${node} writes ${entryKey(e)} at committed index ${e.index} (${c})`);
    }
  }

  /** A node made a hard state durable: its commit index never decreases and covers entries it holds. */
  hardState(node: number, storage: MemStorage): void {
    const c = storage.hard.commit;
    const before = this.durableCommit.get(node) ?? 0;
    if (c < before) fail(`node ${node} durable commit went back from ${before} to ${c}`);
    this.durableCommit.set(node, c);
    if (c > storage.lastIndex()) fail(`node ${node} durable commit ${c} beyond its last index ${storage.lastIndex()}`);
    for (let i = Math.max(before + 1, storage.firstIndex()); i <= c; i++) this.commit(i, entryKey(storage.entry(i)!), `node ${node} commit`, storage.hard.term);
  }

  commit(index: number, key: string, who: string, observerTerm: number): void {
    const c = this.committed.get(index);
    if (c === undefined) {
      this.committed.set(index, key);
      this.commitTerm.set(index, observerTerm);
      if (index > this.committedMax) this.committedMax = index;
    } else if (c !== key) fail(`${who}: entry ${index} is ${key} but ${c} was committed there`);
  }

  /** The applied sequence of a node: must be contiguous and equal to the committed entries. */
  applied(node: number, expectIndex: number, e: Entry, term: number): void {
    if (e.index !== expectIndex) fail(`node ${node} applied ${e.index} but expected ${expectIndex}`);
    this.commit(e.index, entryKey(e), `node ${node} apply`, term);
  }

  /** Called after every step for each live node. */
  role(node: number, core: RaftCore): void {
    const s = core.basicStatus();
    if (s.role !== 'leader') return;
    const l = this.leaders.get(s.term);
    if (l === undefined) {
      this.leaders.set(s.term, node);
      this.leaderCompleteness(node, core);
    } else if (l !== node) fail(`two leaders in term ${s.term}: ${l} and ${node}`);
  }

  /** A new leader holds every entry committed in an earlier term (a late leader of an old term need not). */
  private leaderCompleteness(node: number, core: RaftCore): void {
    const first = core.log.firstIndex();
    const term = core.basicStatus().term;
    for (let i = 1; i <= this.committedMax; i++) {
      const c = this.committed.get(i);
      if (c === undefined || this.commitTerm.get(i)! >= term) continue;
      if (i < first) continue; // compacted into its snapshot, which only holds committed entries
      const t = core.log.term(i);
      const want = Number(c.split('/')[0]);
      if (t !== want) fail(`leader completeness: new leader ${node} (term ${core.basicStatus().term}) has term ${t} at committed index ${i} (want ${want})`);
    }
  }
}
