// Joiner side of the hook-mode full resync (the original module's behaviour): this replica's
// data directory (syncPath) is replaced by a donor's with `rsync -a --delete` over the
// operator's SyncCmd (e.g. `ssh -l mysql`).
//
//   1. ask the donor for its syncPath (and whether it is free), stop the own server;
//   2. first pass while the donor keeps running: moves the bulk, inconsistent;
//   3. quiesce the donor (applier paused at index i, server stopped), final pass: only what
//      changed moves, and the copy is now the donor's database at i exactly;
//   4. release the donor (always, also on failure), start the own server.
//
// Nothing from a client reaches a shell: rsync is spawned with an argv array, SyncCmd and the
// paths come from configuration (the donor's own, for its side), and both paths are checked to
// be absolute before a `--delete` can touch anything.
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { RemoteError, type PeerId, type Transport } from '../transport/transport.js';
import type { Logger } from '../util/log.js';
import { CHANNEL_RSYNC, type ApplierPause, type ResyncContext, type ResyncProgress, type ServerControl } from './types.js';
import type { ResyncRunner } from './manager.js';
import { RsyncDonor, type RsyncDonorOptions } from './rsync-donor.js';
import {
  checkProtected,
  checkRsyncHost,
  checkSyncPath,
  decodeInfoReply,
  decodeQuiesceReply,
  decodeReleaseReply,
  encodeInfo,
  encodeQuiesce,
  encodeRelease,
  encodeRenew,
  newRsyncSession,
  type ReleaseReply,
} from './rsync-protocol.js';

export interface RsyncResyncOptions extends ResyncContext {
  donor: PeerId;
  /** Host part of the donor's peer address: rsync reaches it as `<donorHost>:<its syncPath>`. */
  donorHost: string;
  /** This replica's data directory (configured syncPath); replaced, with --delete. */
  syncPath: string;
  /** Remote shell rsync uses (configured syncCmd), passed to `rsync -e` as one string. */
  syncCmd: string;
  /** Directories that must never be inside syncPath (Recall's own dataDir): refused if they are. */
  protect?: readonly string[];
  /** This replica's own database server (stopped during the copy). */
  server: ServerControl;
  /** The copy must hold at least this index (the donor's applier pauses at or after it). */
  minIndex: number;
  rsyncBinary?: string;
  /** Throttle in bytes per second (resyncRateBytes); 0 or absent: unlimited. */
  rateBytes?: number;
  /**
   * How the final pass finds changed files. 'mtime' (default): size and modification time, as
   * rsync does by default, made exact by markRecentFiles (below). 'checksum': compares the
   * contents of every file, reading all of them on both sides while the donor is stopped.
   */
  finalPassCompare?: 'checksum' | 'mtime';
  /** Longest wait for the donor to pause at minIndex and stop its server. */
  quiesceTimeoutMs?: number;
  /** Timeout of the short requests (info, renew). */
  requestTimeoutMs?: number;
  /** Longest wait for the donor to start its server again on release. */
  releaseTimeoutMs?: number;
  /** Log progress at info every progressLogMs (0: never; the resync manager may log it itself). */
  progressLogMs?: number;
}

export interface RsyncPassStats {
  /** Sum of the sizes of the files rsync transferred (whole or by delta). */
  bytes: number;
  /** Bytes on the wire from the donor. */
  wireBytes: number;
  /** Size of all files of the donor's data directory. */
  totalBytes: number;
  seconds: number;
}

export interface RsyncResyncResult {
  /** The donor's applied index at quiesce: what the copied database holds. */
  index: number;
  /** File bytes transferred by both passes. */
  bytes: number;
  seconds: number;
  firstPass: RsyncPassStats;
  finalPass: RsyncPassStats;
  /** How long the donor was stopped for us, as seen from here. */
  quiescedMs: number;
}

const progressEveryMs = 250;
// Covers the file system's timestamp granularity (rsync compares whole seconds) and the time
// between the donor's clock reading and the first pass's first stat, with room to spare.
const recentMarginMs = 5000;

