// The resync bench's table: every method's time over the same numerator (the donor's data
// directory), each against plain rsync, the issue's two targets for the built-in method, and where
// each method's time went (the phases its runner reported, the joiner's server stop and start,
// CPU of the processes involved and of the machine, and the backup tools' own time outside Recall).
import type { CpuUse } from './resync-cpu.js';
import type { FloorTimes } from './resync-floor.js';
import type { CacheState } from './resync-cache.js';

export interface Measured {
  seconds: number;
  /** What the method moved: rsync's transferred file size, or the snapshot stream's size. */
  bytes: number;
  cpu: CpuUse;
}

/** Phases in the order reported, each with the time since the run began when it was first seen. */
export type PhaseTimes = { phase: string; atS: number }[];

export interface MethodRun extends Measured {
  phases: PhaseTimes;
  /** This process (the joiner) and the tools it ran. */
  joinerCpu: CpuUse;
  server: { stopS: number; startS: number };
}

export interface ResyncReport {
  cache: CacheState;
  dataBytes: number;
  plain: Measured[];
  builtIn: (MethodRun & { backupS: number | undefined })[];
  hook: MethodRun[];
  floor: FloorTimes | undefined;
}

/** The issue's targets for the built-in resync. */
const ratioTarget = 0.7;
const mbPerSecTarget = 100;

const mb = (bytes: number) => bytes / 1e6;
const f1 = (x: number) => x.toFixed(1);
const f2 = (x: number) => x.toFixed(2);

function phaseDurations(phases: PhaseTimes, endS: number): { phase: string; s: number }[] {
  return phases.map((p, i) => ({ phase: p.phase, s: (phases[i + 1]?.atS ?? endS) - p.atS })).filter((p) => p.phase !== 'done');
}

const cacheNote: Record<CacheState, string> = {
  cold: "the donor's files evicted from the page cache before each run",
  warm: "the donor's files in the page cache before each run",
};

/** Each method's fastest round, in MB/s of the data directory. */
function rates(r: ResyncReport) {
  const rate = (s: number) => mb(r.dataBytes) / s;
  const best = (ms: Measured[]) => Math.max(...ms.map((m) => rate(m.seconds)));
  const refRate = best(r.plain);
  const builtIn = best(r.builtIn);
  return { rate, refRate, builtIn, hook: best(r.hook), ratioMet: builtIn >= ratioTarget * refRate, rateMet: builtIn >= mbPerSecTarget };
}

