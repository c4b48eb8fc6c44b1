// The printed summary of bench/pg.ts: tps side by side with the issue's targets, CPU per
// transaction, and where a tpcb-like transaction's time goes through Recall.
import type { PgbenchResult } from './pg-pgbench.js';
import type { RaftNumbers } from './pg-metrics.js';

/** The issue's targets on this 2-core machine. */
export const selectOnlyRatioTarget = 0.85;
export const tpcbTpsTarget = 900;

export interface SideAccount {
  /** CPU seconds over the measured rounds: recall = the 3 recall processes, clusterDb = their 3 postgres. */
  cpu: { recall: number; clusterDb: number; directDb: number; machine: number };
  tx: number;
  secs: number;
  /** Per measured round and node (node order), the /metrics deltas. */
  raft?: RaftNumbers[];
}

export interface WorkloadResult {
  workload: 'select-only' | 'tpcb-like' | 'tpcb-optimistic';
  direct: PgbenchResult | string;
  recall: PgbenchResult | string;
  acct: Record<'direct' | 'recall', SideAccount>;
  /** Leader index after the runs (-1: none agreed). */
  raftLeader: number;
  /** Set when the term changed during the workload's runs. */
  elections?: string;
}

export interface ReportInput {
  results: WorkloadResult[];
  equal: string;
  /** tpcb-like with one client on the leader's port (pgbench -r). */
  solo: PgbenchResult | string;
  /** The same against the direct postgres. */
  soloDirect: PgbenchResult | string;
  idleLine: string;
  cores: number;
  load: number[];
  seconds: number;
  rounds: number;
  portsMode: string;
  clientSplit: string;
  /** Replicas in the cluster (the raft deltas are per round, in node order). */
  nodes: number;
}

const pad = (s: string | number, n: number) => String(s).padStart(n);
const ok = (x: PgbenchResult | string): x is PgbenchResult => typeof x !== 'string';

function targetOf(r: WorkloadResult): string {
  if (!ok(r.recall) || !ok(r.direct)) return 'not met (a side failed)';
  if (r.recall.aborted || r.direct.aborted) return 'not met (pgbench clients aborted)';
  if (r.workload === 'select-only') {
    const ratio = r.recall.tps / r.direct.tps;
    return `ratio >= ${selectOnlyRatioTarget}: ${ratio >= selectOnlyRatioTarget ? 'met' : 'NOT met'}`;
  }
  return `>= ${tpcbTpsTarget} tps: ${r.recall.tps >= tpcbTpsTarget ? 'met' : 'NOT met'}`;
}

