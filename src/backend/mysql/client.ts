// A small pipelined protocol client for Recall's own use of a database session: the write
// lane's account connections, the applier's connection, and session-side queries on a client's
// backend session while its relay is suspended. Commands may be sent back to back; responses
// are matched in order. Packets are whole payloads; responses are framed by ResponseAssembler.
import type { Socket } from 'node:net';
import { COM_QUERY, COM_STMT_CLOSE, COM_STMT_EXECUTE, COM_STMT_PREPARE, PACKET_PAYLOAD_MAX } from '../../protocol/mysql/constants.js';
import { decodeErr } from '../../protocol/mysql/generic.js';
import { encodePacket } from '../../protocol/mysql/packets.js';
import { ResponseAssembler } from '../../protocol/mysql/response.js';
import { BackendConnection, BackendRefusedError, type BackendLogin, type BackendTarget } from './connection.js';
import { ChannelClosedError, PacketChannel } from './channel.js';
import { TickCork } from '../../util/cork.js';

export class SqlError extends Error {
  constructor(
    readonly errno: number,
    readonly sqlState: string,
    message: string,
  ) {
    super(message);
    this.name = 'SqlError';
  }
}

interface Waiting {
  readonly asm: ResponseAssembler;
  readonly infile: Buffer | undefined;
  infileSent?: boolean;
  readonly resolve: (r: ResponseAssembler) => void;
  readonly reject: (e: Error) => void;
}

export class SqlClient {
  private readonly channel: PacketChannel;
  private readonly queue: Waiting[] = [];
  private reading = false;
  private failure: Error | null = null;
  private closed = false;
  private readonly cork: TickCork;

  private constructor(
    readonly socket: Socket,
    readonly capabilities: number,
    payloadBytesMax: number,
    leftover: Buffer,
    readonly threadId: number,
  ) {
    this.channel = new PacketChannel(socket, payloadBytesMax, leftover);
    this.cork = new TickCork(socket);
  }

  /** Open a session logged in as `login` (its stage1 hash). Throws SqlError when refused. */
  static async connect(target: BackendTarget, login: BackendLogin, payloadBytesMax: number, timeoutMs: number): Promise<SqlClient> {
    let conn: BackendConnection;
    try {
      conn = await BackendConnection.open(target, payloadBytesMax, timeoutMs);
    } catch (e) {
      if (e instanceof BackendRefusedError) {
        const err = decodeErr(e.errPayload, 0);
        throw new SqlError(err.errno, err.sqlState, err.message);
      }
      throw e;
    }
    conn.socket.on('error', () => undefined);
    try {
      const r = await conn.login(login);
      if (!r.ok) {
        const err = decodeErr(r.payload, conn.capabilities);
        throw new SqlError(err.errno, err.sqlState, err.message);
      }
    } catch (e) {
      conn.destroy();
      throw e;
    }
    return new SqlClient(conn.socket, conn.capabilities, payloadBytesMax, conn.detach(), conn.handshake.connectionId);
  }

  /** Talk on a session that the relay owns, while the relay is suspended; detach() hands it back. */
  static wrap(socket: Socket, capabilities: number, payloadBytesMax: number, leftover: Buffer): SqlClient {
    return new SqlClient(socket, capabilities, payloadBytesMax, leftover, 0);
  }

  get broken(): boolean {
    return this.failure !== null || this.closed || this.socket.destroyed;
  }

