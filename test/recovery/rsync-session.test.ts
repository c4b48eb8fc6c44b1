// The donor's quiesce as a lease, with real rsync (local-rsh fixture) and real transports; the
// donor's "database" is a plain directory and its server a stand-in (what is tested here is
// the session: renew, abort, lost link, slow and failing stops), the real servers are in
// rsync.test.ts.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Transport, RemoteError, RequestTimeoutError } from '../../src/transport/transport.js';
import { configureLogging, logger } from '../../src/util/log.js';
import { RsyncDonor } from '../../src/recovery/rsync-donor.js';
import { rsyncMethod, rsyncResync, type RsyncResyncOptions } from '../../src/recovery/rsync-joiner.js';
import { CHANNEL_RSYNC, type ApplierPause, type ResyncProgress, type ServerControl } from '../../src/recovery/types.js';
import { decodeQuiesceReply, encodeQuiesce, newRsyncSession } from '../../src/recovery/rsync-protocol.js';
import { tempDir, type TempDir } from '../harness/tmp.js';

configureLogging({ silent: !process.env.DEBUG_LOG, debug: !!process.env.DEBUG_LOG });

const localRsh = join(process.cwd(), 'test/recovery/fixtures/local-rsh');
const log = logger('rsync-session-test');
const fileBytes = 4 << 20;

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

class Recorder implements ApplierPause, ServerControl {
  readonly events: string[] = [];
  constructor(private readonly o: { stop?: () => Promise<void> } = {}) {}
  async pause(): Promise<number> {
    this.events.push('pause');
    return 9;
  }
  resume(): void {
    this.events.push('resume');
  }
  async stop(): Promise<void> {
    this.events.push('stop');
    await this.o.stop?.();
  }
  async start(): Promise<void> {
    this.events.push('start');
  }
}

async function startTransport(id: number): Promise<Transport> {
  return Transport.start({ id, clusterId: 'c1', secret: 's', listen: '127.0.0.1:0', peers: new Map(), backoffMaxMs: 100 });
}

async function link(a: Transport, ida: number, b: Transport, idb: number): Promise<void> {
  a.addPeer(idb, `127.0.0.1:${b.port}`);
  b.addPeer(ida, `127.0.0.1:${a.port}`);
  await until(() => a.isConnected(idb) && b.isConnected(ida), 5000, 'peer links');
}

