// CPU time of processes, from /proc/<pid>/stat (utime + stime), so that a benchmark can say
// where the cycles of a run went: Recall processes, database servers, or elsewhere.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Linux USER_HZ; /proc/<pid>/stat counts in these ticks (100 on every common kernel). */
const ticksPerSecond = 100;

/** CPU seconds used so far by `pid` (0 when it is gone or /proc is unavailable). */
export function cpuSeconds(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
  } catch {
    return 0;
  }
}

/** Pid of the mariadbd whose data directory is `dbDir` (its --pid-file), if readable. */
export function mariadbPid(dbDir: string): number | undefined {
  const f = join(dbDir, 'mysqld.pid');
  if (!existsSync(f)) return undefined;
  const pid = Number(readFileSync(f, 'utf8').trim());
  return Number.isInteger(pid) && pid > 1 ? pid : undefined;
}

/** Sums CPU seconds of named groups of pids between start() and the returned stop(). */
export function cpuMeter(groups: Record<string, Array<number | undefined>>): () => Record<string, number> {
  const read = () => Object.fromEntries(Object.entries(groups).map(([k, pids]) => [k, pids.reduce<number>((a, p) => a + cpuSeconds(p), 0)]));
  const before = read();
  return () => {
    const after = read();
    return Object.fromEntries(Object.keys(groups).map((k) => [k, after[k]! - before[k]!]));
  };
}
