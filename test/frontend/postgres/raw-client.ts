// A raw protocol client for tests that need exact bytes: startup packets, a SCRAM or md5 login,
// and typed messages read whole, so tests can check what Recall sends message by message.
import net from 'node:net';
import { MessageChannel } from '../../../src/frontend/postgres/channel.js';
import { decodeAuthentication, encodePasswordMessage, encodeSASLInitialResponse, encodeSASLResponse } from '../../../src/protocol/postgres/messages.js';
import { encodeStartupMessage } from '../../../src/protocol/postgres/startup.js';
import { md5Hex, ScramClient, scramKeysFromPassword, scramNonce } from '../../../src/protocol/postgres/scram.js';
import { Writer } from '../../../src/protocol/postgres/writer.js';

export class RawClient {
  readonly ch: MessageChannel;
  constructor(readonly socket: net.Socket) {
    this.ch = new MessageChannel(socket);
  }

  static async connect(port: number): Promise<RawClient> {
    const s = net.connect(port, '127.0.0.1');
    await new Promise<void>((res, rej) => {
      s.once('connect', res);
      s.once('error', rej);
    });
    s.on('error', () => undefined);
    return new RawClient(s);
  }

  write(b: Buffer | string): void {
    this.socket.write(b);
  }

  /** One typed message (type byte, length, body). */
  read(): Promise<Buffer> {
    return this.ch.readMessage(1 << 30);
  }

  /** One raw byte (the answer to SSLRequest / GSSENCRequest). */
  async readByte(): Promise<string> {
    const b = await readBytes(this.ch, 1);
    return b.toString('latin1');
  }

  /** Messages up to and including the next one of type `until`. */
  async readUntil(until: string): Promise<Buffer[]> {
    const out: Buffer[] = [];
    for (;;) {
      const m = await this.read();
      out.push(m);
      if (m[0] === until.charCodeAt(0)) return out;
    }
  }

  /** Resolves when the server closed the connection. */
  closed(): Promise<void> {
    return new Promise((res) => {
      if (this.socket.destroyed || this.socket.readableEnded) return res();
      this.socket.once('close', () => res());
    });
  }

  /** StartupMessage and a SCRAM or md5 login with the password; returns the messages up to ReadyForQuery. */
  async login(user: string, password: string, database: string, extra: Array<[string, string]> = [], version?: [number, number]): Promise<Buffer[]> {
    this.write(encodeStartupMessage([['user', user], ['database', database], ...extra], ...(version ?? [3, 0])));
    const before: Buffer[] = [];
    for (;;) {
      const m = await this.read();
      if (m[0] !== 0x52) {
        before.push(m);
        if (m[0] === 0x45) return before;
        continue;
      }
      const a = decodeAuthentication(m);
      if (a.code === 0) break;
      if (a.code === 10) {
        const nonce = scramNonce();
        const first = new ScramClient(Buffer.alloc(32), nonce);
        this.write(encodeSASLInitialResponse('SCRAM-SHA-256', first.clientFirstMessage()));
        const cont = decodeAuthentication(await this.read());
        if (!('data' in cont)) throw new Error('expected SASLContinue');
        const salt = Buffer.from(/s=([^,]+)/.exec(cont.data)![1]!, 'base64');
        const iterations = Number(/i=(\d+)/.exec(cont.data)![1]);
        const keys = scramKeysFromPassword(password, salt, iterations);
        this.write(encodeSASLResponse(new ScramClient(keys.clientKey, nonce).clientFinalMessage(cont.data)));
      } else if (a.code === 5 && 'salt' in a) {
        this.write(encodePasswordMessage('md5' + md5Hex(Buffer.concat([Buffer.from(md5Hex(password + user)), a.salt]))));
      } else if (a.code !== 12) throw new Error(`unexpected authentication request ${a.code}`);
    }
    return [...before, ...(await this.readUntil('Z'))];
  }

  end(): void {
    this.socket.destroy();
  }
}

async function readBytes(ch: MessageChannel, n: number): Promise<Buffer> {
  // MessageChannel reads whole messages; single bytes come straight from its buffer
  const c = ch as unknown as { need(n: number): Promise<void>; take(n: number): Buffer };
  await c.need(n);
  return c.take(n);
}

/** A frontend message of this type with a body built by `f`. */
export function msg(type: string, f: (w: Writer) => void = () => undefined): Buffer {
  const w = new Writer();
  f(w);
  return w.message(type.charCodeAt(0));
}

export const typeOf = (m: Buffer): string => String.fromCharCode(m[0]!);
