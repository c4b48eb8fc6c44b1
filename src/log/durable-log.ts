// The durable replicated log of one node: segmented append-only files of
// checksummed records (record.ts), a snapshot file and a hard-state file
// (atomic-file.ts). Implements the core's read-only Storage view; the runtime
// writes through append()/setHardState()/applySnapshot()/compact() and makes a
// whole Ready batch durable with ONE sync() (group commit).
//
// Why the commit index is persisted lazily: term and vote must be durable before
// any message depending on them leaves the node, so a change of either forces a
// hard-state write in the next sync(). The commit index does not: a restarted
// node that remembers a lower commit simply learns it again from the leader, and
// the applier deduplicates by its own applied index. Writing it on every batch
// would add a rename and two fsyncs per batch, so it is written with term/vote
// changes, at most every commitPersistIntervalMs, and on close().
import fs from 'node:fs';
import path from 'node:path';
import type { ConfState, Entry, HardState, Snapshot, Storage } from '../consensus/types.js';
import { CompactedError, UnavailableError } from '../consensus/types.js';
import { logger, type Logger } from '../util/log.js';
import { fsyncDirSync, readAtomicSync, writeAtomic, writeAtomicSync } from './atomic-file.js';
import { findValidRecordAfter, parseRecord, recordBytes, RECORD_HEADER_BYTES, PAYLOAD_HEADER_BYTES, writeRecord } from './record.js';
import { decodeHardState, decodeSnapshot, encodeHardState, encodeSnapshot } from './state-files.js';

export interface DurableLogOptions {
  /** Membership of a brand-new node (used until a snapshot carries one). */
  readonly bootstrapConf: ConfState;
  readonly segmentBytesMax?: number;
  /** Recent entries kept in memory so that replication rarely reads the files. */
  readonly cacheBytesMax?: number;
  readonly commitPersistIntervalMs?: number;
  readonly nodeId?: number;
}

export class LogCorruptionError extends Error {
  constructor(readonly file: string, readonly offset: number, detail: string) {
    super(`log corrupted in ${file} at offset ${offset}: ${detail}; refusing to open (restore this node from a peer)`);
    this.name = 'LogCorruptionError';
  }
}

interface Segment {
  readonly first: number;
  readonly file: string;
  fd: number;
  bytes: number;
}

const SEGMENT_RE = /^(\d{20})\.seg$/;
const HARD_STATE_FILE = 'hardstate';
const SNAPSHOT_FILE = 'snapshot';

function segmentName(first: number): string {
  return `${String(first).padStart(20, '0')}.seg`;
}

const EMPTY = new Uint8Array(0);

export class DurableLog implements Storage {
  private readonly segmentBytesMax: number;
  private readonly cacheBytesMax: number;
  private readonly commitPersistIntervalMs: number;
  private readonly pending: Array<{ fd: number; buf: Buffer; pos: number }> = [];
  private readonly log: Logger;
  private segments: Segment[] = [];
  private snap: Snapshot;
  /** Index of terms[0]; always snap.meta.index + 1. */
  private base: number;
  private terms: number[] = [];
  private offsets: number[] = [];
  private sizes: number[] = [];
  /** cache[k] holds entry base+k when base+k >= cacheLo. */
  private cache: (Entry | undefined)[] = [];
  private cacheLo: number;
  private cacheBytes = 0;
  private hs: HardState;
  private hsDurable: HardState;
  private hsWrittenAt = 0;
  private readonly dirtyFds = new Set<number>();
  private dirDirty = false;
  private closed = false;

  private constructor(readonly dir: string, opts: DurableLogOptions, hs: HardState, snap: Snapshot) {
    this.segmentBytesMax = opts.segmentBytesMax ?? 64 * 1024 * 1024;
    this.cacheBytesMax = opts.cacheBytesMax ?? 64 * 1024 * 1024;
    this.commitPersistIntervalMs = opts.commitPersistIntervalMs ?? 1000;
    this.log = logger('log', { nodeId: opts.nodeId, dir });
    this.hs = hs;
    this.hsDurable = hs;
    this.snap = snap;
    this.base = snap.meta.index + 1;
    this.cacheLo = this.base;
  }

