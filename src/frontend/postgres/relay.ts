// After start-up, client bytes go to the backend and backend bytes to the client as the Buffers
// they arrived in. Only message headers (type byte and length) are read, in place: client ones
// to refuse bad input and to count the Query/Sync/FunctionCall messages that each end with one
// ReadyForQuery, backend ones to find ReadyForQuery and its transaction status. DataRow and
// everything else is never decoded. With a `decide` hook (routing), client messages are grouped
// into whole batches (a Query, or extended-query messages up to Sync or Flush) and each batch is
// offered to the hook before it is forwarded.
// https://www.postgresql.org/docs/current/protocol-flow.html
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import {
  MSG_FUNCTION_CALL,
  MSG_QUERY,
  MSG_READY_FOR_QUERY,
  MSG_SYNC,
  MSG_TERMINATE,
  MSG_FLUSH,
  MSG_PARSE,
  MSG_BIND,
  MSG_DESCRIBE,
  MSG_EXECUTE,
  MSG_CLOSE,
  SQLSTATE_PROTOCOL_VIOLATION,
  TX_IDLE,
} from '../../protocol/postgres/constants.js';
import { frontendMessageLengthMax } from '../../protocol/postgres/framing.js';
import type { PgError } from '../../protocol/postgres/messages.js';
import { errorsTotal, statementLatency, statementsTotal } from '../../admin/metrics.js';

/** The routing hook point (see DESIGN.md): a whole batch of client messages before it is forwarded. */
export interface QueryBatch {
  /** The batch's messages, contiguous, exactly as the client sent them. */
  bytes: Buffer;
  /** Type byte of the message that ended it: Query 'Q', Sync 'S' or Flush 'H'. */
  end: number;
  /** Transaction status of the last ReadyForQuery ('I', 'T', 'E'). */
  txStatus: number;
}

export interface RelayHooks {
  /** Bad input from the client: answer with this error and close. */
  fatal(err: PgError): void;
  /** Terminate was forwarded. */
  terminated(): void;
  /** The backend sent something the relay cannot follow. */
  backendBroken(): void;
  /**
   * Routing: return true to take the batch over. The relay then stops reading the client, waits
   * until every earlier response has reached it, and calls `intercept`.
   */
  decide?(batch: QueryBatch): boolean;
  /** A batch `decide` took, with the client bytes that followed it; the relay is detached until resume(). */
  intercept?(batch: QueryBatch, leftover: Buffer): void;
}

const statements = statementsTotal.labels('postgres', 'other');
const latency = statementLatency.labels('postgres', 'other');
const protocolErrors = errorsTotal.labels('postgres', 'protocol');

// prom-client validates and hashes the labels on every inc()/observe() (about 5 us per select-only
// transaction, a quarter of the frontend's user CPU): statements are counted here and added once a
// second, and one statement in LATENCY_SAMPLE_EVERY is timed (observe() costs ~1 % of the relay's CPU at 8) (recall_statements_total stays exact).
const LATENCY_SAMPLE_EVERY = 32;
const STATEMENTS_FLUSH_MS = 1000;
let statementsPending = 0;
let statementsTimer: NodeJS.Timeout | null = null;
let latencyTick = 0;

function countStatement(): void {
  statementsPending++;
  if (statementsTimer) return;
  statementsTimer = setTimeout(() => {
    statementsTimer = null;
    statements.inc(statementsPending);
    statementsPending = 0;
  }, STATEMENTS_FLUSH_MS);
  statementsTimer.unref();
}

/** Messages grouped into a batch for `decide`; Query, Sync and Flush end one. */
const BATCHED = new Uint8Array(256);
for (const t of [MSG_QUERY, MSG_PARSE, MSG_BIND, MSG_DESCRIBE, MSG_EXECUTE, MSG_CLOSE, MSG_SYNC, MSG_FLUSH]) BATCHED[t] = 1;

export class Relay {
  // client -> backend
  private readonly cHead = Buffer.alloc(5);
  private cHeadLen = 0;
  private cSkip = 0; // body bytes of the current client message still to pass
  private cBuf: Buffer | null = null; // routed mode: bytes of an incomplete message
  private batchParts: Buffer[] = [];
  private held: { batch: QueryBatch; leftover: Buffer } | null = null;

  // backend -> client
  private readonly bHead = Buffer.alloc(5);
  private bHeadLen = 0;
  private bSkip = 0;
  private bStatusNext = false; // the next body byte is a ReadyForQuery's status
  /** Type byte of the last message the backend started: an ErrorResponse before a close is its own FATAL. */
  lastBackendType = 0;

  /** Query, Sync and FunctionCall messages forwarded whose ReadyForQuery has not come back. */
  private pending = 0;
  private readonly t0: number[] = [];
  /** Transaction status of the last ReadyForQuery. */
  txStatus = TX_IDLE;
  private attached = false;
  private closed = false;
  private clientPaused = false;
  private backendPaused = false;

