// The command-phase relay: client bytes go to the backend and backend bytes go to the client
// as the Buffers they arrived in. Only packet headers, command bytes and the few bytes of
// response packets that decide where a response ends are looked at, in place; rows are never
// decoded. One backend session per client session, so session state needs no translation.
// Response framing: https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_command_phase.html
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import {
  CLIENT_DEPRECATE_EOF,
  COM_CHANGE_USER,
  COM_FIELD_LIST,
  COM_QUERY,
  COM_QUIT,
  COM_STATISTICS,
  COM_STMT_CLOSE,
  COM_STMT_EXECUTE,
  COM_STMT_FETCH,
  COM_STMT_PREPARE,
  COM_STMT_SEND_LONG_DATA,
  COM_STMT_RESET,
  COM_RESET_CONNECTION,
  COM_SET_OPTION,
  COM_PING,
  COM_INIT_DB,
  COM_PROCESS_KILL,
  COM_PROCESS_INFO,
  COM_REFRESH,
  COM_DEBUG,
  COM_CREATE_DB,
  COM_DROP_DB,
  COM_SHUTDOWN,
  COM_TIME,
  ER_NET_PACKET_TOO_LARGE,
  ER_NET_PACKETS_OUT_OF_ORDER,
  ER_NET_READ_INTERRUPTED,
  PACKET_PAYLOAD_MAX,
  SERVER_MORE_RESULTS_EXISTS,
  SERVER_STATUS_CURSOR_EXISTS,
} from '../../protocol/mysql/constants.js';
import { ProtocolError } from '../../protocol/mysql/errors.js';
import { classifyStatement, type StatementKind } from './classify.js';
import { errorsTotal, statementLatency, statementsTotal } from '../../admin/metrics.js';

/** What the session does for the relay. */
export interface RelayHooks {
  /** A command Recall answers itself (COM_CHANGE_USER, unknown command) arrived and nothing is pending.
   * The relay is suspended; `held` starts at that packet's header. */
  intercept(held: Buffer): void;
  /** Bad input from the client: answer with this error (sequence id `seq`) and close. */
  fatal(err: ProtocolError, seq: number): void;
  /** COM_QUIT was forwarded, or the client went away. */
  clientGone(): void;
  /** The backend went away; `responseStarted` tells whether part of a response already reached the client. */
  backendGone(pendingCommands: number, responseStarted: boolean): void;
  /** Routing: given a whole COM_QUERY / COM_STMT_EXECUTE payload, take it over (intercept) or relay it. */
  decide?(cmd: number, payload: Buffer): { intercept: boolean; kind: StatementKind };
  /** A statement was prepared on the backend (its text, for routing its executes). */
  prepared?(stmtId: number, params: number, text: Buffer): void;
  /** COM_STMT_CLOSE / COM_STMT_SEND_LONG_DATA / COM_STMT_RESET relayed for this statement. */
  statementCommand?(cmd: number, stmtId: number): void;
  /** A command that changes the session's context was relayed (COM_INIT_DB, COM_RESET_CONNECTION). */
  contextCommand?(cmd: number): void;
}

/** Commands whose whole payload routing looks at. */
const ROUTED = new Set<number>([COM_QUERY, COM_STMT_EXECUTE, COM_STMT_PREPARE, COM_INIT_DB]);

/** Commands relayed to the backend as they are. */
const RELAYED = new Set<number>([
  COM_QUERY, COM_INIT_DB, COM_FIELD_LIST, COM_STATISTICS, COM_PING, COM_PROCESS_KILL, COM_PROCESS_INFO, COM_REFRESH,
  COM_DEBUG, COM_CREATE_DB, COM_DROP_DB, COM_SHUTDOWN, COM_TIME, COM_RESET_CONNECTION, COM_SET_OPTION, COM_STMT_PREPARE,
  COM_STMT_EXECUTE, COM_STMT_SEND_LONG_DATA, COM_STMT_CLOSE, COM_STMT_RESET, COM_STMT_FETCH, COM_QUIT,
]);

// Response states of the command at the head of the pending queue.
const R_FIRST = 0;
const R_COLDEFS = 1;
const R_COLEOF = 2;
const R_ROWS = 3;
const R_PREP_PARAMS = 4;
const R_PREP_PARAMS_EOF = 5;
const R_PREP_COLS = 6;
const R_PREP_COLS_EOF = 7;
const R_FIELDS = 8;
const R_STAT = 9;

