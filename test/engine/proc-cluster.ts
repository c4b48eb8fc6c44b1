// Test/bench harness: N replication nodes as real OS processes (src/engine/cli.ts)
// on loopback, each with its own data directory, driven over their control ports.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const compiled = import.meta.url.endsWith('.js');
// Compiled: dist/test/engine -> dist/src/engine/cli.js; source: test/engine -> src/engine/cli.ts.
const cliPath = path.resolve(here, '../../src/engine', compiled ? 'cli.js' : 'cli.ts');
const repoRoot = path.resolve(here, compiled ? '../../..' : '../..');

export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

export interface NodeStatusLine {
  id: number;
  role: string;
  term: number;
  leader: number;
  commit: number;
  applied: number;
  lastIndex: number;
  peers: { id: number; match: number; lag: number; connected: boolean }[];
  voters: number[];
  learners: number[];
}

export class ProcNode {
  proc: ChildProcess | undefined;
  controlPort = 0;
  private sock: net.Socket | undefined;
  private nextId = 1;
  private waiting = new Map<string, (line: string) => void>();
  stderr = '';

  constructor(
    readonly id: number,
    readonly peerPort: number,
    readonly dataDir: string,
    private readonly peersArg: string,
    private readonly extraArgs: string[],
  ) {}

  get alive(): boolean {
    return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  async start(): Promise<void> {
    // ENGINE_NODE_ARGS: extra node flags for the node processes (e.g. --cpu-prof when profiling).
    const nodeArgs = (process.env.ENGINE_NODE_ARGS ?? '').split(' ').filter(Boolean);
    const args = [...nodeArgs, ...(compiled ? [] : ['--import', 'tsx']), cliPath, '--id', String(this.id), '--peers', this.peersArg, '--data', this.dataDir, ...this.extraArgs];
    const p = spawn(process.execPath, args, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = p;
    this.stderr = '';
    p.stderr!.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-200_000);
    });
    const port = await new Promise<number>((resolve, reject) => {
      const rl = readline.createInterface({ input: p.stdout! });
      rl.on('line', (l) => {
        const m = /^ready (\d+)$/.exec(l);
        if (m) resolve(Number(m[1]));
      });
      p.once('exit', (code) => reject(new Error(`node ${this.id} exited with ${code} before ready: ${this.stderr.slice(-2000)}`)));
    });
    this.controlPort = port;
    const sock = net.connect(port, '127.0.0.1');
    sock.setNoDelay(true);
    await new Promise<void>((r, j) => {
      sock.once('connect', () => r());
      sock.once('error', j);
    });
    sock.on('error', () => {});
    this.sock = sock;
    this.waiting = new Map();
    const rl = readline.createInterface({ input: sock });
    rl.on('line', (line) => {
      const rid = line.split(' ')[1]!;
      const w = this.waiting.get(rid);
      if (w) {
        this.waiting.delete(rid);
        w(line);
      }
    });
    sock.on('close', () => {
      for (const w of this.waiting.values()) w('err 0 ConnectionLost 0 control connection lost');
      this.waiting.clear();
    });
  }

  /** Send a control command; resolves with the answer line. */
  command(cmd: string, ...args: (string | number)[]): Promise<string> {
    const sock = this.sock;
    if (!sock || sock.destroyed || !this.alive) return Promise.resolve('err 0 ConnectionLost 0 node is down');
    const rid = String(this.nextId++);
    return new Promise((resolve) => {
      this.waiting.set(rid, resolve);
      sock.write(`${cmd} ${rid}${args.length ? ' ' + args.join(' ') : ''}\n`);
    });
  }

  async status(): Promise<NodeStatusLine | undefined> {
    const l = await this.command('status');
    if (!l.startsWith('status ')) return undefined;
    return JSON.parse(l.slice(l.indexOf(' ', 7) + 1)) as NodeStatusLine;
  }

  async applied(from = 0): Promise<[number, number, string][]> {
    const l = await this.command('applied', from);
    if (!l.startsWith('applied ')) throw new Error(l);
    return JSON.parse(l.slice(l.indexOf(' ', 8) + 1)) as [number, number, string][];
  }

  kill9(): void {
    this.proc?.kill('SIGKILL');
    this.sock?.destroy();
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || !this.alive) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    const t = setTimeout(() => p.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
    this.sock?.destroy();
  }
}

export class ProcCluster {
  readonly root: string;
  nodes: ProcNode[] = [];

  private constructor(root: string) {
    this.root = root;
  }

  static async start(n: number, extraArgs: string[] = []): Promise<ProcCluster> {
    const c = new ProcCluster(fs.mkdtempSync(path.join(os.tmpdir(), 'recall-engine-')));
    const ports: number[] = [];
    for (let i = 0; i < n; i++) ports.push(await freePort());
    const peersArg = ports.map((p, i) => `${i + 1}=127.0.0.1:${p}`).join(',');
    c.nodes = ports.map((p, i) => new ProcNode(i + 1, p, path.join(c.root, `n${i + 1}`), peersArg, extraArgs));
    try {
      await Promise.all(c.nodes.map((x) => x.start()));
    } catch (e) {
      await c.close();
      throw e;
    }
    return c;
  }

  /** Wait until exactly one live node is leader and the others agree on it. */
  async waitLeader(timeoutMs: number, exclude: number[] = []): Promise<ProcNode> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      const live = this.nodes.filter((x) => x.alive && !exclude.includes(x.id));
      const st = await Promise.all(live.map((x) => x.status()));
      const leaders = st.filter((s) => s?.role === 'leader');
      if (leaders.length === 1) return this.nodes[leaders[0]!.id - 1]!;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`no leader within ${timeoutMs} ms`);
  }

  /** SIGTERM every node (graceful: they flush and exit). */
  async stopAll(): Promise<void> {
    await Promise.all(this.nodes.map((x) => x.stop()));
  }

  async close(): Promise<void> {
    for (const x of this.nodes) if (x.alive) x.kill9();
    await Promise.all(this.nodes.map((x) => (x.proc && x.proc.exitCode === null && x.proc.signalCode === null ? new Promise((r) => x.proc!.once('exit', r)) : undefined)));
    fs.rmSync(this.root, { recursive: true, force: true });
  }
}