/** Replaces this replica's data directory with the donor's; see the file comment. */
export async function rsyncResync(o: RsyncResyncOptions): Promise<RsyncResyncResult> {
  const t0 = Date.now();
  const syncPath = checkSyncPath(o.syncPath, 'syncPath');
  checkProtected(syncPath, o.protect ?? []);
  if (typeof o.syncCmd !== 'string' || o.syncCmd.trim() === '') throw new Error('syncCmd is empty: set it to the remote shell rsync uses, e.g. "ssh -l mysql"');
  const host = checkRsyncHost(o.donorHost);
  if (!Number.isSafeInteger(o.minIndex) || o.minIndex < 0) throw new Error(`minIndex ${o.minIndex} is not a non-negative integer`);
  const requestTimeoutMs = o.requestTimeoutMs ?? 10_000;
  const log = o.log.child({ donor: o.donor });
  o.signal?.throwIfAborted();

  const progress = new ProgressReporter(o, log);
  progress.phase('waiting-for-donor');
  const info = decodeInfoReply(await o.transport.request(o.donor, CHANNEL_RSYNC, encodeInfo(), requestTimeoutMs));
  if (info.busy) throw new Error(`donor node ${o.donor} is busy with another resync`);
  const donorPath = checkSyncPath(info.syncPath, `donor node ${o.donor}'s syncPath`);
  const source = `${host}:${donorPath}/`;
  const compare = o.finalPassCompare ?? 'mtime';
  const args = (final: boolean): string[] => [
    '-a',
    '--delete',
    '--info=progress2',
    '--no-inc-recursive',
    '--stats',
    ...(o.rateBytes ? [`--bwlimit=${Math.max(1, Math.ceil(o.rateBytes / 1024))}`] : []),
    // First pass: whatever this replica holds is suspect (it diverged, or its own server wrote
    // a file in the same second the donor had, at the same size), so no file is skipped on size
    // and time; rsync's delta transfer still moves only the blocks that differ.
    ...(final ? (compare === 'checksum' ? ['--checksum'] : []) : ['--ignore-times']),
    '-e',
    o.syncCmd,
    source,
    `${syncPath}/`,
  ];
  const rsync = (final: boolean, signal?: AbortSignal) =>
    runRsync(o.rsyncBinary ?? 'rsync', args(final), {
      signal,
      // Files vanish from a running donor during the first pass (temporary tables, the pid
      // file): rsync's exit code 24 says only that, and the final pass settles it.
      okCodes: final ? [0] : [0, 24],
      onProgress: (bytes, percent) => progress.update(bytes, percent),
    });

  log.info('rsync resync: stopping the local database server', { syncPath, source });
  progress.phase('stopping-server');
  await o.server.stop();
  o.signal?.throwIfAborted();

  progress.phase('first-pass');
  log.info('rsync resync: first pass (donor running)', { source, syncPath });
  const firstPass = await rsync(false, o.signal);
  progress.passDone(firstPass);
  log.info('rsync resync: first pass done', passLog(firstPass));
  if (compare === 'mtime') {
    const marked = await markRecentFiles(syncPath, info.nowMs - recentMarginMs);
    log.info('rsync resync: files written during the first pass marked for the final pass', { files: marked.files, mb: mb(marked.bytes) });
  }

  progress.phase('waiting-for-donor');
  const session = newRsyncSession();
  const abort = new AbortController();
  const onOuterAbort = () => abort.abort(o.signal!.reason);
  o.signal?.addEventListener('abort', onOuterAbort, { once: true });
  let quiescedAt = 0;
  let index = -1;
  let finalPass: RsyncPassStats | undefined;
  let failure: Error | undefined;
  let renewer: NodeJS.Timeout | undefined;
  try {
    const q = decodeQuiesceReply(await o.transport.request(o.donor, CHANNEL_RSYNC, encodeQuiesce(session, o.minIndex), o.quiesceTimeoutMs ?? 300_000));
    quiescedAt = Date.now();
    index = q.index;
    if (index < o.minIndex) throw new Error(`donor quiesced at index ${index}, below the requested ${o.minIndex}`);
    if (q.syncPath !== donorPath) throw new Error(`donor's syncPath changed from ${donorPath} to ${q.syncPath} during the resync`);
    log.info('rsync resync: donor quiesced; final pass', { index, leaseMs: q.leaseMs });
    renewer = startRenewing(o, session, q.leaseMs, requestTimeoutMs, abort, log);
    progress.phase('final-pass');
    finalPass = await rsync(true, abort.signal);
    progress.passDone(finalPass);
    log.info('rsync resync: final pass done', passLog(finalPass));
  } catch (e) {
    failure = abort.signal.aborted && abort.signal.reason instanceof Error ? abort.signal.reason : (e as Error);
  } finally {
    clearInterval(renewer);
    o.signal?.removeEventListener('abort', onOuterAbort);
  }

  // Released in every case: a donor left stopped would be a second replica down.
  let released: ReleaseReply | undefined;
  try {
    released = decodeReleaseReply(await o.transport.request(o.donor, CHANNEL_RSYNC, encodeRelease(session), o.releaseTimeoutMs ?? 180_000));
    if (released.restartError) log.warn('rsync resync: the donor could not start its database server again', { error: released.restartError });
  } catch (e) {
    log.warn('rsync resync: release of the donor failed (its lease releases it)', { error: (e as Error).message });
    failure ??= new Error(`could not confirm that donor node ${o.donor} stayed quiesced during the final pass: ${(e as Error).message}`);
  }
  const quiescedMs = quiescedAt ? Date.now() - quiescedAt : 0;
  if (failure) throw failure;
  if (!released?.held) throw new Error(`donor node ${o.donor} released its quiesce before the final pass finished (lease expired or link lost): the copy may be inconsistent`);

  progress.phase('starting-server');
  log.info('rsync resync: starting the local database server');
  await o.server.start();
  const result: RsyncResyncResult = {
    index,
    bytes: firstPass.bytes + finalPass!.bytes,
    seconds: (Date.now() - t0) / 1000,
    firstPass,
    finalPass: finalPass!,
    quiescedMs,
  };
  progress.phase('done');
  log.info('rsync resync done', { index, mb: mb(result.bytes), seconds: result.seconds, quiescedMs });
  return result;
}

