// Where a command's response ends, for Recall's own connections (write lane, applier,
// session-side queries): whole packets are pushed one at a time and the assembler says when
// the response is complete, keeping the packets and the facts Recall needs (OK fields, error,
// whether rows came back, where the terminators are so their status flags can be patched).
// The raw relay has its own in-place scanner (frontend/mysql/relay.ts) for speed.
import {
  CLIENT_DEPRECATE_EOF,
  PACKET_PAYLOAD_MAX,
  SERVER_MORE_RESULTS_EXISTS,
  SERVER_STATUS_CURSOR_EXISTS,
} from './constants.js';
import { decodeErr, decodeOk, type ErrPacket, type OkPacket } from './generic.js';

const S_FIRST = 0;
const S_COLDEFS = 1;
const S_COLEOF = 2;
const S_ROWS = 3;
const S_PREP_PARAMS = 4;
const S_PREP_PARAMS_EOF = 5;
const S_PREP_COLS = 6;
const S_PREP_COLS_EOF = 7;
const S_INFILE = 8;

export interface PreparedInfo {
  stmtId: number;
  columns: number;
  params: number;
}

export class ResponseAssembler {
  readonly packets: Buffer[] = [];
  /** indexes (in packets) of OK/EOF packets that carry status flags: offset of the flags in each */
  readonly statusAt: Array<[number, number]> = [];
  ok: OkPacket | null = null;
  err: ErrPacket | null = null;
  prepared: PreparedInfo | null = null;
  /** a result set (rows) was part of the response */
  hadRows = false;
  /** the server asked for a LOCAL INFILE: the caller must send the file (then an empty packet) */
  infileRequested = false;
  /** last status flags seen */
  status = 0;
  done = false;
  private state = S_FIRST;
  private count = 0;
  private prepCols = 0;
  private readonly deprecateEof: boolean;

  constructor(
    private readonly capabilities: number,
    private readonly prepare = false,
  ) {
    this.deprecateEof = (capabilities & CLIENT_DEPRECATE_EOF) !== 0;
  }

  /** Feed one whole packet payload; returns true when the response is complete. */
  push(p: Buffer): boolean {
    if (this.done) throw new Error('response already complete');
    this.packets.push(p);
    const head = p.length > 0 ? p[0]! : -1;
    switch (this.state) {
      case S_FIRST:
      case S_INFILE:
        if (head === 0xff) return this.finishErr(p);
        if (head === 0x00) {
          if (this.prepare && p.length >= 9) {
            this.prepared = { stmtId: p.readUInt32LE(1), columns: p.readUInt16LE(5), params: p.readUInt16LE(7) };
            this.prepCols = this.prepared.columns;
            if (this.prepared.params > 0) {
              this.state = S_PREP_PARAMS;
              this.count = this.prepared.params;
              return false;
            }
            return this.afterPrepParams();
          }
          return this.okTerminator(p);
        }
        if (head === 0xfb && this.state === S_FIRST) {
          // the request is answered by whoever sent the command; the response proper follows it
          this.packets.pop();
          this.infileRequested = true;
          this.state = S_INFILE;
          return false;
        }
        this.count = readLenenc(p, 0);
        this.hadRows = true;
        this.state = this.count > 0 ? S_COLDEFS : S_ROWS;
        return false;
      case S_COLDEFS:
        if (--this.count === 0) this.state = this.deprecateEof ? S_ROWS : S_COLEOF;
        return false;
      case S_COLEOF:
        this.status = p.length >= 5 ? p.readUInt16LE(3) : 0;
        this.statusAt.push([this.packets.length - 1, 3]);
        if (this.status & SERVER_STATUS_CURSOR_EXISTS) return this.finish();
        this.state = S_ROWS;
        return false;
      case S_ROWS:
        if (head === 0xff) return this.finishErr(p);
        if (head === 0xfe && (this.deprecateEof ? p.length < PACKET_PAYLOAD_MAX : p.length < 9)) {
          return this.deprecateEof ? this.okTerminator(p) : this.eofTerminator(p);
        }
        return false;
      case S_PREP_PARAMS:
        if (--this.count === 0) {
          if (this.deprecateEof) return this.afterPrepParams();
          this.state = S_PREP_PARAMS_EOF;
        }
        return false;
      case S_PREP_PARAMS_EOF:
        return this.afterPrepParams();
      case S_PREP_COLS:
        if (--this.count === 0) {
          if (this.deprecateEof) return this.finish();
          this.state = S_PREP_COLS_EOF;
        }
        return false;
      case S_PREP_COLS_EOF:
        return this.finish();
    }
    return false;
  }

  private afterPrepParams(): boolean {
    if (this.prepCols > 0) {
      this.state = S_PREP_COLS;
      this.count = this.prepCols;
      return false;
    }
    return this.finish();
  }

  private okTerminator(p: Buffer): boolean {
    const ok = decodeOk(p, this.capabilities);
    this.statusAt.push([this.packets.length - 1, statusOffset(p)]);
    this.status = ok.statusFlags;
    if (p[0] === 0x00) this.ok = ok;
    return this.more();
  }

  private eofTerminator(p: Buffer): boolean {
    this.status = p.length >= 5 ? p.readUInt16LE(3) : 0;
    this.statusAt.push([this.packets.length - 1, 3]);
    return this.more();
  }

  private more(): boolean {
    if (this.status & SERVER_MORE_RESULTS_EXISTS) {
      this.state = S_FIRST;
      return false;
    }
    return this.finish();
  }

  private finishErr(p: Buffer): boolean {
    this.err = decodeErr(p, this.capabilities);
    return this.finish();
  }

  private finish(): boolean {
    this.done = true;
    return true;
  }

  /** Rewrite the status flags of every terminator: keep `keep` bits, OR in `set`. */
  patchStatus(keep: number, set: number): void {
    for (const [i, off] of this.statusAt) {
      const p = this.packets[i]!;
      if (off + 2 > p.length) continue;
      const patched = Buffer.from(p);
      patched.writeUInt16LE((p.readUInt16LE(off) & keep) | set, off);
      this.packets[i] = patched;
    }
  }
}

/** Offset of the status flags in an OK packet (after header and two lenencs). */
function statusOffset(p: Buffer): number {
  let off = 1;
  off += lenencSize(p[off]!);
  off += lenencSize(p[off]!);
  return off;
}

function lenencSize(first: number): number {
  return first < 0xfb ? 1 : first === 0xfc ? 3 : first === 0xfd ? 4 : first === 0xfe ? 9 : 1;
}

export function readLenenc(buf: Buffer, off: number): number {
  const first = buf[off]!;
  if (first < 0xfb) return first;
  if (first === 0xfc) return buf.readUInt16LE(off + 1);
  if (first === 0xfd) return buf.readUIntLE(off + 1, 3);
  return Number(buf.readBigUInt64LE(off + 1));
}
