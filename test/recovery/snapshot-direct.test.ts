// The built-in snapshot over a direct data connection (snapshot-direct.ts), with real servers: a
// donor mariadbd with tables in several engines, a joiner mariadbd, two authenticated Transports.
// The copy must install with equal CHECKSUM TABLE values; a stranger connecting to the joiner's
// one-shot port first must not be taken for the donor; a failing backup must fail the fetch.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { rmSync } from 'node:fs';
import { Transport } from '../../src/transport/transport.js';
import { logger } from '../../src/util/log.js';
import { DirectSnapshotDonor, fetchSnapshotDirect } from '../../src/recovery/snapshot-direct.js';
import { installSnapshot, stagingDirFor } from '../../src/recovery/snapshot-install.js';
import type { ResyncProgress } from '../../src/recovery/types.js';
import { startTestMariaDB, type TestMariaDB } from '../harness/mariadb.js';
import { tempDir, type TempDir } from '../harness/tmp.js';
import { appliedIndex, checksums, connect, populate, RecordingApplier } from './snapshot-fixture.js';

const log = logger('snapshot-direct-test');
const INDEX = 4321;

describe('direct snapshot resync', () => {
  let donorDb: TestMariaDB;
  let joinerDb: TestMariaDB;
  let donorT: Transport;
  let joinerT: Transport;
  let work: TempDir;
  let applier: RecordingApplier;
  let donor: DirectSnapshotDonor;
  let donorSums: Record<string, string>;
  let staging: string;

  before(async () => {
    [donorDb, joinerDb] = await Promise.all([startTestMariaDB(), startTestMariaDB()]);
    staging = stagingDirFor(joinerDb.dataDir);
    const c = await connect(donorDb.socketPath);
    try {
      await populate(c, { index: INDEX, mb: 30 });
      donorSums = await checksums(c);
    } finally {
      await c.end();
    }
    donorT = await Transport.start({ id: 1, clusterId: 'snapd', secret: 's3cret', listen: '127.0.0.1:0', peers: new Map(), backoffMaxMs: 200 });
    joinerT = await Transport.start({ id: 2, clusterId: 'snapd', secret: 's3cret', listen: '127.0.0.1:0', peers: new Map(), backoffMaxMs: 200 });
    donorT.addPeer(2, `127.0.0.1:${joinerT.port}`);
    joinerT.addPeer(1, `127.0.0.1:${donorT.port}`);
    const end = Date.now() + 5000;
    while (!(joinerT.isConnected(1) && donorT.isConnected(2)) && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    work = tempDir('recall-direct-');
    applier = new RecordingApplier(donorDb.socketPath);
    donor = new DirectSnapshotDonor({ transport: donorT, log, applier, target: { socketPath: donorDb.socketPath, user: 'root', password: '' }, datadir: donorDb.dataDir, workDir: work.path });
  });

  after(async () => {
    await donor?.close();
    await joinerT?.close();
    await donorT?.close();
    await joinerDb?.stop();
    await donorDb?.stop();
    work?.remove();
    if (staging) rmSync(staging, { recursive: true, force: true });
  });

  test('fetch over the data connection + install: equal checksums, applied index; the donor paused and resumed once', async () => {
    // A stranger that connects to every port the joiner opens must not be handed to mbstream.
    const strangers: net.Socket[] = [];
    const seen: ResyncProgress[] = [];
    const origRequest = joinerT.request.bind(joinerT);
    joinerT.request = (peer, channel, payload, timeoutMs) => {
      try {
        const m = JSON.parse(Buffer.from(payload).toString('utf8')) as { op?: string; port?: number };
        if (m.op === 'begin' && m.port) {
          const s = net.connect({ host: '127.0.0.1', port: m.port });
          s.on('error', () => undefined);
          s.on('connect', () => s.write(Buffer.alloc(4096, 0x41)));
          strangers.push(s);
        }
      } catch {
        /* not JSON */
      }
      return origRequest(peer, channel, payload, timeoutMs);
    };
    try {
      const r = await fetchSnapshotDirect({ transport: joinerT, log, donor: 1, minIndex: INDEX, stagingDir: staging, listenHost: '127.0.0.1', onProgress: (p) => seen.push(p) });
      assert.equal(r.index, INDEX);
      assert.ok(r.bytes > 30e6, `copy of ${r.bytes} bytes`);
      assert.equal(applier.pauses, 1);
      assert.equal(applier.resumes, 1);
      assert.ok(strangers.length === 1, 'a stranger connected');
      assert.ok(seen.some((p) => p.phase === 'transfer') && seen.some((p) => p.phase === 'prepare'));
      await installSnapshot({ stagingDir: staging, datadir: joinerDb.dataDir, server: { stop: () => joinerDb.server.stop(), start: () => joinerDb.server.start() }, log });
      const c = await connect(joinerDb.socketPath);
      try {
        assert.deepEqual(await checksums(c), donorSums);
        assert.equal(await appliedIndex(c), INDEX);
      } finally {
        await c.end();
      }
      console.log(`direct snapshot of ${(r.bytes / 1e6).toFixed(1)} MB: fetch+prepare ${r.seconds.toFixed(2)} s, ${(r.bytes / 1e6 / r.seconds).toFixed(1)} MB/s`);
    } finally {
      joinerT.request = origRequest;
      for (const s of strangers) s.destroy();
    }
  });

  test('a backup that fails (bad credentials) fails the fetch, and the donor resumes its applier', async () => {
    const bad = new DirectSnapshotDonor({ transport: donorT, log, applier, target: { socketPath: donorDb.socketPath, user: 'nobody', password: 'wrong' }, datadir: donorDb.dataDir, workDir: work.path });
    await donor.close(); // the channel now belongs to `bad`
    const before = applier.resumes;
    try {
      await assert.rejects(
        fetchSnapshotDirect({ transport: joinerT, log, donor: 1, minIndex: INDEX, stagingDir: staging, listenHost: '127.0.0.1' }),
        /backup failed|mariadb-backup|Access denied|mbstream/,
      );
      assert.equal(applier.resumes, before + 1, 'resumed after the failed backup');
    } finally {
      await bad.close();
    }
  });
});
