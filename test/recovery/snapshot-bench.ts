// Throughput of the built-in snapshot resync on loopback, next to a plain rsync of the same data
// directory. Usage: npx tsx test/recovery/snapshot-bench.ts [MB of user data, default 300]
// CHUNK_KB and INFLIGHT override the joiner's chunk size and reads in flight; DONOR_PROF=dir
// writes a CPU profile of the donor process there.
// Prints one line per measurement; MB/s are of the donor's data directory size (the same
// numerator for every method), MB = 10^6 bytes.
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Transport } from '../../src/transport/transport.js';
import { logger } from '../../src/util/log.js';
import { SnapshotDonor } from '../../src/recovery/snapshot-donor.js';
import { fetchSnapshot } from '../../src/recovery/snapshot-joiner.js';
import { installSnapshot, stagingDirFor } from '../../src/recovery/snapshot-install.js';
import type { ResyncProgress } from '../../src/recovery/types.js';
import { startTestMariaDB } from '../harness/mariadb.js';
import { tempDir } from '../harness/tmp.js';
import { checksums, connect, populate, RecordingApplier } from './snapshot-fixture.js';

async function main(): Promise<void> {
  const mb = Number(process.argv[2] ?? 300);
  const log = logger('snapshot-bench');
  const [donorDb, joinerDb] = await Promise.all([startTestMariaDB(), startTestMariaDB()]);
  const spool = tempDir('recall-spool-');
  const rsyncDir = tempDir('recall-rsync-');
  const staging = stagingDirFor(joinerDb.dataDir);
  let joinerT: Transport | undefined;
  let donorProc: ChildProcess | undefined;
  try {
    const c = await connect(donorDb.socketPath);
    let t = Date.now();
    await populate(c, { index: 1, mb });
    const sums = await checksums(c);
    await c.end();
    const dataBytes = Number(execFileSync('du', ['-sb', donorDb.dataDir]).toString().split('\t')[0]);
    console.log(`populated ${mb} MB of rows in ${((Date.now() - t) / 1000).toFixed(1)} s; donor datadir ${(dataBytes / 1e6).toFixed(0)} MB`);

    // The donor runs in its own process, as it does in a cluster (one event loop per side).
    joinerT = await Transport.start({ id: 2, clusterId: 'bench', secret: 's', listen: '127.0.0.1:0', peers: new Map() });
    donorProc = fork(fileURLToPath(import.meta.url), ['donor'], { execArgv: [...process.execArgv, ...(process.env.DONOR_PROF ? ['--cpu-prof', '--cpu-prof-dir=' + process.env.DONOR_PROF] : [])], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const donorPort = await new Promise<number>((resolve, reject) => {
      donorProc!.once('message', (m) => resolve((m as { port: number }).port));
      donorProc!.once('exit', (code) => reject(new Error(`donor process exited with ${code}`)));
      donorProc!.send({ socketPath: donorDb.socketPath, dataDir: donorDb.dataDir, spoolDir: spool.path, joinerPort: joinerT!.port });
    });
    joinerT.addPeer(1, `127.0.0.1:${donorPort}`);
    while (!joinerT.isConnected(1)) await new Promise((r) => setTimeout(r, 20));

    const donorCpu = () =>
      new Promise<number>((resolve) => {
        donorProc!.once('message', (m) => {
          const c = (m as { cpu: NodeJS.CpuUsage }).cpu;
          resolve((c.user + c.system) / 1e6);
        });
        donorProc!.send('cpu');
      });
    const donorCpu0 = await donorCpu();
    const phaseAt: Record<string, number> = {};
    const cpu0 = process.cpuUsage();
    t = Date.now();
    const r = await fetchSnapshot({
      transport: joinerT,
      log,
      donor: 1,
      minIndex: 1,
      stagingDir: staging,
      chunkBytes: process.env.CHUNK_KB ? Number(process.env.CHUNK_KB) << 10 : undefined,
      inflight: process.env.INFLIGHT ? Number(process.env.INFLIGHT) : undefined,
      onProgress: (p: ResyncProgress) => (phaseAt[p.phase] ??= Date.now()),
    });
    const transferS = (phaseAt.prepare! - t) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const donorCpuS = (await donorCpu()) - donorCpu0;
    console.log(`CPU during the fetch: joiner process ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s, donor process ${donorCpuS.toFixed(2)} s`);
    const prepareS = (phaseAt.done! - phaseAt.prepare!) / 1000;
    t = Date.now();
    await installSnapshot({
      stagingDir: staging,
      datadir: joinerDb.dataDir,
      server: { stop: () => joinerDb.server.stop(), start: () => joinerDb.server.start() },
      log,
    });
    const installS = (Date.now() - t) / 1000;
    const j = await connect(joinerDb.socketPath);
    const same = JSON.stringify(await checksums(j)) === JSON.stringify(sums);
    await j.end();
    const rate = (s: number) => (dataBytes / 1e6 / s).toFixed(1);
    console.log(`stream ${(r.bytes / 1e6).toFixed(0)} MB; checksums ${same ? 'equal' : 'DIFFER'}`);
    console.log(`snapshot: backup+transfer+unpack ${transferS.toFixed(2)} s (${rate(transferS)} MB/s), prepare ${prepareS.toFixed(2)} s, install ${installS.toFixed(2)} s`);
    console.log(`snapshot end to end (fetch+prepare+install): ${(r.seconds + installS).toFixed(2)} s = ${rate(r.seconds + installS)} MB/s`);

    t = Date.now();
    execFileSync('rsync', ['-a', '--delete', `${donorDb.dataDir}/`, `${rsyncDir.path}/`]);
    const rsyncS = (Date.now() - t) / 1000;
    console.log(`plain rsync -a of the datadir: ${rsyncS.toFixed(2)} s = ${rate(rsyncS)} MB/s`);
    console.log(`snapshot end to end / rsync: ${((rsyncS / (r.seconds + installS)) * 100).toFixed(0)} %`);

    // The floor of this method: the tools piped into each other, no Recall and no network.
    const floorDir = `${rsyncDir.path}-floor`;
    t = Date.now();
    execFileSync('bash', [
      '-c',
      `set -o pipefail; mkdir -p ${floorDir} && mariadb-backup --no-defaults --backup --stream=xbstream --log-copy-interval=20 --parallel=2 ` +
        `--target-dir=${floorDir}.tmp --datadir=${donorDb.dataDir} --user=root --socket=${donorDb.socketPath} 2>/dev/null | mbstream -x -C ${floorDir} && ` +
        `mariadb-backup --no-defaults --prepare --use-memory=256M --target-dir=${floorDir} 2>/dev/null`,
    ]);
    const floorS = (Date.now() - t) / 1000;
    rmSync(floorDir, { recursive: true, force: true });
    rmSync(`${floorDir}.tmp`, { recursive: true, force: true });
    console.log(`tools alone (mariadb-backup | mbstream -x, then --prepare): ${floorS.toFixed(2)} s = ${rate(floorS)} MB/s`);
    if (!same) process.exitCode = 1;
  } finally {
    if (donorProc && donorProc.exitCode === null) {
      // Disconnecting lets it exit by itself (and write a --cpu-prof profile); kill if it does not.
      const exited = new Promise((r) => donorProc!.once('exit', r));
      donorProc.disconnect();
      const timer = setTimeout(() => donorProc!.kill(), 5000);
      await exited;
      clearTimeout(timer);
    }
    await joinerT?.close();
    await joinerDb.stop();
    await donorDb.stop();
    spool.remove();
    rsyncDir.remove();
    rmSync(staging, { recursive: true, force: true });
  }
}

/** The donor side in a child process: its own Transport and SnapshotDonor. */
function donorMain(): void {
  process.once('message', (m: { socketPath: string; dataDir: string; spoolDir: string; joinerPort: number }) => {
    void (async () => {
      const t = await Transport.start({ id: 1, clusterId: 'bench', secret: 's', listen: '127.0.0.1:0', peers: new Map() });
      t.addPeer(2, `127.0.0.1:${m.joinerPort}`);
      new SnapshotDonor({
        transport: t,
        log: logger('snapshot-bench-donor'),
        applier: new RecordingApplier(m.socketPath),
        target: { socketPath: m.socketPath, user: 'root', password: '' },
        datadir: m.dataDir,
        spoolDir: m.spoolDir,
      });
      process.send!({ port: t.port });
      process.on('message', (q: unknown) => {
        if (q === 'cpu') process.send!({ cpu: process.cpuUsage() });
      });
      // Ends with the parent (it kills this process, or the IPC channel closes).
      process.once('disconnect', () => process.exit(0));
    })();
  });
}

if (process.argv[2] === 'donor') donorMain();
else
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