/** Response packet bytes needed in one piece to decide framing: header + two 9-byte lenencs + status. */
const RESPONSE_HEAD_BYTES = 24;
/** Client packet bytes needed in one piece: command byte + statement id. */
const COMMAND_HEAD_BYTES = 5;

const KIND_UNKNOWN: StatementKind = 'other';

const stmtCounters = new Map<string, { inc(): void }>();
const latencies = new Map<string, { observe(v: number): void }>();
for (const k of ['read', 'write', 'ddl', 'transaction', 'session', 'other'] as StatementKind[]) {
  stmtCounters.set(k, statementsTotal.labels('mysql', k));
  latencies.set(k, statementLatency.labels('mysql', k));
}
const dbErrors = errorsTotal.labels('mysql', 'database');

export class Relay {
  // client -> backend scanner
  private cCarry: Buffer | null = null;
  private cRemaining = 0;
  private cCont = false; // the packet being read is 0xFFFFFF long: a continuation follows
  private cNextSeq = 0;
  private cLogicalBytes = 0;
  private cInfile = false;
  private cMidPacket = false;
  private held: Buffer | null = null;
  private quitForwarded = false;
  private pauseReasons = 0; // 1 backpressure, 2 intercept, 4 suspended

  // backend -> client scanner
  private bCarry: Buffer | null = null;
  private bRemaining = 0;
  private bCont = false;
  private state = R_FIRST;
  private count = 0;
  private prepCols = 0;
  private responseStarted = false;
  private finishing = false;
  private finishingError = false;

  // commands waiting for their response, oldest first (clients may pipeline)
  private pendingCmd: number[] = [];
  private pendingKind: StatementKind[] = [];
  private pendingT0: number[] = [];
  private pendingText: Array<Buffer | null> = [];
  private stmtKinds = new Map<number, StatementKind>();
  /** relay the next command without asking decide() (the session already handled its routing) */
  private bypassNext = false;

  /** Status flags of the last OK/EOF seen (in transaction, autocommit): for routing later. */
  statusFlags = 0;
  private attached = false;
  private closed = false;
  private readonly deprecateEof: boolean;

  // Defence in depth: whatever a peer sends, an exception here must end this session only.
  private readonly onClientData = (chunk: Buffer): void => {
    try {
      this.fromClient(chunk);
    } catch (e) {
      this.hooks.fatal(new ProtocolError(`Malformed packet (${(e as Error).message})`), 1);
    }
  };
  private readonly onBackendData = (chunk: Buffer): void => {
    try {
      this.fromBackend(chunk);
    } catch (e) {
      this.hooks.backendGone(this.pendingCmd.length, true);
    }
  };
  private readonly onClientDrain = (): void => this.unpause(1, this.backend);
  private readonly onBackendDrain = (): void => this.unpause(1, this.client);
  private readonly onClientTimeout = (): void => {
    if (this.cMidPacket) this.hooks.fatal(new ProtocolError('Got timeout reading communication packets', ER_NET_READ_INTERRUPTED), 1);
  };
  private backendPaused = false;

  constructor(
    private client: Socket,
    private readonly backend: Socket,
    capabilities: number,
    private readonly payloadBytesMax: number,
    private readonly netReadTimeoutMs: number,
    private readonly hooks: RelayHooks,
  ) {
    this.deprecateEof = (capabilities & CLIENT_DEPRECATE_EOF) !== 0;
  }

  /** Start relaying, first feeding bytes that arrived during authentication. */
  attach(clientLeftover: Buffer, backendLeftover: Buffer): void {
    this.attached = true;
    this.client.on('data', this.onClientData);
    this.backend.on('data', this.onBackendData);
    this.client.on('drain', this.onClientDrain);
    this.backend.on('drain', this.onBackendDrain);
    this.client.on('timeout', this.onClientTimeout);
    if (backendLeftover.length) this.onBackendData(backendLeftover);
    if (clientLeftover.length) this.onClientData(clientLeftover);
  }

