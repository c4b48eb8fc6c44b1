// Full resync of a ~1 GiB database with each method, side by side with a plain rsync of the same
// data directory (issue 4, "Must show"). Run by `npm run bench -- resync`, or after
// `npm run build`: node dist/bench/resync.js
//   - donor: a managed mariadbd in a process of its own with both donor services on a peer
//     Transport (bench/lib/resync-donor.ts), filled to BENCH_RESYNC_MB of data directory;
//   - plain rsync: `rsync -a --delete` of the stopped donor's datadir into an empty directory
//     through the local-rsh remote shell (rsync's real protocol over a pipe);
//   - built-in: snapshotMethod's runner on a joiner with a managed mariadbd and an empty database;
//   - hook mode: rsyncMethod's runner, joiner started/stopped by the StartServer/StopServer
//     fixture scripts, from an empty datadir, local-rsh as syncCmd.
// Each method's time is its whole runner.run(): transfer, prepare, install, server start. After
// each, CHECKSUM TABLE of every table must equal the donor's, or the bench fails.
// MB/s divide the donor's data directory size (du -sb) for all, so they compare; MB = 10^6 bytes.
// Every measurement starts with dirty pages synced and the donor's files read into the page cache
// (warm: the methods' own cost, not the disk's; InnoDB writes with O_DIRECT, so otherwise whichever
// run came first would read from disk alone). BENCH_RESYNC_CACHE=cold,warm adds a pass with only
// the donor's files evicted before each run; on this VM the host's cache serves them again after
// the first read, so that pass is not a disk measurement beyond its first plain rsync.
// Settings (environment):
//   BENCH_RESYNC_MB          data directory size in MiB (default 1024)
//   BENCH_RESYNC_CACHE       comma list of passes, cold and/or warm (default warm)
//   BENCH_RESYNC_ROUNDS      rounds of plain rsync, built-in, hook mode, in turn (default 2); the targets
//                            compare each method's fastest round
//   BENCH_RESYNC_POOL_MB     donor's InnoDB buffer pool (default 2048)
//   BENCH_RESYNC_CPU_PROF    a directory: the donor process writes a V8 CPU profile there on exit (run the
//                            bench itself with node --cpu-prof --cpu-prof-dir=DIR for the joiner's)
import { fork } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Transport } from '../src/transport/transport.js';
import { configureLogging, logger } from '../src/util/log.js';
import type { CacheState } from './lib/resync-cache.js';
import { mariadbPid } from './lib/cluster-cpu.js';
import { checksumsAt, connect, dirBytes, populate } from './lib/resync-data.js';
import { DONOR_ID, JOINER_ID, donorPaths, type DonorCommand, type DonorInit } from './lib/resync-ipc.js';
import { measureFloor } from './lib/resync-floor.js';
import { Donor, killLeftover, plainRsync, runHook, runSnapshot, type RunContext } from './lib/resync-runs.js';
import { printReport, printSummary, type ResyncReport } from './lib/resync-report.js';

const targetMiB = Number(process.env.BENCH_RESYNC_MB ?? 1024);
const caches = (process.env.BENCH_RESYNC_CACHE ?? 'warm').split(',') as CacheState[];
const donorPoolMiB = Number(process.env.BENCH_RESYNC_POOL_MB ?? 2048);
const rounds = Math.max(1, Number(process.env.BENCH_RESYNC_ROUNDS ?? 2));
const cpuProfDir = process.env.BENCH_RESYNC_CPU_PROF;
const fixtures = join(process.cwd(), 'test/recovery/fixtures');
const localRsh = join(fixtures, 'local-rsh');
const secret = 'resync-bench';

configureLogging({ silent: !process.env.DEBUG_LOG, debug: !!process.env.DEBUG_LOG });
const log = logger('resync-bench', { nodeId: JOINER_ID });

/**
 * One pass over every method with the donor's files in `cache` state: `rounds` times plain rsync,
 * built-in, hook mode, in turn (load on this shared machine drifts; each gets its share of it).
 * The donor is stopped on entry and on return.
 */
