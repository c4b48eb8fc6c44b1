// One measurement each of the resync bench: a plain rsync of the stopped donor's datadir, and a
// joiner resynced by each method (built-in snapshot, hook-mode rsync) as `recall serve` would run
// it: the method's factory given a Transport, an applier and a logger, its runner.run() timed.
// Every joiner starts empty, is checked against the donor's CHECKSUM TABLE values, and is stopped
// and removed afterwards, also when the run fails.
import { execFile, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Transport } from '../../src/transport/transport.js';
import type { Logger } from '../../src/util/log.js';
import { ManagedMariaDB } from '../../src/supervisor/mariadb.js';
import { localDatabase } from '../../src/supervisor/local-database.js';
import { loadConfig } from '../../src/config/load.js';
import { snapshotMethod } from '../../src/recovery/snapshot-method.js';
import { rsyncMethod } from '../../src/recovery/rsync-joiner.js';
import type { ResyncRunner } from '../../src/recovery/manager.js';
import type { ApplierPause, ResyncProgress, ServerControl } from '../../src/recovery/types.js';
import { freePort } from '../../test/harness/ports.js';
import { mariadbPid } from './cluster-cpu.js';
import { cpuMeter } from './resync-cpu.js';
import { setCache, type CacheState } from './resync-cache.js';
import { APPLIED_INDEX, assertSameChecksums, checksumsAt } from './resync-data.js';
import { DONOR_ID, type DonorCommand, type DonorReply } from './resync-ipc.js';
import type { Measured, MethodRun } from './resync-report.js';

/** The donor process and what it told us. */
export class Donor {
  private readonly waiters: ((r: DonorReply) => void)[] = [];
  readonly logs: Extract<DonorReply, { type: 'log' }>[] = [];
  constructor(readonly proc: ChildProcess) {
    proc.on('message', (m: DonorReply) => {
      if (m.type === 'log') this.logs.push(m);
      else this.waiters.shift()?.(m);
    });
  }
  reply(): Promise<DonorReply> {
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`the donor process exited (${code})`));
      this.proc.once('exit', onExit);
      this.waiters.push((m) => {
        this.proc.off('exit', onExit);
        resolve(m);
      });
    });
  }
  async command(c: DonorCommand): Promise<void> {
    const r = this.reply();
    this.proc.send(c);
    const m = await r;
    if (m.type === 'done' && m.error) throw new Error(`donor ${c.type}: ${m.error}`);
  }
}

export interface RunContext {
  /** The bench's temp dir; every joiner lives under it. */
  root: string;
  donor: Donor;
  donorDatadir: string;
  joinerT: Transport;
  log: Logger;
  localRsh: string;
  fixtures: string;
  /** The donor's CHECKSUM TABLE values. */
  want: Record<string, string>;
  cache: CacheState;
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(cmd, args, { maxBuffer: 16 << 20 }, (e, out, err) => (e ? reject(new Error(`${cmd} ${args.join(' ')}: ${e.message}\n${err}`)) : resolve(out))),
  );
}

/** `rsync -a --delete` of the stopped donor's datadir into an empty directory over local-rsh. */
export async function plainRsync(ctx: RunContext, name: string): Promise<Measured> {
  const dest = join(ctx.root, name);
  mkdirSync(dest, { recursive: true });
  try {
    await setCache(ctx.donorDatadir, ctx.cache);
    const meter = cpuMeter(() => [process.pid]); // both rsyncs are our children (local-rsh runs the remote one)
    const t = performance.now();
    const out = await run('rsync', ['-a', '--delete', '--stats', '-e', ctx.localRsh, `127.0.0.1:${ctx.donorDatadir}/`, `${dest}/`]);
    const seconds = (performance.now() - t) / 1000;
    const moved = /Total transferred file size: ([\d,]+)/.exec(out);
    return { seconds, bytes: moved ? Number(moved[1]!.replace(/,/g, '')) : 0, cpu: meter() };
  } finally {
    rmSync(dest, { recursive: true, force: true });
  }
}

/** SIGKILLs a mariadbd left running from `dir`'s pid file, if its command line names `under`. */
export function killLeftover(dir: string, under: string): void {
  const pid = mariadbPid(dir);
  if (!pid) return;
  try {
    if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(under)) return;
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
}

/** A joiner applies nothing here; it is never asked to donate. */
const idleApplier: ApplierPause = {
  pause: () => Promise.reject(new Error('the bench joiner does not donate')),
  resume: () => undefined,
};

/** Server stop/start of a joiner, timed (the install's share of a run). */
function timedServer(s: ServerControl, times: { stopS: number; startS: number }): ServerControl {
  return {
    stop: async () => {
      const t = performance.now();
      await s.stop();
      times.stopS += (performance.now() - t) / 1000;
    },
    start: async () => {
      const t = performance.now();
      await s.start();
      times.startS += (performance.now() - t) / 1000;
    },
  };
}

/**
 * runner.run() against the donor, timed; phases are the first time each was reported. CPU is of
 * this process and the donor's with their children, and of both servers by their pids (read at
 * both ends: a server stopped meanwhile is counted in its parent's children's time).
 */