  /** Stop relaying (for an intercepted command); the session talks whole packets meanwhile. */
  suspend(): Buffer {
    this.attached = false;
    this.client.off('data', this.onClientData);
    this.backend.off('data', this.onBackendData);
    this.client.off('drain', this.onClientDrain);
    this.backend.off('drain', this.onBackendDrain);
    this.client.off('timeout', this.onClientTimeout);
    const held = this.held ?? Buffer.alloc(0);
    this.held = null;
    // the session reads whole packets from both sockets meanwhile: let them flow
    if (this.pauseReasons !== 0) {
      this.pauseReasons = 0;
      this.client.resume();
    }
    if (this.backendPaused) {
      this.backendPaused = false;
      this.backend.resume();
    }
    return held;
  }

  /** After an intercepted command: the client socket may be new (never in practice) and leftovers are fed back. */
  resume(clientLeftover: Buffer, backendLeftover: Buffer, bypass = false): void {
    this.bypassNext = bypass;
    this.attach(clientLeftover, backendLeftover);
  }

  /** No command in flight and no partial client packet: a COM_QUIT may be sent to the backend. */
  idle(): boolean {
    return !this.quitForwarded && this.pendingCmd.length === 0 && !this.cMidPacket && this.cCarry === null && !this.cInfile && !this.cCont;
  }

  pendingCount(): number {
    return this.pendingCmd.length;
  }

  close(): void {
    this.closed = true;
    this.suspend();
    if (this.cMidPacket) this.client.setTimeout(0);
  }

  private pause(reason: number, s: Socket): void {
    if (s === this.client) {
      if (this.pauseReasons === 0) s.pause();
      this.pauseReasons |= reason;
    } else if (!this.backendPaused) {
      this.backendPaused = true;
      s.pause();
    }
  }

  private unpause(reason: number, s: Socket): void {
    if (s === this.client) {
      if (this.pauseReasons === 0) return;
      this.pauseReasons &= ~reason;
      if (this.pauseReasons === 0) s.resume();
    } else if (this.backendPaused) {
      this.backendPaused = false;
      s.resume();
    }
  }

  // ---- client -> backend ----------------------------------------------------------------