export function printReport(r: ResyncReport): void {
  const x = rates(r);
  const rows: [string, Measured][] = [
    ...r.plain.map((p, i): [string, Measured] => [`plain rsync -a --delete, round ${i + 1}`, p]),
    ...r.builtIn.map((p, i): [string, Measured] => [`built-in snapshot (snapshotMethod), round ${i + 1}`, p]),
    ...r.hook.map((p, i): [string, Measured] => [`hook-mode rsync (rsyncMethod), round ${i + 1}`, p]),
  ];
  const w = Math.max(...rows.map(([n]) => n.length));
  const cores = r.plain[0]!.cpu.cores;
  console.log('');
  console.log(`Full resync of a ${f1(mb(r.dataBytes))} MB data directory over loopback, ${r.cache}: ${cacheNote[r.cache]}`);
  console.log(`(MB = 10^6 bytes; MB/s = data directory / seconds; "vs rsync" against the fastest plain rsync round;`);
  console.log(`a method's seconds are its whole runner.run(), server start included; rounds ran in turn: rsync, built-in, hook;`);
  console.log(`CPU s: all processes of the copy, both sides; busy: the whole machine's ${cores} cores meanwhile, anyone's work)`);
  console.log(`${'method'.padEnd(w)}  ${'moved MB'.padStart(9)}  ${'seconds'.padStart(8)}  ${'MB/s'.padStart(7)}  ${'vs rsync'.padStart(8)}  ${'CPU s'.padStart(6)}  ${'busy'.padStart(5)}`);
  for (const [name, m] of rows) {
    console.log(
      `${name.padEnd(w)}  ${f1(mb(m.bytes)).padStart(9)}  ${f2(m.seconds).padStart(8)}  ${f1(x.rate(m.seconds)).padStart(7)}  ` +
        `${`${((x.rate(m.seconds) / x.refRate) * 100).toFixed(0)} %`.padStart(8)}  ${f2(m.cpu.cpuS).padStart(6)}  ${`${m.cpu.busyPct.toFixed(0)} %`.padStart(5)}`,
    );
  }
  const mark = (ok: boolean) => (ok ? 'met' : 'NOT MET');
  console.log(`target: built-in >= ${ratioTarget * 100} % of plain rsync (fastest rounds: ${f1(x.builtIn)} of ${f1(x.refRate)} MB/s): ${((x.builtIn / x.refRate) * 100).toFixed(0)} % -> ${mark(x.ratioMet)}`);
  console.log(`target: built-in >= ${mbPerSecTarget} MB/s (fastest round): ${f1(x.builtIn)} MB/s -> ${mark(x.rateMet)}`);

  r.builtIn.forEach((bi, i) => {
    const phases = phaseDurations(bi.phases, bi.seconds);
    const install = phases.find((p) => p.phase === 'install');
    console.log(
      `built-in round ${i + 1} phases (s): ${phases.map((p) => `${p.phase} ${f2(p.s)}`).join(', ')}` +
        (install ? ` [install = server stop ${f2(bi.server.stopS)} + start ${f2(bi.server.startS)} + swap/cleanup ${f2(install.s - bi.server.stopS - bi.server.startS)}]` : '') +
        (bi.backupS !== undefined ? `; the donor's mariadb-backup ran ${f2(bi.backupS)} s of the transfer` : '') +
        `; CPU: joiner node + mbstream + --prepare ${f2(bi.joinerCpu.cpuS)}, donor node + mariadb-backup + mariadbd ${f2(bi.cpu.cpuS - bi.joinerCpu.cpuS)}`,
    );
  });
  const fl = r.floor;
  if (fl) {
    console.log(
      `the same tools alone, no Recall: mariadb-backup --stream >/dev/null ${f2(fl.backupOnlyS)} s (${f1(x.rate(fl.backupOnlyS))} MB/s); ` +
        `| mbstream -x ${f2(fl.backupExtractS)} s (${f1(x.rate(fl.backupExtractS))} MB/s, CPU ${f2(fl.backupExtractCpu.cpuS)} s, busy ${fl.backupExtractCpu.busyPct.toFixed(0)} %); --prepare ${f2(fl.prepareS)} s`,
    );
  }
  r.hook.forEach((h, i) => {
    console.log(
      `hook-mode round ${i + 1} phases (s): ${phaseDurations(h.phases, h.seconds)
        .map((p) => `${p.phase} ${f2(p.s)}`)
        .join(', ')} [joiner server stop ${f2(h.server.stopS)}, start ${f2(h.server.startS)}]`,
    );
  });
}

/** One line per cache state: MB/s of each method's fastest round, and the targets. */
export function printSummary(reports: ResyncReport[], totalS: number): void {
  console.log('');
  for (const r of reports) {
    const x = rates(r);
    console.log(
      `resync summary (${r.cache}, fastest of ${r.plain.length} rounds each): plain rsync ${f1(x.refRate)} MB/s, built-in ${f1(x.builtIn)} MB/s ` +
        `(${((x.builtIn / x.refRate) * 100).toFixed(0)} %: >= 70 % ${x.ratioMet ? 'met' : 'NOT MET'}, >= 100 MB/s ${x.rateMet ? 'met' : 'NOT MET'}), ` +
        `hook-mode rsync ${f1(x.hook)} MB/s (${((x.hook / x.refRate) * 100).toFixed(0)} %)`,
    );
  }
  console.log(`resync bench: ${f1(totalS)} s in all`);
}
