// pgbench as a child process, its report parsed, and several concurrent pgbench processes (one
// per port: pgbench takes a single host and port) combined into one result. Latency percentiles
// come from pgbench's per-transaction log (-l), which pgbench writes in its working directory.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface PgbenchRun {
  port: number;
  clients: number;
  threads: number;
  seconds: number;
  /** true: the built-in select-only script (-S); false: tpcb-like. */
  selectOnly: boolean;
  /** pgbench -M: simple, extended or prepared. */
  mode: string;
  /** -r: per-statement average latencies. */
  perStatement?: boolean;
  user?: string;
  database?: string;
  /** PGOPTIONS for pgbench's sessions (e.g. -c recall.optimistic=on) */
  pgOptions?: string;
  /** pgbench --max-tries (retries of 40001/40P01) */
  maxTries?: number;
}

export interface PgbenchResult {
  transactions: number;
  failed: number;
  tps: number;
  avgMs: number;
  p95Ms: number;
  /** Statement text -> average latency in ms (with perStatement), weighted by transactions when combined. */
  statementsMs: Map<string, number>;
  /** Latencies of the individual transactions in microseconds (for percentiles of combined runs). */
  latenciesUs: number[];
  /** Set when pgbench exited non-zero but printed its report (clients aborted): its first error line. */
  aborted?: string;
}