  private fromClient(chunk: Buffer): void {
    if (this.closed) return;
    let buf = chunk;
    if (this.cCarry) {
      buf = Buffer.concat([this.cCarry, chunk]);
      this.cCarry = null;
    }
    const n = buf.length;
    let pos = 0;
    let fwdStart = 0;
    while (pos < n) {
      if (this.cRemaining > 0) {
        const k = Math.min(this.cRemaining, n - pos);
        pos += k;
        this.cRemaining -= k;
        continue;
      }
      const startOfPacket = pos;
      if (n - pos < 4) {
        this.cCarry = Buffer.from(buf.subarray(pos));
        break;
      }
      const len = buf[pos]! | (buf[pos + 1]! << 8) | (buf[pos + 2]! << 16);
      const seq = buf[pos + 3]!;
      const isCommand = !this.cCont && !this.cInfile;
      // the header alone decides a refusal: do not wait for bytes that may never come
      if (isCommand && len > this.payloadBytesMax) return this.tooLarge(buf, fwdStart, startOfPacket, seq);
      if (isCommand && n - pos < 4 + Math.min(len, COMMAND_HEAD_BYTES)) {
        this.cCarry = Buffer.from(buf.subarray(pos));
        break;
      }
      pos += 4;
      if (!isCommand) {
        if (seq !== this.cNextSeq) {
          this.forward(buf, fwdStart, startOfPacket);
          this.hooks.fatal(
            new ProtocolError(`Got packets out of order (sequence id ${seq}, expected ${this.cNextSeq})`, ER_NET_PACKETS_OUT_OF_ORDER),
            (seq + 1) & 0xff,
          );
          return;
        }
        this.cNextSeq = (seq + 1) & 0xff;
        if (this.cCont) {
          this.cLogicalBytes += len;
          if (this.cLogicalBytes > this.payloadBytesMax) return this.tooLarge(buf, fwdStart, startOfPacket, seq);
          this.cCont = len === PACKET_PAYLOAD_MAX;
        } else if (len === 0) {
          this.cInfile = false; // empty packet ends the LOCAL INFILE upload; the response follows
        }
        this.cRemaining = len;
        continue;
      }
      // a new command: sequence id 0
      if (seq !== 0) {
        this.forward(buf, fwdStart, startOfPacket);
        this.hooks.fatal(new ProtocolError(`Got packets out of order (sequence id ${seq}, expected 0)`, ER_NET_PACKETS_OUT_OF_ORDER), 1);
        return;
      }
      if (len > this.payloadBytesMax) return this.tooLarge(buf, fwdStart, startOfPacket, seq);
      const cmd = len === 0 ? -1 : buf[pos]!;
      let intercept = !RELAYED.has(cmd);
      let kind: StatementKind | null = null;
      if (!intercept && this.hooks.decide && ROUTED.has(cmd)) {
        if (len >= PACKET_PAYLOAD_MAX) intercept = !this.bypassNext;
        else if (n - pos < len) {
          // routing needs the whole statement: wait for the rest of the packet
          this.forward(buf, fwdStart, startOfPacket);
          this.cCarry = Buffer.from(buf.subarray(startOfPacket));
          fwdStart = n;
          break;
        } else {
          if (this.bypassNext) this.bypassNext = false;
          else {
            const d = this.hooks.decide(cmd, buf.subarray(pos, pos + len));
            intercept = d.intercept;
            kind = d.kind;
          }
        }
      }
      this.bypassNext = false;
      if (intercept) {
        // COM_CHANGE_USER and unknown commands: answered by the session once nothing is pending
        this.forward(buf, fwdStart, startOfPacket);
        this.held = Buffer.from(buf.subarray(startOfPacket));
        this.pause(2, this.client);
        if (this.pendingCmd.length === 0) this.hooks.intercept(this.suspend());
        return;
      }
      this.cCont = len === PACKET_PAYLOAD_MAX;
      this.cLogicalBytes = len;
      this.cNextSeq = 1;
      this.beginCommand(cmd, buf, pos, Math.min(n, pos + len), kind);
      this.cRemaining = len;
      if (cmd === COM_QUIT) {
        this.quitForwarded = true;
        this.forward(buf, fwdStart, Math.min(n, pos + len));
        this.hooks.clientGone();
        return;
      }
    }
    this.forward(buf, fwdStart, this.cCarry ? n - this.cCarry.length : n);
    const mid = this.cCarry !== null || this.cRemaining > 0;
    if (mid !== this.cMidPacket) {
      this.cMidPacket = mid;
      this.client.setTimeout(mid ? this.netReadTimeoutMs : 0);
    }
  }

  private tooLarge(buf: Buffer, fwdStart: number, packetStart: number, seq: number): void {
    this.forward(buf, fwdStart, packetStart);
    this.hooks.fatal(
      new ProtocolError("Got a packet bigger than 'max_allowed_packet' bytes", ER_NET_PACKET_TOO_LARGE),
      (seq + 1) & 0xff,
    );
  }

  private forward(buf: Buffer, from: number, to: number): void {
    if (to <= from) return;
    const ok = this.backend.write(from === 0 && to === buf.length ? buf : buf.subarray(from, to));
    if (!ok) this.pause(1, this.client);
  }

  private beginCommand(cmd: number, buf: Buffer, payloadStart: number, end: number, decided: StatementKind | null): void {
    if ((cmd === COM_STMT_SEND_LONG_DATA || cmd === COM_STMT_CLOSE || cmd === COM_STMT_RESET) && end - payloadStart >= 5) {
      this.hooks.statementCommand?.(cmd, buf.readUInt32LE(payloadStart + 1));
    }
    if (cmd === COM_INIT_DB || cmd === COM_RESET_CONNECTION) this.hooks.contextCommand?.(cmd);
    if (cmd === COM_STMT_SEND_LONG_DATA || cmd === COM_STMT_CLOSE || cmd === COM_QUIT) {
      if (cmd === COM_STMT_CLOSE && end - payloadStart >= 5) this.stmtKinds.delete(buf.readUInt32LE(payloadStart + 1));
      return; // no response
    }
    let kind: StatementKind = KIND_UNKNOWN;
    let text: Buffer | null = null;
    if (cmd === COM_QUERY || cmd === COM_STMT_PREPARE) {
      kind = decided ?? classifyStatement(buf, payloadStart + 1, end);
      if (cmd === COM_QUERY) stmtCounters.get(kind)!.inc();
      if (cmd === COM_STMT_PREPARE && this.hooks.prepared) text = Buffer.from(buf.subarray(payloadStart + 1, end));
    } else if (cmd === COM_STMT_EXECUTE) {
      // a truncated COM_STMT_EXECUTE is the database's to refuse; here it only has no kind
      kind = end - payloadStart >= 5 ? (this.stmtKinds.get(buf.readUInt32LE(payloadStart + 1)) ?? KIND_UNKNOWN) : KIND_UNKNOWN;
      stmtCounters.get(kind)!.inc();
    }
    if (this.pendingCmd.length === 0) this.startResponse(cmd);
    this.pendingCmd.push(cmd);
    this.pendingKind.push(kind);
    this.pendingText.push(text);
    this.pendingT0.push(performance.now());
  }

