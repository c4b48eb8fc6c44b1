// The local database as the rest of Recall sees it, whichever way it is run:
//   managed  - a child mariadbd/mysqld that we initialise, start, restart and stop;
//   hook     - the operator's StartServer/StopServer commands (the original module's mode);
//   external - a server someone else runs; we only connect to it.
// A full resync (later) needs stop() and start() around copying the data directory;
// shutdown of Recall calls close(), which stops only a server we started ourselves.
import { join } from 'node:path';
import { chmodSync, mkdirSync, statSync } from 'node:fs';
import type { RecallConfig } from '../config/load.js';
import { parseDsn, type Dsn } from '../config/dsn.js';
import { ManagedMariaDB, type ManagedState } from './mariadb.js';
import { ManagedPostgres } from './postgres.js';
import type { SupervisedServer } from './supervised-server.js';
import { pingDatabase } from './ping.js';
import { runHook, waitFor } from './hooks.js';
import { logger } from '../util/log.js';

export type LocalDatabaseMode = 'managed' | 'hook' | 'external';

export interface LocalDatabaseStatus {
  mode: LocalDatabaseMode;
  state?: ManagedState;
  port?: number;
  socketPath?: string;
  restarts?: number;
}

export interface LocalDatabase {
  readonly mode: LocalDatabaseMode;
  /** How to reach it as its administrative account (valid after start()). */
  readonly dsn: Dsn;
  /** The managed server, for state events; undefined in hook and external mode. */
  readonly managed?: SupervisedServer;
  /** Makes sure it runs and answers. */
  start(): Promise<void>;
  /**
   * Stops it (managed: the child; hook: StopServer). External mode cannot and throws.
   * A StopServer command must return only once the server has exited (systemctl stop and
   * mariadb-admin shutdown do; a bare kill does not), because its files are copied next.
   */
  stop(): Promise<void>;
  /** Recall is shutting down: stop what we started, leave the rest alone. */
  close(): Promise<void>;
  ping(timeoutMs?: number): Promise<void>;
  status(): LocalDatabaseStatus;
}

// Hook mode waits this long for the database after StartServer or StopServer.
const hookWaitMs = 120000;

export function localDatabase(cfg: RecallConfig): LocalDatabase {
  if (cfg.managed.enabled) return cfg.engine === 'postgres' ? new ManagedPostgresDatabase(cfg) : new ManagedLocalDatabase(cfg);
  return new CommandLocalDatabase(cfg);
}

/** A managed server (MariaDB or PostgreSQL): start, stop and status are the supervisor's. */
abstract class ManagedDatabase<S extends SupervisedServer> implements LocalDatabase {
  readonly mode = 'managed';
  constructor(readonly managed: S) {}
  abstract get dsn(): Dsn;
  protected abstract get socketPath(): string;

  async start(): Promise<void> {
    if (this.managed.state === 'running') return;
    await this.managed.start();
  }
  stop(): Promise<void> {
    return this.managed.stop();
  }
  close(): Promise<void> {
    return this.managed.stop();
  }
  ping(timeoutMs = 2000): Promise<void> {
    return pingDatabase(this.dsn, timeoutMs);
  }
  status(): LocalDatabaseStatus {
    const m = this.managed;
    return { mode: 'managed', state: m.state, port: m.port, socketPath: this.socketPath, restarts: m.restartCount };
  }
}

class ManagedLocalDatabase extends ManagedDatabase<ManagedMariaDB> {
  constructor(cfg: RecallConfig) {
    super(new ManagedMariaDB({
      dataDir: join(cfg.dataDir, 'mariadb'),
      port: cfg.managed.port,
      binary: cfg.managed.binary,
      extraArgs: cfg.managed.extraArgs,
      // Every client session has its own backend session, plus Recall's own connections.
      maxConnections: cfg.maxConnections + 50,
      // Durability comes from the replicated log: an entry is fsynced by a majority before the
      // local COMMIT, and recall.applied commits with it, so a commit lost in an OS crash is
      // replayed from the log. Flushing the redo log to the OS at each commit (2) survives a
      // crash of mariadbd itself and saves an fsync per write transaction.
      flushLogAtTrxCommit: cfg.listen.peer !== 'off' && cfg.replicas.length > 0 ? 2 : 1,
      // 'traditional' AUTO_INCREMENT locking: INSERT ... SELECT takes exactly the values it uses,
      // so a replica replaying it with INSERT_ID ends with the same counter (the default mode 1
      // reserves values in batches of 1, 2, 4, 8 and leaves the leader's counter higher; found by
      // H3's tests). The one mode MySQL calls safe for statement-based replication; the single
      // write lane makes its table lock free.
      autoincLockMode: 0,
    }));
  }
  protected get socketPath(): string {
    return this.managed.socketPath;
  }

