// Replication engine benchmark: 3 nodes as separate processes on loopback, fsync on.
// Proposers run inside the leader process (so that the number measured is the
// engine's, not a control protocol's): committed entries per second and p50/p99
// commit latency for 1, 16 and 256 concurrent proposers x 100-byte and 4 KiB entries.
//   node dist/bench/engine.js [--ms 3000]
import { fileURLToPath } from 'node:url';
import { ProcCluster } from '../test/engine/proc-cluster.js';

export interface EngineBenchRow {
  proposers: number;
  bytes: number;
  entriesPerSec: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

export async function runEngineBench(opts: { cellMs?: number; proposers?: number[]; sizes?: number[]; nodeArgs?: string[] } = {}): Promise<EngineBenchRow[]> {
  const cellMs = opts.cellMs ?? 3000;
  const cluster = await ProcCluster.start(3, ['--quiet', ...(opts.nodeArgs ?? [])]);
  const rows: EngineBenchRow[] = [];
  try {
    for (const bytes of opts.sizes ?? [100, 4096]) {
      for (const proposers of opts.proposers ?? [1, 16, 256]) {
        const leader = await cluster.waitLeader(10_000);
        const line = await leader.command('bench', proposers, bytes, cellMs);
        if (!line.startsWith('bench ')) throw new Error(`bench failed: ${line}`);
        const r = JSON.parse(line.slice(line.indexOf(' ', 6) + 1)) as { count: number; ms: number; p50Ms: number; p99Ms: number; errors: number };
        rows.push({ proposers, bytes, entriesPerSec: Math.round((r.count * 1000) / r.ms), p50Ms: r.p50Ms, p99Ms: r.p99Ms, errors: r.errors });
      }
    }
  } finally {
    await cluster.stopAll();
    await cluster.close();
  }
  return rows;
}

export function formatEngineBench(rows: readonly EngineBenchRow[]): string {
  const head = 'entry bytes | proposers | committed/s | p50 ms | p99 ms | errors';
  const lines = rows.map(
    (r) =>
      `${String(r.bytes).padStart(11)} | ${String(r.proposers).padStart(9)} | ${String(r.entriesPerSec).padStart(11)} | ${r.p50Ms.toFixed(2).padStart(6)} | ${r.p99Ms.toFixed(2).padStart(6)} | ${r.errors}`,
  );
  return ['replication engine: 3 processes on loopback, fsync on', head, '-'.repeat(head.length), ...lines].join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const i = process.argv.indexOf('--ms');
  const cellMs = i > 0 ? Number(process.argv[i + 1]) : 3000;
  runEngineBench({ cellMs })
    .then((rows) => console.log(formatEngineBench(rows)))
    .catch((e) => {
      console.error(e);
      process.exit(1);
    });
}