  private readonly onClientData = (chunk: Buffer): void => {
    try {
      if (this.hooks.decide) this.fromClientRouted(chunk);
      else this.fromClient(chunk);
    } catch (e) {
      this.fail(`invalid message (${(e as Error).message})`);
    }
  };
  private readonly onBackendData = (chunk: Buffer): void => {
    try {
      this.fromBackend(chunk);
    } catch {
      this.hooks.backendBroken();
    }
  };
  private readonly onClientDrain = (): void => {
    if (this.backendPaused) {
      this.backendPaused = false;
      this.backend.resume();
    }
  };
  private readonly onBackendDrain = (): void => {
    if (this.clientPaused && !this.held) {
      this.clientPaused = false;
      this.client.resume();
    }
  };

  constructor(
    private readonly client: Socket,
    private readonly backend: Socket,
    private readonly largeMessageBytesMax: number,
    private readonly hooks: RelayHooks,
  ) {}

  /** Start relaying, first feeding bytes that arrived during start-up. */
  attach(clientLeftover: Buffer, backendLeftover: Buffer): void {
    this.attached = true;
    this.client.on('data', this.onClientData);
    this.backend.on('data', this.onBackendData);
    this.client.on('drain', this.onClientDrain);
    this.backend.on('drain', this.onBackendDrain);
    if (backendLeftover.length) this.onBackendData(backendLeftover);
    if (clientLeftover.length) this.onClientData(clientLeftover);
  }

  private detach(): void {
    this.attached = false;
    this.client.off('data', this.onClientData);
    this.backend.off('data', this.onBackendData);
    this.client.off('drain', this.onClientDrain);
    this.backend.off('drain', this.onBackendDrain);
  }

  /** After an intercepted batch: relay again, starting with the client bytes that followed it. */
  resume(clientLeftover: Buffer): void {
    this.held = null;
    if (this.clientPaused) {
      this.clientPaused = false;
      this.client.resume();
    }
    this.attach(clientLeftover, Buffer.alloc(0));
  }

  /** Nothing in flight and no partial message: the backend may be sent a Terminate. */
  idle(): boolean {
    return this.pending === 0 && this.cSkip === 0 && this.cHeadLen === 0 && this.cBuf === null && this.batchParts.length === 0;
  }

  pendingCount(): number {
    return this.pending;
  }

  close(): void {
    this.closed = true;
    this.detach();
  }

  private fail(message: string): void {
    protocolErrors.inc();
    this.close();
    this.hooks.fatal({ severity: 'FATAL', code: SQLSTATE_PROTOCOL_VIOLATION, message });
  }

  /** Checks one client message header; false when it is bad (the session is then being closed). */
  private clientMessage(type: number, len: number): boolean {
    const max = frontendMessageLengthMax(type, this.largeMessageBytesMax);
    if (max < 0) {
      this.fail(`invalid frontend message type ${type}`);
      return false;
    }
    if (len < 4 || len > max) {
      this.fail('invalid message length');
      return false;
    }
    if (type === MSG_QUERY || type === MSG_SYNC || type === MSG_FUNCTION_CALL) {
      this.pending++;
      this.t0.push(performance.now());
      if (type !== MSG_SYNC) countStatement();
    } else if (type === MSG_EXECUTE) countStatement();
    return true;
  }

  // ---- client -> backend, plain relay -----------------------------------------------------

  private fromClient(chunk: Buffer): void {
    if (this.closed) return;
    const n = chunk.length;
    let pos = 0;
    let terminate = false;
    if (this.cSkip > 0) {
      const k = Math.min(this.cSkip, n);
      this.cSkip -= k;
      pos = k;
    }
    while (pos < n) {
      let type: number;
      let len: number;
      if (this.cHeadLen > 0 || n - pos < 5) {
        const k = Math.min(5 - this.cHeadLen, n - pos);
        chunk.copy(this.cHead, this.cHeadLen, pos, pos + k);
        this.cHeadLen += k;
        pos += k;
        if (this.cHeadLen < 5) break;
        this.cHeadLen = 0;
        type = this.cHead[0]!;
        len = this.cHead.readInt32BE(1);
      } else {
        type = chunk[pos]!;
        len = chunk.readInt32BE(pos + 1);
        pos += 5;
      }
      if (!this.clientMessage(type, len)) return;
      const body = len - 4;
      const k = Math.min(body, n - pos);
      pos += k;
      this.cSkip = body - k;
      if (type === MSG_TERMINATE) {
        terminate = true;
        break;
      }
    }
    if (!this.backend.write(terminate ? chunk.subarray(0, pos) : chunk)) this.pauseClient();
    if (terminate) {
      this.close();
      this.hooks.terminated();
    }
  }

  private pauseClient(): void {
    if (!this.clientPaused) {
      this.clientPaused = true;
      this.client.pause();
    }
  }

  // ---- client -> backend, with the routing hook ----------------------------------------------

