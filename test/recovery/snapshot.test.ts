// The built-in snapshot resync end to end with real servers: a donor mariadbd with tables in
// several engines, a joiner mariadbd, two authenticated Transports with a fault relay on the
// joiner's link to the donor; fetchSnapshot + installSnapshot, then CHECKSUM TABLE on both.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { Transport, RemoteError } from '../../src/transport/transport.js';
import { logger } from '../../src/util/log.js';
import { SnapshotDonor } from '../../src/recovery/snapshot-donor.js';
import { fetchSnapshot, SNAPSHOT_MARKER } from '../../src/recovery/snapshot-joiner.js';
import { installSnapshot, installSteps, recoverInstall, stagingDirFor } from '../../src/recovery/snapshot-install.js';
import { decodeBeginReply, encodeBegin, encodeEnd, encodeRead } from '../../src/recovery/snapshot-protocol.js';
import { CHANNEL_SNAPSHOT, type ResyncProgress, type ServerControl } from '../../src/recovery/types.js';
import { startTestMariaDB, type TestMariaDB } from '../harness/mariadb.js';
import { FaultRelay } from '../harness/fault-relay.js';
import { tempDir, type TempDir } from '../harness/tmp.js';
import { appliedIndex, checksums, connect, populate, RecordingApplier } from './snapshot-fixture.js';

const log = logger('snapshot-test');
const INDEX = 1234;

