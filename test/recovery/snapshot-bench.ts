// Throughput of the built-in snapshot resync on loopback, next to a plain rsync of the same data
// directory. Usage: npx tsx test/recovery/snapshot-bench.ts [MB of user data, default 300]
// CHUNK_KB and INFLIGHT override the joiner's chunk size and reads in flight.
// Prints one line per measurement; MB/s are of the donor's data directory size (the same
// numerator for every method), MB = 10^6 bytes.
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
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
  let donorT: Transport | undefined;
  let joinerT: Transport | undefined;
  let donor: SnapshotDonor | undefined;
  try {
    const c = await connect(donorDb.socketPath);
    let t = Date.now();
    await populate(c, { index: 1, mb });
    const sums = await checksums(c);
    await c.end();
    const dataBytes = Number(execFileSync('du', ['-sb', donorDb.dataDir]).toString().split('\t')[0]);
    console.log(`populated ${mb} MB of rows in ${((Date.now() - t) / 1000).toFixed(1)} s; donor datadir ${(dataBytes / 1e6).toFixed(0)} MB`);

    donorT = await Transport.start({ id: 1, clusterId: 'bench', secret: 's', listen: '127.0.0.1:0', peers: new Map() });
    joinerT = await Transport.start({ id: 2, clusterId: 'bench', secret: 's', listen: '127.0.0.1:0', peers: new Map() });
    donorT.addPeer(2, `127.0.0.1:${joinerT.port}`);
    joinerT.addPeer(1, `127.0.0.1:${donorT.port}`);
    while (!joinerT.isConnected(1) || !donorT.isConnected(2)) await new Promise((r) => setTimeout(r, 20));
    donor = new SnapshotDonor({
      transport: donorT,
      log,
      applier: new RecordingApplier(donorDb.socketPath),
      target: { socketPath: donorDb.socketPath, user: 'root', password: '' },
      datadir: donorDb.dataDir,
      spoolDir: spool.path,
    });

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
    console.log(`this process (donor and joiner sides) used ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s CPU during the fetch`);
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
    if (!same) process.exitCode = 1;
  } finally {
    await donor?.close();
    await joinerT?.close();
    await donorT?.close();
    await joinerDb.stop();
    await donorDb.stop();
    spool.remove();
    rsyncDir.remove();
    rmSync(staging, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
