// Full resync of a ~1 GiB database with each method, side by side with a plain rsync of the same
// data directory (issue 4, "Must show"). Run by `npm run bench -- resync`, or after
// `npm run build`: node dist/bench/resync.js
//   - donor: a managed mariadbd in a process of its own with both donor services on a peer
//     Transport (bench/lib/resync-donor.ts), filled to BENCH_RESYNC_MB of data directory;
//   - plain rsync: `rsync -a --delete` of the stopped donor's datadir into an empty directory
//     through the local-rsh remote shell (rsync's real protocol over a pipe), before and after
//     the methods (load on this shared machine drifts);
//   - built-in: snapshotMethod's runner on a joiner with a managed mariadbd and an empty database;
//   - hook mode: rsyncMethod's runner, joiner started/stopped by the StartServer/StopServer
//     fixture scripts, from an empty datadir, local-rsh as syncCmd.
// Each method's time is its whole runner.run(): transfer, prepare, install, server start. After
// each, CHECKSUM TABLE of every table must equal the donor's, or the bench fails.
// MB/s divide the donor's data directory size (du -sb) for all, so they compare; MB = 10^6 bytes.
// Every measurement starts with the donor's files read into the page cache and dirty pages synced:
// InnoDB writes with O_DIRECT, so otherwise whichever run came first would read from disk alone.
// Settings (environment):
//   BENCH_RESYNC_MB          data directory size in MiB (default 1024)
//   BENCH_RESYNC_ROUNDS      plain rsync rounds (default 2: one before, one after the methods)
//   BENCH_RESYNC_POOL_MB     donor's InnoDB buffer pool (default 2048)
//   BENCH_RESYNC_CPU_PROF    a directory: the donor process writes a V8 CPU profile there on exit (run the
//                            bench itself with node --cpu-prof --cpu-prof-dir=DIR for the joiner's)
import { execFile, fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Transport } from '../src/transport/transport.js';
import { configureLogging, logger } from '../src/util/log.js';
import { ManagedMariaDB } from '../src/supervisor/mariadb.js';
import { localDatabase, type LocalDatabase } from '../src/supervisor/local-database.js';
import { loadConfig } from '../src/config/load.js';
import { snapshotMethod } from '../src/recovery/snapshot-method.js';
import { rsyncMethod } from '../src/recovery/rsync-joiner.js';
import type { ResyncRunner } from '../src/recovery/manager.js';
import type { ApplierPause, ResyncProgress } from '../src/recovery/types.js';
import { freePort } from '../test/harness/ports.js';
import { mariadbPid } from './lib/cluster-cpu.js';
import { cpuMeter, type CpuUse } from './lib/resync-cpu.js';
import { APPLIED_INDEX, assertSameChecksums, checksumsAt, connect, dirBytes, populate } from './lib/resync-data.js';
import { DONOR_ID, JOINER_ID, donorPaths, type DonorCommand, type DonorInit, type DonorReply } from './lib/resync-ipc.js';
import { measureFloor, warm } from './lib/resync-floor.js';
import { printReport, type Measured, type PhaseTimes } from './lib/resync-report.js';

const targetMiB = Number(process.env.BENCH_RESYNC_MB ?? 1024);
const plainRounds = Math.max(1, Number(process.env.BENCH_RESYNC_ROUNDS ?? 2));
const donorPoolMiB = Number(process.env.BENCH_RESYNC_POOL_MB ?? 2048);
const fixtures = join(process.cwd(), 'test/recovery/fixtures');
const localRsh = join(fixtures, 'local-rsh');
const cpuProfDir = process.env.BENCH_RESYNC_CPU_PROF;
const secret = 'resync-bench';

configureLogging({ silent: !process.env.DEBUG_LOG, debug: !!process.env.DEBUG_LOG });
const log = logger('resync-bench', { nodeId: JOINER_ID });