export interface RsyncMethodOptions extends Pick<RsyncDonorOptions, 'leaseMs' | 'quiesceMaxMs' | 'disconnectGraceMs' | 'pauseWaitMs'> {
  /** This replica's data directory (syncPath) and remote shell (syncCmd), from configuration. */
  syncPath: string;
  syncCmd: string;
  /** Directories that must never be inside syncPath (Recall's own dataDir). */
  protect?: readonly string[];
  /** The local database (hook mode: StopServer/StartServer). */
  server: ServerControl;
  /** Host part of a peer's address (from `replicas`), as rsync and SyncCmd reach it. */
  donorHost(peer: PeerId): string;
  rateBytes?: number;
  rsyncBinary?: string;
  finalPassCompare?: 'checksum' | 'mtime';
}

/**
 * Hook-mode resync as the replicator's `recovery` option wants it: the donor service this
 * replica offers (registered on the transport at once) and the runner it uses itself.
 * Throws at once when syncPath or syncCmd is unusable.
 */
export function rsyncMethod(m: RsyncMethodOptions): (deps: { transport: Transport; applier: ApplierPause; log: Logger }) => { runner: ResyncRunner; close(): void } {
  checkProtected(checkSyncPath(m.syncPath, 'syncPath'), m.protect ?? []);
  if (typeof m.syncCmd !== 'string' || m.syncCmd.trim() === '') throw new Error('syncCmd is empty: set it to the remote shell rsync uses, e.g. "ssh -l mysql"');
  return ({ transport, applier, log }) => {
    // One replica is never donor and joiner at once: a copy taken from a directory that is being
    // replaced would be garbage, and a joiner's own server is stopped anyway.
    let joining = false;
    const donor = new RsyncDonor({ ...m, transport, applier, log, unavailable: () => (joining ? 'it is being resynced itself' : null) });
    const runner: ResyncRunner = {
      method: 'rsync',
      run: async (peer, minIndex, ctx) => {
        const d = donor.status();
        if (d.state !== 'idle') throw new Error(`this replica is a donor for node ${d.joiner} right now (${d.state}); resync after that`);
        joining = true;
        try {
          return await rsyncResync({
            ...ctx,
            donor: peer,
            donorHost: m.donorHost(peer),
            syncPath: m.syncPath,
            syncCmd: m.syncCmd,
            protect: m.protect,
            server: m.server,
            minIndex,
            rateBytes: m.rateBytes,
            rsyncBinary: m.rsyncBinary,
            finalPassCompare: m.finalPassCompare,
            // The resync manager logs progress itself.
            progressLogMs: 0,
          });
        } finally {
          joining = false;
        }
      },
    };
    return { runner, close: () => void donor.close() };
  };
}