  // ---- backend -> client ----------------------------------------------------------------

  private fromBackend(chunk: Buffer): void {
    if (this.closed) return;
    // scan first (it may switch the client side into LOCAL INFILE mode), then pass the bytes on
    this.scanResponses(chunk);
    if (!this.client.write(chunk)) this.pause(1, this.backend);
    if (this.pendingCmd.length === 0 && this.held && this.attached) this.hooks.intercept(this.suspend());
  }

  private scanResponses(chunk: Buffer): void {
    let buf = chunk;
    if (this.bCarry) {
      buf = Buffer.concat([this.bCarry, chunk]);
      this.bCarry = null;
    }
    const n = buf.length;
    let pos = 0;
    while (pos < n) {
      if (this.bRemaining > 0) {
        const k = Math.min(this.bRemaining, n - pos);
        pos += k;
        this.bRemaining -= k;
        if (this.bRemaining === 0 && this.finishing && !this.bCont) this.finish();
        continue;
      }
      if (n - pos < 4) {
        this.bCarry = Buffer.from(buf.subarray(pos));
        return;
      }
      const len = buf[pos]! | (buf[pos + 1]! << 8) | (buf[pos + 2]! << 16);
      const seq = buf[pos + 3]!;
      if (this.bCont) {
        this.bCont = len === PACKET_PAYLOAD_MAX;
        pos += 4;
        this.bRemaining = len;
        continue;
      }
      if (n - pos - 4 < Math.min(len, RESPONSE_HEAD_BYTES)) {
        this.bCarry = Buffer.from(buf.subarray(pos));
        return;
      }
      pos += 4;
      if (this.pendingCmd.length > 0) this.responsePacket(buf, pos, len, seq);
      this.bCont = len === PACKET_PAYLOAD_MAX;
      this.bRemaining = len;
      if (len === 0 && this.finishing) this.finish();
    }
  }

  private startResponse(cmd: number): void {
    this.responseStarted = false;
    this.state = cmd === COM_STATISTICS ? R_STAT : cmd === COM_FIELD_LIST ? R_FIELDS : cmd === COM_STMT_FETCH ? R_ROWS : R_FIRST;
  }