/** The donor process and what it told us. */
class Donor {
  private readonly waiters: ((r: DonorReply) => void)[] = [];
  readonly logs: Extract<DonorReply, { type: 'log' }>[] = [];
  mariadbPid: number | undefined;
  constructor(readonly proc: ChildProcess) {
    proc.on('message', (m: DonorReply) => {
      if (m.type === 'log') this.logs.push(m);
      else {
        this.mariadbPid = m.pid ?? this.mariadbPid;
        this.waiters.shift()?.(m);
      }
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

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(cmd, args, { maxBuffer: 16 << 20 }, (e, out, err) => (e ? reject(new Error(`${cmd} ${args.join(' ')}: ${e.message}\n${err}`)) : resolve(out))),
  );
}

/** Dirty pages of earlier steps written out, so no measurement pays for another's writes. */
const settle = () => run('sync', []);

/** SIGKILLs a mariadbd left running from `dir`'s pid file, if its command line is one of ours. */
function killLeftover(dir: string, root: string): void {
  const pid = mariadbPid(dir);
  if (!pid) return;
  try {
    if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(root)) return;
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
}

/** `rsync -a --delete` of the donor's datadir into an empty dir over local-rsh. */
async function plainRsync(source: string, dest: string): Promise<Measured> {
  rmSync(dest, { recursive: true, force: true });
  mkdirSync(dest, { recursive: true });
  await warm(source);
  await settle();
  const meter = cpuMeter(() => [process.pid]); // both rsyncs are our children (local-rsh runs the remote one)
  const t = performance.now();
  const out = await run('rsync', ['-a', '--delete', '--stats', '-e', localRsh, `127.0.0.1:${source}/`, `${dest}/`]);
  const seconds = (performance.now() - t) / 1000;
  const moved = /Total transferred file size: ([\d,]+)/.exec(out);
  return { seconds, bytes: moved ? Number(moved[1]!.replace(/,/g, '')) : 0, cpu: meter() };
}

/**
 * Runs a method's runner against the donor; phases are the first time each was reported. CPU is of
 * this process and the donor's with their children, and of both servers by their pid files (read
 * at both ends: a server stopped meanwhile is counted in its parent's children's time).
 */
async function timedRun(
  runner: ResyncRunner,
  transport: Transport,
  donor: Donor,
  servers: { donorDatadir: string; joinerPid: () => number | undefined },
): Promise<Measured & { phases: PhaseTimes; joinerCpu: CpuUse }> {
  const donorDatadir = servers.donorDatadir;
  await warm(donorDatadir);
  await settle();
  const phases: PhaseTimes = [];
  const joinerMeter = cpuMeter(() => [process.pid, servers.joinerPid()]);
  const meter = cpuMeter(() => [process.pid, servers.joinerPid(), donor.proc.pid, mariadbPid(donorDatadir)]);
  const t = performance.now();
  const r = await runner.run(DONOR_ID, APPLIED_INDEX, {
    transport,
    log,
    onProgress: (p: ResyncProgress) => {
      if (phases.at(-1)?.phase !== p.phase) phases.push({ phase: p.phase, atS: (performance.now() - t) / 1000 });
    },
  });
  const seconds = (performance.now() - t) / 1000;
  const cpu = meter();
  const joinerCpu = joinerMeter();
  if (r.index !== APPLIED_INDEX) throw new Error(`${runner.method}: the copy holds index ${r.index}, the donor ${APPLIED_INDEX}`);
  return { seconds, bytes: r.bytes, phases, cpu, joinerCpu };
}

/** Server stop/start of a joiner, timed (the install's share of a run). */
function timedServer(s: { stop(): Promise<void>; start(): Promise<void> }, times: { stopS: number; startS: number }) {
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

/** A joiner applies nothing here; it is never asked to donate. */
const idleApplier: ApplierPause = {
  pause: () => Promise.reject(new Error('the bench joiner does not donate')),
  resume: () => undefined,
};

async function main(): Promise<void> {
  const started = performance.now();
  const root = mkdtempSync(join(tmpdir(), 'recall-resync-'));
  const donorDirs = donorPaths(root);
  const snapDir = join(root, 'snap', 'data');
  const hookDir = join(root, 'hook', 'data');
  const hookRun = join(root, 'hook', 'run');
  let joinerT: Transport | undefined;
  let donor: Donor | undefined;
  let snapDb: ManagedMariaDB | undefined;
  let hookDb: LocalDatabase | undefined;
  const closers: (() => void)[] = [];
  try {
    for (const d of [donorDirs.datadir, donorDirs.recallDir, join(root, 'snap', 'recall'), hookDir, hookRun]) mkdirSync(d, { recursive: true });
    joinerT = await Transport.start({ id: JOINER_ID, clusterId: 'resync-bench', secret, listen: '127.0.0.1:0', peers: new Map() });
    donor = new Donor(fork(fileURLToPath(new URL('./lib/resync-donor.js', import.meta.url)), [], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      execArgv: [...process.execArgv.filter((a) => !a.startsWith('--cpu-prof')), ...(cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] : [])],
    }));
    const ready = donor.reply();
    const init: DonorInit = {
      ...donorDirs,
      syncCmd: localRsh,
      joinerPort: joinerT.port,
      secret,
      extraArgs: [`--innodb-buffer-pool-size=${donorPoolMiB}M`],
    };
    donor.proc.send(init);
    const r = await ready;
    if (r.type !== 'ready') throw new Error(`donor: ${JSON.stringify(r)}`);
    joinerT.addPeer(DONOR_ID, `127.0.0.1:${r.port}`);
    for (const end = Date.now() + 10_000; !joinerT.isConnected(DONOR_ID); ) {
      if (Date.now() > end) throw new Error('the peer link to the donor did not come up');
      await new Promise((res) => setTimeout(res, 20));
    }

    // 1. The donor's database.
    let t = performance.now();
    const c = await connect(donorDirs.socketPath);
    const rows = await populate(c, donorDirs.datadir, targetMiB * 2 ** 20).finally(() => c.end());
    const want = await checksumsAt(donorDirs.socketPath);
    await donor.command({ type: 'stop' }); // a clean shutdown: the datadir as rsync would see it quiesced
    const dataBytes = dirBytes(donorDirs.datadir);
    console.log(
      `resync: donor filled with ${rows} rows in ${((performance.now() - t) / 1000).toFixed(0)} s; data directory ${(dataBytes / 1e6).toFixed(0)} MB ` +
        `(${(dataBytes / 2 ** 30).toFixed(2)} GiB); ${Object.keys(want).length} tables checksummed; load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`,
    );

    // 2. Plain rsync, first round (donor stopped).
    const plain: Measured[] = [];
    plain.push(await plainRsync(donorDirs.datadir, join(root, 'plain')));
    rmSync(join(root, 'plain'), { recursive: true, force: true });
    await donor.command({ type: 'start' });

    // 3. Built-in snapshot method: a managed joiner with an empty database.
    snapDb = new ManagedMariaDB({ dataDir: snapDir, socketPath: join(root, 'snap', 'mysqld.sock'), port: 0, flushLogAtTrxCommit: 2, autoRestart: false, stopTimeoutMs: 60_000 });
    await snapDb.start();
    const snapServer = { stopS: 0, startS: 0 };
    const snap = snapshotMethod({
      datadir: snapDir,
      dataDir: join(root, 'snap', 'recall'),
      target: { socketPath: snapDb.socketPath, user: 'root', password: '' },
      server: timedServer({ stop: () => snapDb!.stop(), start: () => snapDb!.start() }, snapServer),
      rateBytes: 0,
    })({ transport: joinerT, applier: idleApplier, log });
    closers.push(snap.close);
    const logsBefore = donor.logs.length;
    const builtIn = await timedRun(snap.runner, joinerT, donor, { donorDatadir: donorDirs.datadir, joinerPid: () => snapDb?.pid });
    const backupDone = donor.logs.slice(logsBefore).find((l) => l.message === 'snapshot backup done');
    assertSameChecksums('built-in snapshot', want, await checksumsAt(snapDb.socketPath));
    await snapDb.stop();
    snapDb = undefined;
    rmSync(join(root, 'snap'), { recursive: true, force: true });
    const floor = await measureFloor({ datadir: donorDirs.datadir, socketPath: donorDirs.socketPath, workDir: join(root, 'floor'), serverPid: () => donor!.mariadbPid });

    // 4. Hook-mode rsync: StartServer/StopServer fixture scripts, empty datadir.
    const hookPort = await freePort();
    const hookSocket = join(hookRun, 'mysqld.sock');
    hookDb = localDatabase(
      loadConfig({
        env: {},
        flags: {
          dsn: `mysql://root@localhost/?socket=${encodeURIComponent(hookSocket)}`,
          'start-server': `'${fixtures}/start-db.sh' '${hookDir}' '${hookRun}' ${hookPort}`,
          'stop-server': `'${fixtures}/stop-db.sh' '${hookRun}'`,
          'sync-path': hookDir,
          'sync-cmd': localRsh,
        },
      }),
    );
    const hookServer = { stopS: 0, startS: 0 };
    const hook = rsyncMethod({ syncPath: hookDir, syncCmd: localRsh, server: timedServer(hookDb, hookServer), donorHost: () => '127.0.0.1', protect: [join(root, 'hook', 'recall')] })({
      transport: joinerT,
      applier: idleApplier,
      log,
    });
    closers.push(hook.close);
    const hookRun1 = await timedRun(hook.runner, joinerT, donor, { donorDatadir: donorDirs.datadir, joinerPid: () => mariadbPid(hookRun) });
    assertSameChecksums('hook-mode rsync', want, await checksumsAt(hookSocket));
    await hookDb.stop();
    hookDb = undefined;
    rmSync(join(root, 'hook'), { recursive: true, force: true });

    // 5. Plain rsync, further rounds.
    await donor.command({ type: 'stop' });
    for (let i = 1; i < plainRounds; i++) {
      plain.push(await plainRsync(donorDirs.datadir, join(root, 'plain')));
      rmSync(join(root, 'plain'), { recursive: true, force: true });
    }

    printReport({
      dataBytes,
      plain,
      builtIn: { ...builtIn, server: snapServer, backupS: backupDone ? Number(backupDone.fields.seconds) : undefined, floor },
      hook: { ...hookRun1, server: hookServer },
      totalS: (performance.now() - started) / 1000,
    });
  } finally {
    const cleanupAt = performance.now();
    for (const c of closers) c();
    await hookDb?.stop().catch(() => undefined);
    await snapDb?.stop().catch(() => undefined);
    await joinerT?.close();
    if (donor && donor.proc.exitCode === null) {
      const exited = new Promise((res) => donor!.proc.once('exit', res));
      donor.proc.send({ type: 'exit' } satisfies DonorCommand);
      await Promise.race([exited, new Promise((res) => setTimeout(res, 90_000).unref())]);
      donor.proc.kill('SIGKILL');
    }
    // A donor process that died without stopping its server leaves it running: ours by its pid file.
    for (const d of [donorDirs.datadir, snapDir, hookRun]) killLeftover(d, root);
    rmSync(root, { recursive: true, force: true });
    console.log(`resync bench: cleaned up in ${((performance.now() - cleanupAt) / 1000).toFixed(1)} s`);
  }
}

main().catch((e) => {
  console.error(`resync bench failed: ${(e as Error).stack ?? e}`);
  process.exit(1);
});