/**
 * rsync's quick check skips a file whose size and modification time match. A file the donor
 * wrote during the first pass can match and still differ: written again after rsync read it,
 * within the same tick of the clock that stamps file times (whole seconds for rsync's compare),
 * at the same size, as InnoDB's preallocated files are. Only a file whose time is that recent
 * can be caught so; every such file in our copy (its time is the donor's, rsync -a keeps it) gets
 * time 0, so the final pass compares it by content (and moves only its changed blocks). Every
 * other file had a time older than the first pass: a later write gives it a newer one.
 */
export async function markRecentFiles(dir: string, sinceMs: number): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  const walk = async (d: string): Promise<void> => {
    for (const e of await fs.readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) {
        const st = await fs.lstat(p);
        if (st.mtimeMs >= sinceMs) {
          await fs.utimes(p, st.atime, 0);
          files++;
          bytes += st.size;
        }
      }
    }
  };
  await walk(dir);
  return { files, bytes };
}

/** Renews the donor's lease every third of it; a donor that says the session ended aborts the pass. */
function startRenewing(o: RsyncResyncOptions, session: bigint, leaseMs: number, timeoutMs: number, abort: AbortController, log: Logger): NodeJS.Timeout {
  const everyMs = Math.max(50, Math.floor(leaseMs / 3));
  let inFlight = false;
  const timer = setInterval(() => {
    if (inFlight) return;
    inFlight = true;
    o.transport
      .request(o.donor, CHANNEL_RSYNC, encodeRenew(session), Math.min(timeoutMs, everyMs * 2))
      .catch((e: Error) => {
        if (e instanceof RemoteError) abort.abort(new Error(`donor node ${o.donor} ended the quiesce during the final pass: ${e.message}`));
        else log.warn('rsync resync: could not renew the donor\'s lease', { error: e.message });
      })
      .finally(() => (inFlight = false));
  }, everyMs);
  timer.unref();
  return timer;
}

function mb(bytes: number): number {
  return Math.round(bytes / 1e5) / 10;
}

function passLog(p: RsyncPassStats): Record<string, number> {
  return { mb: mb(p.bytes), wireMb: mb(p.wireBytes), totalMb: mb(p.totalBytes), seconds: p.seconds, mbPerSec: p.seconds > 0 ? mb(p.bytes / p.seconds) : 0 };
}

/** Turns rsync's progress lines into ResyncProgress reports (a few a second) and log lines. */
class ProgressReporter {
  private current: ResyncProgress;
  private passStart = Date.now();
  private lastReport = 0;
  private lastLog = Date.now();
  // Rate over a sliding window of recent samples, smoother than rsync's own per-file rate.
  private samples: { t: number; bytes: number }[] = [];

  constructor(
    private readonly o: RsyncResyncOptions,
    private readonly log: Logger,
  ) {
    this.current = { method: 'rsync', phase: 'waiting-for-donor', donor: o.donor, bytes: 0, bytesPerSec: 0 };
  }

  phase(phase: string): void {
    this.current = { method: 'rsync', phase, donor: this.o.donor, bytes: 0, bytesPerSec: 0 };
    this.passStart = Date.now();
    this.samples = [{ t: this.passStart, bytes: 0 }];
    this.emit(true);
  }

