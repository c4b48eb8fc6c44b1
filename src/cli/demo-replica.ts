// One demo replica as a child process: `recall serve` spawned with this same node and
// script, its output appended to a log file and read line by line (JSON) for progress,
// stopped with SIGTERM then SIGKILL, restarted with backoff when it dies on its own.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, type WriteStream } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';

/** What the demo learns from a replica's log lines and process events. */
export type ReplicaEvent =
  | { kind: 'initializing'; dataDir: string }
  | { kind: 'database-running' }
  | { kind: 'ready' }
  | { kind: 'database-crashed'; restartInMs: number | null }
  | { kind: 'error'; message: string }
  | { kind: 'exit'; code: number | null; signal: string | null; expected: boolean; restartInMs: number | null };

export interface ReplicaProcessOptions {
  nodeId: number;
  /** Arguments after `serve`. */
  serveArgs: string[];
  dataDir: string;
  logPath: string;
  pidPath: string;
  env: NodeJS.ProcessEnv;
  /** Copy every child line to stderr, prefixed (the demo's --debug). */
  echo: boolean;
  onEvent(e: ReplicaEvent): void;
}

// The child gives its managed mariadbd up to 30 s to stop; a little more before SIGKILL.
const stopTimeoutMs = 40_000;
// Restart backoff for a replica that dies on its own: 5 s leaves time to watch the others
// elect a new leader; doubled while it keeps dying within a minute of its start.
const restartDelayMinMs = 5_000;
const restartDelayMaxMs = 60_000;
const stableAfterMs = 60_000;

/** argv that runs this same CLI (compiled bin/recall, or main.ts under the tsx loader). */
export function selfCommand(): string[] {
  const script = process.argv[1];
  if (!script) throw new Error('cannot tell which script is running; start the demo with bin/recall demo');
  return [...process.execArgv, script];
}

export class ReplicaProcess {
  private child?: ChildProcess;
  private log?: WriteStream;
  private stopping = false;
  private startedAt = 0;
  private restartDelayMs = restartDelayMinMs;
  private restartTimer?: NodeJS.Timeout;
  /** Set by the demo once start-up is over: from then on a death is restarted, not fatal. */
  restartOnExit = false;

  constructor(private readonly opts: ReplicaProcessOptions) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  start(): void {
    const { opts } = this;
    mkdirSync(dirname(opts.logPath), { recursive: true });
    mkdirSync(dirname(opts.pidPath), { recursive: true });
    this.log ??= createWriteStream(opts.logPath, { flags: 'a' });
    this.log.write(`--- ${new Date().toISOString()} demo starts replica ${opts.nodeId}: recall serve ${opts.serveArgs.join(' ')}\n`);
    // detached: its own process group, so a Ctrl-C in the terminal reaches only the demo,
    // which then stops the replicas one by one (each stops its own mariadbd).
    const child = spawn(process.execPath, [...selfCommand(), 'serve', ...opts.serveArgs], {
      env: opts.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    this.child = child;
    this.startedAt = Date.now();
    if (child.pid) writeFileSync(opts.pidPath, `${child.pid}\n`);
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => this.onLine(line));
    }
    child.once('error', (err) => opts.onEvent({ kind: 'error', message: err.message }));
    child.once('exit', (code, signal) => this.onExit(child, code, signal));
  }

  /** SIGTERM, wait, SIGKILL after a timeout; then reap a mariadbd the child left behind. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        exited.then(() => false),
        new Promise<boolean>((r) => (timer = setTimeout(() => r(true), stopTimeoutMs))),
      ]);
      clearTimeout(timer);
      if (timedOut) {
        this.log?.write(`--- ${new Date().toISOString()} demo: replica did not stop within ${stopTimeoutMs} ms; SIGKILL\n`);
        child.kill('SIGKILL');
        await exited;
      }
    }
    await reapManagedServer(this.opts.dataDir);
    rmSync(this.opts.pidPath, { force: true });
    await new Promise<void>((r) => (this.log ? this.log.end(() => r()) : r()));
    this.log = undefined;
  }

  /** Second Ctrl-C: no waiting, kill what is left at once. */
  killNow(): void {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    if (this.running) this.child!.kill('SIGKILL');
    const pid = managedServerPid(this.opts.dataDir);
    if (pid) signal(pid, 'SIGKILL');
  }

