// CPU accounting for the resync bench. This machine is shared, so a wall time alone says little:
// each measurement also records the CPU seconds of every process it involved (a process's own
// time plus that of the children it has waited for: the tools and rsyncs it ran) and how busy
// the whole machine was meanwhile (a machine near 100 % was the limit, not the method).
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';

/** Linux USER_HZ (/proc counts in these ticks; 100 on every common kernel). */
const ticksPerSecond = 100;

/** CPU seconds of a process and of the children it has waited for. 0 when it is gone. */
export function cpuWithChildren(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
    return (f[11]! + f[12]! + f[13]! + f[14]!) / ticksPerSecond; // utime stime cutime cstime
  } catch {
    return 0;
  }
}

function machineTicks(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3]! - (f[4] ?? 0), total }; // less idle and iowait
}

export interface CpuUse {
  /** CPU seconds of the measured processes. */
  cpuS: number;
  /** Share of the whole machine's CPU time that was busy (any process), 0..100. */
  busyPct: number;
  cores: number;
}

/** Starts measuring; the returned function ends it. `pids` is read at both ends (servers restart). */
export function cpuMeter(pids: () => (number | undefined)[]): () => CpuUse {
  const sum = () => pids().reduce<number>((a, p) => a + cpuWithChildren(p), 0);
  const m0 = machineTicks();
  const c0 = sum();
  return () => {
    const m1 = machineTicks();
    return { cpuS: Math.max(0, sum() - c0), busyPct: ((m1.busy - m0.busy) / Math.max(1, m1.total - m0.total)) * 100, cores: cpus().length };
  };
}
