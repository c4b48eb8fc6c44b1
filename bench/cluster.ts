// sysbench write workloads against one direct mariadbd and against a 3-replica Recall cluster
// (3 recall processes, 3 managed mariadbd, all on this machine), side by side.
// Run by `npm run bench` (all benchmarks) or `npm run bench -- cluster`.
// Settings (environment):
//   BENCH_CLUSTER_SECONDS    measured seconds per side and workload (default BENCH_SECONDS, else 10);
//                            a warm-up of a third of it precedes each side
//   BENCH_ROUNDS             the measured seconds are split into this many alternating rounds (default 2)
//   BENCH_CLUSTER_THREADS    comma list of sysbench thread counts (default 8; the target is for 8); on the
//                            cluster the threads are spread over the 3 ports
//   BENCH_CLUSTER_WORKLOADS  comma list (default oltp_insert,oltp_write_only)
// The direct server is started with the arguments a managed replica gets (ManagedMariaDB's
// defaults, innodb_flush_log_at_trx_commit=1), so the comparison is the cost of replication
// and of the extra hop, not of a different server configuration.
import { cpus } from 'node:os';
import mysql from 'mysql2/promise';
import { startTestMariaDB, type TestMariaDB } from '../test/harness/mariadb.js';
import { startBenchCluster, type BenchCluster } from './lib/cluster-procs.js';
import { runSysbenchPorts, type MultiPortRun } from './lib/cluster-sysbench.js';
import type { SysbenchResult } from './lib/sysbench.js';
import { cpuMeter, mariadbPid } from './lib/cluster-cpu.js';

const seconds = Number(process.env.BENCH_CLUSTER_SECONDS ?? process.env.BENCH_SECONDS ?? 10);
const rounds = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 2));
const threadsList = (process.env.BENCH_CLUSTER_THREADS ?? '8').split(',').map(Number);
const workloads = (process.env.BENCH_CLUSTER_WORKLOADS ?? 'oltp_insert,oltp_write_only').split(',');
const warmupSeconds = Math.max(2, Math.round(seconds / 3));
const tables = 4;
const tableSize = 10000;
/** The target for oltp_insert on the 3-replica cluster. */
const insertTpsTarget = 3000;
const user = 'sbtest';
const password = 'sb-pass';

/** Several runs of one side as one: total transactions over total time; p95 as the mean of the runs'. */
function combine(list: SysbenchResult[]): SysbenchResult {
  const sum = (f: (r: SysbenchResult) => number): number => list.reduce((a, r) => a + f(r), 0);
  const secs = sum((r) => r.transactions / r.tps);
  return {
    ...list[0]!,
    transactions: sum((r) => r.transactions),
    tps: sum((r) => r.transactions) / secs,
    queries: sum((r) => r.queries),
    qps: sum((r) => r.queries) / secs,
    errors: sum((r) => r.errors),
    reconnects: sum((r) => r.reconnects),
    p95Ms: sum((r) => r.p95Ms) / list.length,
    avgMs: sum((r) => r.avgMs) / list.length,
  };
}

async function rootSql(port: number, statements: string[]): Promise<mysql.RowDataPacket[][]> {
  const conn = await mysql.createConnection({ host: '127.0.0.1', port, user: 'root' });
  try {
    const out: mysql.RowDataPacket[][] = [];
    for (const s of statements) out.push((await conn.query(s))[0] as mysql.RowDataPacket[]);
    return out;
  } finally {
    await conn.end();
  }
}

const setupSql = [
  'CREATE DATABASE sbtest',
  `CREATE USER '${user}'@'%' IDENTIFIED BY '${password}'`,
  `CREATE USER '${user}'@'localhost' IDENTIFIED BY '${password}'`,
  `GRANT ALL ON sbtest.* TO '${user}'@'%'`,
  `GRANT ALL ON sbtest.* TO '${user}'@'localhost'`,
];

function pad(s: string | number, n: number): string {
  return String(s).padStart(n);
}

interface Side {
  name: 'direct' | 'cluster';
  ports: number[];
}

