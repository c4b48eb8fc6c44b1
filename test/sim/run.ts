// One seeded simulation run, and a loop over many seeds.
import { AssertionError } from '../../src/consensus/assert.js';
import type { TestingKnobs } from '../../src/consensus/raft.js';
import { Prng } from './prng.js';
import { Sim, SimViolation } from './cluster.js';

export interface SeedResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly error?: string;
  readonly trace: readonly string[];
  readonly ticks: number;
  readonly committed: number;
  readonly stats: Readonly<Record<string, number>>;
}

export interface RunOptions {
  /** Cluster size; by default 3 or 5, drawn from the seed. */
  readonly nodes?: number;
  readonly safetyTicks?: number;
  readonly livenessTicks?: number;
  readonly knobs?: TestingKnobs;
  readonly traceMax?: number;
}

export function runSeed(seed: number, o: RunOptions = {}): SeedResult {
  const nodes = o.nodes ?? new Prng(seed ^ 0x5eed).pick([3, 3, 5]);
  const safetyTicks = o.safetyTicks ?? 200;
  const sim = new Sim(seed, {
    nodes,
    safetyTicks,
    // Catching up scales with the backlog a long faulty phase leaves behind (some
    // seeds replicate one entry per round trip), so the bound scales with it too.
    livenessTicks: o.livenessTicks ?? Math.max(400, 2 * safetyTicks),
    ...(o.knobs ? { knobs: o.knobs } : {}),
    traceMax: o.traceMax ?? 0,
  });
  try {
    const r = sim.run();
    return { seed, ok: true, trace: sim.trace, ticks: r.ticks, committed: r.committed, stats: sim.stats };
  } catch (e) {
    if (e instanceof SimViolation || e instanceof AssertionError) {
      return { seed, ok: false, error: `${e.name}: ${e.message}`, trace: sim.trace, ticks: 0, committed: sim.checker.committedMax, stats: sim.stats };
    }
    // Anything else (a TypeError in the core, say) is a bug too; keep the stack.
    return { seed, ok: false, error: e instanceof Error ? (e.stack ?? e.message) : String(e), trace: sim.trace, ticks: 0, committed: 0, stats: sim.stats };
  }
}

export function runSeeds(first: number, count: number, o: RunOptions = {}, onFail?: (r: SeedResult) => void): { runs: number; failures: SeedResult[] } {
  const failures: SeedResult[] = [];
  for (let s = first; s < first + count; s++) {
    const r = runSeed(s, o);
    if (!r.ok) {
      failures.push(r);
      onFail?.(r);
    }
  }
  return { runs: count, failures };
}
