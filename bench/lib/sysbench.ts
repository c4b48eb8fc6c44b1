// Runs sysbench's MySQL workloads and reads its report. sysbench connects with the MariaDB client
// library, so this is an unmodified third-party client for the MySQL protocol.
import { spawn } from 'node:child_process';

export interface SysbenchTarget {
  host: string;
  port: number;
  user: string;
  password: string;
  db: string;
}

export interface SysbenchResult {
  transactions: number;
  tps: number;
  queries: number;
  qps: number;
  errors: number;
  reconnects: number;
  p95Ms: number;
  avgMs: number;
  output: string;
}

export interface SysbenchRun {
  workload: string; // oltp_point_select, oltp_read_only, oltp_read_write, …
  command: 'prepare' | 'run' | 'cleanup';
  target: SysbenchTarget;
  threads?: number;
  seconds?: number;
  tables?: number;
  tableSize?: number;
  /** disable: text protocol only; auto: server-side prepared statements (sysbench's default). */
  psMode?: 'auto' | 'disable';
  extra?: string[];
}

export function sysbenchArgs(r: SysbenchRun): string[] {
  return [
    r.workload,
    '--db-driver=mysql',
    `--mysql-host=${r.target.host}`,
    `--mysql-port=${r.target.port}`,
    `--mysql-user=${r.target.user}`,
    `--mysql-password=${r.target.password}`,
    `--mysql-db=${r.target.db}`,
    `--tables=${r.tables ?? 1}`,
    `--table-size=${r.tableSize ?? 10000}`,
    `--threads=${r.threads ?? 1}`,
    `--time=${r.seconds ?? 10}`,
    `--db-ps-mode=${r.psMode ?? 'auto'}`,
    '--percentile=95',
    '--report-interval=0',
    ...(r.extra ?? []),
    r.command,
  ];
}

/** Runs sysbench and resolves with its parsed report (rejects when it exits non-zero). */
export function runSysbench(r: SysbenchRun): Promise<SysbenchResult> {
  const args = sysbenchArgs(r);
  return new Promise((resolve, reject) => {
    const child = spawn('sysbench', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`sysbench ${args.join(' ')} exited with ${code}:\n${out.slice(-3000)}`));
      resolve(parseSysbench(out));
    });
  });
}

function num(out: string, re: RegExp): number {
  const m = re.exec(out);
  return m ? Number(m[1]) : NaN;
}

export function parseSysbench(out: string): SysbenchResult {
  return {
    transactions: num(out, /transactions:\s+(\d+)/),
    tps: num(out, /transactions:\s+\d+\s+\(([\d.]+) per sec/),
    queries: num(out, /queries:\s+(\d+)/),
    qps: num(out, /queries:\s+\d+\s+\(([\d.]+) per sec/),
    errors: num(out, /ignored errors:\s+(\d+)/),
    reconnects: num(out, /reconnects:\s+(\d+)/),
    p95Ms: num(out, /95th percentile:\s+([\d.]+)/),
    avgMs: num(out, /avg:\s+([\d.]+)/),
    output: out,
  };
}
