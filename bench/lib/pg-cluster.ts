// A 3-replica PostgreSQL Recall cluster for benchmarks: N `recall serve --engine postgres`
// processes, each with its own managed postgres (under <dataDir>/postgres, socket in
// <dataDir>/postgres/sock), peers dialling one another directly (no fault relay), trust
// authentication (as `recall demo --engine postgres`), so pgbench logs in as `postgres`.
// bench/lib/cluster-procs.ts is the MySQL counterpart (it switches the PostgreSQL listener off).
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../../test/harness/tmp.js';
import { readyCluster, serveSpecs, spawnServe, type ServeCluster, type ServeNode } from './cluster-procs.js';

/** dbPort is trusted on 127.0.0.1 (--postgres-auth trust); dbDir holds postmaster.pid. */
export interface PgBenchNode extends ServeNode {
  /** Recall's PostgreSQL listener. */
  pgPort: number;
}

export interface PgBenchCluster extends ServeCluster<PgBenchNode> {
  /** The Prometheus text of node i's /metrics ('' when it does not answer). */
  metrics(i: number): Promise<string>;
}

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
  const { specs, replicas } = await serveSpecs(size, root.path);
  const secret = randomBytes(16).toString('hex');
  const nodes: PgBenchNode[] = specs.map((s) => {
    mkdirSync(s.dataDir, { mode: 0o711 });
    const proc = spawnServe([
      '--engine', 'postgres',
      '--node-id', String(s.nodeId), '--replicas', replicas,
      '--listen-peer', `127.0.0.1:${s.peerPort}`, '--listen-postgres', `127.0.0.1:${s.clientPort}`,
      '--listen-admin', `127.0.0.1:${s.adminPort}`, '--listen-mysql', 'off',
      '--data-dir', s.dataDir, '--managed-port', String(s.dbPort), '--postgres-auth', 'trust',
      '--cluster-secret', secret, '--cluster-id', 'bench-pg', '--log-format', 'json',
      ...(opts.extraArgs ?? []),
    ], opts.nodeArgs);
    return { nodeId: s.nodeId, pgPort: s.clientPort, adminPort: s.adminPort, peerPort: s.peerPort, dbPort: s.dbPort, dbDir: join(s.dataDir, 'postgres'), ...proc };
  });

  // SIGTERM: recall stops its managed postgres before it exits; a postmaster left behind by a
  // recall that had to be killed would keep its shared memory
  const killPostmasters = () => {
    for (const n of nodes) {
      const pid = postmasterPid(n.dbDir);
      if (pid === undefined) continue;
      try {
        if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(n.dbDir)) process.kill(pid, 'SIGQUIT');
      } catch {
        /* gone */
      }
    }
  };
  const cluster = await readyCluster(nodes, root, opts.readyTimeoutMs ?? 180_000, killPostmasters);

  const metrics = async (i: number): Promise<string> => {
    try {
      const r = await fetch(`http://127.0.0.1:${nodes[i]!.adminPort}/metrics`, { signal: AbortSignal.timeout(3000) });
      return await r.text();
    } catch {
      return '';
    }
  };
  return { ...cluster, metrics };
}
