// Managed mode: one local MariaDB (or MySQL 8) server run as a child of this process.
// It initialises an empty data directory, starts the server on 127.0.0.1 with a private
// port and socket, waits until it answers, restarts it with exponential backoff when it
// dies, and stops it with SIGTERM (SIGKILL after a timeout). Its state is one explicit
// value, announced with a 'state' event on every change.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import mysql from 'mysql2/promise';
import { findInstallDb, findServerBinary, serverVersion, type ServerFlavor } from './binaries.js';

import { StartupKilledError, SupervisedServer } from './supervised-server.js';

export type { CrashInfo, ManagedState } from './supervised-server.js';

export interface ManagedMariaDBOptions {
  dataDir: string;
  /** 0 or absent: pick a free port once and keep it across restarts. */
  port?: number;
  /** Default: <dataDir>/mysqld.sock when short enough, else a short directory under /tmp. */
  socketPath?: string;
  /** Default: mariadbd, then mysqld, from PATH and the usual sbin directories. */
  binary?: string;
  extraArgs?: string[];
  restart?: { backoffMsMin: number; backoffMsMax: number };
  /** innodb_flush_log_at_trx_commit; 1 (durable at every commit) unless told otherwise. */
  flushLogAtTrxCommit?: 0 | 1 | 2;
  /** innodb_autoinc_lock_mode; the server's default (1) unless told otherwise. */
  autoincLockMode?: 0 | 1 | 2;
  maxConnections?: number;
  startTimeoutMs?: number;
  stopTimeoutMs?: number;
  /** The server must stay up this long before the backoff returns to its minimum. */
  stableMs?: number;
  /** False: a crash leaves the state 'crashed' instead of restarting. */
  autoRestart?: boolean;
}

// Unix socket paths are limited to 108 bytes including the terminating NUL.
const socketPathBytesMax = 100;
const initMarker = 'recall-managed.json';

export class ManagedMariaDB extends SupervisedServer {
  private _socketPath: string | undefined;
  private socketDir: string | undefined;
  /** Private tmpdir: servers sharing /tmp collide over #sql-temptable files during bootstrap. */
  private tmpDir: string | undefined;
  private flavor: ServerFlavor | undefined;
  private binaryPath: string | undefined;
  constructor(private readonly opts: ManagedMariaDBOptions) {
    super(opts, 'managed database', 'SIGTERM');
  }

  get socketPath(): string {
    return this._socketPath ?? this.chooseSocketPath();
  }
  override get logPath(): string {
    return join(this.dataDir, 'mariadbd.log');
  }
  get serverFlavor(): ServerFlavor | undefined {
    return this.flavor;
  }

  protected override afterStop(): void {
    if (this.socketDir) rmSync(this.socketDir, { recursive: true, force: true });
    this.socketDir = undefined;
    if (this.tmpDir) rmSync(this.tmpDir, { recursive: true, force: true });
    this.tmpDir = undefined;
    this._socketPath = undefined;
  }

  /** Connection options for the server's root account over its socket. */
  rootConnectionOptions(): { socketPath: string; user: string; password: string } {
    return { socketPath: this.socketPath, user: 'root', password: '' };
  }

  protected override async startOnce(): Promise<void> {
    if (!this.binaryPath) {
      this.binaryPath = findServerBinary(this.opts.binary);
      this.flavor = (await serverVersion(this.binaryPath)).flavor;
    }
    mkdirSync(this.dataDir, { recursive: true });
    await this.reapStaleServer();
    if (!this.isInitialised()) {
      this.setState('initializing');
      await this.initialise();
    }
    this.checkNotStopped();
    await this.startOnPort(() => this.spawnAndWait());
    await this.firstStartSetup();
    this.checkNotStopped();
    this.startedAt = Date.now();
    this.setState('running');
    this.log.info('managed database running', { port: this._port, socket: this.socketPath, pid: this.child?.pid });
  }

