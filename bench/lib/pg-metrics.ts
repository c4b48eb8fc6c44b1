// Reading the numbers a benchmark needs out of Prometheus text (/metrics) and /proc/stat.
import { readFileSync } from 'node:fs';

/** Sum of every sample of `name` whose labels contain `labelPart` (e.g. 'outcome="committed"'). */
export function metricValue(text: string, name: string, labelPart = ''): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    // exactly this name: followed by labels or a space (not recall_x_sum when asking for recall_x)
    if (rest[0] !== '{' && rest[0] !== ' ') continue;
    if (labelPart && !rest.includes(labelPart)) continue;
    const v = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(v)) sum += v;
  }
  return sum;
}

export interface RaftNumbers {
  syncCount: number;
  syncSeconds: number;
  batchCount: number;
  batchEntries: number;
  committed: number;
}

export function raftNumbers(text: string): RaftNumbers {
  return {
    syncCount: metricValue(text, 'recall_raft_sync_seconds_count'),
    syncSeconds: metricValue(text, 'recall_raft_sync_seconds_sum'),
    batchCount: metricValue(text, 'recall_raft_batch_entries_count'),
    batchEntries: metricValue(text, 'recall_raft_batch_entries_sum'),
    committed: metricValue(text, 'recall_raft_proposals_total', 'outcome="committed"'),
  };
}

export function raftDelta(a: RaftNumbers, b: RaftNumbers): RaftNumbers {
  return {
    syncCount: b.syncCount - a.syncCount,
    syncSeconds: b.syncSeconds - a.syncSeconds,
    batchCount: b.batchCount - a.batchCount,
    batchEntries: b.batchEntries - a.batchEntries,
    committed: b.committed - a.committed,
  };
}

/** CPU seconds the whole machine spent busy (all cores; everything but idle and iowait). */
export function machineBusySeconds(): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
    return (user! + nice! + system! + irq! + softirq! + steal!) / 100;
  } catch {
    return 0;
  }
}