  private responsePacket(buf: Buffer, off: number, len: number, seq: number): void {
    this.responseStarted = true;
    const head = len > 0 ? buf[off]! : -1;
    switch (this.state) {
      case R_FIRST:
        if (head === 0xff) return this.done(true);
        if (head === 0x00) {
          if (this.pendingCmd[0] === COM_STMT_PREPARE && len >= 9) {
            const stmtId = buf.readUInt32LE(off + 1);
            this.stmtKinds.set(stmtId, this.pendingKind[0]!);
            this.prepCols = buf.readUInt16LE(off + 5);
            const params = buf.readUInt16LE(off + 7);
            const text = this.pendingText[0];
            if (text) this.hooks.prepared?.(stmtId, params, text);
            if (params > 0) {
              this.state = R_PREP_PARAMS;
              this.count = params;
            } else this.afterPrepParams();
            return;
          }
          return this.terminator(buf, off, len, false);
        }
        if (head === 0xfb && this.pendingCmd[0] === COM_QUERY) {
          // LOCAL INFILE request: the client now sends the file, then an empty packet; OK/ERR follows
          this.cInfile = true;
          this.cNextSeq = (seq + 1) & 0xff;
          return;
        }
        if (head === 0xfe) return this.done(false); // EOF answering COM_SET_OPTION and the like
        this.count = readLenenc(buf, off);
        this.state = this.count > 0 ? R_COLDEFS : R_ROWS;
        return;
      case R_COLDEFS:
        if (--this.count === 0) this.state = this.deprecateEof ? R_ROWS : R_COLEOF;
        return;
      case R_COLEOF:
        this.statusFlags = len >= 5 ? buf.readUInt16LE(off + 3) : 0;
        // a cursor was opened: rows come later through COM_STMT_FETCH
        if (this.statusFlags & SERVER_STATUS_CURSOR_EXISTS) return this.done(false);
        this.state = R_ROWS;
        return;
      case R_ROWS:
        if (head === 0xff) return this.done(true);
        if (head === 0xfe && (this.deprecateEof ? len < PACKET_PAYLOAD_MAX : len < 9)) this.terminator(buf, off, len, !this.deprecateEof);
        return;
      case R_PREP_PARAMS:
        if (--this.count === 0) {
          if (this.deprecateEof) this.afterPrepParams();
          else this.state = R_PREP_PARAMS_EOF;
        }
        return;
      case R_PREP_PARAMS_EOF:
        return this.afterPrepParams();
      case R_PREP_COLS:
        if (--this.count === 0) {
          if (this.deprecateEof) this.done(false);
          else this.state = R_PREP_COLS_EOF;
        }
        return;
      case R_PREP_COLS_EOF:
        return this.done(false);
      case R_FIELDS:
        if (head === 0xff || (head === 0xfe && len < PACKET_PAYLOAD_MAX)) this.done(head === 0xff);
        return;
      case R_STAT:
        return this.done(false);
    }
  }

  private afterPrepParams(): void {
    if (this.prepCols > 0) {
      this.state = R_PREP_COLS;
      this.count = this.prepCols;
    } else this.done(false);
  }

  /** An OK (eofLayout false) or EOF packet that may announce more result sets. */
  private terminator(buf: Buffer, off: number, len: number, eofLayout: boolean): void {
    let status: number;
    if (eofLayout) status = len >= 5 ? buf.readUInt16LE(off + 3) : 0;
    else {
      let p = off + 1;
      p += lenencSize(buf[p]!);
      p += lenencSize(buf[p]!);
      status = p + 2 <= off + len ? buf.readUInt16LE(p) : 0;
    }
    this.statusFlags = status;
    if (status & SERVER_MORE_RESULTS_EXISTS) {
      this.state = R_FIRST;
      return;
    }
    this.done(false);
  }

  /** The response ends with the current packet; it is finished once that packet's last byte is through,
   * so nothing Recall answers itself can land inside it. */
  private done(isError: boolean): void {
    this.finishing = true;
    this.finishingError = isError;
  }

  private finish(): void {
    this.finishing = false;
    const isError = this.finishingError;
    const kind = this.pendingKind.shift()!;
    this.pendingText.shift();
    const t0 = this.pendingT0.shift()!;
    const cmd = this.pendingCmd.shift()!;
    if (isError) dbErrors.inc();
    if (cmd === COM_QUERY || cmd === COM_STMT_EXECUTE) latencies.get(kind)!.observe((performance.now() - t0) / 1000);
    if (cmd === COM_CHANGE_USER || cmd === COM_RESET_CONNECTION) this.stmtKinds.clear();
    if (this.pendingCmd.length > 0) this.startResponse(this.pendingCmd[0]!);
    else this.responseStarted = false;
  }

  /** Called by the session when the backend socket closes. */
  backendClosed(): void {
    this.hooks.backendGone(this.pendingCmd.length, this.responseStarted);
  }
}

function lenencSize(first: number): number {
  return first < 0xfb ? 1 : first === 0xfc ? 3 : first === 0xfd ? 4 : first === 0xfe ? 9 : 1;
}

function readLenenc(buf: Buffer, off: number): number {
  const first = buf[off]!;
  if (first < 0xfb) return first;
  if (first === 0xfc) return buf.readUInt16LE(off + 1);
  if (first === 0xfd) return buf.readUIntLE(off + 1, 3);
  return Number(buf.readBigUInt64LE(off + 1));
}
