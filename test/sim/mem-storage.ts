// In-memory stable storage for the simulator. Whatever is in here is "on disk":
// the simulator writes a Ready into it only when that Ready is persisted, so a
// crash keeps exactly this and loses everything the core held in memory.
import {
  CompactedError,
  UnavailableError,
  type ConfState,
  type Entry,
  type HardState,
  type Snapshot,
  type Storage,
} from '../../src/consensus/types.js';

export class MemStorage implements Storage {
  hard: HardState = { term: 0, vote: 0, commit: 0 };
  snap: Snapshot;
  /** Entries after snap.meta.index. */
  ents: Entry[] = [];

  constructor(conf: ConfState) {
    this.snap = { meta: { index: 0, term: 0, conf }, data: new Uint8Array(0) };
  }

  initialState(): { hardState: HardState; conf: ConfState } {
    return { hardState: this.hard, conf: this.snap.meta.conf };
  }

  firstIndex(): number {
    return this.snap.meta.index + 1;
  }

  lastIndex(): number {
    return this.snap.meta.index + this.ents.length;
  }

  term(i: number): number {
    if (i === this.snap.meta.index) return this.snap.meta.term;
    if (i < this.snap.meta.index) throw new CompactedError(i);
    if (i > this.lastIndex()) throw new UnavailableError(i);
    return this.ents[i - this.snap.meta.index - 1]!.term;
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    if (lo <= this.snap.meta.index) throw new CompactedError(lo);
    if (hi > this.lastIndex() + 1) throw new UnavailableError(hi - 1);
    const out: Entry[] = [];
    let size = 0;
    for (let i = lo; i < hi; i++) {
      const e = this.ents[i - this.snap.meta.index - 1]!;
      size += e.data.length;
      if (out.length > 0 && size > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  entry(i: number): Entry | undefined {
    return this.ents[i - this.snap.meta.index - 1];
  }

  // ---- writes (by the simulator, playing the runtime) ----

  append(ents: readonly Entry[]): void {
    if (ents.length === 0) return;
    const first = ents[0]!.index;
    if (first <= this.snap.meta.index) throw new Error(`append at ${first} below snapshot ${this.snap.meta.index}`);
    if (first > this.lastIndex() + 1) throw new Error(`append at ${first} leaves a gap after ${this.lastIndex()}`);
    this.ents = this.ents.slice(0, first - this.snap.meta.index - 1).concat(ents);
  }

  setHardState(hs: HardState): void {
    this.hard = hs;
  }

  /** A snapshot received from the leader replaces the whole log. */
  applySnapshot(s: Snapshot): void {
    this.snap = s;
    this.ents = [];
  }

  /** A local snapshot at an applied index; the log below it is dropped. */
  compact(s: Snapshot): void {
    const i = s.meta.index;
    if (i <= this.snap.meta.index) return;
    if (i > this.lastIndex()) throw new Error(`compact at ${i} beyond last index ${this.lastIndex()}`);
    this.ents = this.ents.slice(i - this.snap.meta.index);
    this.snap = s;
  }

  clone(): MemStorage {
    const c = new MemStorage(this.snap.meta.conf);
    c.hard = this.hard;
    c.snap = this.snap;
    c.ents = [...this.ents];
    return c;
  }
}