describe('snapshot resync', () => {
  let donorDb: TestMariaDB;
  let joinerDb: TestMariaDB;
  let donorT: Transport;
  let joinerT: Transport;
  let relay: FaultRelay;
  let spool: TempDir;
  let applier: RecordingApplier;
  let donor: SnapshotDonor;
  let donorSums: Record<string, string>;
  let staging: string;
  let joinerServer: ServerControl;

  const makeDonor = (extra: Partial<ConstructorParameters<typeof SnapshotDonor>[0]> = {}) =>
    new SnapshotDonor({
      transport: donorT,
      log,
      applier,
      target: { socketPath: donorDb.socketPath, user: 'root', password: '' },
      datadir: donorDb.dataDir,
      spoolDir: spool.path,
      ...extra,
    });

  const fetchOpts = (extra: Partial<Parameters<typeof fetchSnapshot>[0]> = {}) => ({
    transport: joinerT,
    log,
    donor: 1,
    minIndex: INDEX,
    stagingDir: staging,
    ...extra,
  });

  async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
    const end = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async function assertJoinerEqualsDonor(): Promise<void> {
    const c = await connect(joinerDb.socketPath);
    try {
      assert.deepEqual(await checksums(c), donorSums);
      assert.equal(await appliedIndex(c), INDEX);
      const [acct] = await c.query<import('mysql2').RowDataPacket[]>(`SELECT COUNT(*) AS n FROM mysql.global_priv WHERE User = 'appuser' AND Host = '%'`);
      assert.equal(Number(acct[0]!.n), 1, 'the account came over');
      const [trg] = await c.query<import('mysql2').RowDataPacket[]>(`SELECT COUNT(*) AS n FROM information_schema.triggers WHERE trigger_schema = 'app'`);
      assert.equal(Number(trg[0]!.n), 1, 'the trigger came over');
      const [view] = await c.query<import('mysql2').RowDataPacket[]>(`SELECT COUNT(*) AS n FROM app.v_big`);
      assert.ok(Number(view[0]!.n) > 0, 'the view works');
      // The restored server takes writes (and its trigger fires).
      await c.query(`INSERT INTO app.indexed (id, k, v) VALUES (-1, 42, 'x')`);
      const [st] = await c.query<import('mysql2').RowDataPacket[]>(`SELECT stamp FROM app.indexed WHERE id = -1`);
      assert.equal(st[0]!.stamp, 't42');
      await c.query(`DELETE FROM app.indexed WHERE id = -1`);
    } finally {
      await c.end();
    }
  }

  before(async () => {
    [donorDb, joinerDb] = await Promise.all([startTestMariaDB(), startTestMariaDB()]);
    staging = stagingDirFor(joinerDb.dataDir);
    joinerServer = { stop: () => joinerDb.server.stop(), start: () => joinerDb.server.start() };
    const c = await connect(donorDb.socketPath);
    try {
      await populate(c, { index: INDEX, mb: 40 });
      donorSums = await checksums(c);
    } finally {
      await c.end();
    }
    donorT = await Transport.start({ id: 1, clusterId: 'snap', secret: 's3cret', listen: '127.0.0.1:0', peers: new Map(), backoffMaxMs: 200 });
    joinerT = await Transport.start({ id: 2, clusterId: 'snap', secret: 's3cret', listen: '127.0.0.1:0', peers: new Map(), backoffMaxMs: 200 });
    relay = await FaultRelay.start({ targetPort: donorT.port, name: 'joiner->donor' });
    donorT.addPeer(2, `127.0.0.1:${joinerT.port}`);
    joinerT.addPeer(1, relay.address);
    await until(() => joinerT.isConnected(1) && donorT.isConnected(2), 5000, 'peer links');
    spool = tempDir('recall-spool-');
    applier = new RecordingApplier(donorDb.socketPath);
    donor = makeDonor();
  });

  after(async () => {
    await donor?.close();
    await joinerT?.close();
    await donorT?.close();
    await relay?.close();
    await joinerDb?.stop();
    await donorDb?.stop();
    spool?.remove();
    if (staging) rmSync(staging, { recursive: true, force: true });
  });

  test('fetch + install: equal checksums, applied index, account; the donor paused and resumed once', async () => {
    const seen: ResyncProgress[] = [];
    const r = await fetchSnapshot(fetchOpts({ onProgress: (p: ResyncProgress) => seen.push(p) }));
    assert.equal(r.index, INDEX);
    assert.ok(r.bytes > 40e6, `stream of ${r.bytes} bytes`);
    assert.equal(applier.pauses, 1);
    assert.equal(applier.resumes, 1);
    assert.ok(existsSync(`${staging}/${SNAPSHOT_MARKER}`));
    assert.deepEqual([...new Set(seen.map((p) => p.phase))], ['waiting-for-donor', 'transfer', 'prepare', 'done']);
    const last = seen.filter((p) => p.phase === 'transfer').at(-1)!;
    assert.ok(last.bytes > 0 && last.bytesPerSec > 0 && last.totalBytes !== undefined, JSON.stringify(last));
    // The joiner's end deleted the donor's spool.
    await until(() => readdirSync(spool.path).length === 0, 5000, 'spool removal');
    assert.equal(donor.status().sessions.length, 0);

    const marker = await installSnapshot({ stagingDir: staging, datadir: joinerDb.dataDir, server: joinerServer, log });
    assert.equal(marker.index, INDEX);
    assert.ok(!existsSync(staging) && !existsSync(installSteps.oldDirFor(joinerDb.dataDir)) && !existsSync(installSteps.statePathFor(joinerDb.dataDir)));
    assert.ok(existsSync(`${joinerDb.dataDir}/recall-managed.json`), 'the supervisor marker was kept');
    await assertJoinerEqualsDonor();
    console.log(`snapshot resync of ${(r.bytes / 1e6).toFixed(1)} MB: fetch+prepare ${r.seconds.toFixed(2)} s, ${(r.bytes / 1e6 / r.seconds).toFixed(1)} MB/s`);
  });

  test('a transfer survives its link being cut twice mid-way, with equal checksums after', async () => {
    let cuts = 0;
    const onProgress = (p: ResyncProgress) => {
      const total = p.totalBytes ?? 1;
      if (p.phase === 'transfer' && ((cuts === 0 && p.bytes > total * 0.2) || (cuts === 1 && p.bytes > total * 0.6))) {
        cuts++;
        relay.cut('reset');
        setTimeout(() => relay.heal(), 400);
      }
    };
    // Small chunks, so the progress callbacks come while most of the stream is still to come.
    const r = await fetchSnapshot(fetchOpts({ onProgress, chunkBytes: 256 << 10 }));
    assert.equal(cuts, 2, 'the link was cut twice');
    assert.ok(relay.stats.refused > 0 || relay.stats.accepted > 1, 'the joiner reconnected');
    await installSnapshot({ stagingDir: staging, datadir: joinerDb.dataDir, server: joinerServer, log });
    await assertJoinerEqualsDonor();
    assert.equal(applier.resumes, applier.pauses);
    assert.ok(r.bytes > 40e6);
  });

  test('a throttled transfer takes at least bytes / rate; the donor spills what the joiner has not read to a file', async () => {
    await donor.close();
    donor = makeDonor({ spoolMemoryBytesMax: 4 << 20 });
    try {
      const rate = 30e6;
      let spilled = false;
      const onProgress = () => (spilled ||= donor.status().sessions.some((x) => x.inFile));
      const r = await fetchSnapshot(fetchOpts({ rateBytesPerSec: rate, onProgress }));
      assert.ok(r.seconds >= (r.bytes / rate) * 0.95, `${r.bytes} bytes in ${r.seconds} s at ${rate} B/s`);
      assert.ok(spilled, 'the donor spooled to a file');
      await installSnapshot({ stagingDir: staging, datadir: joinerDb.dataDir, server: joinerServer, log });
      await assertJoinerEqualsDonor();
    } finally {
      await donor.close();
      donor = makeDonor();
    }
  });

  test('an aborted fetch stops, ends its donor session and removes its staging dir', async () => {
    const ac = new AbortController();
    const onProgress = (p: ResyncProgress) => {
      if (p.phase === 'transfer' && p.bytes > 10e6) ac.abort('test');
    };
    await assert.rejects(fetchSnapshot(fetchOpts({ onProgress, signal: ac.signal, rateBytesPerSec: 50e6 })), /aborted: test/);
    assert.ok(!existsSync(staging));
    await until(() => donor.status().sessions.length === 0 && readdirSync(spool.path).length === 0, 10000, 'donor session end');
    await until(() => applier.resumes === applier.pauses, 10000, 'resume');
  });

  test('garbage and bad requests get errors; the donor keeps serving', async () => {
    const ask = (b: Buffer) => joinerT.request(1, CHANNEL_SNAPSHOT, b, 5000);
    for (const bad of [Buffer.alloc(0), Buffer.from('hello, donor'), Buffer.from([0x42]), Buffer.from([0x42, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), encodeRead(123n, 0, 1, 0)]) {
      await assert.rejects(ask(bad), (e: unknown) => e instanceof RemoteError, `request ${bad.toString('hex')}`);
    }
    await assert.rejects(ask(Buffer.concat([encodeBegin(1), Buffer.from([0])])), /trailing/);
    await assert.rejects(ask(Buffer.from([0x42, 9, 0, 0, 0, 0, 0, 0, 0, 1])), /version 9/);
    await assert.rejects(ask(encodeBegin(INDEX + 1)), /could not pause/);
    const begin = decodeBeginReply(await ask(encodeBegin(INDEX)));
    await assert.rejects(ask(encodeRead(begin.session, 0, 1 << 30, 0)), /out of range/);
    await assert.rejects(ask(encodeRead(begin.session, 0, 0, 0)), /out of range/);
    await assert.rejects(ask(encodeRead(begin.session, 0, 10, 5)), /acknowledges 5 bytes/);
    await ask(encodeEnd(begin.session));
    await ask(encodeEnd(begin.session)); // a repeated end is fine
    await until(() => applier.resumes === applier.pauses, 10000, 'resume after end');
    await until(() => readdirSync(spool.path).length === 0, 5000, 'spool removal');
  });

  test('a third begin while two sessions are open is refused; idle sessions expire and resume the applier', async () => {
    await donor.close();
    donor = makeDonor({ sessionIdleMs: 1500 });
    try {
      const ask = (b: Buffer) => joinerT.request(1, CHANNEL_SNAPSHOT, b, 10000);
      const pausesBefore = applier.pauses;
      await ask(encodeBegin(INDEX));
      await ask(encodeBegin(INDEX));
      await assert.rejects(ask(encodeBegin(INDEX)), /donor busy: 2 snapshot sessions open \(at most 2\)/);
      assert.equal(applier.pauses, pausesBefore + 2);
      // Nobody reads: both sessions expire, their backups end, the applier is resumed for each.
      await until(() => donor.status().sessions.length === 0, 15000, 'idle expiry');
      await until(() => applier.resumes === applier.pauses, 10000, 'resumes');
      await until(() => readdirSync(spool.path).length === 0, 5000, 'spool removal');
    } finally {
      await donor.close();
      donor = makeDonor();
    }
  });

  test('a failing backup fails the fetch with its stderr, and the applier resumes', async () => {
    await donor.close();
    donor = makeDonor({ target: { socketPath: donorDb.socketPath, user: 'nobody', password: 'wrong' } });
    try {
      await assert.rejects(fetchSnapshot(fetchOpts()), /backup failed[\s\S]*Access denied/);
      await until(() => applier.resumes === applier.pauses, 10000, 'resume');
      assert.ok(!existsSync(staging), 'the failed staging dir is removed');
    } finally {
      await donor.close();
      donor = makeDonor();
    }
  });

  test('an install interrupted before the move, mid-swap or before the clean-up is rolled back or completed by recoverInstall', async () => {
    await fetchSnapshot(fetchOpts());
    const datadir = joinerDb.dataDir;
    // Crash 1: state written, nothing moved yet -> rolled back, the staging copy kept.
    await joinerServer.stop();
    installSteps.writeState({ datadir, stagingDir: staging });
    assert.equal(await recoverInstall(datadir, log, staging), 'rolled-back');
    assert.ok(existsSync(staging) && !existsSync(installSteps.statePathFor(datadir)));
    // Crash 2: the old datadir moved aside, the snapshot not yet in place -> completed.
    installSteps.writeState({ datadir, stagingDir: staging });
    installSteps.moveDatadirAside(datadir);
    assert.ok(!existsSync(datadir));
    assert.equal(await recoverInstall(datadir, log, staging), 'completed');
    assert.ok(existsSync(datadir) && !existsSync(staging) && !existsSync(installSteps.oldDirFor(datadir)));
    assert.ok(existsSync(`${datadir}/recall-managed.json`), 'the supervisor marker was carried over');
    await joinerServer.start();
    await assertJoinerEqualsDonor();
    assert.equal(await recoverInstall(datadir, log, staging), 'nothing');
    // Crash 3: the snapshot is in place, the old datadir not yet deleted -> cleaned up.
    await fetchSnapshot(fetchOpts());
    await joinerServer.stop();
    installSteps.writeState({ datadir, stagingDir: staging });
    installSteps.swap(datadir);
    assert.ok(existsSync(installSteps.oldDirFor(datadir)) && !existsSync(staging));
    assert.equal(await recoverInstall(datadir, log, staging), 'completed');
    assert.ok(!existsSync(installSteps.oldDirFor(datadir)) && !existsSync(installSteps.statePathFor(datadir)));
    await joinerServer.start();
    await assertJoinerEqualsDonor();
  });
});
