// The final pass finds every file the donor changed during the first pass, also one rewritten
// at the same size within the same tick of the file-time clock (so its time did not change),
// which rsync's quick check alone would skip. Real rsync over the local-rsh fixture and real
// transports; the "database" here is a plain directory, its server a stand-in that rewrites a
// file while "stopping", the way InnoDB writes its preallocated files at shutdown.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { Transport } from '../../src/transport/transport.js';
import { configureLogging, logger } from '../../src/util/log.js';
import { RsyncDonor } from '../../src/recovery/rsync-donor.js';
import { rsyncResync, runRsync } from '../../src/recovery/rsync-joiner.js';
import type { ApplierPause, ServerControl } from '../../src/recovery/types.js';
import { tempDir, type TempDir } from '../harness/tmp.js';

configureLogging({ silent: !process.env.DEBUG_LOG, debug: !!process.env.DEBUG_LOG });

const localRsh = join(process.cwd(), 'test/recovery/fixtures/local-rsh');
const log = logger('rsync-mtime-test');

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Rewrites `file` with other bytes of the same size and puts its old modification time back. */
function rewriteSameSizeSameTime(file: string): void {
  const st = statSync(file);
  writeFileSync(file, randomBytes(st.size));
  utimesSync(file, st.atime, st.mtime);
}

describe('rsync resync final pass', () => {
  let dir: TempDir;
  let donorT: Transport;
  let joinerT: Transport;
  const applier: ApplierPause = { pause: async () => 42, resume: () => undefined };
  const idle: ServerControl = { stop: async () => undefined, start: async () => undefined };

  before(async () => {
    dir = tempDir('recall-rsync-mtime-');
    donorT = await Transport.start({ id: 1, clusterId: 'c1', secret: 's', listen: '127.0.0.1:0', peers: new Map(), backoffMaxMs: 100 });
    joinerT = await Transport.start({ id: 2, clusterId: 'c1', secret: 's', listen: '127.0.0.1:0', peers: new Map(), backoffMaxMs: 100 });
    donorT.addPeer(2, `127.0.0.1:${joinerT.port}`);
    joinerT.addPeer(1, `127.0.0.1:${donorT.port}`);
    await until(() => donorT.isConnected(2) && joinerT.isConnected(1), 5000, 'peer links');
  });
  after(async () => {
    await joinerT?.close();
    await donorT?.close();
    dir?.remove();
  });

  function donorDir(name: string): string {
    const d = join(dir.path, name);
    mkdirSync(join(d, 'db'), { recursive: true });
    writeFileSync(join(d, 'ibdata1'), randomBytes(1 << 20));
    writeFileSync(join(d, 'db', 't.ibd'), randomBytes(3 << 20));
    // An old file, untouched: must not be marked (nor moved again).
    writeFileSync(join(d, 'db', 'old.frm'), randomBytes(4096));
    utimesSync(join(d, 'db', 'old.frm'), new Date(1e12), new Date(1e12));
    return d;
  }

  test('rsync quick check alone misses a same-size rewrite within the same time tick (the hazard is real)', async () => {
    const src = donorDir('plain-src');
    const dst = join(dir.path, 'plain-dst');
    const args = ['-a', '--delete', '--stats', '-e', localRsh, `127.0.0.1:${src}/`, `${dst}/`];
    await runRsync('rsync', args, { okCodes: [0], onProgress: () => undefined });
    rewriteSameSizeSameTime(join(src, 'db', 't.ibd'));
    await runRsync('rsync', args, { okCodes: [0], onProgress: () => undefined });
    assert.notDeepEqual(readFileSync(join(dst, 'db', 't.ibd')), readFileSync(join(src, 'db', 't.ibd')));
  });

  test('a file of the joiner with the donor\'s size and time but other contents is replaced', async () => {
    const src = donorDir('stale-src');
    const dst = join(dir.path, 'stale-dst');
    mkdirSync(join(dst, 'db'), { recursive: true });
    // What a diverged replica may hold: its own write, stamped in the same second as the donor's.
    writeFileSync(join(dst, 'db', 'old.frm'), randomBytes(4096));
    utimesSync(join(dst, 'db', 'old.frm'), new Date(1e12), new Date(1e12));
    const donor = new RsyncDonor({ transport: donorT, log, applier, server: idle, syncPath: src });
    try {
      await rsyncResync({ transport: joinerT, log, donor: 1, donorHost: '127.0.0.1', syncPath: dst, syncCmd: localRsh, server: idle, minIndex: 1 });
      assert.deepEqual(readFileSync(join(dst, 'db', 'old.frm')), readFileSync(join(src, 'db', 'old.frm')));
    } finally {
      await donor.close();
    }
  });

  for (const finalPassCompare of ['mtime', 'checksum'] as const) {
    test(`finalPassCompare ${finalPassCompare}: the copy equals the donor's files at quiesce`, async () => {
      const src = donorDir(`${finalPassCompare}-src`);
      const dst = join(dir.path, `${finalPassCompare}-dst`);
      // "Stopping" the donor's server writes its files once more, keeping their times.
      const server: ServerControl = {
        stop: async () => {
          rewriteSameSizeSameTime(join(src, 'db', 't.ibd'));
          rewriteSameSizeSameTime(join(src, 'ibdata1'));
        },
        start: async () => undefined,
      };
      const donor = new RsyncDonor({ transport: donorT, log, applier, server, syncPath: src });
      try {
        const r = await rsyncResync({ transport: joinerT, log, donor: 1, donorHost: '127.0.0.1', syncPath: dst, syncCmd: localRsh, server: idle, minIndex: 1, finalPassCompare });
        assert.equal(r.index, 42);
        for (const f of ['ibdata1', 'db/t.ibd', 'db/old.frm']) assert.deepEqual(readFileSync(join(dst, f)), readFileSync(join(src, f)), f);
        assert.equal(statSync(join(dst, 'db', 't.ibd')).mtimeMs, statSync(join(src, 'db', 't.ibd')).mtimeMs, 'times are the donor\'s again');
        assert.equal(statSync(join(dst, 'db', 'old.frm')).mtimeMs, 1e12);
        // Only the two rewritten files moved in the final pass.
        assert.equal(r.finalPass.bytes, (1 << 20) + (3 << 20));
      } finally {
        await donor.close();
      }
    });
  }
});
