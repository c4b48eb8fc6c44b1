// A 3-replica Recall cluster for benchmarks: N `recall serve` processes, each with its own
// managed mariadbd, peers dialling one another directly. test/harness/cluster.ts starts the
// same processes but puts a fault-injecting relay (in the test's own Node process) on every
// peer link; a benchmark must not pay for that hop, so this starter has none.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../../test/harness/ports.js';
import { cleanEnv, recallCommand, repoRoot, waitExit } from '../../test/harness/recall.js';
import { tempDir } from '../../test/harness/tmp.js';

export interface BenchNode {
  nodeId: number;
  mysqlPort: number;
  adminPort: number;
  peerPort: number;
  dbPort: number;
  /** The managed mariadbd's data directory (its pid file is there). */
  dbDir: string;
  process: ChildProcess;
  output(): string;
}

export interface ReplicationView {
  role: string;
  term: number;
  leader: number;
  commit: number;
  applied: number;
  diverged: boolean;
}

export interface BenchCluster {
  nodes: BenchNode[];
  replication(i: number): Promise<ReplicationView | undefined>;
  /** Index (0-based) of the leader every node names. */
  waitLeader(timeoutMs?: number): Promise<number>;
  /** Until every node applied the leader's commit index. */
  waitConverged(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startBenchCluster(opts: { size?: number; extraArgs?: string[]; readyTimeoutMs?: number } = {}): Promise<BenchCluster> {
  const size = opts.size ?? 3;
  const root = tempDir('recall-bench-cl-');
  const ports = new Set<number>();
  while (ports.size < size * 4) ports.add(await freePort());
  const p = [...ports];
  const secret = randomBytes(16).toString('hex');
  const specs = Array.from({ length: size }, (_, i) => ({
    nodeId: i + 1, mysqlPort: p[i * 4]!, adminPort: p[i * 4 + 1]!, peerPort: p[i * 4 + 2]!, dbPort: p[i * 4 + 3]!, dataDir: join(root.path, `n${i + 1}`),
  }));
  const replicas = specs.map((s) => `127.0.0.1:${s.peerPort}`).join(',');
  const nodes: BenchNode[] = specs.map((s) => {
    mkdirSync(s.dataDir);
    const child = spawn(process.execPath, [
      ...recallCommand(), 'serve',
      '--node-id', String(s.nodeId), '--replicas', replicas,
      '--listen-peer', `127.0.0.1:${s.peerPort}`, '--listen-mysql', `127.0.0.1:${s.mysqlPort}`,
      '--listen-admin', `127.0.0.1:${s.adminPort}`, '--listen-postgres', 'off',
      '--data-dir', s.dataDir, '--managed-port', String(s.dbPort),
      '--cluster-secret', secret, '--cluster-id', 'bench', '--log-format', 'json',
      ...(opts.extraArgs ?? []),
    ], { cwd: repoRoot(), env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const keep = (b: Buffer) => (out = (out + b.toString()).slice(-100_000));
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    return { nodeId: s.nodeId, mysqlPort: s.mysqlPort, adminPort: s.adminPort, peerPort: s.peerPort, dbPort: s.dbPort, dbDir: join(s.dataDir, 'mariadb'), process: child, output: () => out };
  });

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await Promise.all(nodes.map((n) => {
      if (n.process.exitCode === null && n.process.signalCode === null) n.process.kill('SIGTERM');
      return waitExit(n.process, 30_000);
    }));
    root.remove();
  };

  const replication = async (i: number): Promise<ReplicationView | undefined> => {
    try {
      const r = await fetch(`http://127.0.0.1:${nodes[i]!.adminPort}/status`, { signal: AbortSignal.timeout(3000) });
      return ((await r.json()) as { replication?: ReplicationView }).replication;
    } catch {
      return undefined;
    }
  };

  const waitLeader = async (timeoutMs = 30_000): Promise<number> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const reps = await Promise.all(nodes.map((_, i) => replication(i)));
      const l = reps.findIndex((r) => r?.role === 'leader');
      if (l >= 0 && reps.every((r) => r?.leader === l + 1)) return l;
      if (Date.now() > deadline) throw new Error(`no agreed leader within ${timeoutMs} ms: ${JSON.stringify(reps)}`);
      await sleep(100);
    }
  };

  const waitConverged = async (timeoutMs = 60_000): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const reps = await Promise.all(nodes.map((_, i) => replication(i)));
      const leader = reps.find((r) => r?.role === 'leader');
      if (leader && reps.every((r) => r && !r.diverged && r.applied === leader.commit)) return;
      if (Date.now() > deadline) throw new Error(`not converged within ${timeoutMs} ms: ${JSON.stringify(reps)}`);
      await sleep(100);
    }
  };

  try {
    const deadline = Date.now() + (opts.readyTimeoutMs ?? 120_000);
    for (const [i, n] of nodes.entries()) {
      for (;;) {
        if (n.process.exitCode !== null || n.process.signalCode !== null) throw new Error(`node ${i + 1} exited:\n${n.output().slice(-3000)}`);
        const ok = await fetch(`http://127.0.0.1:${n.adminPort}/ready`, { signal: AbortSignal.timeout(3000) }).then((r) => r.status === 200, () => false);
        if (ok) break;
        if (Date.now() > deadline) throw new Error(`node ${i + 1} not ready in time:\n${n.output().slice(-3000)}`);
        await sleep(200);
      }
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { nodes, replication, waitLeader, waitConverged, stop };
}
