// Hook-mode full resync with real parts: two mariadbd servers started and stopped by the
// StartServer/StopServer fixture scripts through CommandLocalDatabase (hook mode), two peer
// transports on 127.0.0.1, and rsync speaking its real protocol over a pipe through the
// local-rsh fixture (in place of ssh).
//   RSYNC_TEST_MB=300 [RSYNC_TEST_COMPARE=checksum] npx tsx --test test/recovery/rsync.test.ts   (throughput)
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { execFile } from 'node:child_process';
import mysql from 'mysql2/promise';
import { Transport, RemoteError } from '../../src/transport/transport.js';
import { configureLogging, logger } from '../../src/util/log.js';
import { loadConfig } from '../../src/config/load.js';
import { localDatabase, type LocalDatabase } from '../../src/supervisor/local-database.js';
import { RsyncDonor } from '../../src/recovery/rsync-donor.js';
import { rsyncResync, type RsyncResyncOptions } from '../../src/recovery/rsync-joiner.js';
import { CHANNEL_RSYNC, type ApplierPause, type ResyncProgress, type ServerControl } from '../../src/recovery/types.js';
import { decodeQuiesceReply, decodeReleaseReply, encodeQuiesce, encodeRelease, encodeRenew, newRsyncSession } from '../../src/recovery/rsync-protocol.js';
import { freePort } from '../harness/ports.js';
import { tempDir, type TempDir } from '../harness/tmp.js';

configureLogging({ silent: !process.env.DEBUG_LOG, debug: !!process.env.DEBUG_LOG });

// Run from the repository root (npm test and npx tsx both do); fixtures are not compiled.
const fixtures = join(process.cwd(), 'test/recovery/fixtures');
const localRsh = join(fixtures, 'local-rsh');
const dataMb = Number(process.env.RSYNC_TEST_MB ?? 40);
const finalPassCompare = process.env.RSYNC_TEST_COMPARE === 'checksum' ? 'checksum' : 'mtime';
const tables = ['t1', 't2', 't3', 't4'];
const APPLIED_IDX = 777;

interface Db {
  dir: TempDir;
  dataDir: string;
  runDir: string;
  socket: string;
  local: LocalDatabase;
  conn(): Promise<mysql.Connection>;
}

async function makeDb(name: string): Promise<Db> {
  const dir = tempDir(`recall-rsync-${name}-`);
  const dataDir = join(dir.path, 'data');
  const runDir = join(dir.path, 'run');
  const socket = join(runDir, 'mysqld.sock');
  const port = await freePort();
  const cfg = loadConfig({
    env: {},
    flags: {
      dsn: `mysql://root@localhost/?socket=${encodeURIComponent(socket)}`,
      'start-server': `'${fixtures}/start-db.sh' '${dataDir}' '${runDir}' ${port}`,
      'stop-server': `'${fixtures}/stop-db.sh' '${runDir}'`,
      'sync-path': dataDir,
      'sync-cmd': localRsh,
    },
  });
  const local = localDatabase(cfg);
  assert.equal(local.mode, 'hook');
  await local.start();
  return { dir, dataDir, runDir, socket, local, conn: () => mysql.createConnection({ socketPath: socket, user: 'root', multipleStatements: true }) };
}

async function withConn<T>(db: Db, f: (c: mysql.Connection) => Promise<T>): Promise<T> {
  const c = await db.conn();
  try {
    return await f(c);
  } finally {
    await c.end().catch(() => c.destroy());
  }
}

async function checksums(db: Db): Promise<Record<string, string>> {
  return withConn(db, async (c) => {
    const [rows] = await c.query(`CHECKSUM TABLE ${[...tables.map((t) => `app.${t}`), 'app.live', 'recall.applied'].join(', ')}`);
    return Object.fromEntries((rows as { Table: string; Checksum: string | number | null }[]).map((r) => [r.Table, String(r.Checksum)]));
  });
}

async function appliedIdx(db: Db): Promise<number> {
  return withConn(db, async (c) => {
    const [rows] = await c.query('SELECT idx FROM recall.applied WHERE id = 1');
    return Number((rows as { idx: number }[])[0]!.idx);
  });
}

/** The donor's applier as the resync sees it: pause returns what recall.applied holds. */
class RecordingApplier implements ApplierPause {
  pauses = 0;
  resumes = 0;
  constructor(private readonly db: () => Db) {}
  async pause(minIndex: number): Promise<number> {
    this.pauses++;
    const idx = await appliedIdx(this.db());
    if (idx < minIndex) throw new Error(`applied ${idx} < ${minIndex}`);
    return idx;
  }
  resume(): void {
    this.resumes++;
  }
}

