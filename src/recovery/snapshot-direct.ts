// The built-in snapshot over a direct data connection: the donor's backup tool (backup-tool.ts:
// mariadb-backup, pg_basebackup) writes its stream into one end of a TCP connection and the
// joiner's unpacking tool (mbstream, tar) reads the other end, both
// through the socket's file descriptor, so the stream never passes through Node. Through the
// chunked request/response protocol (snapshot-donor/joiner.ts) a GiB cost 6.5-8.5 CPU seconds
// on the two Node processes against 1.1-1.9 for the tools alone, and on 2 cores CPU is the limit
// (bench/resync.ts). The chunked protocol stays for throttled transfers and as the fallback when
// the data connection cannot be made (a firewall that only opens the peer port).
//
// Who may connect: the joiner listens on a one-shot port (paused on accept, so no byte is read by
// Node), the donor connects to it and reports its source port over the authenticated peer link;
// the joiner hands only the connection from that port to the unpacking tool and closes any other.
// The stream's integrity: xbstream chunks carry their own CRC32, which mbstream checks (a tar
// stream has header checksums and an end-of-archive mark that tar -x insists on, with TCP's
// checksum below), and the donor reports the backup tool's exit status over the peer link before
// the joiner prepares the copy.
import crypto from 'node:crypto';
import net from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseHostPort, type PeerId, type Transport } from '../transport/transport.js';
import type { Logger } from '../util/log.js';
import { mariadbBackupTool } from './mariadb-backup.js';
import type { BackupTool, ToolProcess } from './backup-tool.js';
import { dirBytes } from './snapshot-donor.js';
import { Progress, SNAPSHOT_MARKER, toolOf, type FetchSnapshotOptions, type FetchSnapshotResult, type SnapshotMarker } from './snapshot-joiner.js';
import type { AdminTarget, ApplierPause } from './types.js';

export const CHANNEL_SNAPSHOT_DIRECT = 22;

type DirectRequest = { op: 'begin'; session: string; minIndex: number; port: number } | { op: 'status'; session: string };

interface DirectSession {
  readonly backup: ToolProcess;
  readonly workDir: string;
  result: { ok: true } | { ok: false; error: string } | null;
  readonly done: Promise<void>;
}

export interface DirectDonorOptions {
  transport: Transport;
  log: Logger;
  applier: ApplierPause;
  target: AdminTarget;
  datadir: string;
  /** Scratch space for the backup tool (mariadb-backup: its --target-dir and credentials file). */
  workDir: string;
  pauseWaitMs?: number;
  connectTimeoutMs?: number;
  /** The engine's backup tool (default: mariadb-backup with backupParallel). */
  tool?: BackupTool;
  backupParallel?: number;
}

/** The donor side: answers begin/status on CHANNEL_SNAPSHOT_DIRECT. One backup at a time. */
export class DirectSnapshotDonor {
  private readonly sessions = new Map<string, DirectSession>();
  private busy = false;
  private closed = false;

  constructor(private readonly o: DirectDonorOptions) {
    o.transport.onRequest(CHANNEL_SNAPSHOT_DIRECT, (from, payload) => this.onRequest(from, payload));
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const s of this.sessions.values()) s.backup.kill();
    await Promise.all([...this.sessions.values()].map((s) => s.done.catch(() => undefined)));
  }

  private async onRequest(from: PeerId, payload: Buffer): Promise<Uint8Array> {
    let req: DirectRequest;
    try {
      req = JSON.parse(payload.toString('utf8')) as DirectRequest;
      if (typeof req.session !== 'string' || req.session.length > 64) throw new Error('bad session');
    } catch {
      throw new Error('malformed direct snapshot request');
    }
    if (req.op === 'status') return Buffer.from(JSON.stringify(await this.status(req.session)));
    if (req.op !== 'begin' || !Number.isSafeInteger(req.minIndex) || !Number.isInteger(req.port) || req.port <= 0 || req.port > 65535) {
      throw new Error('malformed direct snapshot request');
    }
    if (this.closed) throw new Error('snapshot donor is shut down');
    if (this.busy) throw new Error('donor busy: a direct snapshot is running; retry later or use another donor');
    this.busy = true;
    let paused = false;
    try {
      const host = hostOf(this.o.transport.peerStatus().find((p) => p.id === from)?.address);
      if (!host) throw new Error(`no address known for node ${from}`);
      const index = await this.o.applier.pause(req.minIndex, this.o.pauseWaitMs ?? 30_000);
      paused = true;
      const socket = await connectTo(host, req.port, this.o.connectTimeoutMs ?? 5000);
      const workDir = await mkdtemp(join(this.o.workDir, 'direct-'));
      const estimatedBytes = await dirBytes(this.o.datadir);
      const tool = this.o.tool ?? mariadbBackupTool({ backupParallel: this.o.backupParallel });
      const backup = tool.streamBackup({ target: this.o.target, datadir: this.o.datadir, workDir, stdoutTo: socket });
      const sourcePort = socket.localPort;
      // The child has its own copy of the descriptor; ours closes without a shutdown, so the
      // connection ends when the backup tool exits.
      socket.destroy();
      const s: DirectSession = {
        backup,
        workDir,
        result: null,
        done: backup.done.then(
          () => {
            s.result = { ok: true };
          },
          (e: Error) => {
            s.result = { ok: false, error: e.message };
          },
        ),
      };
      this.sessions.set(req.session, s);
      void s.done.finally(() => {
        this.o.applier.resume();
        this.busy = false;
        void rm(workDir, { recursive: true, force: true });
        // forgotten after a while if the joiner never asks
        setTimeout(() => this.sessions.delete(req.session), 600_000).unref();
      });
      paused = false; // resumed when the backup ends
      this.o.log.info('direct snapshot started', { peer: from, index, estimatedBytes, sourcePort });
      return Buffer.from(JSON.stringify({ index, estimatedBytes, sourcePort }));
    } catch (e) {
      if (paused) this.o.applier.resume();
      this.busy = false;
      throw e;
    }
  }

  private async status(session: string): Promise<{ ok: boolean; error?: string }> {
    const s = this.sessions.get(session);
    if (!s) return { ok: false, error: 'unknown direct snapshot session (the donor restarted?)' };
    await s.done;
    this.sessions.delete(session);
    return s.result ?? { ok: false, error: 'no result' };
  }
}

