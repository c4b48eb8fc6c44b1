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
  builtIn: MethodRun & { backupS: number | undefined; floor: FloorTimes };
  hook: MethodRun;
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

function rates(r: ResyncReport) {
  const rate = (s: number) => mb(r.dataBytes) / s;
  const refRate = Math.max(...r.plain.map((p) => rate(p.seconds)));
  const builtIn = rate(r.builtIn.seconds);
  return { rate, refRate, builtIn, ratioMet: builtIn >= ratioTarget * refRate, rateMet: builtIn >= mbPerSecTarget };
}

export function printReport(r: ResyncReport): void {
  const { rate, refRate } = rates(r);
  const rows: [string, Measured][] = [
    ...r.plain.map((p, i): [string, Measured] => [`plain rsync -a --delete, round ${i + 1}`, p]),
    ['built-in snapshot (snapshotMethod)', r.builtIn],
    ['hook-mode rsync (rsyncMethod)', r.hook],
  ];
  const w = Math.max(...rows.map(([n]) => n.length));
  const cores = r.plain[0]!.cpu.cores;
  console.log('');
  console.log(`Full resync of a ${f1(mb(r.dataBytes))} MB data directory over loopback, ${r.cache}: ${cacheNote[r.cache]}`);
  console.log(`(MB = 10^6 bytes; MB/s = data directory / seconds;`);
  console.log(`"vs rsync" against the fastest plain rsync round; a method's seconds are its whole runner.run(), server start included;`);
  console.log(`CPU s: all processes of the copy, both sides; busy: the whole machine's ${cores} cores meanwhile, anyone's work)`);
  console.log(`${'method'.padEnd(w)}  ${'moved MB'.padStart(9)}  ${'seconds'.padStart(8)}  ${'MB/s'.padStart(7)}  ${'vs rsync'.padStart(8)}  ${'CPU s'.padStart(6)}  ${'busy'.padStart(5)}`);
  for (const [name, m] of rows) {
    console.log(
      `${name.padEnd(w)}  ${f1(mb(m.bytes)).padStart(9)}  ${f2(m.seconds).padStart(8)}  ${f1(rate(m.seconds)).padStart(7)}  ` +
        `${`${((rate(m.seconds) / refRate) * 100).toFixed(0)} %`.padStart(8)}  ${f2(m.cpu.cpuS).padStart(6)}  ${`${m.cpu.busyPct.toFixed(0)} %`.padStart(5)}`,
    );
  }
  const b = rate(r.builtIn.seconds);
  const mark = (ok: boolean) => (ok ? 'met' : 'NOT MET');
  console.log(`target: built-in >= ${ratioTarget * 100} % of plain rsync (${f1(refRate)} MB/s): ${((b / refRate) * 100).toFixed(0)} % -> ${mark(b >= ratioTarget * refRate)}`);
  console.log(`target: built-in >= ${mbPerSecTarget} MB/s: ${f1(b)} MB/s -> ${mark(b >= mbPerSecTarget)}`);

  const bi = r.builtIn;
  const biPhases = phaseDurations(bi.phases, bi.seconds);
  const install = biPhases.find((p) => p.phase === 'install');
  console.log(
    `built-in phases (s): ${biPhases.map((p) => `${p.phase} ${f2(p.s)}`).join(', ')}` +
      (install ? ` [install = server stop ${f2(bi.server.stopS)} + start ${f2(bi.server.startS)} + swap/cleanup ${f2(install.s - bi.server.stopS - bi.server.startS)}]` : '') +
      (bi.backupS !== undefined ? `; the donor's mariadb-backup ran ${f2(bi.backupS)} s of the transfer` : ''),
  );
  console.log(
    `built-in CPU (s): ${f2(bi.cpu.cpuS)} in all; joiner node + mbstream + --prepare ${f2(bi.joinerCpu.cpuS)} (with its old mariadbd, stopped by the install), ` +
      `donor node + mariadb-backup + donor mariadbd ${f2(bi.cpu.cpuS - bi.joinerCpu.cpuS)}`,
  );
  const fl = bi.floor;
  console.log(
    `built-in tools alone, no Recall: mariadb-backup --stream >/dev/null ${f2(fl.backupOnlyS)} s (${f1(rate(fl.backupOnlyS))} MB/s); ` +
      `| mbstream -x ${f2(fl.backupExtractS)} s (${f1(rate(fl.backupExtractS))} MB/s, CPU ${f2(fl.backupExtractCpu.cpuS)} s, busy ${fl.backupExtractCpu.busyPct.toFixed(0)} %); --prepare ${f2(fl.prepareS)} s`,
  );
  const h = r.hook;
  console.log(
    `hook-mode phases (s): ${phaseDurations(h.phases, h.seconds)
      .map((p) => `${p.phase} ${f2(p.s)}`)
      .join(', ')} [joiner server stop ${f2(h.server.stopS)}, start ${f2(h.server.startS)}]`,
  );
}

/** One line per cache state: MB/s of each method, and the targets. */
export function printSummary(reports: ResyncReport[], totalS: number): void {
  console.log('');
  for (const r of reports) {
    const x = rates(r);
    const hook = x.rate(r.hook.seconds);
    console.log(
      `resync summary (${r.cache}): plain rsync ${f1(x.refRate)} MB/s (fastest of ${r.plain.length}), built-in ${f1(x.builtIn)} MB/s ` +
        `(${((x.builtIn / x.refRate) * 100).toFixed(0)} %: >= 70 % ${x.ratioMet ? 'met' : 'NOT MET'}, >= 100 MB/s ${x.rateMet ? 'met' : 'NOT MET'}), ` +
        `hook-mode rsync ${f1(hook)} MB/s (${((hook / x.refRate) * 100).toFixed(0)} %)`,
    );
  }
  console.log(`resync bench: ${f1(totalS)} s in all`);
}
