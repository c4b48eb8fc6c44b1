// Where the built-in method's time goes, measured outside Recall: the backup tool alone into
// /dev/null, and the tools piped into each other (backup | mbstream -x) as the method runs them,
// without the spool, the peer transport or Node in between. The bench prints these next to the
// method's phases, so a shortfall can be put on the tool, the pipeline, or Recall's transfer.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpuMeter, type CpuUse } from './resync-cpu.js';
import { setCache, sh, type CacheState } from './resync-cache.js';

export interface FloorTimes {
  /** mariadb-backup --backup --stream=xbstream > /dev/null */
  backupOnlyS: number;
  /** mariadb-backup --backup --stream=xbstream | mbstream -x */
  backupExtractS: number;
  /** CPU of the tools (and of the donor's mariadbd) during backupExtractS */
  backupExtractCpu: CpuUse;
  /** mariadb-backup --prepare of that copy */
  prepareS: number;
}

/** The tools' own time on the donor (running, at socketPath), with the same arguments the method uses. */
export async function measureFloor(o: { datadir: string; socketPath: string; workDir: string; serverPid: () => number | undefined; cache: CacheState }): Promise<FloorTimes> {
  mkdirSync(o.workDir, { recursive: true });
  const cnf = join(o.workDir, 'client.cnf');
  writeFileSync(cnf, `[client]\nuser=root\npassword=""\nsocket="${o.socketPath}"\n`, { mode: 0o600 });
  const backup = `mariadb-backup --defaults-file="$1" --backup --stream=xbstream --target-dir="$2/target" --datadir="$3" --parallel=2 --log-copy-interval=20 2>"$2/backup.err"`;
  const copy = join(o.workDir, 'copy');
  let cpu: CpuUse | undefined;
  const timed = async (f: () => Promise<void>) => {
    await setCache(o.datadir, o.cache);
    const meter = cpuMeter(() => [process.pid, o.serverPid()]);
    const t = performance.now();
    await f();
    cpu = meter();
    return (performance.now() - t) / 1000;
  };
  try {
    const backupOnlyS = await timed(() => sh(`${backup} >/dev/null`, [cnf, o.workDir, o.datadir]));
    rmSync(join(o.workDir, 'target'), { recursive: true, force: true });
    mkdirSync(copy);
    const backupExtractS = await timed(() => sh(`set -e; ${backup} | mbstream -x -C "$4" --parallel=2`, [cnf, o.workDir, o.datadir, copy]));
    const t = performance.now();
    await sh('mariadb-backup --no-defaults --prepare --target-dir="$1" --use-memory=256M 2>/dev/null', [copy]);
    return { backupOnlyS, backupExtractS, backupExtractCpu: cpu!, prepareS: (performance.now() - t) / 1000 };
  } finally {
    rmSync(o.workDir, { recursive: true, force: true });
  }
}