  /** Open (creating if needed) and recover the log in `dir`. Throws LogCorruptionError on mid-log damage. */
  static open(dir: string, opts: DurableLogOptions): DurableLog {
    fs.mkdirSync(dir, { recursive: true });
    for (const name of fs.readdirSync(dir)) if (name.endsWith('.tmp')) fs.rmSync(path.join(dir, name));
    const hsBody = readAtomicSync(path.join(dir, HARD_STATE_FILE));
    const hs = hsBody ? decodeHardState(hsBody, path.join(dir, HARD_STATE_FILE)) : { term: 0, vote: 0, commit: 0 };
    const snapBody = readAtomicSync(path.join(dir, SNAPSHOT_FILE));
    const snap = snapBody
      ? decodeSnapshot(snapBody, path.join(dir, SNAPSHOT_FILE))
      : { meta: { index: 0, term: 0, conf: opts.bootstrapConf }, data: EMPTY };
    const l = new DurableLog(dir, opts, hs, snap);
    l.recover();
    if (hs.commit > l.lastIndex()) {
      throw new LogCorruptionError(path.join(dir, HARD_STATE_FILE), 0, `commit index ${hs.commit} beyond last log index ${l.lastIndex()}`);
    }
    return l;
  }

  // ---- Storage (read side, used by the core) ----

  initialState(): { hardState: HardState; conf: ConfState } {
    return { hardState: this.hs, conf: this.snap.meta.conf };
  }

  firstIndex(): number {
    return this.base;
  }

  lastIndex(): number {
    return this.base + this.terms.length - 1;
  }