async function pass(ctx: RunContext, dataBytes: number, donorDirs: ReturnType<typeof donorPaths>): Promise<ResyncReport> {
  const c = ctx.cache;
  const rep: ResyncReport = { cache: c, dataBytes, plain: [], builtIn: [], hook: [], floor: undefined };
  for (let i = 1; i <= rounds; i++) {
    rep.plain.push(await plainRsync(ctx, `plain-${c}-${i}`));
    await ctx.donor.command({ type: 'start' });
    rep.builtIn.push(await runSnapshot(ctx, `snap-${c}-${i}`));
    rep.floor ??= await measureFloor({
      datadir: donorDirs.datadir,
      socketPath: donorDirs.socketPath,
      workDir: join(ctx.root, `floor-${c}`),
      cache: c,
      serverPid: () => mariadbPid(donorDirs.datadir),
    });
    rep.hook.push(await runHook(ctx, `hook-${c}-${i}`));
    await ctx.donor.command({ type: 'stop' });
  }
  return rep;
}

async function main(): Promise<void> {
  const started = performance.now();
  const root = mkdtempSync(join(tmpdir(), 'recall-resync-'));
  const donorDirs = donorPaths(root);
  let joinerT: Transport | undefined;
  let donor: Donor | undefined;
  try {
    for (const d of [donorDirs.datadir, donorDirs.recallDir]) mkdirSync(d, { recursive: true });
    joinerT = await Transport.start({ id: JOINER_ID, clusterId: 'resync-bench', secret, listen: '127.0.0.1:0', peers: new Map() });
    donor = new Donor(
      fork(fileURLToPath(new URL('./lib/resync-donor.js', import.meta.url)), [], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        execArgv: [...process.execArgv.filter((a) => !a.startsWith('--cpu-prof')), ...(cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] : [])],
      }),
    );
    const ready = donor.reply();
    const init: DonorInit = { ...donorDirs, syncCmd: localRsh, joinerPort: joinerT.port, secret, extraArgs: [`--innodb-buffer-pool-size=${donorPoolMiB}M`] };
    donor.proc.send(init);
    const r = await ready;
    if (r.type !== 'ready') throw new Error(`donor: ${JSON.stringify(r)}`);
    joinerT.addPeer(DONOR_ID, `127.0.0.1:${r.port}`);
    for (const end = Date.now() + 10_000; !joinerT.isConnected(DONOR_ID); ) {
      if (Date.now() > end) throw new Error('the peer link to the donor did not come up');
      await new Promise((res) => setTimeout(res, 20));
    }

    const t = performance.now();
    const c = await connect(donorDirs.socketPath);
    const rows = await populate(c, donorDirs.datadir, targetMiB * 2 ** 20).finally(() => c.end());
    const want = await checksumsAt(donorDirs.socketPath);
    await donor.command({ type: 'stop' }); // a clean shutdown: the datadir as a quiesced donor's
    const dataBytes = dirBytes(donorDirs.datadir);
    console.log(
      `resync: donor filled with ${rows} rows in ${((performance.now() - t) / 1000).toFixed(0)} s; data directory ${(dataBytes / 1e6).toFixed(0)} MB ` +
        `(${(dataBytes / 2 ** 30).toFixed(2)} GiB); ${Object.keys(want).length} tables checksummed; load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`,
    );

    const reports: ResyncReport[] = [];
    for (const cache of caches) {
      const ctx: RunContext = { root, donor, donorDatadir: donorDirs.datadir, joinerT, log, localRsh, fixtures, want, cache };
      const rep = await pass(ctx, dataBytes, donorDirs);
      printReport(rep);
      reports.push(rep);
    }
    printSummary(reports, (performance.now() - started) / 1000);
  } finally {
    const cleanupAt = performance.now();
    await joinerT?.close();
    if (donor && donor.proc.exitCode === null) {
      const exited = new Promise((res) => donor!.proc.once('exit', res));
      donor.proc.send({ type: 'exit' } satisfies DonorCommand);
      await Promise.race([exited, new Promise((res) => setTimeout(res, 90_000).unref())]);
      donor.proc.kill('SIGKILL');
    }
    // A donor process that died without stopping its server leaves it running: ours by its pid file.
    killLeftover(donorDirs.datadir, root);
    rmSync(root, { recursive: true, force: true });
    console.log(`resync bench: cleaned up in ${((performance.now() - cleanupAt) / 1000).toFixed(1)} s`);
  }
}

main().catch((e) => {
  console.error(`resync bench failed: ${(e as Error).stack ?? e}`);
  process.exit(1);
});
