// What every managed database server shares (MariaDB/MySQL in mariadb.ts, PostgreSQL in
// postgres.ts): one explicit state announced with 'state' events, start and stop (a stop during
// start-up makes the start give up), a stop signal then SIGKILL after a timeout, restarts with
// exponential backoff after a crash ('crash' and 'restarted' events), and never an orphan
// server when this process exits. A subclass starts its server in startOnce().
import { EventEmitter } from 'node:events';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { logger } from '../util/log.js';
import { freePort } from '../util/ports.js';

export type ManagedState = 'stopped' | 'initializing' | 'starting' | 'running' | 'stopping' | 'crashed' | 'backoff';

export interface CrashInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  restartInMs: number | null;
}

/**
 * The server process was killed by a signal while it started (an operator's or a test's kill,
 * the OOM killer): worth another try, unlike a server that exits on its own (bad option,
 * broken data directory), whose error start() reports at once.
 */
export class StartupKilledError extends Error {
  constructor(
    message: string,
    readonly signal: NodeJS.Signals,
  ) {
    super(message);
    this.name = 'StartupKilledError';
  }
}

/** Attempts of start() when the server is killed during start-up. */
const startAttemptsMax = 4;

export interface SupervisionOptions {
  dataDir: string;
  /** 0 or absent: pick a free port once and keep it across restarts. */
  port?: number;
  restart?: { backoffMsMin: number; backoffMsMax: number };
  stopTimeoutMs?: number;
  /** The server must stay up this long before the backoff returns to its minimum. */
  stableMs?: number;
  /** False: a crash leaves the state 'crashed' instead of restarting. */
  autoRestart?: boolean;
}

export abstract class SupervisedServer extends EventEmitter {
  protected _state: ManagedState = 'stopped';
  protected _port: number;
  protected child: ChildProcess | undefined;
  protected startedAt = 0;
  // A stop() that arrives while a start is under way makes the start give up at its next step.
  protected stopRequested = false;
  protected readonly dataDir: string;
  protected readonly log = logger('supervisor');
  private backoffMs: number;
  private backoffTimer: NodeJS.Timeout | undefined;
  private restarts = 0;
  private starting: Promise<void> | undefined;
  private readonly onProcessExit = (): void => {
    // Last resort when this process exits without stop(): never leave an orphan server.
    if (this.child?.pid && this.child.exitCode === null) {
      try {
        process.kill(this.child.pid, this.stopSignal);
      } catch {
        /* already gone */
      }
    }
  };

  /**
   * @param label how logs and errors name the server ('managed database', 'managed postgres')
   * @param stopSignal the signal of a clean stop (SIGTERM for MariaDB, SIGINT for a fast postgres shutdown)
   */
  constructor(
    private readonly sup: SupervisionOptions,
    protected readonly label: string,
    private readonly stopSignal: NodeJS.Signals,
  ) {
    super();
    this.dataDir = resolve(sup.dataDir);
    this._port = sup.port ?? 0;
    this.backoffMs = sup.restart?.backoffMsMin ?? 500;
  }

  /** Initialise the data directory if needed, start the server, resolve once it answers (state 'running'). */
  protected abstract startOnce(): Promise<void>;
  abstract get logPath(): string;
  /** Processes that must go with a server killed after the stop timeout (none by default). */
  protected orphansOf(_pid: number): number[] {
    return [];
  }
  /** Remove what a stopped server leaves behind (private socket and tmp directories). */
  protected afterStop(): void {}

  get state(): ManagedState {
    return this._state;
  }
  /** The TCP port (0 until the first start picked one). */
  get port(): number {
    return this._port;
  }
  get pid(): number | undefined {
    return this.child?.pid;
  }
  get restartCount(): number {
    return this.restarts;
  }