/** Counts calls, so a test can tell that nothing ran. */
class CountingServer implements ServerControl {
  stops = 0;
  starts = 0;
  constructor(
    private readonly inner: ServerControl,
    private readonly hooks: { afterStop?: () => void; beforeStart?: () => void } = {},
  ) {}
  async stop(): Promise<void> {
    this.stops++;
    await this.inner.stop();
    this.hooks.afterStop?.();
  }
  async start(): Promise<void> {
    this.starts++;
    this.hooks.beforeStart?.();
    await this.inner.start();
  }
}

async function until(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => execFile(cmd, args, { maxBuffer: 1 << 20 }, (e, _o, err) => (e ? reject(new Error(`${cmd}: ${e.message} ${err}`)) : resolve())));
}

function mbps(bytes: number, seconds: number): number {
  return Math.round(bytes / 1e6 / seconds);
}

describe('hook-mode rsync resync (real mariadbd, rsync, transports)', { timeout: 900_000 }, () => {
  let donorDb: Db;
  let joinerDb: Db;
  let donorT: Transport;
  let joinerT: Transport;
  const log = logger('rsync-test');

  before(async () => {
    [donorDb, joinerDb] = await Promise.all([makeDb('donor'), makeDb('joiner')]);
    donorT = await Transport.start({ id: 1, clusterId: 'c1', secret: 's3cret', listen: '127.0.0.1:0', peers: new Map(), backoffMaxMs: 100 });
    joinerT = await Transport.start({ id: 2, clusterId: 'c1', secret: 's3cret', listen: '127.0.0.1:0', peers: new Map(), backoffMaxMs: 100 });
    donorT.addPeer(2, `127.0.0.1:${joinerT.port}`);
    joinerT.addPeer(1, `127.0.0.1:${donorT.port}`);
    await until(() => donorT.isConnected(2) && joinerT.isConnected(1), 5000, 'peer links');

    const rowsPerTable = Math.ceil((dataMb * 1024) / tables.length);
    await withConn(donorDb, async (c) => {
      await c.query(`CREATE DATABASE recall; CREATE TABLE recall.applied (id TINYINT UNSIGNED PRIMARY KEY, idx BIGINT UNSIGNED NOT NULL, term BIGINT UNSIGNED NOT NULL, checksum INT UNSIGNED NOT NULL) ENGINE=InnoDB;
        INSERT INTO recall.applied VALUES (1, ${APPLIED_IDX}, 3, 123456); CREATE DATABASE app;
        CREATE TABLE app.live (id INT AUTO_INCREMENT PRIMARY KEY, payload VARCHAR(2000) NOT NULL) ENGINE=InnoDB`);
      for (const t of tables) {
        await c.query(`CREATE TABLE app.${t} (id INT AUTO_INCREMENT PRIMARY KEY, n INT NOT NULL, payload VARCHAR(2000) NOT NULL) ENGINE=InnoDB`);
        // ~1 KiB a row, random so that no page resembles another.
        for (let done = 0; done < rowsPerTable; done += 20000) {
          await c.query(`INSERT INTO app.${t} (n, payload) SELECT seq, REPEAT(MD5(RAND()), 32) FROM app.seq_1_to_${Math.min(20000, rowsPerTable - done)}`);
        }
      }
    });
    // The joiner holds something else, which the copy must replace (and --delete remove).
    await withConn(joinerDb, (c) => c.query('CREATE DATABASE stale; CREATE TABLE stale.x (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO stale.x VALUES (1)'));
  });

  after(async () => {
    await joinerT?.close();
    await donorT?.close();
    for (const db of [donorDb, joinerDb]) {
      if (!db) continue;
      // A failed test may have left the data directory moved away; the stop needs none of it.
      await db.local.stop().catch((e: Error) => log.warn('stop failed', { error: e.message }));
      db.dir.remove();
    }
  });

  function joinerOptions(over: Partial<RsyncResyncOptions> = {}): RsyncResyncOptions {
    return {
      transport: joinerT,
      log,
      donor: 1,
      donorHost: '127.0.0.1',
      syncPath: joinerDb.dataDir,
      syncCmd: localRsh,
      server: joinerDb.local,
      minIndex: 700,
      ...over,
    };
  }

  test('copies a donor under write load: equal checksums, both servers up, donor paused and resumed once', async (t) => {
    const applier = new RecordingApplier(() => donorDb);
    const donorServer = new CountingServer(donorDb.local);
    const donor = new RsyncDonor({ transport: donorT, log, applier, server: donorServer, syncPath: donorDb.dataDir });

    // A writer keeps the donor busy until its server stops at quiesce (its writes then fail).
    let writes = 0;
    let writing = true;
    const writerConn = await donorDb.conn();
    const writer = (async () => {
      try {
        while (writing) {
          await writerConn.query(`INSERT INTO app.live (payload) VALUES (REPEAT(MD5(RAND()), 40)); UPDATE app.t1 SET n = n + 1 WHERE id = ${1 + (writes % 1000) * 7}`);
          writes++;
        }
      } catch {
        /* the donor's server stopped: expected */
      }
    })();
    await until(() => writes > 20, 10_000, 'writer started');

    const phases: string[] = [];
    const reports: ResyncProgress[] = [];
    let writesAtFirstPass = -1;
    let writesAfterFirstPass = -1;
    const t0 = Date.now();
    const r = await rsyncResync(
      joinerOptions({
        finalPassCompare,
        onProgress: (p) => {
          reports.push(p);
          if (phases.at(-1) !== p.phase) {
            phases.push(p.phase);
            if (p.phase === 'first-pass') writesAtFirstPass = writes;
            if (p.phase === 'waiting-for-donor' && writesAtFirstPass >= 0) writesAfterFirstPass = writes;
          }
        },
      }),
    );
    const seconds = (Date.now() - t0) / 1000;
    writing = false;
    await writer;
    writerConn.destroy();
    await donor.close();

    assert.deepEqual(phases, ['waiting-for-donor', 'stopping-server', 'first-pass', 'waiting-for-donor', 'final-pass', 'starting-server', 'done']);
    assert.ok(writesAfterFirstPass > writesAtFirstPass, `the donor was written during the first pass (${writesAtFirstPass} -> ${writesAfterFirstPass})`);
    assert.ok(r.finalPass.bytes > 0, 'the final pass had changes to move (the first pass was not consistent)');
    assert.equal(r.index, APPLIED_IDX);
    assert.equal(applier.pauses, 1);
    assert.equal(applier.resumes, 1);
    assert.equal(donorServer.stops, 1);
    assert.equal(donorServer.starts, 1);
    assert.ok(reports.some((p) => p.phase === 'first-pass' && p.bytes > 0 && p.totalBytes !== undefined), 'first-pass progress with bytes and total');

    // Both servers run; the joiner's database is the donor's, taken after the release.
    await donorDb.local.ping();
    await joinerDb.local.ping();
    const want = await checksums(donorDb);
    const got = await checksums(joinerDb);
    assert.deepEqual(got, want);
    assert.equal(await appliedIdx(joinerDb), APPLIED_IDX);
    const [stale] = await withConn(joinerDb, (c) => c.query("SHOW DATABASES LIKE 'stale'"));
    assert.equal((stale as unknown[]).length, 0, '--delete removed what only the joiner had');

    // Throughput, and a plain rsync of the same directory for comparison.
    const plainDir = tempDir('recall-rsync-plain-');
    try {
      const p0 = Date.now();
      await run('rsync', ['-a', '-e', localRsh, `127.0.0.1:${donorDb.dataDir}/`, `${plainDir.path}/`]);
      const plainSec = (Date.now() - p0) / 1000;
      const msg =
        `final pass by ${finalPassCompare}: data dir ${Math.round(r.firstPass.totalBytes / 1e6)} MB: resync ${seconds.toFixed(2)} s in all, ` +
        `first pass ${Math.round(r.firstPass.bytes / 1e6)} MB in ${r.firstPass.seconds.toFixed(2)} s (${mbps(r.firstPass.bytes, r.firstPass.seconds)} MB/s), ` +
        `final pass ${Math.round(r.finalPass.bytes / 1e6)} MB changed (${Math.round(r.finalPass.wireBytes / 1e6)} MB on the wire) in ${r.finalPass.seconds.toFixed(2)} s, ` +
        `donor stopped ${r.quiescedMs} ms; plain rsync -a of the same directory ${plainSec.toFixed(2)} s (${mbps(r.firstPass.totalBytes, plainSec)} MB/s)`;
      t.diagnostic(msg);
      if (process.env.RSYNC_TEST_MB) console.log(msg);
    } finally {
      plainDir.remove();
    }
  });

  test('a joiner that vanishes after quiesce: the lease releases the donor; a second quiesce is refused meanwhile', async () => {
    const applier = new RecordingApplier(() => donorDb);
    const donorServer = new CountingServer(donorDb.local);
    const donor = new RsyncDonor({ transport: donorT, log, applier, server: donorServer, syncPath: donorDb.dataDir, leaseMs: 1500 });
    try {
      const session = newRsyncSession();
      const q = decodeQuiesceReply(await joinerT.request(1, CHANNEL_RSYNC, encodeQuiesce(session, 1), 120_000));
      assert.equal(q.index, APPLIED_IDX);
      assert.equal(q.syncPath, donorDb.dataDir);
      assert.equal(q.leaseMs, 1500);
      await assert.rejects(donorDb.local.ping(1000), 'the donor server is stopped while quiesced');
      await assert.rejects(joinerT.request(1, CHANNEL_RSYNC, encodeQuiesce(newRsyncSession(), 1), 10_000), (e: Error) => e instanceof RemoteError && /donor busy: already quiesced for node 2/.test(e.message));
      // Renewed once, then the joiner "dies": no renew, no release.
      await joinerT.request(1, CHANNEL_RSYNC, encodeRenew(session), 5000);
      const t0 = Date.now();
      await until(() => donor.status().state === 'idle', 60_000, 'lease release');
      assert.ok(Date.now() - t0 >= 1000, 'not released before the lease ran out');
      await donorDb.local.ping();
      assert.equal(applier.pauses, 1);
      assert.equal(applier.resumes, 1);
      assert.equal(donorServer.starts, 1);
      // The joiner, were it to come back, learns its copy is not consistent.
      await assert.rejects(joinerT.request(1, CHANNEL_RSYNC, encodeRenew(session), 5000), /session ended: lease expired/);
      assert.equal(decodeReleaseReply(await joinerT.request(1, CHANNEL_RSYNC, encodeRelease(session), 5000)).held, false);
      // Garbage is an error, not a crash.
      await assert.rejects(joinerT.request(1, CHANNEL_RSYNC, Buffer.from([0x51, 1, 2]), 5000), /truncated/);
      await assert.rejects(joinerT.request(1, CHANNEL_RSYNC, Buffer.from([0x99]), 5000), /unknown op/);
      assert.equal(donor.status().state, 'idle');
    } finally {
      await donor.close();
    }
  });

  test('a bad syncPath is refused before anything runs', async () => {
    const applier = new RecordingApplier(() => donorDb);
    const donor = new RsyncDonor({ transport: donorT, log, applier, server: donorDb.local, syncPath: donorDb.dataDir });
    const joinerServer = new CountingServer(joinerDb.local);
    try {
      for (const [syncPath, why] of [
        ['', /syncPath is empty/],
        ['relative/data', /not an absolute path/],
        ['/', /root directory/],
        ['/var/lib/../lib/mysql', /not in normal form/],
      ] as const) {
        await assert.rejects(rsyncResync(joinerOptions({ syncPath, server: joinerServer })), why);
      }
      await assert.rejects(rsyncResync(joinerOptions({ syncCmd: ' ' })), /syncCmd is empty/);
      await assert.rejects(rsyncResync(joinerOptions({ donorHost: '-oProxyCommand=x' })), /not a host name/);
      assert.throws(() => new RsyncDonor({ transport: donorT, log, applier, server: donorDb.local, syncPath: 'data' }), /not an absolute path/);
      assert.equal(joinerServer.stops, 0);
      assert.equal(applier.pauses, 0);
      await joinerDb.local.ping();
    } finally {
      await donor.close();
    }
  });

  test('an rsync failure in the first pass reports rsync\'s message and never quiesces the donor', async () => {
    const applier = new RecordingApplier(() => donorDb);
    const missing = join(donorDb.dir.path, 'no-such-dir');
    const donor = new RsyncDonor({ transport: donorT, log, applier, server: donorDb.local, syncPath: missing });
    try {
      await assert.rejects(rsyncResync(joinerOptions()), /rsync failed with exit code \d+: .*no-such-dir.*No such file or directory/s);
      assert.equal(applier.pauses, 0);
      await donorDb.local.ping();
    } finally {
      await donor.close();
      await joinerDb.local.start();
    }
  });

  test('an rsync failure in the final pass releases the donor and reports rsync\'s message', async () => {
    const applier = new RecordingApplier(() => donorDb);
    const moved = donorDb.dataDir + '.moved';
    // The donor's files vanish while it is quiesced (stopped), and come back before it starts.
    const donorServer = new CountingServer(donorDb.local, {
      afterStop: () => renameSync(donorDb.dataDir, moved),
      beforeStart: () => existsSync(moved) && renameSync(moved, donorDb.dataDir),
    });
    const donor = new RsyncDonor({ transport: donorT, log, applier, server: donorServer, syncPath: donorDb.dataDir });
    try {
      await assert.rejects(rsyncResync(joinerOptions()), /rsync failed with exit code \d+: .*No such file or directory/s);
      assert.equal(applier.pauses, 1);
      assert.equal(applier.resumes, 1);
      assert.equal(donorServer.starts, 1);
      assert.equal(donor.status().state, 'idle');
      await donorDb.local.ping();
      assert.equal(await appliedIdx(donorDb), APPLIED_IDX);
    } finally {
      if (existsSync(moved)) renameSync(moved, donorDb.dataDir);
      await donor.close();
      mkdirSync(joinerDb.dataDir, { recursive: true });
    }
  });
});