/**
 * The joiner side: the same contract as fetchSnapshot (a prepared copy in stagingDir), over a
 * direct data connection. `listenHost` is where the donor can reach this node (its peer host).
 */
export async function fetchSnapshotDirect(o: FetchSnapshotOptions & { listenHost: string }): Promise<FetchSnapshotResult> {
  const startedAt = Date.now();
  const progress = new Progress(o, startedAt);
  const tool = toolOf(o);
  rmSync(o.stagingDir, { recursive: true, force: true });
  mkdirSync(o.stagingDir, { recursive: true });
  progress.phase('waiting-for-donor');

  const session = crypto.randomBytes(16).toString('hex');
  const accepted = new Map<number, net.Socket>();
  const waiters: Array<() => void> = [];
  const server = net.createServer({ pauseOnConnect: true }, (s) => {
    s.on('error', () => undefined);
    if (s.remotePort) accepted.set(s.remotePort, s);
    for (const w of waiters.splice(0)) w();
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, o.listenHost, () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  let extract: ToolProcess | undefined;
  try {
    const beginTimeoutMs = o.beginTimeoutMs ?? 60_000;
    const reply = JSON.parse(
      Buffer.from(await o.transport.request(o.donor, CHANNEL_SNAPSHOT_DIRECT, Buffer.from(JSON.stringify({ op: 'begin', session, minIndex: o.minIndex, port })), beginTimeoutMs)).toString('utf8'),
    ) as { index: number; estimatedBytes: number; sourcePort: number };
    progress.estimate = reply.estimatedBytes;
    const socket = await waitFor(() => accepted.get(reply.sourcePort), waiters, 10_000);
    if (!socket) throw new Error(`the donor's data connection (from port ${reply.sourcePort}) did not arrive`);
    server.close();
    for (const [p, s] of accepted) if (p !== reply.sourcePort) s.destroy();
    extract = tool.extract({ dir: o.stagingDir, stdinFrom: socket });
    socket.destroy(); // the unpacking tool holds its own copy
    progress.phase('transfer');
    const poll = setInterval(() => {
      void dirBytes(o.stagingDir).then((b) => progress.bytes(b, undefined));
    }, 500);
    const onAbort = () => extract?.kill();
    o.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await extract.done;
    } finally {
      clearInterval(poll);
      o.signal?.removeEventListener('abort', onAbort);
    }
    const st = JSON.parse(
      Buffer.from(await o.transport.request(o.donor, CHANNEL_SNAPSHOT_DIRECT, Buffer.from(JSON.stringify({ op: 'status', session })), 120_000)).toString('utf8'),
    ) as { ok: boolean; error?: string };
    if (!st.ok) throw new Error(`the donor's backup failed: ${st.error ?? 'unknown error'}`);
    const bytes = await dirBytes(o.stagingDir);
    progress.bytes(bytes, bytes);
    progress.phase('prepare');
    await tool.prepare({ dir: o.stagingDir, signal: o.signal });
    const marker: SnapshotMarker = { donor: o.donor, index: reply.index, bytes, preparedAt: new Date().toISOString() };
    writeFileSync(join(o.stagingDir, SNAPSHOT_MARKER), JSON.stringify(marker) + '\n');
    const seconds = (Date.now() - startedAt) / 1000;
    progress.phase('done');
    o.log.info('direct snapshot ready to install', { donor: o.donor, index: reply.index, bytes, seconds, mbPerSec: +(bytes / 1e6 / seconds).toFixed(1) });
    return { index: reply.index, bytes, seconds };
  } catch (e) {
    extract?.kill();
    await extract?.done.catch(() => undefined);
    rmSync(o.stagingDir, { recursive: true, force: true });
    throw e;
  } finally {
    server.close();
    for (const s of accepted.values()) s.destroy();
  }
}

function hostOf(address: string | undefined): string | undefined {
  try {
    return address ? parseHostPort(address).host : undefined;
  } catch {
    return undefined;
  }
}

function connectTo(host: string, port: number, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`could not open the data connection to ${host}:${port} within ${timeoutMs} ms`));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      resolve(s);
    });
    s.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`could not open the data connection to ${host}:${port}: ${e.message}`));
    });
  });
}

async function waitFor<T>(get: () => T | undefined, waiters: Array<() => void>, timeoutMs: number): Promise<T | undefined> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = get();
    if (v !== undefined || Date.now() >= end) return v;
    await new Promise<void>((r) => {
      const t = setTimeout(r, Math.max(1, end - Date.now()));
      waiters.push(() => {
        clearTimeout(t);
        r();
      });
    });
  }
}
