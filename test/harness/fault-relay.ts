// A fault-injecting TCP relay for tests: listens on 127.0.0.1 (a free port) and forwards
// every connection to a target host:port, byte for byte, in both directions. A test puts
// one in front of a peer link and then:
//   cut('reset')     destroys the relayed connections with a TCP reset and resets every new
//                    one at once (what a dialer sees when the peer's host is unreachable fast);
//   cut('blackhole') stops forwarding without closing anything and accepts new connections
//                    that never reach the target (a silent partition: only timeouts notice);
//   heal()           forwards again (blackholed connections are closed then: bytes were
//                    discarded, so their streams cannot continue);
//   setDelayMs(ms)   holds every chunk for ms before forwarding it, order preserved.
import net from 'node:net';

export type CutMode = 'reset' | 'blackhole';

export interface FaultRelayOptions {
  targetPort: number;
  targetHost?: string;
  /** For messages only (e.g. "1->2"). */
  name?: string;
}

export interface FaultRelayStats {
  accepted: number;
  /** Connections reset or blackholed because the relay was cut. */
  refused: number;
  bytesForwarded: number;
}

interface Pair {
  client: net.Socket;
  upstream: net.Socket | undefined;
  blackholed: boolean;
}

export class FaultRelay {
  readonly name: string;
  private readonly pairs = new Set<Pair>();
  private mode: CutMode | undefined;
  private delayMs = 0;
  private closed = false;
  readonly stats: FaultRelayStats = { accepted: 0, refused: 0, bytesForwarded: 0 };

  private constructor(
    private readonly server: net.Server,
    private readonly targetHost: string,
    private readonly targetPort: number,
    name: string | undefined,
  ) {
    this.name = name ?? `relay->${targetHost}:${targetPort}`;
  }

  static async start(opts: FaultRelayOptions): Promise<FaultRelay> {
    let relay: FaultRelay | undefined;
    const server = net.createServer((s) => relay!.accept(s));
    relay = new FaultRelay(server, opts.targetHost ?? '127.0.0.1', opts.targetPort, opts.name);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    return relay;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  get isCut(): boolean {
    return this.mode !== undefined;
  }

  /** Connections currently relayed (or held, when blackholed). */
  get connections(): number {
    return this.pairs.size;
  }

  cut(mode: CutMode = 'reset'): void {
    this.mode = mode;
    for (const p of [...this.pairs]) {
      if (mode === 'reset') this.drop(p);
      else this.blackhole(p);
    }
  }

  heal(): void {
    this.mode = undefined;
    for (const p of [...this.pairs]) if (p.blackholed) this.drop(p);
  }

  setDelayMs(ms: number): void {
    this.delayMs = Math.max(0, ms);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const p of [...this.pairs]) this.drop(p);
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  // ---- internals ----

  private accept(client: net.Socket): void {
    this.stats.accepted++;
    client.on('error', () => undefined);
    if (this.closed) {
      client.destroy();
      return;
    }
    const pair: Pair = { client, upstream: undefined, blackholed: false };
    this.pairs.add(pair);
    client.once('close', () => this.drop(pair));
    if (this.mode === 'reset') {
      this.stats.refused++;
      this.drop(pair);
      return;
    }
    if (this.mode === 'blackhole') {
      this.stats.refused++;
      this.blackhole(pair);
      return;
    }
    client.setNoDelay(true);
    const up = net.connect({ host: this.targetHost, port: this.targetPort });
    pair.upstream = up;
    up.setNoDelay(true);
    up.on('error', () => undefined);
    up.once('close', () => this.drop(pair));
    this.pipe(pair, client, up);
    this.pipe(pair, up, client);
  }

  /** Forwards from -> to with the current delay, keeping chunk order. */
  private pipe(pair: Pair, from: net.Socket, to: net.Socket): void {
    let releaseAt = 0;
    from.on('data', (chunk: Buffer) => {
      if (pair.blackholed) return;
      const delay = this.delayMs;
      if (delay === 0 && releaseAt <= Date.now()) {
        this.write(pair, from, to, chunk);
        return;
      }
      // Never release before a chunk that arrived earlier, even if the delay shrank.
      releaseAt = Math.max(Date.now() + delay, releaseAt);
      const wait = releaseAt - Date.now();
      setTimeout(() => {
        if (!pair.blackholed) this.write(pair, from, to, chunk);
      }, wait);
    });
  }

  private write(pair: Pair, from: net.Socket, to: net.Socket, chunk: Buffer): void {
    if (to.destroyed || !this.pairs.has(pair)) return;
    this.stats.bytesForwarded += chunk.length;
    // Backpressure: a slow receiver slows the sender instead of growing our memory.
    if (!to.write(chunk)) {
      from.pause();
      to.once('drain', () => {
        if (!pair.blackholed) from.resume();
      });
    }
  }

  private blackhole(p: Pair): void {
    p.blackholed = true;
    // Stop reading: the kernel buffers fill and then the sender's unacknowledged data
    // trips its TCP_USER_TIMEOUT, as when packets vanish on the path. (Under little traffic
    // only the application's own timeouts notice, as in a real partition.)
    p.client.pause();
    p.upstream?.pause();
  }

  private drop(p: Pair): void {
    if (!this.pairs.delete(p)) return;
    for (const s of [p.client, p.upstream]) {
      if (!s || s.destroyed) continue;
      // RST rather than FIN: a peer sees the link die at once, as when a host vanishes.
      if (typeof s.resetAndDestroy === 'function' && s.readyState !== 'opening') s.resetAndDestroy();
      else s.destroy();
    }
  }
}