  /** Send one command payload; resolves with its whole response. */
  command(payload: Buffer, opts: { prepare?: boolean; infile?: Buffer } = {}): Promise<ResponseAssembler> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new ChannelClosedError());
    const asm = new ResponseAssembler(this.capabilities, opts.prepare ?? false);
    const p = new Promise<ResponseAssembler>((resolve, reject) => this.queue.push({ asm, infile: opts.infile, resolve, reject }));
    // Pipelined callers may stop awaiting after an earlier failure: a lost connection must not
    // become an unhandled rejection of the later commands (it ends the process).
    p.catch(() => undefined);
    this.send(encodePacket(payload, 0));
    if (!this.reading) void this.readLoop();
    return p;
  }

  /** Commands sent in the same tick leave in one write (the lane and the applier pipeline many). */
  private send(packet: Buffer): void {
    this.cork.hold();
    this.socket.write(packet);
  }

  query(sql: string | Buffer, opts: { infile?: Buffer } = {}): Promise<ResponseAssembler> {
    const text = typeof sql === 'string' ? Buffer.from(sql, 'utf8') : sql;
    const payload = Buffer.allocUnsafe(text.length + 1);
    payload[0] = COM_QUERY;
    text.copy(payload, 1);
    return this.command(payload, opts);
  }

  /** A query that must succeed (Recall's own statements). */
  async run(sql: string): Promise<ResponseAssembler> {
    const r = await this.query(sql);
    if (r.err) throw new SqlError(r.err.errno, r.err.sqlState, `${r.err.message} (in: ${sql.slice(0, 120)})`);
    return r;
  }

  prepare(sql: Buffer): Promise<ResponseAssembler> {
    const payload = Buffer.allocUnsafe(sql.length + 1);
    payload[0] = COM_STMT_PREPARE;
    sql.copy(payload, 1);
    return this.command(payload, { prepare: true });
  }

  /** COM_STMT_EXECUTE of `stmtId` with `body` = everything after the statement id. */
  execute(stmtId: number, body: Buffer): Promise<ResponseAssembler> {
    const payload = Buffer.allocUnsafe(5 + body.length);
    payload[0] = COM_STMT_EXECUTE;
    payload.writeUInt32LE(stmtId, 1);
    body.copy(payload, 5);
    return this.command(payload);
  }

  closeStatement(stmtId: number): void {
    const payload = Buffer.allocUnsafe(5);
    payload[0] = COM_STMT_CLOSE;
    payload.writeUInt32LE(stmtId, 1);
    if (!this.broken) this.send(encodePacket(payload, 0));
  }

  /** Rows of a text-protocol result as strings (null for NULL); for Recall's own small queries. */
  static rows(r: ResponseAssembler): Array<Array<string | null>> {
    const out: Array<Array<string | null>> = [];
    const ps = r.packets;
    if (!r.hadRows || ps.length === 0) return out;
    const cols = Number(ps[0]![0]);
    // column count, column definitions, [EOF], rows..., terminator
    let i = 1 + cols;
    if (ps[i] && ps[i]![0] === 0xfe && ps[i]!.length < 9) i++;
    for (; i < ps.length - 1; i++) {
      const p = ps[i]!;
      const row: Array<string | null> = [];
      let off = 0;
      for (let c = 0; c < cols; c++) {
        if (p[off] === 0xfb) {
          row.push(null);
          off++;
          continue;
        }
        const first = p[off]!;
        let len: number;
        if (first < 0xfb) {
          len = first;
          off += 1;
        } else if (first === 0xfc) {
          len = p.readUInt16LE(off + 1);
          off += 3;
        } else if (first === 0xfd) {
          len = p.readUIntLE(off + 1, 3);
          off += 4;
        } else {
          len = Number(p.readBigUInt64LE(off + 1));
          off += 9;
        }
        row.push(p.toString('utf8', off, off + len));
        off += len;
      }
      out.push(row);
    }
    return out;
  }

  private async readLoop(): Promise<void> {
    this.reading = true;
    try {
      while (this.queue.length > 0) {
        const w = this.queue[0]!;
        const p = await this.channel.read();
        const done = w.asm.push(p.payload);
        if (w.asm.infileRequested && !done && w.asm.packets.length === 0 && !w.infileSent) this.sendInfile(w.infile ?? Buffer.alloc(0), p.seq + 1);
        if (w.asm.infileRequested) w.infileSent = true;
        if (done) {
          this.queue.shift();
          w.resolve(w.asm);
        }
      }
    } catch (e) {
      this.fail(e as Error);
    } finally {
      this.reading = false;
    }
  }

  private sendInfile(content: Buffer, seq: number): void {
    for (let off = 0; off < content.length; off += PACKET_PAYLOAD_MAX - 1) {
      const chunk = content.subarray(off, Math.min(content.length, off + PACKET_PAYLOAD_MAX - 1));
      this.socket.write(encodePacket(chunk, seq++));
    }
    this.socket.write(encodePacket(Buffer.alloc(0), seq));
  }

  private fail(e: Error): void {
    if (!this.failure) this.failure = e instanceof ChannelClosedError ? e : new ChannelClosedError(e.message);
    for (const w of this.queue.splice(0)) w.reject(this.failure);
  }

  /** Stop using a wrapped session: unread bytes are returned (none, when nothing is pending). */
  detach(): Buffer {
    this.closed = true;
    return this.channel.detach();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.fail(new ChannelClosedError('closed'));
    this.channel.detach();
    if (!this.socket.destroyed) this.socket.end(encodePacket(Buffer.from([0x01]), 0));
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }
}