export function printReport(inp: ReportInput): void {
  const lat = (x: PgbenchResult | string) => (ok(x) ? `${x.p95Ms.toFixed(2)}/${x.avgMs.toFixed(2)}` : '-');
  // *: some clients aborted, the tps counts what ran before
  const tps = (x: PgbenchResult | string) => (ok(x) ? `${x.tps.toFixed(0)}${x.aborted ? '*' : ''}` : 'failed');
  const failed = (x: PgbenchResult | string) => (ok(x) ? String(x.failed) : '-');
  const header = `${'workload'.padEnd(15)} ${pad('direct tps', 10)} ${pad('Recall tps', 10)} ${pad('ratio', 5)} ${pad('direct p95/avg ms', 17)} ` +
    `${pad('Recall p95/avg ms', 17)} ${pad('failed d/R', 10)}  target`;
  const rows = inp.results.map((r) => {
    const ratio = ok(r.direct) && ok(r.recall) ? (r.recall.tps / r.direct.tps).toFixed(2) : '-';
    return `${r.workload.padEnd(15)} ${pad(tps(r.direct), 10)} ${pad(tps(r.recall), 10)} ${pad(ratio, 5)} ${pad(lat(r.direct), 17)} ` +
      `${pad(lat(r.recall), 17)} ${pad(`${failed(r.direct)}/${failed(r.recall)}`, 10)}  ${targetOf(r)}`;
  });

  const ms = (cpu: number, tx: number) => (tx > 0 ? ((cpu / tx) * 1000).toFixed(3) : '-');
  const cpuHeader = `${'workload'.padEnd(15)} ${'side'.padEnd(6)} ${pad('postgres', 9)} ${pad('recall (3)', 10)} ${pad('other', 8)} ${pad('machine busy', 12)}`;
  const cpuRows = inp.results.flatMap((r) => (['direct', 'recall'] as const).map((s) => {
    const a = r.acct[s];
    const db = s === 'direct' ? a.cpu.directDb : a.cpu.clusterDb;
    const rec = s === 'direct' ? 0 : a.cpu.recall;
    // everything else that ran: pgbench itself, the idle side, other users of the machine
    const other = a.cpu.machine - db - rec;
    const busy = a.secs > 0 ? `${((a.cpu.machine / a.secs / inp.cores) * 100).toFixed(0)}%` : '-';
    return `${r.workload.padEnd(15)} ${s.padEnd(6)} ${pad(ms(db, a.tx), 9)} ${pad(s === 'direct' ? '-' : ms(rec, a.tx), 10)} ${pad(ms(other, a.tx), 8)} ${pad(busy, 12)}`;
  }));

  const lines = [
    `\npg summary (the direct postgres and the 3 replicas share this machine's ${inp.cores} cores; load average at the end ${inp.load.map((x) => x.toFixed(2)).join(' ')}; ` +
      `Recall side: ${inp.portsMode === 'all' ? `clients ${inp.clientSplit} over the 3 replicas' ports` : "the leader's port"})`,
    header, ...rows,
    ...inp.results.flatMap((r) => [
      ...(['direct', 'recall'] as const).flatMap((s) => { const x = r[s]; return ok(x) && x.aborted ? [`* ${r.workload} ${s}: clients aborted: ${x.aborted}`] : []; }),
      ...(r.elections ? [r.elections] : []),
    ]),
    `\nCPU ms per transaction (measured rounds; postgres = the server(s) of that side, recall = the 3 recall processes, other = the rest of the machine: pgbench, other processes)`,
    cpuHeader, ...cpuRows,
    inp.idleLine,
  ];

  const tpcb = inp.results.find((r) => r.workload === 'tpcb-like');
  if (tpcb && ok(tpcb.recall)) {
    lines.push(`\nwhere a tpcb-like transaction's time goes through Recall (pgbench -r: average ms per statement, as the client sees it)`);
    lines.push(`${pad('direct', 8)} ${pad('Recall', 8)} ${pad('direct 1 client', 15)} ${pad('Recall 1 client', 15)}  statement`);
    const oneD = ok(inp.soloDirect) ? inp.soloDirect.statementsMs : new Map<string, number>();
    const d = ok(tpcb.direct) ? tpcb.direct.statementsMs : new Map<string, number>();
    const one = ok(inp.solo) ? inp.solo.statementsMs : new Map<string, number>();
    for (const [s, v] of tpcb.recall.statementsMs) {
      if (s.startsWith('\\set')) continue;
      lines.push(`${pad(d.get(s)?.toFixed(3) ?? '-', 8)} ${pad(v.toFixed(3), 8)} ${pad(oneD.get(s)?.toFixed(3) ?? '-', 15)} ${pad(one.get(s)?.toFixed(3) ?? '-', 15)}  ${s.slice(0, 80)}`);
    }
    for (const [name, x] of [['direct', inp.soloDirect], ['Recall (the leader\'s port)', inp.solo]] as const) {
      lines.push(ok(x) ? `one client, ${name}: ${x.tps.toFixed(0)} tps, ${x.avgMs.toFixed(2)} ms per transaction (p95 ${x.p95Ms.toFixed(2)}), ${x.failed} failed` : `one client, ${name}: failed`);
    }
    const raft = tpcb.acct.recall.raft ?? [];
    const n = inp.nodes;
    const perNode = Array.from({ length: n }, (_, i) => raft.filter((_, j) => j % n === i));
    const tx = tpcb.acct.recall.tx;
    const sum = (list: RaftNumbers[], k: keyof RaftNumbers) => list.reduce((a, x) => a + x[k], 0);
    for (const [i, list] of perNode.entries()) {
      const syncs = sum(list, 'syncCount');
      const role = i === tpcb.raftLeader ? 'leader  ' : 'follower';
      // A Ready whose only news is the commit index syncs nothing (the commit index is persisted
      // lazily), so the time per transaction says more than the time per sync.
      lines.push(`node ${i + 1} (${role}): ${((sum(list, 'syncSeconds') / Math.max(1, tx)) * 1000).toFixed(3)} ms in log sync per transaction ` +
        `(${(syncs / Math.max(1, tx)).toFixed(2)} syncs, ${sum(list, 'batchCount') > 0 ? (sum(list, 'batchEntries') / sum(list, 'batchCount')).toFixed(2) : '-'} entries per appended batch)` +
        (i === tpcb.raftLeader ? `, ${(sum(list, 'committed') / Math.max(1, tx)).toFixed(2)} committed proposals per transaction` : ''));
    }
    lines.push(`one transaction at a time in the lane: ${(1000 / tpcb.recall.tps).toFixed(2)} ms of lane time per transaction at ${tpcb.recall.tps.toFixed(0)} tps ` +
      `(${tpcbTpsTarget} tps needs <= ${(1000 / tpcbTpsTarget).toFixed(2)} ms)`);
  }
  lines.push(`\nreplicas equal after the tpcb-like runs: ${inp.equal}`);
  for (const r of inp.results) lines.push(`${r.workload}, ${inp.seconds} s in ${inp.rounds} rounds: ${targetOf(r)}${ok(r.recall) ? ` (Recall ${r.recall.tps.toFixed(0)} tps` + (ok(r.direct) ? `, direct ${r.direct.tps.toFixed(0)} tps)` : ')') : ''}`);
  console.log(lines.join('\n'));
}
