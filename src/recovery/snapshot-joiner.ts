// The joiner side of the built-in snapshot transfer: begin a session on the donor, read the
// backup stream in order with a few reads in flight, check each chunk's crc32, unpack it as it
// arrives (mbstream -x, tar -x: backup-tool.ts), then prepare the result. A read that fails or times
// out (link down, donor restarting its transport) is retried from the first byte not yet
// written, so a transfer survives reconnects; it gives up after stallMs without progress.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { PeerUnavailableError, RemoteError, RequestTimeoutError, type PeerId } from '../transport/transport.js';
import { mariadbBackupTool } from './mariadb-backup.js';
import type { BackupTool, ExtractProcess } from './backup-tool.js';
import { decodeBeginReply, decodeReadReply, encodeBegin, encodeEnd, encodeRead, type ReadReply, type SessionId } from './snapshot-protocol.js';
import { CHANNEL_SNAPSHOT, type ResyncContext, type ResyncProgress } from './types.js';

/** Written into the staging directory once it holds a prepared copy (installSnapshot checks it). */
export const SNAPSHOT_MARKER = 'recall-snapshot.json';

export interface SnapshotMarker {
  donor: PeerId;
  index: number;
  bytes: number;
  preparedAt: string;
}

export interface FetchSnapshotOptions extends ResyncContext {
  donor: PeerId;
  /** The donor pauses once it has applied at least this index. */
  minIndex: number;
  /** Emptied first; ends up holding the prepared copy. Keep it a sibling of the datadir. */
  stagingDir: string;
  /** 0 or absent: unlimited. */
  rateBytesPerSec?: number;
  chunkBytes?: number;
  inflight?: number;
  /** Give up after this long without a byte or a sign of life from the donor's backup. */
  stallMs?: number;
  /** One read request (the donor holds a read up to its readWaitMs for bytes not yet spooled). */
  readTimeoutMs?: number;
  /** The begin request (the donor waits up to its pauseWaitMs for its applier). */
  beginTimeoutMs?: number;
  /** The engine's backup tool (default: mariadb-backup with the four options below). */
  tool?: BackupTool;
  /** --use-memory of mariadb-backup --prepare. */
  prepareMemory?: string;
  extractParallel?: number;
  backupBinary?: string;
  mbstreamBinary?: string;
}

export interface FetchSnapshotResult {
  /** The index the donor's copy holds (the restored recall.applied row is authoritative). */
  index: number;
  bytes: number;
  seconds: number;
}

/** The engine's tool, or mariadb-backup with the options of FetchSnapshotOptions. */
export function toolOf(o: FetchSnapshotOptions): BackupTool {
  return o.tool ?? mariadbBackupTool({ prepareMemory: o.prepareMemory, extractParallel: o.extractParallel, backupBinary: o.backupBinary, mbstreamBinary: o.mbstreamBinary });
}

const progressEveryMs = 250;
const logEveryMs = 5000;
const rateWindowMs = 5000;
const retryBackoffMsMax = 1000;

export async function fetchSnapshot(o: FetchSnapshotOptions): Promise<FetchSnapshotResult> {
  const startedAt = Date.now();
  const stallMs = o.stallMs ?? 60_000;
  const rate = o.rateBytesPerSec ?? 0;
  // A throttled read stays a small fraction of a second, so throttling never looks like a stall.
  const chunkBytes = rate > 0 ? Math.min(o.chunkBytes ?? 4 << 20, Math.max(64 << 10, Math.floor(rate / 4))) : (o.chunkBytes ?? 4 << 20);
  const inflight = Math.max(1, o.inflight ?? 4);
  const progress = new Progress(o, startedAt);
  const tool = toolOf(o);

  rmSync(o.stagingDir, { recursive: true, force: true });
  mkdirSync(o.stagingDir, { recursive: true });

  progress.phase('waiting-for-donor');
  const begin = await beginSession(o, stallMs);
  const log = o.log.child({ donor: o.donor, index: begin.index });
  log.info('snapshot transfer started', { estimatedBytes: begin.estimatedBytes, chunkBytes, inflight, rateBytesPerSec: rate });
  progress.estimate = begin.estimatedBytes;

  let extract: ExtractProcess | undefined;
  let ended = false;
  const endSession = async () => {
    if (ended) return;
    ended = true;
    await o.transport.request(o.donor, CHANNEL_SNAPSHOT, encodeEnd(begin.session), 5000).catch(() => undefined);
  };
  try {
    extract = tool.extract({ dir: o.stagingDir });
    progress.phase('transfer');
    const bytes = await transfer(o, begin.session, extract, { chunkBytes, inflight, stallMs, rate }, progress);
    await endSession();
    extract.stdin.end();
    await extract.done;
    log.info('snapshot transfer done; preparing', { bytes, seconds: (Date.now() - startedAt) / 1000 });

    progress.phase('prepare');
    const preparedAt = Date.now();
    await tool.prepare({ dir: o.stagingDir, signal: o.signal });
    checkAborted(o.signal);
    const marker: SnapshotMarker = { donor: o.donor, index: begin.index, bytes, preparedAt: new Date().toISOString() };
    writeFileSync(join(o.stagingDir, SNAPSHOT_MARKER), JSON.stringify(marker) + '\n');
    const seconds = (Date.now() - startedAt) / 1000;
    progress.phase('done');
    log.info('snapshot ready to install', { bytes, seconds, prepareSeconds: (Date.now() - preparedAt) / 1000, mbPerSec: +(bytes / 1e6 / seconds).toFixed(1) });
    return { index: begin.index, bytes, seconds };
  } catch (e) {
    extract?.kill();
    await extract?.done.catch(() => undefined);
    await endSession();
    rmSync(o.stagingDir, { recursive: true, force: true });
    throw e;
  }
}

