// sysbench straight to mariadbd and through Recall, side by side.
// Run by `npm run bench` (all benchmarks) or `npm run bench -- mysql`.
// Settings (environment):
//   BENCH_SECONDS     measured seconds per side and case (default 10); a warm-up of a third of it precedes each
//   BENCH_ROUNDS      the measured seconds are split into this many alternating rounds (default 2)
//   BENCH_THREADS     comma list (default 1,8,64)
//   BENCH_WORKLOADS   comma list (default oltp_point_select,oltp_read_only)
//   BENCH_PIPE=1      also run through a protocol-unaware Node pipe relay (the floor cost of one hop)
//   BENCH_CPU_PROF    a directory: the Recall process writes a V8 CPU profile there on exit
import { execFileSync } from 'node:child_process';
import { startTestMariaDB } from '../test/harness/mariadb.js';
import { startRecall } from '../test/harness/recall.js';
import { startProfiledRecall } from './lib/profiled-recall.js';
import { startPipeRelay } from './lib/pipe-relay.js';
import { runSysbench, type SysbenchResult, type SysbenchTarget } from './lib/sysbench.js';

const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const threadsList = (process.env.BENCH_THREADS ?? '1,8,64').split(',').map(Number);
const workloads = (process.env.BENCH_WORKLOADS ?? 'oltp_point_select,oltp_read_only').split(',');
const tables = 4;
const tableSize = 10000;
const warmupSeconds = Math.max(2, Math.round(seconds / 3));
const rounds = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 2));

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

function sql(socketPath: string, text: string): void {
  execFileSync('mariadb', ['--no-defaults', '-S', socketPath, '-uroot', '-e', text]);
}

function pad(s: string | number, n: number): string {
  return String(s).padStart(n);
}

async function main(): Promise<void> {
  console.log(`\n== mysql: sysbench direct vs through Recall (${seconds} s per side in ${rounds} alternating rounds, warm-up ${warmupSeconds} s, ` +
    `${tables} tables x ${tableSize} rows, prepared statements) ==`);
  const db = await startTestMariaDB({
    flushLogAtTrxCommit: 1,
    extraArgs: ['--innodb-buffer-pool-size=512M', '--max-connections=1000', '--performance-schema=OFF'],
  });
  let stopPipe = (): void => {};
  let recall: { mysqlPort: number; process: { pid?: number }; stop(): Promise<unknown> } | undefined;
  try {
    sql(db.socketPath, `CREATE DATABASE sbtest;
      CREATE USER 'sbtest'@'%' IDENTIFIED BY 'sb-pass'; CREATE USER 'sbtest'@'localhost' IDENTIFIED BY 'sb-pass';
      GRANT ALL ON sbtest.* TO 'sbtest'@'%'; GRANT ALL ON sbtest.* TO 'sbtest'@'localhost';`);
    const direct: SysbenchTarget = { host: '127.0.0.1', port: db.port, user: 'sbtest', password: 'sb-pass', db: 'sbtest' };
    await runSysbench({ workload: 'oltp_read_only', command: 'prepare', target: direct, tables, tableSize, threads: tables });
    const dsn = `mysql://root@localhost/?socket=${encodeURIComponent(db.socketPath)}`;
    const profDir = process.env.BENCH_CPU_PROF;
    recall = profDir
      ? await startProfiledRecall(dsn, profDir, ['--max-connections', '1000'])
      : await startRecall({ dsn, extraArgs: ['--max-connections', '1000'] });
    const through: SysbenchTarget = { ...direct, port: recall.mysqlPort };
    const pipe = process.env.BENCH_PIPE === '1' ? await startPipeRelay(db.socketPath) : undefined;
    stopPipe = () => pipe?.stop();
    const piped: SysbenchTarget | undefined = pipe ? { ...direct, port: pipe.port } : undefined;
    console.log(`mariadbd port ${db.port} (innodb_buffer_pool_size=512M, flush_log_at_trx_commit=1), Recall pid ${recall.process.pid} port ${recall.mysqlPort}`);

    const header = `${'workload'.padEnd(18)} ${pad('threads', 7)} ${pad('direct tps', 11)} ${pad('recall tps', 11)} ${pad('ratio', 6)} ${pad('direct p95 ms', 13)} ${pad('recall p95 ms', 13)} ${pad('errors', 6)}` +
      (process.env.BENCH_PIPE === '1' ? ` ${pad('pipe tps', 9)} ${pad('pipe ratio', 10)}` : '');
    const rows: string[] = [];
    let pair = 0;
    for (const workload of workloads) {
      for (const threads of threadsList) {
        const run = (target: SysbenchTarget, secs: number): Promise<SysbenchResult> =>
          runSysbench({ workload, command: 'run', target, threads, seconds: secs, tables, tableSize });
        // Alternate which side goes first so that neither always gets the warmer caches.
        const order: [string, SysbenchTarget][] = [['direct', direct], ['recall', through]];
        if (piped) order.push(['pipe', piped]);
        if (pair++ % 2 === 1) order.reverse();
        for (const [, target] of order) await run(target, warmupSeconds);
        // The measured time is split into rounds that take turns (A B C, C B A, …), so that load
        // from elsewhere on a shared machine falls on every side alike.
        const parts: Record<string, SysbenchResult[]> = {};
        for (let round = 0; round < rounds; round++) {
          for (const [name, target] of round % 2 === 0 ? order : [...order].reverse()) {
            (parts[name] ??= []).push(await run(target, Math.max(1, Math.round(seconds / rounds))));
          }
        }
        const res: Record<string, SysbenchResult> = {};
        for (const [name, list] of Object.entries(parts)) res[name] = combine(list);
        const d = res.direct!;
        const r = res.recall!;
        const row = `${workload.padEnd(18)} ${pad(threads, 7)} ${pad(d.tps.toFixed(1), 11)} ${pad(r.tps.toFixed(1), 11)} ` +
          `${pad((r.tps / d.tps).toFixed(2), 6)} ${pad(d.p95Ms.toFixed(2), 13)} ${pad(r.p95Ms.toFixed(2), 13)} ${pad(d.errors + r.errors, 6)}` +
          (res.pipe ? ` ${pad(res.pipe.tps.toFixed(1), 9)} ${pad((res.pipe.tps / d.tps).toFixed(2), 10)}` : '');
        rows.push(row);
        console.log(rows.length === 1 ? `${header}\n${row}` : row);
      }
    }
    console.log(`\nmysql summary\n${header}\n${rows.join('\n')}`);
  } finally {
    stopPipe();
    await recall?.stop();
    await db.stop();
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
