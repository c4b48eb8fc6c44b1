// The resync bench's table: every method's time over the same numerator (the donor's data
// directory), each against plain rsync, the issue's two targets for the built-in method, and where
// each method's time went (the phases its runner reported, the joiner's server stop and start).

export interface Measured {
  seconds: number;
  /** What the method moved: rsync's transferred file size, or the snapshot stream's size. */
  bytes: number;
}

/** Phases in the order reported, each with the time since the run began when it was first seen. */
export type PhaseTimes = { phase: string; atS: number }[];

interface MethodRun extends Measured {
  phases: PhaseTimes;
  cpuJoinerS: number;
  server: { stopS: number; startS: number };
}

export interface ResyncReport {
  dataBytes: number;
  plain: Measured[];
  builtIn: MethodRun & { backupS: number | undefined; donorCpuS: number; donorDbCpuS: number };
  hook: MethodRun;
  totalS: number;
}

/** The issue's targets for the built-in resync. */
const ratioTarget = 0.7;
const mbPerSecTarget = 100;

const mb = (bytes: number) => bytes / 1e6;
const f1 = (x: number) => x.toFixed(1);
const f2 = (x: number) => x.toFixed(2);

/** "a 1.20, b 3.40" from phase start times and the run's end. */
function phaseDurations(phases: PhaseTimes, endS: number): { phase: string; s: number }[] {
  return phases.map((p, i) => ({ phase: p.phase, s: (phases[i + 1]?.atS ?? endS) - p.atS }));
}

export function printReport(r: ResyncReport): void {
  const rate = (s: number) => mb(r.dataBytes) / s;
  const refRate = Math.max(...r.plain.map((p) => rate(p.seconds)));
  const rows: [string, Measured][] = [
    ...r.plain.map((p, i): [string, Measured] => [`plain rsync -a --delete, round ${i + 1}`, p]),
    ['built-in snapshot (snapshotMethod)', r.builtIn],
    ['hook-mode rsync (rsyncMethod)', r.hook],
  ];
  const w = Math.max(...rows.map(([n]) => n.length));
  console.log('');
  console.log(`Full resync of a ${f1(mb(r.dataBytes))} MB data directory over loopback (MB = 10^6 bytes; MB/s = data directory / seconds;`);
  console.log(`"vs rsync" against the fastest plain rsync round; a method's seconds are its whole runner.run(), server start included)`);
  console.log(`${'method'.padEnd(w)}  ${'moved MB'.padStart(9)}  ${'seconds'.padStart(8)}  ${'MB/s'.padStart(7)}  ${'vs rsync'.padStart(8)}`);
  for (const [name, m] of rows) {
    console.log(
      `${name.padEnd(w)}  ${f1(mb(m.bytes)).padStart(9)}  ${f2(m.seconds).padStart(8)}  ${f1(rate(m.seconds)).padStart(7)}  ${`${((rate(m.seconds) / refRate) * 100).toFixed(0)} %`.padStart(8)}`,
    );
  }
  const b = rate(r.builtIn.seconds);
  const mark = (ok: boolean) => (ok ? 'met' : 'NOT MET');
  console.log(`target: built-in >= ${ratioTarget * 100} % of plain rsync (${f1(refRate)} MB/s): ${((b / refRate) * 100).toFixed(0)} % -> ${mark(b >= ratioTarget * refRate)}`);
  console.log(`target: built-in >= ${mbPerSecTarget} MB/s: ${f1(b)} MB/s -> ${mark(b >= mbPerSecTarget)}`);

  const bi = r.builtIn;
  const biPhases = phaseDurations(bi.phases, bi.seconds).filter((p) => p.phase !== 'done');
  const install = biPhases.find((p) => p.phase === 'install');
  console.log(
    `built-in phases (s): ${biPhases.map((p) => `${p.phase} ${f2(p.s)}`).join(', ')}` +
      (install ? ` [install = server stop ${f2(bi.server.stopS)} + start ${f2(bi.server.startS)} + swap/cleanup ${f2(install.s - bi.server.stopS - bi.server.startS)}]` : '') +
      (bi.backupS !== undefined ? `; the donor's mariadb-backup ran ${f2(bi.backupS)} s of the transfer` : ''),
  );
  console.log(
    `built-in CPU (s): joiner node + mbstream + --prepare ${f2(bi.cpuJoinerS)} (and its old mariadbd, stopped by the install), ` +
      `donor node + its mariadb-backup ${f2(bi.donorCpuS)}, donor mariadbd ${f2(bi.donorDbCpuS)}`,
  );
  const h = r.hook;
  console.log(
    `hook-mode phases (s): ${phaseDurations(h.phases, h.seconds)
      .filter((p) => p.phase !== 'done')
      .map((p) => `${p.phase} ${f2(p.s)}`)
      .join(', ')} [joiner server stop ${f2(h.server.stopS)}, start ${f2(h.server.startS)}]`,
  );
  console.log(`resync bench: ${f1(r.totalS)} s in all`);
}
