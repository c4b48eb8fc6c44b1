// The donor side of the built-in snapshot transfer. A joiner's begin pauses the applier, starts
// the engine's backup stream (backup-tool.ts; mariadb-backup's xbstream, pg_basebackup's tar)
// into a spool (snapshot-spool.ts: memory while the joiner keeps
// up, a file beyond) and answers at once; the joiner's reads are served from the spool while the
// backup is still producing it (backup and transfer overlap). When the backup exits the applier
// resumes, whatever the joiner does next, and the spool stays until the joiner's end, or until
// the session has been idle for sessionIdleMs.
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { mkdtemp, readdir, lstat } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { PeerId, Transport } from '../transport/transport.js';
import type { Logger } from '../util/log.js';
import { mariadbBackupTool } from './mariadb-backup.js';
import type { BackupTool, ToolProcess } from './backup-tool.js';
import { Spool } from './snapshot-spool.js';
import {
  decodeRequest,
  encodeBeginReply,
  encodeReadReplyHead,
  READ_REPLY_HEAD_BYTES,
  SNAPSHOT_PROTOCOL_VERSION,
  type BeginRequest,
  type EndRequest,
  type ReadRequest,
  type SessionId,
} from './snapshot-protocol.js';
import { CHANNEL_SNAPSHOT, type AdminTarget, type ApplierPause } from './types.js';

export interface SnapshotDonorOptions {
  transport: Transport;
  log: Logger;
  applier: ApplierPause;
  /** The local server as its administrative account (mariadb-backup connects with it). */
  target: AdminTarget;
  /** The local server's data directory. */
  datadir: string;
  /** Where backups are spooled; leftovers of an earlier process are removed at start. */
  spoolDir: string;
  /** Sessions open at a time; a begin beyond this gets an error. */
  sessionsMax?: number;
  /** A session without a request for this long is ended (its joiner is gone). */
  sessionIdleMs?: number;
  /** How long begin waits for the applier to reach the joiner's minIndex. */
  pauseWaitMs?: number;
  /** A read of bytes not yet spooled waits at most this long, then returns what there is. */
  readWaitMs?: number;
  /** Largest read served (must fit the transport's frameBytesMax). */
  chunkBytesMax?: number;
  /** Stream bytes a session holds in memory before the rest goes to a file in spoolDir. */
  spoolMemoryBytesMax?: number;
  /** The engine's backup tool (default: mariadb-backup with the three options below). */
  tool?: BackupTool;
  /** mariadb-backup copy threads. */
  backupParallel?: number;
  backupBinary?: string;
  backupExtraArgs?: string[];
}

type SessionState = 'backup' | 'done' | 'failed';

interface Session {
  readonly id: SessionId;
  readonly peer: PeerId;
  readonly index: number;
  readonly dir: string;
  readonly spool: Spool;
  readonly backup: ToolProcess;
  state: SessionState;
  total?: number;
  error?: string;
  lastUsedAt: number;
  startedAt: number;
  bytesServed: number;
  resumed: boolean;
}

export interface SnapshotDonorStatus {
  sessions: { peer: PeerId; index: number; state: SessionState; spooled: number; inFile: boolean; total?: number; bytesServed: number }[];
}

const spoolPrefix = 'snap-';

export class SnapshotDonor {
  private readonly sessions = new Map<SessionId, Session>();
  /** Begins under way (pausing the applier, starting the backup): they hold a session slot. */
  private starting = 0;
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;
  private readonly o: Required<Omit<SnapshotDonorOptions, 'backupBinary' | 'backupExtraArgs' | 'tool'>> &
    Pick<SnapshotDonorOptions, 'backupBinary' | 'backupExtraArgs'>;
  private readonly tool: BackupTool;

  constructor(opts: SnapshotDonorOptions) {
    this.o = {
      sessionsMax: 2,
      sessionIdleMs: 180_000,
      pauseWaitMs: 30_000,
      readWaitMs: 5_000,
      chunkBytesMax: 8 << 20,
      spoolMemoryBytesMax: 64 << 20,
      backupParallel: 2,
      ...opts,
    };
    this.tool = opts.tool ?? mariadbBackupTool({ backupParallel: this.o.backupParallel, backupBinary: opts.backupBinary, backupExtraArgs: opts.backupExtraArgs });
    mkdirSync(this.o.spoolDir, { recursive: true });
    // Spools of a process that died are of no use to anyone (their sessions died with it).
    for (const f of readdirSync(this.o.spoolDir)) {
      if (f.startsWith(spoolPrefix)) rmSync(join(this.o.spoolDir, f), { recursive: true, force: true });
    }
    this.sweeper = setInterval(() => this.sweepIdle(), Math.min(30_000, Math.max(100, this.o.sessionIdleMs / 4)));
    this.sweeper.unref();
    this.o.transport.onRequest(CHANNEL_SNAPSHOT, (from, payload) => this.serve(from, payload));
  }

