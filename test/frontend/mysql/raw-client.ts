// A raw protocol client for tests that need to send exactly the bytes they choose.
import assert from 'node:assert/strict';
import net from 'node:net';
import { PacketFramer, encodePacket, type Packet } from '../../../src/protocol/mysql/packets.js';
import { decodeHandshakeV10, encodeHandshakeResponse41 } from '../../../src/protocol/mysql/handshake.js';
import { nativeToken } from '../../../src/protocol/mysql/auth.js';
import { CLIENT_PROTOCOL_41 } from '../../../src/protocol/mysql/constants.js';

/** A plain 4.1 client with plugin auth and multi statements/results, no DEPRECATE_EOF. */
export const CAPS = 0x000fa68f | CLIENT_PROTOCOL_41 | 0x30000;

/** A raw client: whole packets in, with a deadline; `closed` resolves when the server hangs up. */
export class Raw {
  readonly socket: net.Socket;
  private framer = new PacketFramer(1 << 30);
  private waiting: (() => void) | null = null;
  closed: Promise<void>;
  isClosed = false;
  constructor(port: number) {
    this.socket = net.connect({ host: '127.0.0.1', port });
    this.socket.on('data', (d) => {
      this.framer.push(d);
      this.waiting?.();
    });
    this.socket.on('error', () => undefined);
    this.closed = new Promise((r) =>
      this.socket.on('close', () => {
        this.isClosed = true;
        this.waiting?.();
        r();
      }),
    );
  }
  async read(timeoutMs = 3000): Promise<Packet | null> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const p = this.framer.next();
      if (p) return p;
      if (this.isClosed || Date.now() > end) return null;
      await new Promise<void>((r) => {
        this.waiting = r;
        setTimeout(r, 50);
      });
      this.waiting = null;
    }
  }
  send(payload: Buffer, seq: number): void {
    this.socket.write(encodePacket(payload, seq));
  }
  async login(user = 'app', password = 'app-pw', capabilities = CAPS): Promise<void> {
    const hs = decodeHandshakeV10((await this.read())!.payload);
    this.send(
      encodeHandshakeResponse41({
        capabilities, maxPacketSize: 1 << 24, charset: 45, username: user,
        authResponse: nativeToken(password, hs.authPluginData), database: 'app', authPluginName: 'mysql_native_password', attributes: [],
      }),
      1,
    );
    const ok = await this.read();
    assert.equal(ok?.payload[0], 0x00, 'login OK');
  }
  close(): void {
    this.socket.destroy();
  }
}

