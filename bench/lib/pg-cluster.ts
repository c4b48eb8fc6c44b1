// A 3-replica PostgreSQL Recall cluster for benchmarks: N `recall serve --engine postgres`
// processes, each with its own managed postgres (under <dataDir>/postgres, socket in
// <dataDir>/postgres/sock), peers dialling one another directly (no fault relay), trust
// authentication (as `recall demo --engine postgres`), so pgbench logs in as `postgres`.
// bench/lib/cluster-procs.ts is the MySQL counterpart (it switches the PostgreSQL listener off).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../../test/harness/ports.js';
import { cleanEnv, recallCommand, repoRoot, waitExit } from '../../test/harness/recall.js';
import { tempDir } from '../../test/harness/tmp.js';
import type { ReplicationView } from './cluster-procs.js';

export interface PgBenchNode {
  nodeId: number;
  /** Recall's PostgreSQL listener. */
  pgPort: number;
  adminPort: number;
  peerPort: number;
  /** The managed postgres's own TCP port (trusted on 127.0.0.1 under --postgres-auth trust). */
  dbPort: number;
  /** The managed postgres's data directory (postmaster.pid is there). */
  dbDir: string;
  process: ChildProcess;
  output(): string;
}

export interface PgBenchCluster {
  nodes: PgBenchNode[];
  replication(i: number): Promise<ReplicationView | undefined>;
  /** Index (0-based) of the leader every node names. */
  waitLeader(timeoutMs?: number): Promise<number>;
  /** Until every node applied the leader's commit index. */
  waitConverged(timeoutMs?: number): Promise<void>;
  /** The Prometheus text of node i's /metrics ('' when it does not answer). */
  metrics(i: number): Promise<string>;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Pid of the postmaster of the postgres data directory `dbDir`, if it runs. */
export function postmasterPid(dbDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(dbDir, 'postmaster.pid'), 'utf8').split('\n')[0]!.trim());
    return Number.isInteger(pid) && pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}

export interface PgClusterOptions {
  size?: number;
  extraArgs?: string[];
  /** Options for node itself (e.g. ['--cpu-prof', '--cpu-prof-dir=DIR']: a profile per process at exit). */
  nodeArgs?: string[];
  readyTimeoutMs?: number;
}

export async function startPgBenchCluster(opts: PgClusterOptions = {}): Promise<PgBenchCluster> {
  const size = opts.size ?? 3;
  const root = tempDir('recall-bench-pg-');
  // postgres runs as its own OS user and must walk through this directory to its data dir
  chmodSync(root.path, 0o711);
  const ports = new Set<number>();
  while (ports.size < size * 4) ports.add(await freePort());
  const p = [...ports];
  const secret = randomBytes(16).toString('hex');
  const specs = Array.from({ length: size }, (_, i) => ({
    nodeId: i + 1, pgPort: p[i * 4]!, adminPort: p[i * 4 + 1]!, peerPort: p[i * 4 + 2]!, dbPort: p[i * 4 + 3]!, dataDir: join(root.path, `n${i + 1}`),
  }));
  const replicas = specs.map((s) => `127.0.0.1:${s.peerPort}`).join(',');
  const nodes: PgBenchNode[] = specs.map((s) => {
    mkdirSync(s.dataDir, { mode: 0o711 });
    const child = spawn(process.execPath, [
      ...(opts.nodeArgs ?? []), ...recallCommand(), 'serve', '--engine', 'postgres',
      '--node-id', String(s.nodeId), '--replicas', replicas,
      '--listen-peer', `127.0.0.1:${s.peerPort}`, '--listen-postgres', `127.0.0.1:${s.pgPort}`,
      '--listen-admin', `127.0.0.1:${s.adminPort}`, '--listen-mysql', 'off',
      '--data-dir', s.dataDir, '--managed-port', String(s.dbPort), '--postgres-auth', 'trust',
      '--cluster-secret', secret, '--cluster-id', 'bench-pg', '--log-format', 'json',
      ...(opts.extraArgs ?? []),
    ], { cwd: repoRoot(), env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const keep = (b: Buffer) => (out = (out + b.toString()).slice(-100_000));
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    return { nodeId: s.nodeId, pgPort: s.pgPort, adminPort: s.adminPort, peerPort: s.peerPort, dbPort: s.dbPort, dbDir: join(s.dataDir, 'postgres'), process: child, output: () => out };
  });

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    // SIGTERM: recall stops its managed postgres before it exits
    await Promise.all(nodes.map((n) => {
      if (n.process.exitCode === null && n.process.signalCode === null) n.process.kill('SIGTERM');
      return waitExit(n.process, 30_000);
    }));
    // a postmaster left behind by a recall that had to be killed would keep its shared memory
    for (const n of nodes) {
      const pid = postmasterPid(n.dbDir);
      if (pid === undefined) continue;
      try {
        if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(n.dbDir)) process.kill(pid, 'SIGQUIT');
      } catch {
        /* gone */
      }
    }
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

  const metrics = async (i: number): Promise<string> => {
    try {
      const r = await fetch(`http://127.0.0.1:${nodes[i]!.adminPort}/metrics`, { signal: AbortSignal.timeout(3000) });
      return await r.text();
    } catch {
      return '';
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
    const deadline = Date.now() + (opts.readyTimeoutMs ?? 180_000);
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
  return { nodes, replication, waitLeader, waitConverged, metrics, stop };
}