/** Runs a command, resolves with stdout+stderr; rejects on a non-zero exit. */
export async function runCommand(cmd: string, args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<string> {
  const r = await runCommandStatus(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${r.code}:\n${r.out.slice(-3000)}`);
  return r.out;
}

/** Runs a command, resolves with its exit status (or signal name) and stdout+stderr. */
export function runCommandStatus(cmd: string, args: string[], opts: { cwd?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number | string; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'], ...(opts.env ? { env: opts.env } : {}) });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = opts.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs) : undefined;
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ code: code ?? signal ?? 'unknown', out });
    });
  });
}

export function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** Parses pgbench's report (PostgreSQL 15 wording). */
export function parsePgbench(out: string): Omit<PgbenchResult, 'p95Ms' | 'latenciesUs'> {
  const num = (re: RegExp): number => {
    const m = re.exec(out);
    if (!m) throw new Error(`pgbench report without ${re}:\n${out.slice(-2000)}`);
    return Number(m[1]);
  };
  const statementsMs = new Map<string, number>();
  const at = out.indexOf('statement latencies in milliseconds');
  if (at >= 0) {
    for (const line of out.slice(at).split('\n').slice(1)) {
      // "         0.012           0  UPDATE pgbench_accounts SET ..." (latency, failures, text)
      const m = /^\s+([\d.]+)\s+(?:\d+\s+)?(\S.*)$/.exec(line);
      if (m) statementsMs.set(m[2]!.trim(), Number(m[1]));
    }
  }
  return {
    transactions: num(/number of transactions actually processed: (\d+)/),
    failed: /number of failed transactions: (\d+)/.test(out) ? num(/number of failed transactions: (\d+)/) : 0,
    tps: num(/tps = ([\d.]+)/),
    avgMs: num(/latency average = ([\d.]+) ms/),
    statementsMs,
  };
}

function pgbenchArgs(r: PgbenchRun): string[] {
  return [
    '-h', '127.0.0.1', '-p', String(r.port), '-U', r.user ?? 'postgres',
    // -n: no VACUUM/TRUNCATE of pgbench's tables before the run (history accumulates, and the
    // replicas' md5 of it stays meaningful)
    '-n', '-c', String(r.clients), '-j', String(Math.min(r.threads, r.clients)), '-T', String(r.seconds), '-M', r.mode,
    ...(r.selectOnly ? ['-S'] : []), ...(r.perStatement ? ['-r'] : []), ...(r.maxTries ? [`--max-tries=${r.maxTries}`] : []),
    '-l', '--log-prefix', 'tx',
    r.database ?? 'postgres',
  ];
}

/** One pgbench process. */
export async function runPgbench(r: PgbenchRun): Promise<PgbenchResult> {
  const dir = mkdtempSync(join(tmpdir(), 'recall-pgbench-'));
  try {
    const args = pgbenchArgs(r);
    const { code, out } = await runCommandStatus('pgbench', args, { cwd: dir, timeoutMs: (r.seconds + 120) * 1000, ...(r.pgOptions ? { env: { ...process.env, PGOPTIONS: r.pgOptions } } : {}) });
    // exit 2 with a report: some clients aborted (an error pgbench does not retry); the report still counts what ran
    const reported = /number of transactions actually processed/.test(out);
    if (code !== 0 && !(code === 2 && reported)) throw new Error(`pgbench ${args.join(' ')} exited with ${code}:\n${out.slice(-3000)}`);
    const parsed = parsePgbench(out);
    const aborted = code === 0 ? undefined : (out.split('\n').find((l) => /error|aborted/i.test(l)) ?? `exit ${code}`).trim();
    const latenciesUs: number[] = [];
    for (const f of readdirSync(dir)) {
      // "client_id transaction_no time script_no time_epoch time_us": time is the latency in us
      for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
        const t = Number(line.split(' ')[2]);
        if (line && Number.isFinite(t)) latenciesUs.push(t);
      }
    }
    latenciesUs.sort((a, b) => a - b);
    return { ...parsed, p95Ms: percentile(latenciesUs, 0.95) / 1000, latenciesUs, ...(aborted ? { aborted } : {}) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Splits `clients` over the ports as evenly as possible (8 over 3: 3,3,2). */
export function spreadClients(clients: number, ports: number): number[] {
  return Array.from({ length: ports }, (_, i) => Math.floor(clients / ports) + (i < clients % ports ? 1 : 0)).filter((c) => c > 0);
}

/** Concurrent results as one: tps added (same -T), latencies pooled. */
export function combineConcurrent(list: PgbenchResult[]): PgbenchResult {
  const transactions = list.reduce((a, r) => a + r.transactions, 0);
  const latenciesUs = list.flatMap((r) => r.latenciesUs).sort((a, b) => a - b);
  return {
    transactions,
    failed: list.reduce((a, r) => a + r.failed, 0),
    tps: list.reduce((a, r) => a + r.tps, 0),
    avgMs: list.reduce((a, r) => a + r.avgMs * r.transactions, 0) / Math.max(1, transactions),
    p95Ms: percentile(latenciesUs, 0.95) / 1000,
    statementsMs: weightedStatements(list),
    latenciesUs,
    ...abortedOf(list),
  };
}

function abortedOf(list: PgbenchResult[]): { aborted?: string } {
  const a = list.find((r) => r.aborted)?.aborted;
  return a ? { aborted: a } : {};
}

/** Consecutive runs of one side as one: total transactions over total time. */
export function combineSequential(list: PgbenchResult[]): PgbenchResult {
  const transactions = list.reduce((a, r) => a + r.transactions, 0);
  const secs = list.reduce((a, r) => a + (r.tps > 0 ? r.transactions / r.tps : 0), 0);
  const latenciesUs = list.flatMap((r) => r.latenciesUs).sort((a, b) => a - b);
  return {
    transactions,
    failed: list.reduce((a, r) => a + r.failed, 0),
    tps: secs > 0 ? transactions / secs : 0,
    avgMs: list.reduce((a, r) => a + r.avgMs * r.transactions, 0) / Math.max(1, transactions),
    p95Ms: percentile(latenciesUs, 0.95) / 1000,
    statementsMs: weightedStatements(list),
    latenciesUs,
    ...abortedOf(list),
  };
}

function weightedStatements(list: PgbenchResult[]): Map<string, number> {
  const sums = new Map<string, { ms: number; tx: number }>();
  for (const r of list) {
    for (const [s, ms] of r.statementsMs) {
      const e = sums.get(s) ?? { ms: 0, tx: 0 };
      e.ms += ms * r.transactions;
      e.tx += r.transactions;
      sums.set(s, e);
    }
  }
  return new Map([...sums].map(([s, e]) => [s, e.tx > 0 ? e.ms / e.tx : 0]));
}

/** One pgbench per port at the same time, `clients` spread over them. */
export async function runPgbenchPorts(r: Omit<PgbenchRun, 'port' | 'clients' | 'threads'> & { ports: number[]; clients: number; threads: number }): Promise<PgbenchResult> {
  if (r.ports.length === 1) return runPgbench({ ...r, port: r.ports[0]! });
  const split = spreadClients(r.clients, r.ports.length);
  // the threads go where the clients are (at least one per process)
  const results = await Promise.all(split.map((clients, i) => runPgbench({ ...r, port: r.ports[i]!, clients, threads: Math.max(1, Math.round((r.threads * clients) / r.clients)) })));
  return combineConcurrent(results);
}