async function main(): Promise<void> {
  console.log(`\n== cluster: sysbench direct mariadbd vs 3-replica Recall cluster (${threadsList.join(',')} threads, ${seconds} s per side in ${rounds} alternating rounds, ` +
    `warm-up ${warmupSeconds} s, ${tables} tables x ${tableSize} rows, prepared statements) ==`);
  let db: TestMariaDB | undefined;
  let cluster: BenchCluster | undefined;
  let failures = 0;
  // Ctrl-C: stop what this benchmark started (mariadbd does not stop on the terminal's SIGINT).
  process.once('SIGINT', () => {
    console.error('\ninterrupted: stopping the cluster and the direct server');
    void Promise.allSettled([cluster?.stop(), db?.stop()]).then(() => process.exit(130));
  });
  try {
    // Started together (each takes a while); whichever starts is stopped by finally even if the other fails.
    const [d, cl] = await Promise.allSettled([startTestMariaDB({ flushLogAtTrxCommit: 1 }), startBenchCluster()]);
    if (d.status === 'fulfilled') db = d.value;
    if (cl.status === 'fulfilled') cluster = cl.value;
    if (d.status === 'rejected') throw d.reason;
    if (cl.status === 'rejected') throw cl.reason;
    if (!db || !cluster) throw new Error('unreachable');
    const c3 = cluster;
    const leader = await cluster.waitLeader();
    console.log(`direct mariadbd port ${db.port}; cluster MySQL ports ${cluster.nodes.map((n) => n.mysqlPort).join(',')} (leader node ${leader + 1}), ` +
      `recall pids ${cluster.nodes.map((n) => n.process.pid).join(',')}`);
    await rootSql(db.port, setupSql);
    await rootSql(cluster.nodes[leader]!.mysqlPort, setupSql);

    const direct: Side = { name: 'direct', ports: [db.port] };
    const replicated: Side = { name: 'cluster', ports: cluster.nodes.map((n) => n.mysqlPort) };
    const target = { host: '127.0.0.1', user, password, db: 'sbtest' };
    for (const side of [direct, replicated]) {
      const t0 = Date.now();
      await runSysbenchPorts({ workload: 'oltp_insert', command: 'prepare', target, ports: [side.ports[0]!], tables, tableSize, threads: tables });
      console.log(`prepared ${side.name} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    }

    const header = `${'workload'.padEnd(16)} ${pad('threads', 7)} ${pad('direct tps', 11)} ${pad('cluster tps', 11)} ${pad('ratio', 6)} ` +
      `${pad('direct p95 ms', 13)} ${pad('cluster p95 ms', 14)} ${pad('direct err', 10)} ${pad('cluster err', 11)}`;
    const rows: string[] = [];
    const cpuRows: string[] = [];
    const maxCommit = async (): Promise<number> => Math.max(0, ...(await Promise.all(c3.nodes.map((_, i) => c3.replication(i)))).map((r) => r?.commit ?? 0));
    const recallPids = cluster.nodes.map((n) => n.process.pid);
    const clusterDbPids = cluster.nodes.map((n) => mariadbPid(n.dbDir));
    const directPid = mariadbPid(db.dataDir);
    const results = new Map<string, Record<string, SysbenchResult | string>>();
    const cases = workloads.flatMap((workload) => threadsList.map((threads) => ({ workload, threads })));
    for (const [w, { workload, threads }] of cases.entries()) {
      // Where the CPU of the measured runs went, and how many log entries the cluster wrote.
      const acct = { direct: { db: 0, tx: 0 }, cluster: { recall: 0, db: 0, tx: 0, entries: 0, secs: 0 } };
      const run = async (side: Side, secs: number, measured = false): Promise<SysbenchResult | string> => {
        const r: MultiPortRun = { workload, command: 'run', target, ports: side.ports, threads, seconds: secs, tables, tableSize };
        try {
          const meter = cpuMeter({ recall: recallPids, clusterDb: clusterDbPids, directDb: [directPid] });
          const commit0 = side.name === 'cluster' && measured ? await maxCommit() : 0;
          const res = await runSysbenchPorts(r);
          const used = meter();
          if (measured && side.name === 'direct') {
            acct.direct.db += used.directDb!;
            acct.direct.tx += res.transactions;
          } else if (measured) {
            acct.cluster.recall += used.recall!;
            acct.cluster.db += used.clusterDb!;
            acct.cluster.tx += res.transactions;
            acct.cluster.entries += (await maxCommit()) - commit0;
            acct.cluster.secs += res.transactions / res.tps;
          }
          return res;
        } catch (e) {
          const msg = (e as Error).message;
          const fatal = msg.split('\n').find((l) => /FATAL/.test(l)) ?? msg.split('\n')[0]!;
          console.log(`${workload} on ${side.name} failed: ${fatal}`);
          return fatal;
        }
      };
      // Alternate which side goes first, so that neither always gets the warmer caches.
      const order = w % 2 === 0 ? [direct, replicated] : [replicated, direct];
      for (const side of order) await run(side, warmupSeconds);
      const parts: Record<string, Array<SysbenchResult | string>> = {};
      for (let round = 0; round < rounds; round++) {
        for (const side of round % 2 === 0 ? order : [...order].reverse()) {
          (parts[side.name] ??= []).push(await run(side, Math.max(1, Math.round(seconds / rounds)), true));
        }
      }
      const res: Record<string, SysbenchResult | string> = {};
      for (const [name, list] of Object.entries(parts)) {
        const failed = list.find((x) => typeof x === 'string');
        res[name] = failed ?? combine(list as SysbenchResult[]);
      }
      results.set(`${workload}/${threads}`, res);
      const d = res.direct!;
      const c = res.cluster!;
      const tps = (x: SysbenchResult | string) => (typeof x === 'string' ? 'failed' : x.tps.toFixed(1));
      const p95 = (x: SysbenchResult | string) => (typeof x === 'string' ? '-' : x.p95Ms.toFixed(2));
      const errs = (x: SysbenchResult | string) => (typeof x === 'string' ? '-' : String(x.errors));
      const ratio = typeof d === 'string' || typeof c === 'string' ? '-' : (c.tps / d.tps).toFixed(2);
      if (typeof d === 'string' || typeof c === 'string') failures++;
      const row = `${workload.padEnd(16)} ${pad(threads, 7)} ${pad(tps(d), 11)} ${pad(tps(c), 11)} ${pad(ratio, 6)} ` +
        `${pad(p95(d), 13)} ${pad(p95(c), 14)} ${pad(errs(d), 10)} ${pad(errs(c), 11)}`;
      rows.push(row);
      console.log(rows.length === 1 ? `${header}\n${row}` : row);
      const per1k = (cpu: number, tx: number) => (tx > 0 ? ((cpu / tx) * 1000).toFixed(2) : '-');
      cpuRows.push(`${workload.padEnd(16)} ${pad(threads, 7)} ${pad(per1k(acct.direct.db, acct.direct.tx), 17)} ${pad(per1k(acct.cluster.recall, acct.cluster.tx), 18)} ` +
        `${pad(per1k(acct.cluster.db, acct.cluster.tx), 19)} ${pad(acct.cluster.secs > 0 ? (acct.cluster.entries / acct.cluster.secs).toFixed(0) : '-', 11)} ` +
        `${pad(acct.cluster.entries > 0 ? (acct.cluster.tx / acct.cluster.entries).toFixed(2) : '-', 12)}`);
    }
    const cpuHeader = `${'workload'.padEnd(16)} ${pad('threads', 7)} ${pad('direct db cpu/1k', 17)} ${pad('recall cpu/1k (3)', 18)} ${pad('cluster db cpu/1k', 19)} ` +
      `${pad('entries/s', 11)} ${pad('tx per entry', 12)}`;

    // After the load: every replica applied everything and holds the same tables.
    let converged = 'yes';
    try {
      await cluster.waitConverged(60_000);
      const sums = await Promise.all(cluster.nodes.map(async (n) =>
        JSON.stringify((await rootSql(n.dbPort, [`CHECKSUM TABLE ${Array.from({ length: tables }, (_, i) => `sbtest.sbtest${i + 1}`).join(', ')}`]))[0])));
      if (sums.some((s) => s !== sums[0])) {
        converged = `NO: checksums differ:\n${sums.join('\n')}`;
        failures++;
      }
    } catch (e) {
      converged = `NO: ${(e as Error).message}`;
      failures++;
    }

    const ins = results.get('oltp_insert/8')?.cluster;
    const note = ins === undefined ? 'oltp_insert with 8 threads not run'
      : typeof ins === 'string' ? `oltp_insert on the cluster failed (target ${insertTpsTarget} tps)`
      : `oltp_insert, 8 threads, on the cluster: ${ins.tps.toFixed(0)} tps, p95 ${ins.p95Ms.toFixed(2)} ms; target >= ${insertTpsTarget} tps: ${ins.tps >= insertTpsTarget ? 'met' : 'NOT met'}`;
    console.log(`\ncluster summary (3 replicas and the direct server share this machine's ${cpus().length} cores)\n${header}\n${rows.join('\n')}\n` +
      `\nCPU seconds per 1000 transactions (measured rounds; recall = the 3 recall processes, cluster db = the 3 mariadbd)\n${cpuHeader}\n${cpuRows.join('\n')}\n` +
      `${note}\nreplicas converged with equal CHECKSUM TABLE after the runs: ${converged}`);
  } finally {
    await cluster?.stop();
    await db?.stop();
  }
  if (failures) throw new Error(`${failures} part(s) of the cluster benchmark failed (see above)`);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