  update(bytes: number, percent: number): void {
    const now = Date.now();
    this.samples.push({ t: now, bytes });
    while (this.samples.length > 2 && now - this.samples[0]!.t > 3000) this.samples.shift();
    const first = this.samples[0]!;
    const bytesPerSec = now > first.t ? Math.max(0, Math.round(((bytes - first.bytes) * 1000) / (now - first.t))) : 0;
    // progress2's percentage is of the whole directory, so this is its size, not what is left.
    const totalBytes = percent > 0 ? Math.round((bytes * 100) / percent) : undefined;
    const etaSec = totalBytes !== undefined && bytesPerSec > 0 ? Math.max(0, (totalBytes - bytes) / bytesPerSec) : undefined;
    this.current = { ...this.current, bytes, bytesPerSec, ...(totalBytes !== undefined ? { totalBytes } : {}), ...(etaSec !== undefined ? { etaSec } : {}) };
    this.emit(false);
  }

  passDone(p: RsyncPassStats): void {
    this.current = { ...this.current, bytes: p.bytes, totalBytes: p.totalBytes, bytesPerSec: p.seconds > 0 ? Math.round(p.bytes / p.seconds) : 0, etaSec: 0 };
    this.emit(true);
  }

  private emit(force: boolean): void {
    const now = Date.now();
    if (force || now - this.lastReport >= progressEveryMs) {
      this.lastReport = now;
      this.o.onProgress?.({ ...this.current });
    }
    const logMs = this.o.progressLogMs ?? 5000;
    if (logMs > 0 && now - this.lastLog >= logMs) {
      this.lastLog = now;
      const p = this.current;
      this.log.info('rsync resync progress', {
        phase: p.phase,
        mb: mb(p.bytes),
        ...(p.totalBytes ? { totalMb: mb(p.totalBytes) } : {}),
        mbPerSec: mb(p.bytesPerSec),
        ...(p.etaSec !== undefined ? { etaSec: Math.round(p.etaSec) } : {}),
      });
    }
  }
}

interface RunOptions {
  signal?: AbortSignal;
  okCodes: number[];
  onProgress: (bytes: number, percent: number) => void;
}

// rsync --info=progress2 line: "     30,000,000  33%  650.23MB/s    0:00:00 (xfr#1, to-chk=2/4)"
const progressLine = /^\s*([\d,.]+)\s+(\d{1,3})%\s/;
const stderrTailMax = 4000;

/** Runs rsync (argv, no shell); resolves with the --stats numbers, rejects with its own message. */
export function runRsync(binary: string, args: string[], ro: RunOptions): Promise<RsyncPassStats> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    if (ro.signal?.aborted) return reject(ro.signal.reason instanceof Error ? ro.signal.reason : new Error('aborted'));
    // C locale: the number formats parsed below do not depend on the operator's.
    const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let out = '';
    const stats: string[] = [];
    let err = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      out += chunk;
      const lines = out.split(/[\r\n]/);
      out = lines.pop()!;
      for (const line of lines) {
        const m = progressLine.exec(line);
        if (m) ro.onProgress(Number(m[1]!.replace(/\D/g, '')), Number(m[2]));
        else if (/^(Total|Number of)/.test(line)) stats.push(line);
      }
      if (out.length > 65536) out = out.slice(-4096);
    });
    child.stderr.on('data', (chunk: string) => {
      err = (err + chunk).slice(-stderrTailMax);
    });
    const onAbort = () => child.kill('SIGTERM');
    ro.signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (e) => {
      ro.signal?.removeEventListener('abort', onAbort);
      reject(new Error(`could not run ${binary}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      ro.signal?.removeEventListener('abort', onAbort);
      if (ro.signal?.aborted) return reject(ro.signal.reason instanceof Error ? ro.signal.reason : new Error('rsync aborted'));
      if (code === null || !ro.okCodes.includes(code)) {
        const why = signal ? `signal ${signal}` : `exit code ${code}`;
        return reject(new Error(`rsync failed with ${why}: ${err.trim() || '(no message)'}`));
      }
      const num = (label: string): number => {
        const line = stats.find((l) => l.startsWith(label));
        return line ? Number(line.slice(label.length).replace(/bytes.*$/, '').replace(/\D/g, '')) : 0;
      };
      resolve({
        bytes: num('Total transferred file size:'),
        wireBytes: num('Total bytes received:'),
        totalBytes: num('Total file size:'),
        seconds: (Date.now() - t0) / 1000,
      });
    });
  });
}
