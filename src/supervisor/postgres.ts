// Managed mode for PostgreSQL: one local postgres server run as a child of this process,
// the counterpart of ManagedMariaDB. It initialises an empty data directory (initdb), starts
// postgres on 127.0.0.1 with a private port and socket directory, waits until it answers,
// restarts it with exponential backoff when it dies, and stops it with SIGINT (fast shutdown;
// SIGKILL after a timeout). postgres refuses to run as root, so as root both initdb and the
// server run as the `postgres` system user (the Debian packages create it).
import { spawn, execFile, execFileSync, type ChildProcess } from 'node:child_process';
import { chownSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { tmpdir } from 'node:os';
import pg from 'pg';
import { StartupKilledError, SupervisedServer } from './supervised-server.js';

export type { CrashInfo, ManagedState } from './supervised-server.js';

export interface ManagedPostgresOptions {
  dataDir: string;
  /** 0 or absent: pick a free port once and keep it across restarts. */
  port?: number;
  /** Directory holding initdb and postgres. Default: the newest /usr/lib/postgresql/<version>/bin. */
  binDir?: string;
  extraArgs?: string[];
  restart?: { backoffMsMin: number; backoffMsMax: number };
  startTimeoutMs?: number;
  stopTimeoutMs?: number;
  /** The server must stay up this long before the backoff returns to its minimum. */
  stableMs?: number;
  /** False: a crash leaves the state 'crashed' instead of restarting. */
  autoRestart?: boolean;
  /**
   * pg_hba method of every role but the superuser, over the socket and 127.0.0.1. `recall serve`
   * uses md5 (it accepts SCRAM and md5 verifiers: Recall logs in as a client's role with the
   * ClientKey or md5 hash it recovered); the default, trust, lets every local connection in as
   * initdb's default does (tests that reach the superuser over TCP).
   */
  clientAuth?: 'md5' | 'trust';
}

export interface PostgresDsn {
  host: string;
  port: number;
  user: string;
}

// Unix socket paths are limited to 108 bytes including the NUL; postgres appends "/.s.PGSQL.<port>".
const socketPathBytesMax = 100;
const socketFileBytesMax = '/.s.PGSQL.65535'.length;
const logName = 'postgres.log';
const superuser = 'postgres';

/** Trust only for the superuser on the private socket (Recall's admin connection). */
function pgHba(clientAuth: 'md5' | 'trust'): string {
  return [
    `local all ${superuser} trust`,
    `local replication ${superuser} trust`,
    `local all all ${clientAuth}`,
    `host all all 127.0.0.1/32 ${clientAuth}`,
    `host all all ::1/128 ${clientAuth}`,
  ].join('\n') + '\n';
}

/** The newest /usr/lib/postgresql/<version>/bin that holds a postgres binary. */
export function findPostgresBinDir(explicit?: string): string {
  if (explicit) {
    if (!existsSync(join(explicit, 'postgres'))) throw new Error(`no postgres binary in ${explicit}`);
    return explicit;
  }
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(join(root, v, 'bin', 'postgres')))
        .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a))
    : [];
  if (versions.length === 0) throw new Error(`no PostgreSQL server found under ${root} (install postgresql)`);
  return join(root, versions[0]!, 'bin');
}

/** Pids of the live processes whose parent is `ppid` (from /proc; empty without /proc). */
export function childPids(ppid: number): number[] {
  const pids: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return pids;
  }
  for (const d of entries) {
    if (!/^\d+$/.test(d)) continue;
    try {
      // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const [state, parent] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (state !== 'Z' && Number(parent) === ppid) pids.push(Number(d));
    } catch {
      /* exited meanwhile */
    }
  }
  return pids;
}