describe('rsync donor session', () => {
  let dir: TempDir;
  let donorT: Transport;
  let joinerT: Transport;
  let n = 0;
  const joinerServer: ServerControl = { stop: async () => undefined, start: async () => undefined };

  before(async () => {
    dir = tempDir('recall-rsync-session-');
    donorT = await startTransport(1);
    joinerT = await startTransport(2);
    await link(donorT, 1, joinerT, 2);
  });
  after(async () => {
    await joinerT?.close();
    await donorT?.close();
    dir?.remove();
  });

  /** A donor directory whose one file is rewritten (new bytes, new time) when the server stops. */
  function donorDir(): { src: string; dst: string; rewrite: () => Promise<void> } {
    const src = join(dir.path, `src${++n}`);
    mkdirSync(src);
    writeFileSync(join(src, 'data'), randomBytes(fileBytes));
    return { src, dst: join(dir.path, `dst${n}`), rewrite: async () => writeFileSync(join(src, 'data'), randomBytes(fileBytes)) };
  }

  function opts(dst: string, over: Partial<RsyncResyncOptions> = {}): RsyncResyncOptions {
    return { transport: joinerT, log, donor: 1, donorHost: '127.0.0.1', syncPath: dst, syncCmd: localRsh, server: joinerServer, minIndex: 1, ...over };
  }

  test('a final pass longer than the lease keeps the donor quiesced by renewing it; progress a few times a second', async () => {
    const d = donorDir();
    const rec = new Recorder({ stop: d.rewrite });
    const donor = new RsyncDonor({ transport: donorT, log, applier: rec, server: rec, syncPath: d.src, leaseMs: 400 });
    const reports: ResyncProgress[] = [];
    try {
      // 2 MB/s: each pass takes about 2 s, five leases.
      const r = await rsyncResync(opts(d.dst, { rateBytes: 2 << 20, onProgress: (p) => reports.push({ ...p }) }));
      assert.equal(r.index, 9);
      assert.ok(r.finalPass.seconds > 1, `final pass took ${r.finalPass.seconds} s`);
      assert.deepEqual(readFileSync(join(d.dst, 'data')), readFileSync(join(d.src, 'data')));
      assert.deepEqual(rec.events, ['pause', 'stop', 'start', 'resume']);
      const final = reports.filter((p) => p.phase === 'final-pass');
      assert.ok(final.length >= 4, `${final.length} progress reports in the final pass`);
      assert.ok(final.some((p) => p.bytes > 0 && p.bytesPerSec > 0 && p.totalBytes === fileBytes && p.etaSec !== undefined), JSON.stringify(final));
      // Throttled to 2 MiB/s; allow for rsync's burstiness.
      assert.ok(r.firstPass.bytes / r.firstPass.seconds < 4 << 20, `first pass ${r.firstPass.bytes / r.firstPass.seconds} B/s`);
    } finally {
      await donor.close();
    }
  });

  test('an abort during the final pass kills rsync and releases the donor', async () => {
    const d = donorDir();
    const rec = new Recorder({ stop: d.rewrite });
    const donor = new RsyncDonor({ transport: donorT, log, applier: rec, server: rec, syncPath: d.src });
    const ac = new AbortController();
    try {
      const p = rsyncResync(
        opts(d.dst, {
          rateBytes: 2 << 20,
          signal: ac.signal,
          onProgress: (pr) => pr.phase === 'final-pass' && setTimeout(() => ac.abort(new Error('operator cancelled')), 300),
        }),
      );
      await assert.rejects(p, /operator cancelled/);
      assert.deepEqual(rec.events, ['pause', 'stop', 'start', 'resume']);
      assert.equal(donor.status().state, 'idle');
    } finally {
      await donor.close();
    }
  });

  test('a joiner whose link stays down releases the donor after disconnectGraceMs, long before the lease', async () => {
    const d = donorDir();
    const rec = new Recorder();
    const donor = new RsyncDonor({ transport: donorT, log, applier: rec, server: rec, syncPath: d.src, leaseMs: 60_000, disconnectGraceMs: 300 });
    const third = await startTransport(3);
    try {
      await link(donorT, 1, third, 3);
      decodeQuiesceReply(await third.request(1, CHANNEL_RSYNC, encodeQuiesce(newRsyncSession(), 1), 10_000));
      assert.equal(donor.status().state, 'quiesced');
      await third.close();
      const t0 = Date.now();
      await until(() => donor.status().state === 'idle', 10_000, 'release after the link went down');
      assert.ok(Date.now() - t0 < 5000);
      assert.deepEqual(rec.events, ['pause', 'stop', 'start', 'resume']);
    } finally {
      donorT.removePeer(3);
      await third.close();
      await donor.close();
    }
  });

  test('a joiner that gives up waiting for the quiesce gets it undone once the donor has stopped', async () => {
    const d = donorDir();
    const rec = new Recorder({ stop: () => new Promise((r) => setTimeout(r, 1500)) });
    const donor = new RsyncDonor({ transport: donorT, log, applier: rec, server: rec, syncPath: d.src });
    try {
      await assert.rejects(rsyncResync(opts(d.dst, { quiesceTimeoutMs: 300 })), (e: Error) => e instanceof RequestTimeoutError);
      await until(() => donor.status().state === 'idle', 10_000, 'donor idle');
      assert.deepEqual(rec.events, ['pause', 'stop', 'start', 'resume']);
    } finally {
      await donor.close();
    }
  });

  test('rsyncMethod: the runner copies from a peer, and a replica being resynced refuses to donate', async () => {
    const d = donorDir();
    const recB = new Recorder({ stop: d.rewrite });
    const recA = new Recorder();
    const deps = (transport: Transport, applier: ApplierPause) => ({ transport, applier, log });
    const b = rsyncMethod({ syncPath: d.src, syncCmd: localRsh, server: recB, donorHost: () => 'unused' })(deps(donorT, recB));
    const a = rsyncMethod({ syncPath: d.dst, syncCmd: localRsh, server: recA, donorHost: (peer) => (peer === 1 ? '127.0.0.1' : 'nowhere'), rateBytes: 4 << 20 })(deps(joinerT, recA));
    try {
      assert.equal(a.runner.method, 'rsync');
      const phases: string[] = [];
      const run = a.runner.run(1, 1, { transport: joinerT, log, onProgress: (p) => phases.push(p.phase) });
      await until(() => phases.includes('first-pass'), 10_000, 'first pass');
      await assert.rejects(donorT.request(2, CHANNEL_RSYNC, encodeQuiesce(newRsyncSession(), 1), 5000), /donor unavailable: it is being resynced itself/);
      const r = await run;
      assert.equal(r.index, 9);
      assert.deepEqual(readFileSync(join(d.dst, 'data')), readFileSync(join(d.src, 'data')));
      assert.deepEqual(recA.events, ['stop', 'start'], 'the joiner stopped and started its own server');
      assert.deepEqual(recB.events, ['pause', 'stop', 'start', 'resume']);
      assert.throws(() => rsyncMethod({ syncPath: 'rel', syncCmd: localRsh, server: recA, donorHost: () => 'x' }), /not an absolute path/);
      assert.throws(() => rsyncMethod({ syncPath: dir.path, protect: [join(dir.path, 'recall')], syncCmd: localRsh, server: recA, donorHost: () => 'x' }), /which a resync would delete/);
    } finally {
      a.close();
      b.close();
    }
  });

  test('a donor whose server does not stop resumes its applier and says why', async () => {
    const d = donorDir();
    const rec = new Recorder({ stop: () => Promise.reject(new Error('stopServer (systemctl stop mariadb) failed with exit code 1: permission denied')) });
    const donor = new RsyncDonor({ transport: donorT, log, applier: rec, server: rec, syncPath: d.src });
    try {
      await assert.rejects(rsyncResync(opts(d.dst)), (e: Error) => e instanceof RemoteError && /donor could not stop its database server: .*permission denied/.test(e.message));
      // start() after a failed stop is a no-op for a server that still runs (hook mode pings first).
      assert.deepEqual(rec.events, ['pause', 'stop', 'start', 'resume']);
      assert.equal(donor.status().state, 'idle');
    } finally {
      await donor.close();
    }
  });
});