  /** Initialises the data directory if needed, starts the server and waits until it answers. */
  async start(): Promise<void> {
    if (this._state !== 'stopped' && this._state !== 'crashed') {
      throw new Error(`cannot start the ${this.label} while it is ${this._state}`);
    }
    process.on('exit', this.onProcessExit);
    this.stopRequested = false;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.runStart();
        return;
      } catch (err) {
        if (err instanceof StartupKilledError && !this.stopRequested && attempt < startAttemptsMax) {
          const waitMs = (this.sup.restart?.backoffMsMin ?? 500) * 2 ** (attempt - 1);
          this.log.warn(`the ${this.label} was killed while it started; starting it again`, { signal: err.signal, attempt, waitMs });
          await new Promise((r) => setTimeout(r, waitMs));
          if (!this.stopRequested) continue;
        }
        this.setState('stopped');
        process.off('exit', this.onProcessExit);
        throw err;
      }
    }
  }

  /** The stop signal, then SIGKILL after stopTimeoutMs; resolves when the server process is gone. */
  async stop(): Promise<void> {
    this.stopRequested = true;
    if (this.backoffTimer) {
      clearTimeout(this.backoffTimer);
      this.backoffTimer = undefined;
    }
    await this.killChild();
    // A start under way (initialising, waiting for the server) gives up; wait for it.
    await this.starting?.catch(() => undefined);
    await this.killChild();
    this.child = undefined;
    process.off('exit', this.onProcessExit);
    this.afterStop();
    this.setState('stopped');
  }

  private async killChild(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    this.setState('stopping');
    const exited = new Promise<void>((res) => child.once('exit', () => res()));
    child.kill(this.stopSignal);
    const timeoutMs = this.sup.stopTimeoutMs ?? 30000;
    let timer: NodeJS.Timeout | undefined;
    const killed = await Promise.race([exited.then(() => false), new Promise<boolean>((res) => (timer = setTimeout(() => res(true), timeoutMs)))]);
    clearTimeout(timer);
    if (!killed) return;
    this.log.warn(`${this.label} did not stop in time; killing it`, { timeoutMs, pid: child.pid });
    const orphans = this.orphansOf(child.pid!);
    child.kill('SIGKILL');
    for (const pid of orphans) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone meanwhile */
      }
    }
    await exited;
  }

  protected setState(next: ManagedState): void {
    if (next === this._state) return;
    const prev = this._state;
    this._state = next;
    this.log.debug(`${this.label} state`, { from: prev, to: next });
    this.emit('state', next, prev);
  }

  private runStart(): Promise<void> {
    const p = this.startOnce();
    this.starting = p;
    const clear = () => {
      if (this.starting === p) this.starting = undefined;
    };
    p.then(clear, clear);
    return p;
  }

  /**
   * Start the server with spawnAndWait() on the configured port, or on one picked here: a port
   * picked by us may be taken by someone else between picking and binding; then pick another.
   */
  protected async startOnPort(spawnAndWait: () => Promise<void>): Promise<void> {
    const autoPort = !this.sup.port;
    for (let attempt = 0; ; attempt++) {
      if (this._port === 0) this._port = await freePort();
      this.checkNotStopped();
      this.setState('starting');
      try {
        await spawnAndWait();
        return;
      } catch (err) {
        if (autoPort && attempt < 3 && /already in use/i.test(this.logTail())) {
          this.log.debug('port taken, picking another', { port: this._port });
          this._port = 0;
          continue;
        }
        throw err;
      }
    }
  }

  protected checkNotStopped(): void {
    if (this.stopRequested) throw new Error(`the ${this.label} was stopped during start-up`);
  }

  /** The child exited: a crash when it was running (exits we caused, or start-up reports itself, are not). */
  protected onChildExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (child !== this.child) return;
    if (this._state !== 'running') return;
    const autoRestart = this.sup.autoRestart ?? true;
    const stableMs = this.sup.stableMs ?? 30000;
    const min = this.sup.restart?.backoffMsMin ?? 500;
    const max = this.sup.restart?.backoffMsMax ?? 30000;
    if (Date.now() - this.startedAt >= stableMs) this.backoffMs = min;
    const delay = this.backoffMs;
    this.setState('crashed');
    this.log.error(`${this.label} exited unexpectedly`, { code, signal, restartInMs: autoRestart ? delay : null, log: this.logPath });
    this.emit('crash', { code, signal, restartInMs: autoRestart ? delay : null } satisfies CrashInfo);
    if (!autoRestart) return;
    this.scheduleRestart(delay);
    this.backoffMs = Math.min(max, this.backoffMs * 2);
  }

  private scheduleRestart(delay: number): void {
    this.setState('backoff');
    this.backoffTimer = setTimeout(() => {
      this.backoffTimer = undefined;
      this.restarts++;
      this.runStart().then(
        () => this.emit('restarted', this.restarts),
        (err: Error) => {
          if (this.stopRequested) return;
          const max = this.sup.restart?.backoffMsMax ?? 30000;
          const next = this.backoffMs;
          this.backoffMs = Math.min(max, this.backoffMs * 2);
          this.setState('crashed');
          this.log.error(`restarting the ${this.label} failed`, { err: err.message, restartInMs: next });
          this.emit('crash', { code: null, signal: null, restartInMs: next } satisfies CrashInfo);
          this.scheduleRestart(next);
        },
      );
    }, delay);
  }

  /** The last 3000 characters of the server's log, for error messages. */
  protected logTail(): string {
    try {
      const text = readFileSync(this.logPath, 'utf8');
      return text.slice(Math.max(0, text.length - 3000));
    } catch {
      return '';
    }
  }
}
