// The log as the core sees it: stable storage plus the unstable tail (etcd/raft log.go).
import { CompactedError, EntryType, type Entry, type Snapshot, type Storage } from './types.js';
import { Unstable } from './log-unstable.js';
import { assert } from './assert.js';

/** Bytes an entry counts for in batching limits (data plus a small fixed overhead, so no-ops count too). */
export function entryBytes(e: Entry): number {
  return e.data.length + 16;
}

export class RaftLog {
  readonly unstable: Unstable;
  committed: number;
  /** Highest index handed out in Ready.committedEntries (not yet acknowledged by advance). */
  applying: number;
  applied: number;

  constructor(
    readonly storage: Storage,
    committed: number,
    applied: number,
  ) {
    this.unstable = new Unstable(storage.lastIndex() + 1);
    this.committed = committed;
    this.applied = applied;
    this.applying = applied;
  }

  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  /** Term of entry i, or undefined if i is compacted or beyond the log. */
  term(i: number): number | undefined {
    const dummy = this.firstIndex() - 1;
    if (i < dummy || i > this.lastIndex()) return undefined;
    const t = this.unstable.maybeTerm(i);
    if (t !== undefined) return t;
    try {
      return this.storage.term(i);
    } catch (e) {
      if (e instanceof Error && (e.name === 'CompactedError' || e.name === 'UnavailableError')) return undefined;
      throw e;
    }
  }

  lastTerm(): number {
    const t = this.term(this.lastIndex());
    assert(t !== undefined, `term of last index ${this.lastIndex()} unavailable`);
    return t;
  }

  matchTerm(i: number, t: number): boolean {
    return this.term(i) === t;
  }

  isUpToDate(lasti: number, term: number): boolean {
    const lt = this.lastTerm();
    return term > lt || (term === lt && lasti >= this.lastIndex());
  }

  /** Appends ents after (index, logTerm) if it matches; returns the new last index or -1. */
  maybeAppend(index: number, logTerm: number, committed: number, ents: readonly Entry[]): number {
    if (!this.matchTerm(index, logTerm)) return -1;
    const lastnewi = index + ents.length;
    const ci = this.findConflict(ents);
    if (ci !== 0) {
      assert(ci > this.committed, `entry ${ci} conflicts with committed entry (committed ${this.committed})`);
      this.append(ents.slice(ci - (index + 1)));
    }
    this.commitTo(Math.min(committed, lastnewi));
    return lastnewi;
  }

  append(ents: readonly Entry[]): number {
    if (ents.length === 0) return this.lastIndex();
    assert(ents[0]!.index - 1 >= this.committed, `append at ${ents[0]!.index} would overwrite committed ${this.committed}`);
    this.unstable.truncateAndAppend(ents);
    return this.lastIndex();
  }

  /** First index whose term differs from ours (or the first new entry); 0 if all match. */
  findConflict(ents: readonly Entry[]): number {
    for (const e of ents) if (!this.matchTerm(e.index, e.term)) return e.index;
    return 0;
  }

  /** Largest index <= index whose term is <= term, with that term (fast backtracking). */
  findConflictByTerm(index: number, term: number): [number, number] {
    for (; index > 0; index--) {
      const t = this.term(index);
      if (t === undefined) return [index, 0];
      if (t <= term) return [index, t];
    }
    return [0, 0];
  }

  /** Entries in [lo, hi) with data up to bytesMax (at least one). Throws CompactedError below firstIndex. */
  slice(lo: number, hi: number, bytesMax: number): Entry[] {
    if (lo < this.firstIndex()) throw new CompactedError(lo);
    assert(hi <= this.lastIndex() + 1, `slice [${lo},${hi}) beyond last index ${this.lastIndex()}`);
    if (lo >= hi) return [];
    let out: Entry[] = [];
    const off = this.unstable.offset;
    if (lo < off) {
      out = this.storage.entries(lo, Math.min(hi, off), bytesMax);
      assert(out.length > 0 && out[0]!.index === lo, `storage.entries(${lo}) returned ${out[0]?.index}`);
      if (out.length < Math.min(hi, off) - lo) return limitBytes(out, bytesMax);
    }
    if (hi > off) out = out.concat(this.unstable.slice(Math.max(lo, off), hi));
    return limitBytes(out, bytesMax);
  }

  entriesFrom(lo: number, bytesMax: number): Entry[] {
    if (lo > this.lastIndex()) return [];
    return this.slice(lo, this.lastIndex() + 1, bytesMax);
  }

  commitTo(c: number): void {
    if (c > this.committed) {
      assert(c <= this.lastIndex(), `commit ${c} beyond last index ${this.lastIndex()}`);
      this.committed = c;
    }
  }

  hasPendingSnapshot(): boolean {
    return this.unstable.snapshot !== undefined;
  }

  hasNextCommittedEntries(): boolean {
    if (this.hasPendingSnapshot()) return false;
    return this.committed > Math.max(this.applying, this.firstIndex() - 1);
  }

  nextCommittedEntries(): Entry[] {
    if (!this.hasNextCommittedEntries()) return [];
    const lo = Math.max(this.applying + 1, this.firstIndex());
    return this.slice(lo, this.committed + 1, Number.MAX_SAFE_INTEGER);
  }

  /** Committed but not yet applied conf changes (a node with one must not campaign). */
  hasUnappliedConfChange(): boolean {
    const lo = Math.max(this.applied + 1, this.firstIndex());
    if (lo > this.committed) return false;
    return this.slice(lo, this.committed + 1, Number.MAX_SAFE_INTEGER).some((e) => e.type === EntryType.ConfChange);
  }

  restore(s: Snapshot): void {
    this.committed = s.meta.index;
    this.unstable.restore(s);
  }
}

function limitBytes(ents: Entry[], bytesMax: number): Entry[] {
  let size = 0;
  for (let i = 0; i < ents.length; i++) {
    size += entryBytes(ents[i]!);
    if (size > bytesMax && i > 0) return ents.slice(0, i);
  }
  return ents;
}