  private onLine(line: string): void {
    this.log?.write(line + '\n');
    if (this.opts.echo) process.stderr.write(`[replica ${this.opts.nodeId}] ${line}\n`);
    let rec: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(line);
      if (!parsed || typeof parsed !== 'object') return;
      rec = parsed as Record<string, unknown>;
    } catch {
      return; // not a log record (a node warning, a stack trace): kept in the file only
    }
    const msg = typeof rec.message === 'string' ? rec.message : '';
    const emit = this.opts.onEvent;
    if (msg === 'initialising database directory') emit({ kind: 'initializing', dataDir: String(rec.dataDir ?? '') });
    else if (msg === 'managed database running') emit({ kind: 'database-running' });
    else if (msg === 'ready' && rec.component === 'serve') emit({ kind: 'ready' });
    else if (msg === 'managed database exited unexpectedly') {
      emit({ kind: 'database-crashed', restartInMs: typeof rec.restartInMs === 'number' ? rec.restartInMs : null });
    } else if (rec.level === 'error') {
      emit({ kind: 'error', message: typeof rec.err === 'string' ? `${msg}: ${rec.err}` : msg });
    }
  }

  private onExit(child: ChildProcess, code: number | null, sig: NodeJS.Signals | null): void {
    if (child !== this.child) return;
    const expected = this.stopping;
    let restartInMs: number | null = null;
    if (!expected && this.restartOnExit) {
      if (Date.now() - this.startedAt > stableAfterMs) this.restartDelayMs = restartDelayMinMs;
      restartInMs = this.restartDelayMs;
      this.restartDelayMs = Math.min(this.restartDelayMs * 2, restartDelayMaxMs);
      this.restartTimer = setTimeout(() => {
        if (!this.stopping) this.start();
      }, restartInMs);
    }
    this.log?.write(`--- ${new Date().toISOString()} demo: replica exited (code ${code}, signal ${sig})\n`);
    this.opts.onEvent({ kind: 'exit', code, signal: sig, expected, restartInMs });
  }
}

function signal(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}

/** pid of a running mariadbd on this replica's managed data directory (from its pid file). */
function managedServerPid(dataDir: string): number | undefined {
  const mdir = join(dataDir, 'mariadb');
  let pid: number;
  try {
    pid = Number(readFileSync(join(mdir, 'mysqld.pid'), 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 1) return undefined;
    // The pid may have been reused: it is ours only if its command line names our data dir.
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    if (!cmd.includes(`--datadir=${mdir}`)) return undefined;
    if (/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'))) return undefined;
  } catch {
    return undefined;
  }
  return pid;
}

/**
 * A replica killed hard (kill -9, or SIGKILL after the stop timeout) cannot stop its
 * mariadbd; the demo does it so that Ctrl-C leaves nothing running.
 */
export async function reapManagedServer(dataDir: string): Promise<void> {
  const pid = managedServerPid(dataDir);
  if (!pid) return;
  signal(pid, 'SIGTERM');
  const end = Date.now() + 30_000;
  while (managedServerPid(dataDir) === pid) {
    if (Date.now() > end) {
      signal(pid, 'SIGKILL');
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * A replica left running by an earlier demo that was killed hard holds the ports and the
 * data directory; stop it (by its pid file, if the process is still a `recall serve` on
 * this data directory) before starting a new one.
 */
export async function stopStaleReplica(pidPath: string, dataDir: string): Promise<boolean> {
  if (!existsSync(pidPath)) return false;
  const pid = Number(readFileSync(pidPath, 'utf8').trim());
  let stale = false;
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    stale = Number.isInteger(pid) && pid > 1 && cmd.includes('serve') && cmd.includes(dataDir);
  } catch {
    /* not running */
  }
  if (stale) {
    signal(pid, 'SIGTERM');
    const end = Date.now() + stopTimeoutMs;
    while (existsSync(`/proc/${pid}`) && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    if (existsSync(`/proc/${pid}`)) signal(pid, 'SIGKILL');
  }
  await reapManagedServer(dataDir);
  rmSync(pidPath, { force: true });
  return stale;
}