async function timedRun(ctx: RunContext, runner: ResyncRunner, joinerPid: () => number | undefined, server: MethodRun['server']): Promise<MethodRun> {
  await setCache(ctx.donorDatadir, ctx.cache);
  const phases: MethodRun['phases'] = [];
  const joinerMeter = cpuMeter(() => [process.pid, joinerPid()]);
  const meter = cpuMeter(() => [process.pid, joinerPid(), ctx.donor.proc.pid, mariadbPid(ctx.donorDatadir)]);
  const t = performance.now();
  const r = await runner.run(DONOR_ID, APPLIED_INDEX, {
    transport: ctx.joinerT,
    log: ctx.log,
    onProgress: (p: ResyncProgress) => {
      if (phases.at(-1)?.phase !== p.phase) phases.push({ phase: p.phase, atS: (performance.now() - t) / 1000 });
    },
  });
  const seconds = (performance.now() - t) / 1000;
  const cpu = meter();
  const joinerCpu = joinerMeter();
  if (r.index !== APPLIED_INDEX) throw new Error(`${runner.method}: the copy holds index ${r.index}, the donor ${APPLIED_INDEX}`);
  return { seconds, bytes: r.bytes, phases, cpu, joinerCpu, server };
}

/** The built-in method into a managed joiner with an empty database. */
export async function runSnapshot(ctx: RunContext, name: string): Promise<MethodRun & { backupS: number | undefined }> {
  const dir = join(ctx.root, name);
  const datadir = join(dir, 'data');
  mkdirSync(join(dir, 'recall'), { recursive: true });
  const db = new ManagedMariaDB({ dataDir: datadir, socketPath: join(dir, 'mysqld.sock'), port: 0, flushLogAtTrxCommit: 2, autoRestart: false, stopTimeoutMs: 60_000 });
  let close: (() => void) | undefined;
  try {
    await db.start();
    const server = { stopS: 0, startS: 0 };
    const m = snapshotMethod({
      datadir,
      dataDir: join(dir, 'recall'),
      target: { socketPath: db.socketPath, user: 'root', password: '' },
      server: timedServer({ stop: () => db.stop(), start: () => db.start() }, server),
      rateBytes: 0,
      // the direct data connection, as recall serve uses it; BENCH_RESYNC_CHUNKED=1 measures the chunked protocol
      ...(process.env.BENCH_RESYNC_CHUNKED === '1' ? {} : { listenHost: '127.0.0.1' }),
    })({ transport: ctx.joinerT, applier: idleApplier, log: ctx.log });
    close = m.close;
    const logsBefore = ctx.donor.logs.length;
    const r = await timedRun(ctx, m.runner, () => db.pid, server);
    const backupDone = ctx.donor.logs.slice(logsBefore).find((l) => l.message === 'snapshot backup done');
    assertSameChecksums(`built-in snapshot (${ctx.cache})`, ctx.want, await checksumsAt(db.socketPath));
    return { ...r, backupS: backupDone ? Number(backupDone.fields.seconds) : undefined };
  } finally {
    close?.();
    await db.stop().catch(() => undefined);
    for (const d of [dir, `${datadir}.resync-staging`, `${datadir}.resync-old`]) rmSync(d, { recursive: true, force: true });
  }
}

/** Hook-mode rsync into a joiner run by the StartServer/StopServer fixture scripts, from an empty datadir. */
export async function runHook(ctx: RunContext, name: string): Promise<MethodRun> {
  const dir = join(ctx.root, name);
  const datadir = join(dir, 'data');
  const runDir = join(dir, 'run');
  mkdirSync(datadir, { recursive: true });
  mkdirSync(runDir, { recursive: true });
  const socket = join(runDir, 'mysqld.sock');
  const db = localDatabase(
    loadConfig({
      env: {},
      flags: {
        dsn: `mysql://root@localhost/?socket=${encodeURIComponent(socket)}`,
        'start-server': `'${ctx.fixtures}/start-db.sh' '${datadir}' '${runDir}' ${await freePort()}`,
        'stop-server': `'${ctx.fixtures}/stop-db.sh' '${runDir}'`,
        'sync-path': datadir,
        'sync-cmd': ctx.localRsh,
      },
    }),
  );
  let close: (() => void) | undefined;
  try {
    const server = { stopS: 0, startS: 0 };
    const m = rsyncMethod({ syncPath: datadir, syncCmd: ctx.localRsh, server: timedServer(db, server), donorHost: () => '127.0.0.1', protect: [join(dir, 'recall')] })({
      transport: ctx.joinerT,
      applier: idleApplier,
      log: ctx.log,
    });
    close = m.close;
    const r = await timedRun(ctx, m.runner, () => mariadbPid(runDir), server);
    assertSameChecksums(`hook-mode rsync (${ctx.cache})`, ctx.want, await checksumsAt(socket));
    return r;
  } finally {
    close?.();
    await db.stop().catch(() => undefined);
    killLeftover(runDir, dir); // StopServer failed: the server is ours by its pid file
    rmSync(dir, { recursive: true, force: true });
  }
}
