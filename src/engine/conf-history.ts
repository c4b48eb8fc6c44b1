// The membership as of each applied index, kept by the runtime. A snapshot must
// carry the membership *at its index*; the core's current one can be ahead (a
// ConfChange applied after the index) or behind (the runtime has handed a batch to
// the applier but the core applies its ConfChanges only at advance()).
import type { ConfState, Entry } from '../consensus/types.js';
import { EntryType } from '../consensus/types.js';
import { applyConfChange, decodeConfChange } from './core-binding.js';

interface Point {
  readonly index: number;
  readonly conf: ConfState;
}

export class ConfHistory {
  /** Ascending by index; points[0] is at or below every index still asked for. */
  private points: Point[];

  constructor(index: number, conf: ConfState) {
    this.points = [{ index, conf: copy(conf) }];
  }

  /** Feed applied entries in log order. */
  apply(entries: readonly Entry[]): void {
    for (const e of entries) {
      if (e.type !== EntryType.ConfChange || e.index <= this.last().index) continue;
      const m = { voters: [...this.last().conf.voters], learners: [...this.last().conf.learners] };
      if (applyConfChange(m, decodeConfChange(e.data))) this.points.push({ index: e.index, conf: m });
    }
  }

  /** A snapshot was installed: everything before it is gone. */
  reset(index: number, conf: ConfState): void {
    this.points = [{ index, conf: copy(conf) }];
  }

  /** Membership in force after applying `index`. */
  at(index: number): ConfState {
    if (index < this.points[0]!.index) throw new Error(`membership at ${index} is no longer known (history starts at ${this.points[0]!.index})`);
    let p = this.points[0]!;
    for (const q of this.points) if (q.index <= index) p = q;
    return copy(p.conf);
  }

  /** Forget points no snapshot at or after `index` can need. */
  prune(index: number): void {
    while (this.points.length > 1 && this.points[1]!.index <= index) this.points.shift();
  }

  private last(): Point {
    return this.points[this.points.length - 1]!;
  }
}

function copy(c: ConfState): ConfState {
  return { voters: [...c.voters], learners: [...c.learners] };
}
