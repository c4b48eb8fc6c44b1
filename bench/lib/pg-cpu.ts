// CPU seconds of a postgres server: the postmaster, its live children (backends, walwriter,
// ...) and the children it already reaped (cutime/cstime of the postmaster: pgbench's backends
// exit when its clients disconnect, before the meter is read). A child that exits between two
// readings moves from the live sum to the reaped sum, so differences of readings are right.
import { readFileSync } from 'node:fs';
import { childPids } from '../../src/supervisor/postgres.js';

/** Linux USER_HZ; /proc/<pid>/stat counts in these ticks. */
const ticksPerSecond = 100;

function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** utime + stime (+ cutime + cstime with `reaped`) of pid, in seconds. */
export function processCpu(pid: number | undefined, reaped = false): number {
  if (!pid) return 0;
  const f = statFields(pid);
  if (!f) return 0;
  const own = Number(f[11]) + Number(f[12]);
  return (reaped ? own + Number(f[13]) + Number(f[14]) : own) / ticksPerSecond;
}

/** CPU seconds used so far by the postgres server whose postmaster is `postmaster`. */
export function postgresCpu(postmaster: number | undefined): number {
  if (!postmaster) return 0;
  return processCpu(postmaster, true) + childPids(postmaster).reduce((a, p) => a + processCpu(p), 0);
}

/** Named groups of CPU readers; the returned function gives the seconds each used since. */
export function cpuSince(groups: Record<string, () => number>): () => Record<string, number> {
  const before = Object.fromEntries(Object.entries(groups).map(([k, f]) => [k, f()]));
  return () => Object.fromEntries(Object.entries(groups).map(([k, f]) => [k, f() - before[k]!]));
}
