// The built-in resync as the replicator's `recovery` option wants it (see rsyncMethod for the
// hook-mode one): the donor service this replica offers, registered on the transport at once,
// and the runner it uses itself: fetch a donor's backup stream (mariadb-backup, pg_basebackup:
// backup-tool.ts) into a staging directory next to the datadir, prepare it, and swap it in with
// the server stopped.
import { join } from 'node:path';
import type { Transport } from '../transport/transport.js';
import type { Logger } from '../util/log.js';
import type { ResyncRunner } from './manager.js';
import { SnapshotDonor } from './snapshot-donor.js';
import { mariadbBackupTool } from './mariadb-backup.js';
import { DirectSnapshotDonor, fetchSnapshotDirect } from './snapshot-direct.js';
import { fetchSnapshot } from './snapshot-joiner.js';
import { installSnapshot, stagingDirFor } from './snapshot-install.js';
import type { AdminTarget, ApplierPause, ServerControl } from './types.js';
import { donationsTotal } from './metrics.js';
import type { BackupTool } from './backup-tool.js';

export interface SnapshotMethodOptions {
  /** The local server's data directory (managed: <dataDir>/mariadb or /postgres; hook mode: syncPath). */
  datadir: string;
  /** Recall's own data directory (the donor's spool lives under it). */
  dataDir: string;
  target: AdminTarget;
  server: ServerControl;
  /** Transfer throttle in bytes per second, 0 for none. */
  rateBytes: number;
  /**
   * Host of this node's peer listener: an unthrottled copy comes over a direct data connection the
   * donor opens to a one-shot port here (snapshot-direct.ts); without it, or when that fails, the
   * chunked protocol over the peer link carries it.
   */
  listenHost?: string;
  /** The engine's physical backup (default mariadb-backup; pg-basebackup.ts for PostgreSQL). */
  tool?: BackupTool;
}

export function snapshotMethod(m: SnapshotMethodOptions): (deps: { transport: Transport; applier: ApplierPause; log: Logger }) => { runner: ResyncRunner; close(): void } {
  return ({ transport, applier, log }) => {
    let joining = false;
    // A replica being replaced must not hand out copies of a directory in the middle of a swap.
    const guarded: ApplierPause = {
      pause: async (minIndex, timeoutMs) => {
        if (joining) throw new Error('this replica is being resynced itself');
        const index = await applier.pause(minIndex, timeoutMs);
        donationsTotal.inc({ method: 'snapshot' });
        return index;
      },
      resume: () => applier.resume(),
    };
    const tool = m.tool ?? mariadbBackupTool();
    const donor = new SnapshotDonor({ transport, log, applier: guarded, target: m.target, datadir: m.datadir, spoolDir: join(m.dataDir, 'resync-spool'), tool });
    const direct = new DirectSnapshotDonor({ transport, log, applier: guarded, target: m.target, datadir: m.datadir, workDir: join(m.dataDir, 'resync-spool'), tool });
    const runner: ResyncRunner = {
      method: 'snapshot',
      run: async (peer, minIndex, ctx) => {
        joining = true;
        const t0 = performance.now();
        try {
          const stagingDir = stagingDirFor(m.datadir);
          let got: { index: number; bytes: number; seconds: number } | null = null;
          if (m.rateBytes === 0 && m.listenHost) {
            try {
              got = await fetchSnapshotDirect({ ...ctx, donor: peer, minIndex, stagingDir, listenHost: m.listenHost, tool });
            } catch (e) {
              ctx.log.warn('direct snapshot failed; copying over the peer link instead', { donor: peer, error: (e as Error).message });
            }
          }
          got ??= await fetchSnapshot({ ...ctx, donor: peer, minIndex, stagingDir, rateBytesPerSec: m.rateBytes, tool });
          ctx.onProgress?.({ method: 'snapshot', phase: 'install', donor: peer, bytes: got.bytes, totalBytes: got.bytes, bytesPerSec: 0 });
          await installSnapshot({ stagingDir, datadir: m.datadir, server: m.server, log: ctx.log, keepFiles: tool.keepFiles });
          // the whole resync, install included, is what a replica waits for
          return { index: got.index, bytes: got.bytes, seconds: (performance.now() - t0) / 1000 };
        } finally {
          joining = false;
        }
      },
    };
    return {
      runner,
      close: () => {
        void donor.close();
        void direct.close();
      },
    };
  };
}