  private fromClientRouted(chunk: Buffer): void {
    if (this.closed) return;
    const buf = this.cBuf ? Buffer.concat([this.cBuf, chunk]) : chunk;
    this.cBuf = null;
    const n = buf.length;
    const out: Buffer[] = [];
    let pos = 0;
    // where the unfinished batch's messages in this chunk begin (-1: none yet); its messages from
    // earlier chunks are in batchParts. A batch that lies within one chunk is handed over as a
    // view of it, without copying.
    let segStart = -1;
    const pending = (upTo: number): Buffer[] => {
      const parts = this.batchParts.splice(0);
      if (segStart >= 0) parts.push(buf.subarray(segStart, upTo));
      segStart = -1;
      return parts;
    };
    while (pos < n) {
      if (n - pos < 5) {
        this.cBuf = Buffer.from(buf.subarray(pos));
        break;
      }
      const type = buf[pos]!;
      const len = buf.readInt32BE(pos + 1);
      const max = frontendMessageLengthMax(type, this.largeMessageBytesMax);
      // refuse on the header alone: do not wait for bytes that may never come
      if (max < 0 || len < 4 || len > max) return void this.clientMessage(type, len);
      if (n - pos < len + 1) {
        this.cBuf = Buffer.from(buf.subarray(pos));
        break;
      }
      const msgStart = pos;
      pos += len + 1;
      if (!BATCHED[type]) {
        // CopyData/CopyDone/CopyFail/FunctionCall/Terminate pass at once (an unfinished batch before them too)
        out.push(...pending(msgStart), buf.subarray(msgStart, pos));
        this.clientMessage(type, len);
        if (type === MSG_TERMINATE) {
          this.writeBackend(out);
          this.close();
          this.hooks.terminated();
          return;
        }
        continue;
      }
      if (segStart < 0) segStart = msgStart;
      if (type !== MSG_QUERY && type !== MSG_SYNC && type !== MSG_FLUSH) continue;
      const parts = pending(pos);
      const batch: QueryBatch = { bytes: parts.length === 1 ? parts[0]! : Buffer.concat(parts), end: type, txStatus: this.txStatus };
      if (this.hooks.decide!(batch)) {
        this.writeBackend(out);
        this.held = { batch: { ...batch, bytes: Buffer.from(batch.bytes) }, leftover: Buffer.from(buf.subarray(pos)) };
        this.pauseClient();
        this.client.off('data', this.onClientData);
        this.maybeIntercept();
        return;
      }
      for (let p = 0; p < batch.bytes.length; ) {
        const t = batch.bytes[p]!;
        const l = batch.bytes.readInt32BE(p + 1);
        this.clientMessage(t, l);
        p += l + 1;
      }
      out.push(batch.bytes);
    }
    // an unfinished batch may copy bytes the socket reuses: keep our own copy
    if (segStart >= 0) this.batchParts.push(Buffer.from(buf.subarray(segStart, pos)));
    this.writeBackend(out);
  }

  private writeBackend(out: Buffer[]): void {
    if (out.length === 0) return;
    let ok = true;
    if (out.length === 1) ok = this.backend.write(out[0]!);
    else {
      this.backend.cork();
      for (const b of out) ok = this.backend.write(b);
      this.backend.uncork();
    }
    if (!ok) this.pauseClient();
  }

  private maybeIntercept(): void {
    if (!this.held || this.pending !== 0 || !this.attached) return;
    const { batch, leftover } = this.held;
    this.detach();
    this.hooks.intercept!(batch, leftover);
  }

  // ---- backend -> client ----------------------------------------------------------------

  private fromBackend(chunk: Buffer): void {
    if (this.closed) return;
    const n = chunk.length;
    let pos = 0;
    if (this.bSkip > 0) {
      if (this.bStatusNext) this.readyForQuery(chunk[0]!);
      const k = Math.min(this.bSkip, n);
      this.bSkip -= k;
      pos = k;
    }
    while (pos < n) {
      let type: number;
      let len: number;
      if (this.bHeadLen > 0 || n - pos < 5) {
        const k = Math.min(5 - this.bHeadLen, n - pos);
        chunk.copy(this.bHead, this.bHeadLen, pos, pos + k);
        this.bHeadLen += k;
        pos += k;
        if (this.bHeadLen < 5) break;
        this.bHeadLen = 0;
        type = this.bHead[0]!;
        len = this.bHead.readInt32BE(1);
      } else {
        type = chunk[pos]!;
        len = chunk.readInt32BE(pos + 1);
        pos += 5;
      }
      if (len < 4) throw new Error(`invalid message length ${len} from the server`);
      this.lastBackendType = type;
      const body = len - 4;
      if (type === MSG_READY_FOR_QUERY) {
        if (pos < n) this.readyForQuery(chunk[pos]!);
        else this.bStatusNext = true;
      }
      const k = Math.min(body, n - pos);
      pos += k;
      this.bSkip = body - k;
    }
    if (!this.client.write(chunk)) {
      if (!this.backendPaused) {
        this.backendPaused = true;
        this.backend.pause();
      }
    }
    if (this.held) this.maybeIntercept();
  }

  private readyForQuery(status: number): void {
    this.bStatusNext = false;
    this.txStatus = status;
    if (this.pending > 0) {
      this.pending--;
      const t0 = this.t0.shift()!;
      if (++latencyTick % LATENCY_SAMPLE_EVERY === 0) latency.observe((performance.now() - t0) / 1000);
    }
  }
}
