// Where the donor keeps the backup stream between mariadb-backup and the joiner's reads. The
// stream stays in memory while the joiner keeps up (it acknowledges what it has unpacked, and
// that is dropped); once the joiner falls behind by more than memoryBytesMax, the rest of the
// stream goes to a file. The backup therefore never waits for the joiner (the applier resumes
// as soon as the copy is done), and a joiner on a fast link costs no disk writes on the donor:
// writing the whole stream to a file first cost as much CPU as the backup itself.
import { open, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';

/** Bytes queued for the file before the backup's output is paused. */
const fileQueueBytesMax = 16 << 20;

export class Spool {
  /** Bytes received from the backup so far. */
  produced = 0;
  /** All bytes are in (the backup's output ended). */
  ended = false;
  private acked = 0;
  private mem: Buffer[] = [];
  /** Offset of mem[0]. */
  private memStart = 0;
  private memBytes = 0;
  private file: FileHandle | undefined;
  /** Offset of the file's first byte in the stream (everything before was acknowledged). */
  private fileBase = 0;
  /** Bytes written to the file (readable), as a stream offset. */
  private fileEnd = 0;
  private fileQueue: Buffer[] = [];
  private fileQueueBytes = 0;
  private writing: Promise<void> | undefined;
  private writeError: Error | undefined;
  private closed = false;
  /** Spilling: the file is being opened; new bytes queue for it, reads come from memory. */
  private opening = false;
  private input: Readable | undefined;

  constructor(
    private readonly path: string,
    private readonly memoryBytesMax: number,
  ) {}

  get inFile(): boolean {
    return this.file !== undefined;
  }

  /** Bytes a read can be served from now (while spilling, what is still in memory). */
  get available(): number {
    return this.file ? this.fileEnd : this.memStart + this.memBytes;
  }

  /** Resolves once `bytes` are available, the stream ended, or after waitMs. */
  waitFor(bytes: number, waitMs: number): Promise<void> {
    if (this.available >= bytes || this.ended || this.closed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const w = { bytes, resolve: () => {
        clearTimeout(timer);
        this.waiters.delete(w);
        resolve();
      } };
      const timer = setTimeout(w.resolve, waitMs);
      this.waiters.add(w);
    });
  }

  private readonly waiters = new Set<{ bytes: number; resolve: () => void }>();

  private wake(): void {
    if (this.waiters.size === 0) return;
    const avail = this.available;
    for (const w of [...this.waiters]) if (avail >= w.bytes || this.ended || this.closed) w.resolve();
  }

  /** Takes the backup's stdout; resolves with the stream's size once it ended and is readable. */
  consume(input: Readable): Promise<number> {
    this.input = input;
    input.on('data', (chunk: Buffer) => this.append(chunk));
    return new Promise<number>((resolve, reject) => {
      input.once('error', reject);
      input.once('end', () => {
        void this.flushed().then(() => {
          this.ended = true;
          this.wake();
          resolve(this.produced);
        }, reject);
      });
    });
  }

  /** The joiner has everything below `offset`: it is never asked for again. */
  ack(offset: number): void {
    if (offset <= this.acked) return;
    this.acked = Math.min(offset, this.produced);
    while (this.mem.length > 0 && this.memStart + this.mem[0]!.length <= this.acked) {
      const b = this.mem.shift()!;
      this.memStart += b.length;
      this.memBytes -= b.length;
    }
  }

  /** Copies [offset, offset + into.length) into `into`; the range must be below `available`. */
  async read(offset: number, into: Buffer): Promise<void> {
    const end = offset + into.length;
    if (offset < (this.file ? this.fileBase : this.memStart)) throw new Error(`bytes at ${offset} were acknowledged and dropped`);
    if (end > this.available) throw new Error(`spool read [${offset}, ${end}) beyond the ${this.available} bytes available`);
    if (this.file) {
      let got = 0;
      while (got < into.length) {
        const { bytesRead } = await this.file.read(into, got, into.length - got, offset - this.fileBase + got);
        if (bytesRead === 0) throw new Error(`spool file ended at ${offset + got}`);
        got += bytesRead;
      }
      return;
    }
    let pos = this.memStart;
    let copied = 0;
    for (const b of this.mem) {
      if (copied === into.length) break;
      const bEnd = pos + b.length;
      if (bEnd > offset + copied) {
        const from = offset + copied - pos;
        copied += b.copy(into, copied, from, Math.min(b.length, from + into.length - copied));
      }
      pos = bEnd;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wake();
    this.input?.destroy();
    this.mem = [];
    this.fileQueue = [];
    await this.writing?.catch(() => undefined);
    await this.file?.close().catch(() => undefined);
    this.file = undefined;
  }

  private append(chunk: Buffer): void {
    if (this.closed) return;
    this.produced += chunk.length;
    if (this.file || this.opening) {
      this.queueForFile(chunk);
      return;
    }
    this.mem.push(chunk);
    this.memBytes += chunk.length;
    this.wake();
    if (this.memBytes > this.memoryBytesMax) void this.spill();
  }

  /** The joiner fell behind: the unacknowledged part and all that follows goes to the file. */
  private async spill(): Promise<void> {
    this.opening = true;
    const pending = this.mem;
    this.fileBase = this.memStart;
    this.fileEnd = this.memStart;
    for (const b of pending) this.queueForFile(b);
    try {
      const f = await open(this.path, 'w+', 0o600);
      if (this.closed) {
        await f.close();
        return;
      }
      this.file = f;
    } catch (e) {
      this.writeError = e as Error;
      this.input?.destroy(e as Error);
      return;
    } finally {
      this.opening = false;
    }
    // Reads now come from the file only; keep mem until then so none is lost in between.
    this.mem = [];
    this.memBytes = 0;
    this.kick();
  }

  private queueForFile(b: Buffer): void {
    this.fileQueue.push(b);
    this.fileQueueBytes += b.length;
    if (this.fileQueueBytes > fileQueueBytesMax) this.input?.pause();
    this.kick();
  }

  private kick(): void {
    if (this.writing || !this.file || this.fileQueue.length === 0) return;
    this.writing = this.drain().finally(() => {
      this.writing = undefined;
      if (!this.closed) this.kick();
    });
  }

  private async drain(): Promise<void> {
    while (this.fileQueue.length > 0 && this.file && !this.closed) {
      const batch = this.fileQueue;
      this.fileQueue = [];
      const bytes = batch.reduce((n, b) => n + b.length, 0);
      try {
        let off = this.fileEnd - this.fileBase;
        for (const b of batch) {
          let done = 0;
          while (done < b.length) {
            const { bytesWritten } = await this.file.write(b, done, b.length - done, off);
            done += bytesWritten;
            off += bytesWritten;
          }
        }
      } catch (e) {
        this.writeError = e as Error;
        this.input?.destroy(e as Error);
        return;
      }
      this.fileQueueBytes -= bytes;
      this.fileEnd += bytes;
      this.wake();
      if (this.fileQueueBytes <= fileQueueBytesMax / 2) this.input?.resume();
    }
  }

  /** Resolves when everything received is readable (written, when spilled). */
  private async flushed(): Promise<void> {
    for (;;) {
      if (this.writeError) throw this.writeError;
      if (!this.file && !this.opening) return;
      if (this.file && this.fileQueue.length === 0 && !this.writing) return;
      await (this.writing ?? new Promise((r) => setTimeout(r, 5)));
    }
  }
}
