// A 3-replica Recall cluster for benchmarks: N `recall serve` processes, each with its own
// managed mariadbd, peers dialling one another directly. test/harness/cluster.ts starts the
// same processes but puts a fault-injecting relay (in the test's own Node process) on every
// peer link; a benchmark must not pay for that hop, so this starter has none. The process
// handling (spawn, readiness, leader and convergence waits, stop) is shared with
// bench/lib/pg-cluster.ts, the PostgreSQL counterpart.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../../test/harness/ports.js';
import { cleanEnv, recallCommand, repoRoot, waitExit } from '../../test/harness/recall.js';
import { tempDir, type TempDir } from '../../test/harness/tmp.js';

/** A node of a bench cluster (either engine): its ports, its managed database, its process. */
export interface ServeNode extends ServeProcess {
  nodeId: number;
  peerPort: number;
  /** the managed database's own TCP port */
  dbPort: number;
  /** the managed database's data directory (its pid file is there) */
  dbDir: string;
}

export interface BenchNode extends ServeNode {
  mysqlPort: number;
}

export interface ReplicationView {
  role: string;
  term: number;
  leader: number;
  commit: number;
  applied: number;
  diverged: boolean;
}

/** A started bench cluster of nodes N (this file's MySQL nodes, pg-cluster.ts's PostgreSQL ones). */
export interface ServeCluster<N extends ServeProcess> {
  nodes: N[];
  replication(i: number): Promise<ReplicationView | undefined>;
  /** Index (0-based) of the leader every node names. */
  waitLeader(timeoutMs?: number): Promise<number>;
  /** Until every node applied the leader's commit index. */
  waitConverged(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export type BenchCluster = ServeCluster<BenchNode>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A `recall serve` process as the helpers below see it (this starter's and bench/lib/pg-cluster.ts's). */
export interface ServeProcess {
  adminPort: number;
  process: ChildProcess;
  output(): string;
}

/** Where one node of a bench cluster listens and keeps its data. */
export interface ServeSpec {
  nodeId: number;
  /** the MySQL or PostgreSQL listener */
  clientPort: number;
  adminPort: number;
  peerPort: number;
  /** the managed database's own port */
  dbPort: number;
  dataDir: string;
}

/** Four distinct free ports for each of `size` nodes, their data dirs under `root`, and the --replicas list. */
export async function serveSpecs(size: number, root: string): Promise<{ specs: ServeSpec[]; replicas: string }> {
  const ports = new Set<number>();
  while (ports.size < size * 4) ports.add(await freePort());
  const p = [...ports];
  const specs = Array.from({ length: size }, (_, i) => ({
    nodeId: i + 1, clientPort: p[i * 4]!, adminPort: p[i * 4 + 1]!, peerPort: p[i * 4 + 2]!, dbPort: p[i * 4 + 3]!, dataDir: join(root, `n${i + 1}`),
  }));
  return { specs, replicas: specs.map((s) => `127.0.0.1:${s.peerPort}`).join(',') };
}

/** `recall serve ARGS` under node with `nodeArgs`, from the repo root; output() is its last 100 kB. */
export function spawnServe(args: string[], nodeArgs: string[] = []): Pick<ServeProcess, 'process' | 'output'> {
  const child = spawn(process.execPath, [...nodeArgs, ...recallCommand(), 'serve', ...args], { cwd: repoRoot(), env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (b: Buffer) => (out = (out + b.toString()).slice(-100_000));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  return { process: child, output: () => out };
}

/**
 * The cluster of spawned `nodes` once every one is ready. stop() (idempotent; also when they do
 * not get ready) sends SIGTERM to those still running, waits until each has exited, runs
 * `afterExit` and removes `root`.
 */
export async function readyCluster<N extends ServeProcess>(nodes: N[], root: TempDir, readyTimeoutMs: number, afterExit?: () => void): Promise<ServeCluster<N>> {
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await Promise.all(nodes.map((n) => {
      if (n.process.exitCode === null && n.process.signalCode === null) n.process.kill('SIGTERM');
      return waitExit(n.process, 30_000);
    }));
    afterExit?.();
    root.remove();
  };
  try {
    await waitReady(nodes, readyTimeoutMs);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    nodes,
    replication: (i) => replicationOf(nodes[i]!),
    waitLeader: (timeoutMs = 30_000) => waitLeaderOf(nodes, timeoutMs),
    waitConverged: (timeoutMs = 60_000) => waitConvergedOf(nodes, timeoutMs),
    stop,
  };
}

/** The replication part of a node's /status (undefined when it does not answer). */
export async function replicationOf(n: ServeProcess): Promise<ReplicationView | undefined> {
  try {
    const r = await fetch(`http://127.0.0.1:${n.adminPort}/status`, { signal: AbortSignal.timeout(3000) });
    return ((await r.json()) as { replication?: ReplicationView }).replication;
  } catch {
    return undefined;
  }
}

/** Index (0-based) of the leader every node names. */
export async function waitLeaderOf(nodes: ServeProcess[], timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const reps = await Promise.all(nodes.map(replicationOf));
    const l = reps.findIndex((r) => r?.role === 'leader');
    if (l >= 0 && reps.every((r) => r?.leader === l + 1)) return l;
    if (Date.now() > deadline) throw new Error(`no agreed leader within ${timeoutMs} ms: ${JSON.stringify(reps)}`);
    await sleep(100);
  }
}

/** Until every node applied the leader's commit index. */
export async function waitConvergedOf(nodes: ServeProcess[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const reps = await Promise.all(nodes.map(replicationOf));
    const leader = reps.find((r) => r?.role === 'leader');
    if (leader && reps.every((r) => r && !r.diverged && r.applied === leader.commit)) return;
    if (Date.now() > deadline) throw new Error(`not converged within ${timeoutMs} ms: ${JSON.stringify(reps)}`);
    await sleep(100);
  }
}

/** Until every node's /ready answers 200; throws with the node's output when one exits or time runs out. */
export async function waitReady(nodes: ServeProcess[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const [i, n] of nodes.entries()) {
    for (;;) {
      if (n.process.exitCode !== null || n.process.signalCode !== null) throw new Error(`node ${i + 1} exited:\n${n.output().slice(-3000)}`);
      const ok = await fetch(`http://127.0.0.1:${n.adminPort}/ready`, { signal: AbortSignal.timeout(3000) }).then((r) => r.status === 200, () => false);
      if (ok) break;
      if (Date.now() > deadline) throw new Error(`node ${i + 1} not ready in time:\n${n.output().slice(-3000)}`);
      await sleep(200);
    }
  }
}

export async function startBenchCluster(opts: { size?: number; extraArgs?: string[]; readyTimeoutMs?: number } = {}): Promise<BenchCluster> {
  const size = opts.size ?? 3;
  const root = tempDir('recall-bench-cl-');
  const { specs, replicas } = await serveSpecs(size, root.path);
  const secret = randomBytes(16).toString('hex');
  const nodes: BenchNode[] = specs.map((s) => {
    mkdirSync(s.dataDir);
    const proc = spawnServe([
      '--node-id', String(s.nodeId), '--replicas', replicas,
      '--listen-peer', `127.0.0.1:${s.peerPort}`, '--listen-mysql', `127.0.0.1:${s.clientPort}`,
      '--listen-admin', `127.0.0.1:${s.adminPort}`, '--listen-postgres', 'off',
      '--data-dir', s.dataDir, '--managed-port', String(s.dbPort),
      '--cluster-secret', secret, '--cluster-id', 'bench', '--log-format', 'json',
      ...(opts.extraArgs ?? []),
    ]);
    return { nodeId: s.nodeId, mysqlPort: s.clientPort, adminPort: s.adminPort, peerPort: s.peerPort, dbPort: s.dbPort, dbDir: join(s.dataDir, 'mariadb'), ...proc };
  });

  return readyCluster(nodes, root, opts.readyTimeoutMs ?? 120_000);
}