  status(): SnapshotDonorStatus {
    return {
      sessions: [...this.sessions.values()].map((s) => ({
        peer: s.peer,
        index: s.index,
        state: s.state,
        spooled: s.spool.produced,
        inFile: s.spool.inFile,
        total: s.total,
        bytesServed: s.bytesServed,
      })),
    };
  }

  /** Ends every session (backups killed, applier resumed, spools deleted) and stops serving. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    this.o.transport.onRequest(CHANNEL_SNAPSHOT, () => {
      throw new Error('snapshot donor is shut down');
    });
    await Promise.all([...this.sessions.values()].map((s) => this.endSession(s, 'donor closing')));
  }

  private async serve(from: PeerId, payload: Buffer): Promise<Uint8Array> {
    if (this.closed) throw new Error('snapshot donor is shut down');
    let req;
    try {
      req = decodeRequest(payload);
    } catch (e) {
      this.o.log.warn('bad snapshot request from peer', { peer: from, error: (e as Error).message });
      throw e;
    }
    switch (req.op) {
      case 'begin':
        return this.begin(from, req);
      case 'read':
        return this.read(from, req);
      case 'end':
        return this.end(from, req);
    }
  }

  private async begin(from: PeerId, req: BeginRequest): Promise<Uint8Array> {
    if (req.version !== SNAPSHOT_PROTOCOL_VERSION) {
      throw new Error(`snapshot protocol version ${req.version} not supported (this donor speaks ${SNAPSHOT_PROTOCOL_VERSION})`);
    }
    const open = this.sessions.size + this.starting;
    if (open >= this.o.sessionsMax) {
      throw new Error(`donor busy: ${open} snapshot sessions open (at most ${this.o.sessionsMax}); retry later or use another donor`);
    }
    this.starting++;
    try {
      let index: number;
      try {
        index = await this.o.applier.pause(req.minIndex, this.o.pauseWaitMs);
      } catch (e) {
        throw new Error(`donor could not pause its applier at index >= ${req.minIndex}: ${(e as Error).message}`);
      }
      // From here the applier is paused: every path must resume it exactly once.
      if (this.closed) {
        this.o.applier.resume();
        throw new Error('snapshot donor is shut down');
      }
      let session: Session;
      try {
        session = await this.startSession(from, index);
      } catch (e) {
        this.o.applier.resume();
        throw new Error(`donor could not start its backup: ${(e as Error).message}`);
      }
      if (this.closed) {
        await this.endSession(session, 'donor closing');
        throw new Error('snapshot donor is shut down');
      }
      const estimatedBytes = await dirBytes(this.o.datadir);
      this.o.log.info('snapshot session started', { peer: from, index, estimatedBytes, spool: session.dir });
      return encodeBeginReply({ session: session.id, index, estimatedBytes });
    } finally {
      this.starting--;
    }
  }

  private async startSession(peer: PeerId, index: number): Promise<Session> {
    const dir = await mkdtemp(join(this.o.spoolDir, spoolPrefix));
    try {
      const backup = this.tool.streamBackup({ target: this.o.target, datadir: this.o.datadir, workDir: dir });
      const spool = new Spool(join(dir, 'stream'), this.o.spoolMemoryBytesMax);
      const consumed = spool.consume(backup.stdout);
      consumed.catch(() => undefined);
      const now = Date.now();
      const s: Session = {
        id: randomBytes(8).readBigUInt64BE(0),
        peer,
        index,
        dir,
        spool,
        backup,
        state: 'backup',
        lastUsedAt: now,
        startedAt: now,
        bytesServed: 0,
        resumed: false,
      };
      this.sessions.set(s.id, s);
      // Done when the tool exited 0 and its whole output is readable.
      Promise.all([backup.done, consumed]).then(
        ([, total]) => {
          s.total = total;
          s.state = 'done';
          this.resume(s);
          this.o.log.info('snapshot backup done', {
            peer,
            index,
            bytes: total,
            spilledToFile: spool.inFile,
            seconds: (Date.now() - s.startedAt) / 1000,
          });
        },
        (e: Error) => {
          backup.kill();
          s.state = 'failed';
          s.error = e.message;
          // The applier resumes only once the backup has exited, never while it still copies.
          void backup.done
            .catch(() => undefined)
            .then(() => this.resume(s));
          if (this.sessions.has(s.id)) this.o.log.error('snapshot backup failed', { peer, index, error: e.message });
          else this.o.log.info('snapshot backup stopped: its session ended', { peer, index });
        },
      );
      return s;
    } catch (e) {
      rmSync(dir, { recursive: true, force: true });
      throw e;
    }
  }

  private resume(s: Session): void {
    if (s.resumed) return;
    s.resumed = true;
    this.o.applier.resume();
  }

  private session(from: PeerId, id: SessionId): Session {
    const s = this.sessions.get(id);
    if (!s) throw new Error('unknown snapshot session (it expired or the donor restarted); start the resync again');
    if (s.peer !== from) throw new Error(`snapshot session belongs to peer ${s.peer}`);
    s.lastUsedAt = Date.now();
    return s;
  }

  private async read(from: PeerId, req: ReadRequest): Promise<Uint8Array> {
    const s = this.session(from, req.session);
    if (req.length === 0 || req.length > this.o.chunkBytesMax) {
      throw new Error(`read length ${req.length} out of range (1..${this.o.chunkBytesMax})`);
    }
    if (req.ack > req.offset) throw new Error(`read acknowledges ${req.ack} bytes but asks for bytes from ${req.offset}`);
    s.spool.ack(req.ack);
    const end = req.offset + req.length;
    if (s.state === 'backup') await s.spool.waitFor(end, this.o.readWaitMs);
    if (!this.sessions.has(s.id)) throw new Error('snapshot session ended while reading');
    if (s.state === 'failed') throw new Error(`donor's backup failed: ${s.error}`);
    // A read at or past the end is no error: a joiner reads ahead before it knows the size.
    const limit = s.state === 'done' ? s.total! : s.spool.available;
    const n = Math.max(0, Math.min(req.length, limit - req.offset));
    const buf = Buffer.allocUnsafe(READ_REPLY_HEAD_BYTES + n);
    const data = buf.subarray(READ_REPLY_HEAD_BYTES);
    await s.spool.read(req.offset, data);
    s.bytesServed += n;
    s.lastUsedAt = Date.now();
    const eof = s.state === 'done' && req.offset + n >= s.total!;
    encodeReadReplyHead({ eof, crc: crc32(data), spooled: s.spool.produced, total: s.total }, n).copy(buf, 0);
    return buf;
  }

  private async end(from: PeerId, req: EndRequest): Promise<Uint8Array> {
    const s = this.sessions.get(req.session);
    // Ending a session that is already gone is not an error: the joiner's end may be a retry.
    if (s) {
      if (s.peer !== from) throw new Error(`snapshot session belongs to peer ${s.peer}`);
      await this.endSession(s, 'joiner ended it');
    }
    return Buffer.alloc(0);
  }

  private async endSession(s: Session, why: string): Promise<void> {
    if (!this.sessions.delete(s.id)) return;
    s.backup.kill();
    await s.backup.done.catch(() => undefined);
    this.resume(s);
    await s.spool.close();
    rmSync(s.dir, { recursive: true, force: true });
    this.o.log.info('snapshot session ended', { peer: s.peer, index: s.index, why, bytesServed: s.bytesServed });
  }

  private sweepIdle(): void {
    const now = Date.now();
    for (const s of this.sessions.values()) {
      if (now - s.lastUsedAt < this.o.sessionIdleMs) continue;
      this.o.log.warn('snapshot session idle; ending it', { peer: s.peer, idleMs: now - s.lastUsedAt });
      void this.endSession(s, 'idle');
    }
  }
}

/** Total size of the files under dir (the stream's size to within a few per cent). */
export async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += await dirBytes(p);
    else if (e.isFile()) total += await lstat(p).then((st) => st.size, () => 0);
  }
  return total;
}