/** The uid/gid to run postgres as: the postgres system user when we are root, else ourselves. */
function runAsIds(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const uid = Number(execFileSync('id', ['-u', superuser], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', superuser], { encoding: 'utf8' }).trim());
    if (!Number.isInteger(uid) || !Number.isInteger(gid) || uid === 0) throw new Error(`bad ids ${uid}/${gid}`);
    return { uid, gid };
  } catch (err) {
    throw new Error(`postgres refuses to run as root and no usable '${superuser}' system user exists: ${(err as Error).message}`);
  }
}

export class ManagedPostgres extends SupervisedServer {
  private _socketDir: string | undefined;
  /** Set when the socket directory is a private one under /tmp (removed on stop). */
  private tmpSocketDir = false;
  private binDir: string | undefined;
  private ids: { uid: number; gid: number } | undefined;

  constructor(private readonly opts: ManagedPostgresOptions) {
    super(opts, 'managed postgres', 'SIGINT');
  }

  /** The directory holding the server's unix socket (.s.PGSQL.<port>). */
  get socketDir(): string {
    return this._socketDir ?? this.chooseSocketDir();
  }
  override get logPath(): string {
    return join(this.dataDir, logName);
  }
  /** TCP connection parameters for the superuser (no password: with clientAuth 'trust'; else use socketDir). */
  get dsn(): PostgresDsn {
    return { host: '127.0.0.1', port: this._port, user: superuser };
  }

  protected override afterStop(): void {
    if (this._socketDir && this.tmpSocketDir) rmSync(this._socketDir, { recursive: true, force: true });
    this._socketDir = undefined;
    this.tmpSocketDir = false;
  }

  /** Each backend is in a session of its own: killed with the postmaster, or they would hold its shared memory. */
  protected override orphansOf(pid: number): number[] {
    return childPids(pid);
  }

  protected override async startOnce(): Promise<void> {
    this.binDir ??= findPostgresBinDir(this.opts.binDir);
    this.ids ??= runAsIds();
    if (!existsSync(this.dataDir)) mkdirSync(this.dataDir, { recursive: true, mode: 0o700 });
    this.checkReachable();
    if (this.ids) chownSync(this.dataDir, this.ids.uid, this.ids.gid);
    await this.reapStaleServer();
    if (!existsSync(join(this.dataDir, 'PG_VERSION'))) {
      this.setState('initializing');
      await this.initialise();
    }
    this.checkNotStopped();
    await this.startOnPort(() => this.spawnAndWait());
    this.checkNotStopped();
    this.startedAt = Date.now();
    this.setState('running');
    this.log.info('managed postgres running', { port: this._port, socketDir: this.socketDir, pid: this.child?.pid });
  }

  /** The unprivileged server user must be able to walk down to the data directory. */
  private checkReachable(): void {
    if (!this.ids) return;
    for (let dir = dirname(this.dataDir); ; dir = dirname(dir)) {
      const st = statSync(dir);
      const canEnter = st.uid === this.ids.uid ? st.mode & 0o100 : st.gid === this.ids.gid ? st.mode & 0o010 : st.mode & 0o001;
      if (!canEnter) {
        throw new Error(`the '${superuser}' user cannot enter ${dir} (mode ${(st.mode & 0o777).toString(8)}), so postgres cannot reach ${this.dataDir}`);
      }
      if (dir === dirname(dir)) return;
    }
  }

  /**
   * A postgres left running on our data directory by an earlier Recall process that died
   * without stopping it holds the data directory lock; stop it (fast shutdown) first.
   */
  private async reapStaleServer(): Promise<void> {
    let pid: number;
    try {
      pid = Number(readFileSync(join(this.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]!.trim());
    } catch {
      return;
    }
    if (!Number.isInteger(pid) || pid <= 1 || pid === this.child?.pid) return;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      return; // not running: postgres itself replaces a stale postmaster.pid
    }
    const args = cmdline.split('\0');
    if (!args.some((a) => a.endsWith('postgres')) || !args.includes(this.dataDir)) return;
    this.log.warn('stopping a postgres left running on our data directory by an earlier process', { pid });
    const gone = () => {
      try {
        return !existsSync(`/proc/${pid}`) || /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
      } catch {
        return true;
      }
    };
    const waitGone = async (ms: number) => {
      const end = Date.now() + ms;
      while (Date.now() < end) {
        if (gone()) return true;
        await new Promise((r) => setTimeout(r, 100));
      }
      return gone();
    };
    try {
      process.kill(pid, 'SIGINT');
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

  private async initialise(): Promise<void> {
    // initdb wants an empty directory; a log left by an earlier failed attempt is ours to drop.
    const entries = readdirSync(this.dataDir).filter((f) => f !== logName);
    if (entries.length > 0) throw new Error(`data directory ${this.dataDir} is not empty and holds no PostgreSQL cluster`);
    rmSync(this.logPath, { force: true });
    const cmd = join(this.binDir!, 'initdb');
    // Trust is for the private socket and 127.0.0.1 only (listen_addresses); C locale keeps
    // sorting identical on every replica whatever the host's locale settings are.
    const args = ['-D', this.dataDir, '-U', superuser, '--auth=trust', '--encoding=UTF8', '--locale=C'];
    this.log.info('initialising postgres data directory', { dataDir: this.dataDir, tool: cmd });
    const out = await new Promise<string>((res, rej) => {
      execFile(cmd, args, { timeout: 300000, maxBuffer: 16 << 20, ...this.ids, cwd: this.dataDir }, (err, stdout, stderr) => {
        const text = `${stdout}${stderr}`;
        if (err) rej(new Error(`initdb of ${this.dataDir} failed: ${err.message}\n${text.slice(-2000)}`));
        else res(text);
      });
    });
    writeFileSync(this.logPath, `--- ${new Date().toISOString()} initialise: ${cmd} ${args.join(' ')}\n${out}`, { flag: 'a' });
  }

  private chooseSocketDir(): string {
    if (this._socketDir) return this._socketDir;
    const inData = join(this.dataDir, 'sock');
    if (Buffer.byteLength(inData) + socketFileBytesMax <= socketPathBytesMax) {
      this._socketDir = inData;
    } else {
      // Long data dir paths would overflow sockaddr_un; use a short private directory instead.
      this._socketDir = mkdtempSync(join(tmpdir(), 'rclpg-'));
      this.tmpSocketDir = true;
    }
    return this._socketDir;
  }

  private prepareSocketDir(): string {
    const dir = this.chooseSocketDir();
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (this.ids) chownSync(dir, this.ids.uid, this.ids.gid);
    return dir;
  }

  private serverArgs(): string[] {
    return [
      '-D', this.dataDir,
      '-p', String(this._port),
      '-k', this.socketDir,
      '-c', 'listen_addresses=127.0.0.1',
      ...(this.opts.extraArgs ?? []),
    ];
  }

  private async spawnAndWait(): Promise<void> {
    this.prepareSocketDir();
    // Written before each start, so an existing data directory gets it too (owner and mode stay initdb's).
    writeFileSync(join(this.dataDir, 'pg_hba.conf'), pgHba(this.opts.clientAuth ?? 'trust'));
    const cmd = join(this.binDir!, 'postgres');
    const args = this.serverArgs();
    const fd = openSync(this.logPath, 'a');
    writeFileSync(fd, `--- ${new Date().toISOString()} start: ${cmd} ${args.join(' ')}\n`);
    let child: ChildProcess;
    try {
      // Its own process group: a Ctrl-C in the terminal reaches us, and we stop the server in order.
      child = spawn(cmd, args, { stdio: ['ignore', fd, fd], detached: true, cwd: this.dataDir, ...this.ids });
    } finally {
      closeSync(fd);
    }
    this.child = child;
    this.log.debug('managed postgres spawned', { pid: child.pid, port: this._port });
    let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    child.once('exit', (code, signal) => {
      exitInfo = { code, signal };
      this.onChildExit(child, code, signal);
    });
    child.once('error', (err) => this.log.error('managed postgres process error', { err: err.message }));

    const timeoutMs = this.opts.startTimeoutMs ?? 120000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.stopRequested) {
        child.kill('SIGINT');
        this.checkNotStopped();
      }
      if (exitInfo) {
        const msg = `postgres exited during start-up (code ${exitInfo.code}, signal ${exitInfo.signal}); log ${this.logPath}:\n${this.logTail()}`;
        throw exitInfo.signal ? new StartupKilledError(msg, exitInfo.signal) : new Error(msg);
      }
      if (await this.ping()) return;
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`postgres did not answer within ${timeoutMs} ms; log ${this.logPath}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** True when the server accepts a superuser connection over its socket (SELECT 1). */
  async ping(): Promise<boolean> {
    if (!this._socketDir || !existsSync(join(this._socketDir, `.s.PGSQL.${this._port}`))) return false;
    const client = new pg.Client({ host: this._socketDir, port: this._port, user: superuser, database: 'postgres', connectionTimeoutMillis: 2000 });
    // A server shutting down mid-check may reset the connection after connect(); never let that escape.
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.query('SELECT 1');
      return true;
    } catch {
      return false;
    } finally {
      await client.end().catch(() => undefined);
    }
  }
}