  get dsn(): Dsn {
    const m = this.managed;
    return { engine: 'mysql', host: '127.0.0.1', port: m.port, socketPath: m.socketPath, user: 'root', password: '' };
  }

}

/** The managed postgres: its superuser over the private socket directory (trust, no password). */
class ManagedPostgresDatabase extends ManagedDatabase<ManagedPostgres> {
  private readonly recallDir: string;

  override async start(): Promise<void> {
    // postgres runs as its own OS user and must pass through Recall's data directory (created 0700
    // by the log): let others traverse it, without listing it.
    try {
      mkdirSync(this.recallDir, { recursive: true, mode: 0o711 });
      const st = statSync(this.recallDir);
      if (st.uid === process.getuid?.() && (st.mode & 0o001) === 0) chmodSync(this.recallDir, (st.mode & 0o777) | 0o011);
    } catch {
      /* missing: the supervisor creates and checks the path */
    }
    await super.start();
  }

  constructor(cfg: RecallConfig) {
    super(new ManagedPostgres({
      dataDir: join(cfg.dataDir, 'postgres'),
      port: cfg.managed.port,
      binDir: cfg.managed.binary ? join(cfg.managed.binary, '..') : undefined,
      // Every client session has its own backend session, plus Recall's own connections.
      extraArgs: [`-c`, `max_connections=${Math.min(cfg.maxConnections + 50, 10000)}`, ...cfg.managed.extraArgs],
      // the front end's trust (local demos) needs the server's; otherwise every role but the superuser gives its password
      clientAuth: cfg.postgresAuth === 'trust' ? 'trust' : 'md5',
    }));
    this.recallDir = cfg.dataDir;
  }

  get dsn(): Dsn {
    const m = this.managed;
    return { engine: 'postgres', host: '127.0.0.1', port: m.port, socketPath: `${m.socketDir}/.s.PGSQL.${m.port}`, user: 'postgres', password: '' };
  }

  protected get socketPath(): string {
    return this.managed.socketDir;
  }
}

class CommandLocalDatabase implements LocalDatabase {
  readonly mode: LocalDatabaseMode;
  readonly dsn: Dsn;
  private readonly log;

  constructor(private readonly cfg: RecallConfig) {
    this.mode = cfg.startServer || cfg.stopServer ? 'hook' : 'external';
    this.dsn = parseDsn(cfg.dsn!);
    this.log = logger('database', { nodeId: cfg.nodeId });
  }

  async start(): Promise<void> {
    try {
      await this.ping();
      return;
    } catch (err) {
      if (!this.cfg.startServer) throw new Error(`local database at ${redactDsn(this.cfg.dsn!)} is unreachable: ${(err as Error).message}`);
      this.log.info('local database unreachable; running startServer', { reason: (err as Error).message });
    }
    await runHook('startServer', this.cfg.startServer);
    await waitFor(() => this.ping(), hookWaitMs);
  }

  async stop(): Promise<void> {
    if (!this.cfg.stopServer) throw new Error('cannot stop the local database: stopServer is not configured');
    await runHook('stopServer', this.cfg.stopServer);
    // Done when it no longer answers.
    await waitFor(
      () =>
        this.ping(1000).then(
          () => Promise.reject(new Error('local database still answers after stopServer')),
          () => undefined,
        ),
      hookWaitMs,
    );
  }

  async close(): Promise<void> {
    /* not ours to stop on shutdown */
  }
  ping(timeoutMs = 2000): Promise<void> {
    return pingDatabase(this.dsn, timeoutMs);
  }
  status(): LocalDatabaseStatus {
    return { mode: this.mode };
  }
}

export function redactDsn(dsn: string): string {
  return dsn.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}