  /**
   * A server left running on our data directory by an earlier Recall process that died
   * without stopping it (kill -9, OOM) holds the InnoDB locks, so a new server could not
   * start. It is ours by its pid file and command line; stop it before starting.
   */
  private async reapStaleServer(): Promise<void> {
    const pidFile = join(this.dataDir, 'mysqld.pid');
    let pid: number;
    try {
      pid = Number(readFileSync(pidFile, 'utf8').trim());
    } catch {
      return;
    }
    if (!Number.isInteger(pid) || pid <= 1 || pid === this.child?.pid) return;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
    } catch {
      return; // not running (or no /proc): a stale pid file is harmless, the server rewrites it
    }
    if (!cmdline.includes(`--datadir=${this.dataDir} `) && !cmdline.endsWith(`--datadir=${this.dataDir}`)) return;
    this.log.warn('stopping a database server left running on our data directory by an earlier process', { pid });
    const gone = () => !existsSync(`/proc/${pid}`) || /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
    const waitGone = async (ms: number) => {
      const end = Date.now() + ms;
      while (Date.now() < end) {
        try {
          if (gone()) return true;
        } catch {
          return true;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      return false;
    };
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      return;
    }
    if (!(await waitGone(this.opts.stopTimeoutMs ?? 30000))) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone meanwhile */
      }
      await waitGone(5000);
    }
  }

  private isInitialised(): boolean {
    return existsSync(join(this.dataDir, 'mysql')) && readdirSync(join(this.dataDir, 'mysql')).length > 0;
  }

  private innodbArgs(): string[] {
    return ['--innodb-buffer-pool-size=128M', '--innodb-log-file-size=64M'];
  }

  private async initialise(): Promise<void> {
    const userArgs = process.getuid?.() === 0 ? ['--user=root'] : [];
    let cmd: string;
    let args: string[];
    if (this.flavor === 'mysql') {
      // MySQL 8 refuses a data directory with any file in it, so its log is written afterwards.
      cmd = this.binaryPath!;
      args = ['--no-defaults', '--initialize-insecure', `--datadir=${this.dataDir}`, ...userArgs];
      const entries = readdirSync(this.dataDir).filter((f) => f !== 'mariadbd.log');
      if (entries.length > 0) throw new Error(`data directory ${this.dataDir} is not empty and holds no database`);
      rmSync(this.logPath, { force: true });
    } else {
      const installDb = findInstallDb(this.binaryPath!);
      if (!installDb) throw new Error('mariadb-install-db not found (install mariadb-server)');
      cmd = installDb;
      args = [
        '--no-defaults',
        `--datadir=${this.dataDir}`,
        '--auth-root-authentication-method=normal',
        // Also what keeps the anonymous accounts (''@localhost, ''@<hostname>) out: mariadb-install-db
        // creates them only with the test database (mysql_test_db.sql). They would shadow every
        // 'user'@'%' account for local connections, which is what all of Recall's backend
        // sessions are (checked: after this bootstrap mysql.global_priv holds only root and mariadb.sys).
        '--skip-test-db',
        // Avoids a hostname lookup during bootstrap; root@127.0.0.1 is created on first start.
        '--skip-name-resolve',
        `--tmpdir=${this.privateTmpDir()}`,
        ...this.innodbArgs(),
        ...userArgs,
      ];
    }
    this.log.info('initialising database directory', { dataDir: this.dataDir, tool: cmd });
    const out = await new Promise<string>((res, rej) => {
      execFile(cmd, args, { timeout: 300000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
        const text = `${stdout}${stderr}`;
        if (err) rej(new Error(`initialising ${this.dataDir} failed: ${err.message}\n${text.slice(-2000)}`));
        else res(text);
      });
    });
    writeFileSync(this.logPath, `--- ${new Date().toISOString()} initialise: ${cmd} ${args.join(' ')}\n${out}`, { flag: 'a' });
  }

  private privateTmpDir(): string {
    this.tmpDir ??= mkdtempSync(join(tmpdir(), 'rcl-tmp-'));
    return this.tmpDir;
  }

  private chooseSocketPath(): string {
    if (this.opts.socketPath) return this.opts.socketPath;
    const inData = join(this.dataDir, 'mysqld.sock');
    if (Buffer.byteLength(inData) <= socketPathBytesMax) return inData;
    // Long data dir paths would overflow sockaddr_un; use a short private directory instead.
    this.socketDir ??= mkdtempSync(join(tmpdir(), 'rcl-'));
    return join(this.socketDir, 'mysqld.sock');
  }

  private serverArgs(): string[] {
    const args = [
      '--no-defaults',
      `--datadir=${this.dataDir}`,
      `--port=${this._port}`,
      `--socket=${this.socketPath}`,
      `--pid-file=${join(this.dataDir, 'mysqld.pid')}`,
      `--tmpdir=${this.privateTmpDir()}`,
      '--bind-address=127.0.0.1',
      ...this.innodbArgs(),
      `--innodb-flush-log-at-trx-commit=${this.opts.flushLogAtTrxCommit ?? 1}`,
      ...(this.opts.autoincLockMode !== undefined ? [`--innodb-autoinc-lock-mode=${this.opts.autoincLockMode}`] : []),
      '--performance-schema=OFF',
      // Rows and statements over 16 MiB must pass, also through Recall.
      '--max-allowed-packet=1G',
      `--max-connections=${this.opts.maxConnections ?? 1000}`,
    ];
    if (this.flavor === 'mysql') args.push('--mysqlx=OFF');
    if (process.getuid?.() === 0) args.push('--user=root');
    return [...args, ...(this.opts.extraArgs ?? [])];
  }

  private async spawnAndWait(): Promise<void> {
    const socketPath = this.chooseSocketPath();
    this._socketPath = socketPath;
    const args = this.serverArgs();
    const fd = openSync(this.logPath, 'a');
    writeFileSync(fd, `--- ${new Date().toISOString()} start: ${this.binaryPath} ${args.join(' ')}\n`);
    let child: ChildProcess;
    try {
      // Its own process group: a Ctrl-C in the terminal reaches us, and we stop the server in order.
      child = spawn(this.binaryPath!, args, { stdio: ['ignore', fd, fd], detached: true });
    } finally {
      closeSync(fd);
    }
    this.child = child;
    this.log.debug('managed server spawned', { pid: child.pid, port: this._port });
    let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    child.once('exit', (code, signal) => {
      exitInfo = { code, signal };
      this.onChildExit(child, code, signal);
    });
    child.once('error', (err) => this.log.error('managed server process error', { err: err.message }));

    const deadline = Date.now() + (this.opts.startTimeoutMs ?? 120000);
    for (;;) {
      if (this.stopRequested) {
        child.kill('SIGTERM');
        this.checkNotStopped();
      }
      if (exitInfo) {
        const msg = `database server exited during start-up (code ${exitInfo.code}, signal ${exitInfo.signal}); log ${this.logPath}:\n${this.logTail()}`;
        throw exitInfo.signal ? new StartupKilledError(msg, exitInfo.signal) : new Error(msg);
      }
      if (await this.ping()) return;
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`database server did not answer within ${this.opts.startTimeoutMs ?? 120000} ms; log ${this.logPath}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** True when the server accepts a root connection over its socket. */
  async ping(): Promise<boolean> {
    if (!this._socketPath || !existsSync(this._socketPath)) return false;
    let conn: mysql.Connection | undefined;
    try {
      conn = await mysql.createConnection({ ...this.rootConnectionOptions(), connectTimeout: 2000 });
      await conn.query('SELECT 1');
      return true;
    } catch {
      return false;
    } finally {
      await conn?.end().catch(() => undefined);
    }
  }

  // Root must reach the server both over the socket and over TCP 127.0.0.1, whatever name
  // resolution says, so root@127.0.0.1 and root@::1 exist with the same (empty) password.
  private async firstStartSetup(): Promise<void> {
    const marker = join(this.dataDir, initMarker);
    if (existsSync(marker)) return;
    const conn = await mysql.createConnection(this.rootConnectionOptions());
    try {
      for (const host of ['127.0.0.1', '::1']) {
        await conn.query(`CREATE USER IF NOT EXISTS 'root'@'${host}' IDENTIFIED BY ''`);
        await conn.query(`GRANT ALL PRIVILEGES ON *.* TO 'root'@'${host}' WITH GRANT OPTION`);
      }
    } finally {
      await conn.end().catch(() => undefined);
    }
    writeFileSync(marker, JSON.stringify({ initialisedAt: new Date().toISOString(), flavor: this.flavor }) + '\n');
  }
}