interface TransferLimits {
  chunkBytes: number;
  inflight: number;
  stallMs: number;
  rate: number;
}

interface Slot {
  offset: number;
  length: number;
  reply: Promise<ReadReply>;
}

/** Reads the stream in order into the unpacking tool; returns its size. */
async function transfer(o: FetchSnapshotOptions, session: SessionId, extract: ExtractProcess, lim: TransferLimits, progress: Progress): Promise<number> {
  const readTimeoutMs = o.readTimeoutMs ?? 30_000;
  const bucket = lim.rate > 0 ? new TokenBucket(lim.rate, lim.chunkBytes) : undefined;
  // Each read acknowledges what is already unpacked, so the donor can drop it.
  const issue = (offset: number, length: number, ack: number): Slot => {
    const reply = o.transport.request(o.donor, CHANNEL_SNAPSHOT, encodeRead(session, offset, length, ack), readTimeoutMs).then(decodeReadReply);
    reply.catch(() => undefined); // slots dropped after a failure are never awaited
    return { offset, length, reply };
  };
  const extractDied = extract.done.then(() => {
    throw new Error(`${toolOf(o).name}'s unpacking exited before the end of the stream`);
  });
  extractDied.catch(() => undefined);

  const queue: Slot[] = [];
  let nextOffset = 0;
  let written = 0;
  let total: number | undefined;
  let spooledSeen = 0;
  let lastProgressAt = Date.now();
  let backoffMs = 50;
  let lastError = '';
  for (;;) {
    checkAborted(o.signal);
    if (total !== undefined && written >= total) return written;
    if (Date.now() - lastProgressAt > lim.stallMs) {
      throw new Error(`snapshot transfer from peer ${o.donor} made no progress for ${lim.stallMs} ms at byte ${written}${lastError ? `: ${lastError}` : ''}`);
    }
    while (queue.length < lim.inflight && (total === undefined || nextOffset < total)) {
      const length = total === undefined ? lim.chunkBytes : Math.min(lim.chunkBytes, total - nextOffset);
      if (bucket) await bucket.take(length, o.signal);
      queue.push(issue(nextOffset, length, written));
      nextOffset += length;
    }
    const slot = queue[0];
    if (!slot) throw new Error(`snapshot transfer: nothing left to read at byte ${written} of ${total}`); // an invariant, never bad input
    let rep: ReadReply;
    try {
      rep = await abortable(slot.reply, o.signal);
      if (rep.data.length > slot.length) throw new Error(`donor sent ${rep.data.length} bytes for a read of ${slot.length}`);
      if (crc32(rep.data) !== rep.crc) throw new Error(`crc32 mismatch in the chunk at offset ${slot.offset}`);
    } catch (e) {
      // The donor answered with an error (session gone, its backup failed, it is shutting down):
      // retrying the same read cannot help.
      if (e instanceof RemoteError) throw new Error(`snapshot transfer from peer ${o.donor} failed: ${e.message}`);
      checkAborted(o.signal);
      if (!(e instanceof PeerUnavailableError || e instanceof RequestTimeoutError)) o.log.warn('bad snapshot chunk; reading it again', { offset: slot.offset, error: (e as Error).message });
      lastError = (e as Error).message;
      // Start again at the first byte not yet written; the reads behind it are dropped.
      queue.length = 0;
      nextOffset = written;
      await sleep(backoffMs, o.signal);
      backoffMs = Math.min(backoffMs * 2, retryBackoffMsMax);
      continue;
    }
    queue.shift();
    backoffMs = 50;
    if (rep.total !== undefined) total = rep.total;
    if (rep.spooled > spooledSeen) {
      // The donor's backup is still producing: alive, even if this read came back short.
      spooledSeen = rep.spooled;
      lastProgressAt = Date.now();
    }
    const n = rep.data.length;
    if (n > 0) {
      if (!extract.stdin.write(rep.data)) await Promise.race([once(extract.stdin, 'drain'), extractDied]);
      written += n;
      lastProgressAt = Date.now();
      progress.bytes(written, total);
    }
    if (n < slot.length && (total === undefined || slot.offset + n < total)) {
      // Short read (the bytes were not spooled yet): ask for the rest before anything behind it.
      queue.unshift(issue(slot.offset + n, slot.length - n, written));
    }
  }
}