  term(i: number): number {
    if (i === this.base - 1) return this.snap.meta.term;
    if (i < this.base) throw new CompactedError(i);
    if (i > this.lastIndex()) throw new UnavailableError(i);
    return this.terms[i - this.base]!;
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    if (lo < this.base) throw new CompactedError(lo);
    if (hi > this.lastIndex() + 1) throw new UnavailableError(hi - 1);
    const out: Entry[] = [];
    let bytes = 0;
    for (let i = lo; i < hi; i++) {
      const e = this.entryAt(i);
      bytes += e.data.length;
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  hardState(): HardState {
    return this.hs;
  }

  // ---- write side (used by the runtime) ----

  /**
   * Append entries; if entries[0].index <= lastIndex() the conflicting suffix from
   * there is replaced. Written to the OS at once, durable after the next sync().
   */
  append(entries: readonly Entry[]): void {
    this.assertOpen();
    if (entries.length === 0) return;
    const first = entries[0]!.index;
    if (first < this.base || first > this.lastIndex() + 1) {
      throw new Error(`append at ${first} outside [${this.base}, ${this.lastIndex() + 1}]`);
    }
    for (let k = 1; k < entries.length; k++) {
      if (entries[k]!.index !== first + k) throw new Error(`append of non-contiguous entries at ${entries[k]!.index}`);
    }
    if (first <= this.lastIndex()) this.truncateFrom(first);
    let k = 0;
    while (k < entries.length) {
      let seg = this.segments[this.segments.length - 1];
      if (!seg || (seg.bytes >= this.segmentBytesMax && entries[k]!.index > seg.first)) seg = this.newSegment(entries[k]!.index);
      // Fill this segment up to its size bound with one write.
      let bytes = 0;
      let n = 0;
      while (k + n < entries.length && (n === 0 || seg.bytes + bytes + recordBytes(entries[k + n]!) <= this.segmentBytesMax)) {
        bytes += recordBytes(entries[k + n]!);
        n++;
      }
      const buf = Buffer.allocUnsafe(bytes);
      let off = 0;
      for (let j = 0; j < n; j++) {
        const e = entries[k + j]!;
        const start = off;
        off = writeRecord(buf, off, e);
        this.terms.push(e.term);
        this.offsets.push(seg.bytes + start);
        this.sizes.push(off - start);
        this.cachePush(e);
      }
      // Written by sync() in the thread pool: a write to a file whose pages are being flushed by
      // the previous fdatasync can block for as long as that flush, which stalled the event loop.
      this.pending.push({ fd: seg.fd, buf, pos: seg.bytes });
      seg.bytes += bytes;
      this.dirtyFds.add(seg.fd);
      k += n;
    }
  }

  setHardState(hs: HardState): void {
    this.hs = hs;
  }

  /**
   * Make everything appended and the hard state durable (the one fsync of a Ready batch).
   * commitDurable: write the commit index now, not lazily. The runtime asks for it when the
   * batch commits a membership change, so a restarted node knows that change was committed
   * and re-applies it before it votes (a node two changes behind could otherwise win an
   * election with the votes of an old majority).
   */
  async sync(opts: { commitDurable?: boolean } = {}): Promise<void> {
    this.assertOpen();
    const writes = this.pending.splice(0);
    await Promise.all(
      writes.map((w) => new Promise<void>((res, rej) => fs.write(w.fd, w.buf, 0, w.buf.length, w.pos, (e) => (e ? rej(e) : res())))),
    );
    const fds = [...this.dirtyFds];
    this.dirtyFds.clear();
    await Promise.all(fds.map((fd) => new Promise<void>((res, rej) => fs.fdatasync(fd, (e) => (e ? rej(e) : res())))));
    if (this.dirDirty) {
      this.dirDirty = false;
      fsyncDirSync(this.dir);
    }
    const hs = this.hs;
    const d = this.hsDurable;
    const mustWrite = hs.term !== d.term || hs.vote !== d.vote;
    const mayWrite = hs.commit !== d.commit && (opts.commitDurable === true || Date.now() - this.hsWrittenAt >= this.commitPersistIntervalMs);
    if (mustWrite || mayWrite) {
      await writeAtomic(path.join(this.dir, HARD_STATE_FILE), encodeHardState(hs));
      this.hsDurable = hs;
      this.hsWrittenAt = Date.now();
    }
  }

  /**
   * Persist a snapshot received from the leader and discard the whole log (the
   * leader's log supersedes ours; the snapshot file is durable before any segment goes).
   */
  async applySnapshot(s: Snapshot): Promise<void> {
    this.assertOpen();
    await writeAtomic(path.join(this.dir, SNAPSHOT_FILE), encodeSnapshot(s));
    this.snap = s;
    for (const seg of this.segments) this.dropSegment(seg);
    this.segments = [];
    fsyncDirSync(this.dir);
    this.base = s.meta.index + 1;
    this.terms = [];
    this.offsets = [];
    this.sizes = [];
    this.cache = [];
    this.cacheLo = this.base;
    this.cacheBytes = 0;
    if (this.hs.commit < s.meta.index) this.hs = { ...this.hs, commit: s.meta.index };
  }

  /**
   * Store a snapshot of the local state machine taken at s.meta.index (<= lastIndex)
   * and compact the log below it: whole segments are deleted, entries kept after it.
   */
  async compact(s: Snapshot): Promise<void> {
    this.assertOpen();
    const i = s.meta.index;
    if (i < this.base - 1) return; // older than what we have: nothing to do
    if (i > this.lastIndex()) throw new Error(`compact at ${i} beyond last index ${this.lastIndex()}`);
    if (this.term(i) !== s.meta.term) throw new Error(`compact at ${i}: term ${s.meta.term} differs from log term ${this.term(i)}`);
    await writeAtomic(path.join(this.dir, SNAPSHOT_FILE), encodeSnapshot(s));
    this.snap = s;
    const drop = i + 1 - this.base;
    this.terms.splice(0, drop);
    this.offsets.splice(0, drop);
    this.sizes.splice(0, drop);
    for (let k = 0; k < Math.min(drop, this.cache.length); k++) {
      const e = this.cache[k];
      if (e) this.cacheBytes -= e.data.length;
    }
    this.cache.splice(0, drop);
    this.base = i + 1;
    this.cacheLo = Math.max(this.cacheLo, this.base);
    // A segment is disposable when the next one starts at or below the new base.
    while (this.segments.length > 1 && this.segments[1]!.first <= this.base) {
      this.dropSegment(this.segments.shift()!);
      this.dirDirty = true;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.sync();
    if (this.hs.commit !== this.hsDurable.commit) {
      writeAtomicSync(path.join(this.dir, HARD_STATE_FILE), encodeHardState(this.hs));
      this.hsDurable = this.hs;
    }
    for (const seg of this.segments) fs.closeSync(seg.fd);
    this.segments = [];
    this.closed = true;
  }

  /**
   * The highest index the log can be compacted to while the entries after it still hold at
   * least `bytes` (a retention limit); firstIndex() - 1 when the whole log is needed for that.
   */
  compactionBoundForBytes(bytes: number): number {
    let sum = 0;
    for (let k = this.sizes.length - 1; k >= 0; k--) {
      sum += this.sizes[k]!;
      if (sum >= bytes) return this.base + k - 1;
    }
    return this.base - 1;
  }

  /** Bytes on disk in segment files (for status and tests). */
  segmentFiles(): string[] {
    return this.segments.map((s) => s.file);
  }

  // ---- internals ----

  private assertOpen(): void {
    if (this.closed) throw new Error('durable log is closed');
  }

  private entryAt(i: number): Entry {
    const k = i - this.base;
    if (i >= this.cacheLo) {
      const e = this.cache[k];
      if (e) return e;
    }
    this.flushPendingSync();
    const seg = this.segmentFor(i);
    const size = this.sizes[k]!;
    const buf = Buffer.allocUnsafe(size);
    fs.readSync(seg.fd, buf, 0, size, this.offsets[k]!);
    const r = parseRecord(buf, 0);
    if (!r.ok || r.entry.index !== i) {
      throw new LogCorruptionError(seg.file, this.offsets[k]!, r.ok ? `expected entry ${i}, found ${r.entry.index}` : r.why);
    }
    return r.entry;
  }

  private segmentFor(i: number): Segment {
    let lo = 0;
    let hi = this.segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.segments[mid]!.first <= i) lo = mid;
      else hi = mid - 1;
    }
    return this.segments[lo]!;
  }

  private cachePush(e: Entry): void {
    this.cache.push(e);
    this.cacheBytes += e.data.length + PAYLOAD_HEADER_BYTES + RECORD_HEADER_BYTES;
    while (this.cacheBytes > this.cacheBytesMax && this.cacheLo < this.lastIndex()) {
      const k = this.cacheLo - this.base;
      const old = this.cache[k];
      if (old) this.cacheBytes -= old.data.length + PAYLOAD_HEADER_BYTES + RECORD_HEADER_BYTES;
      this.cache[k] = undefined;
      this.cacheLo++;
    }
  }

  private newSegment(first: number): Segment {
    const file = path.join(this.dir, segmentName(first));
    const fd = fs.openSync(file, 'w+');
    const seg: Segment = { first, file, fd, bytes: 0 };
    this.segments.push(seg);
    this.dirDirty = true;
    return seg;
  }

  /** Appended records not yet written (sync() writes them): written now, for a read or a truncation. */
  private flushPendingSync(): void {
    for (const w of this.pending.splice(0)) fs.writeSync(w.fd, w.buf, 0, w.buf.length, w.pos);
  }

  private dropSegment(seg: Segment): void {
    this.flushPendingSync();
    this.dirtyFds.delete(seg.fd);
    fs.closeSync(seg.fd);
    fs.rmSync(seg.file, { force: true });
  }

  /** Remove entries >= i (i within [base, lastIndex]). */
  private truncateFrom(i: number): void {
    this.flushPendingSync();
    // Later segments go first, and the directory is synced before the tail is cut,
    // so a crash never leaves a stale later segment behind a shortened one (a gap).
    const inTail = this.segments.length > 0 && this.segmentFor(i).first < i;
    let removed = false;
    while (this.segments.length > 0 && this.segments[this.segments.length - 1]!.first >= i) {
      this.dropSegment(this.segments.pop()!);
      removed = true;
    }
    if (removed) fsyncDirSync(this.dir);
    const k = i - this.base;
    const tail = this.segments[this.segments.length - 1];
    if (tail && inTail) {
      const off = this.offsets[k]!;
      fs.ftruncateSync(tail.fd, off);
      tail.bytes = off;
      this.dirtyFds.add(tail.fd);
    }
    for (let j = k; j < this.cache.length; j++) {
      const e = this.cache[j];
      if (e) this.cacheBytes -= e.data.length + PAYLOAD_HEADER_BYTES + RECORD_HEADER_BYTES;
    }
    this.terms.length = k;
    this.offsets.length = k;
    this.sizes.length = k;
    this.cache.length = k;
    if (this.cacheLo > i) this.cacheLo = i;
  }

  private recover(): void {
    const names = fs
      .readdirSync(this.dir)
      .filter((n) => SEGMENT_RE.test(n))
      .sort();
    let expect = -1; // next index expected in the log; -1 before the first segment
    for (let s = 0; s < names.length; s++) {
      const name = names[s]!;
      const file = path.join(this.dir, name);
      const first = Number(SEGMENT_RE.exec(name)![1]);
      const isLast = s === names.length - 1;
      if (expect === -1 && first > this.base) {
        throw new LogCorruptionError(file, 0, `log starts at ${first} but the snapshot ends at ${this.base - 1} (gap)`);
      }
      if (expect !== -1 && first !== expect) {
        throw new LogCorruptionError(file, 0, `segment starts at ${first}, expected ${expect} (gap or overlap)`);
      }
      const buf = fs.readFileSync(file);
      let off = 0;
      let idx = first;
      while (off < buf.length) {
        const r = parseRecord(buf, off);
        if (r.ok && r.entry.index !== idx) {
          throw new LogCorruptionError(file, off, `record holds entry ${r.entry.index}, expected ${idx}`);
        }
        if (!r.ok) {
          const later = findValidRecordAfter(buf, off, idx);
          if (!isLast || later >= 0) {
            throw new LogCorruptionError(file, off, `${r.why}${later >= 0 ? `, with a valid record after it at offset ${later}` : ' in a segment that is not the last'}`);
          }
          // A torn tail: the last write before a crash was never acknowledged (not fsynced).
          this.log.warn('dropping torn tail of the log', { file, offset: off, bytes: buf.length - off, reason: r.why, index: idx });
          const fd = fs.openSync(file, 'r+');
          fs.ftruncateSync(fd, off);
          fs.fsyncSync(fd);
          fs.closeSync(fd);
          break;
        }
        if (idx >= this.base) {
          this.terms.push(r.entry.term);
          this.offsets.push(off);
          this.sizes.push(r.next - off);
          this.cachePush(r.entry);
        }
        off = r.next;
        idx++;
      }
      if (!isLast && idx === first) throw new LogCorruptionError(file, 0, 'empty segment in the middle of the log');
      this.segments.push({ first, file, fd: fs.openSync(file, 'r+'), bytes: off });
      expect = idx;
    }
    // After a crash between writing a received snapshot and discarding the old log,
    // entries past the snapshot are kept only if the log agrees with it at its index.
    const i = this.snap.meta.index;
    if (i > 0 && this.segments.length > 0) {
      const seg0 = this.segments[0]!;
      if (seg0.first <= i && expect > i) {
        const t = this.termOnDisk(i);
        if (t !== this.snap.meta.term && this.terms.length > 0) {
          this.log.warn('log disagrees with snapshot; discarding entries after it', { index: i, term: t, snapshotTerm: this.snap.meta.term });
          this.truncateFrom(this.base);
        }
      }
    }
    // Segments wholly below the snapshot are leftovers of an interrupted compaction.
    while (this.segments.length > 0 && (this.segments.length > 1 ? this.segments[1]!.first <= this.base : this.terms.length === 0)) {
      const seg = this.segments.shift()!;
      this.dropSegment(seg);
      this.dirDirty = true;
    }
    if (this.dirDirty) {
      fsyncDirSync(this.dir);
      this.dirDirty = false;
    }
  }

  private termOnDisk(i: number): number {
    const seg = this.segmentFor(i);
    const buf = fs.readFileSync(seg.file);
    let off = 0;
    while (off < buf.length) {
      const r = parseRecord(buf, off);
      if (!r.ok) break;
      if (r.entry.index === i) return r.entry.term;
      off = r.next;
    }
    return -1;
  }
}