async function beginSession(o: FetchSnapshotOptions, stallMs: number) {
  const deadline = Date.now() + stallMs;
  let backoffMs = 50;
  for (;;) {
    checkAborted(o.signal);
    try {
      const rep = await o.transport.request(o.donor, CHANNEL_SNAPSHOT, encodeBegin(o.minIndex), o.beginTimeoutMs ?? 60_000);
      return decodeBeginReply(rep);
    } catch (e) {
      if (e instanceof RemoteError) throw new Error(`snapshot donor ${o.donor} refused: ${e.message}`);
      // Only a link that was not up is retried: a begin that reached the donor may have
      // started a session there (an unused one expires on the donor after its idle time).
      if (!(e instanceof PeerUnavailableError) || Date.now() > deadline) {
        throw new Error(`could not begin a snapshot session on peer ${o.donor}: ${(e as Error).message}`);
      }
      await sleep(backoffMs, o.signal);
      backoffMs = Math.min(backoffMs * 2, retryBackoffMsMax);
    }
  }
}

/** Debt-based token bucket: take(n) returns once the rate allows n more bytes. */
class TokenBucket {
  private tokens = 0;
  private last = Date.now();
  constructor(
    private readonly rate: number,
    private readonly burst: number,
  ) {}
  async take(n: number, signal?: AbortSignal): Promise<void> {
    const now = Date.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
    this.tokens -= n;
    if (this.tokens < 0) await sleep((-this.tokens / this.rate) * 1000, signal);
  }
}

/** Reports progress at most every progressEveryMs and logs it every logEveryMs. */
export class Progress {
  estimate = 0;
  private current: string = 'waiting-for-donor';
  private done = 0;
  private total: number | undefined;
  private lastReportAt = 0;
  private lastLogAt: number;
  private readonly samples: { at: number; bytes: number }[] = [];
  constructor(
    private readonly o: FetchSnapshotOptions,
    startedAt: number,
  ) {
    this.lastLogAt = startedAt;
    this.samples.push({ at: startedAt, bytes: 0 });
  }
  phase(p: string): void {
    this.current = p;
    this.report(true);
  }
  bytes(done: number, total: number | undefined): void {
    this.done = done;
    this.total = total;
    const now = Date.now();
    this.samples.push({ at: now, bytes: done });
    while (this.samples.length > 2 && now - this.samples[1]!.at > rateWindowMs) this.samples.shift();
    this.report(false);
  }
  private snapshot(): ResyncProgress {
    const first = this.samples[0]!;
    const last = this.samples[this.samples.length - 1]!;
    const dt = (last.at - first.at) / 1000;
    const bytesPerSec = dt > 0 ? Math.round((last.bytes - first.bytes) / dt) : 0;
    const totalBytes = this.total ?? (this.estimate > 0 ? Math.max(this.estimate, this.done) : undefined);
    const etaSec = totalBytes !== undefined && bytesPerSec > 0 ? Math.max(0, Math.round((totalBytes - this.done) / bytesPerSec)) : undefined;
    return { method: 'snapshot', phase: this.current, donor: this.o.donor, bytes: this.done, totalBytes, bytesPerSec, etaSec };
  }
  private report(force: boolean): void {
    const now = Date.now();
    if (!force && now - this.lastReportAt < progressEveryMs && now - this.lastLogAt < logEveryMs) return;
    const p = this.snapshot();
    if (force || now - this.lastReportAt >= progressEveryMs) {
      this.lastReportAt = now;
      try {
        this.o.onProgress?.(p);
      } catch (e) {
        this.o.log.warn('resync progress callback failed', { error: (e as Error).message });
      }
    }
    if (now - this.lastLogAt >= logEveryMs) {
      this.lastLogAt = now;
      this.o.log.info('snapshot transfer progress', { donor: p.donor, bytes: p.bytes, totalBytes: p.totalBytes, bytesPerSec: p.bytesPerSec, etaSec: p.etaSec });
    }
  }
}

/** The promise, or a rejection as soon as the signal aborts (a read may wait up to its timeout). */
function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  checkAborted(signal);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new Error(`snapshot transfer aborted: ${String(signal.reason ?? 'abort')}`));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

function checkAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new Error(`snapshot transfer aborted: ${String(signal.reason ?? 'abort')}`);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
