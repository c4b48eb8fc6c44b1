// One Recall replica in this process: the local database (managed, hook or external), the
// admin HTTP server and the client protocol listeners. `recall serve` runs one; `recall
// demo` runs several. Later issues add the peer listener and the replication engine here.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RecallConfig } from '../config/load.js';
import { listenAddress } from '../config/load.js';
import { parseDsn, type Dsn } from '../config/dsn.js';
import { ManagedMariaDB, type ManagedState } from '../supervisor/mariadb.js';
import { pingDatabase } from '../supervisor/ping.js';
import { runHook, waitFor } from '../supervisor/hooks.js';
import { AdminHttpServer } from '../admin/http.js';
import { managedServerRestartsTotal, managedServerUp } from '../admin/metrics.js';
import { logger } from '../util/log.js';
import { recallVersion } from './version.js';
import { startMysqlFrontend, type ClientListener } from './frontends.js';

export interface RunningNode {
  nodeId: number;
  /** Bound ports, 0 for a listener that is off. */
  mysqlPort: number;
  adminPort: number;
  managed?: ManagedMariaDB;
  /** How Recall reaches the local database. */
  dsn: Dsn;
  stop(): Promise<void>;
}

export interface StartNodeHooks {
  /** Called on every managed-server state change (the demo shows progress with it). */
  onManagedState?: (state: ManagedState) => void;
}

// Connections the managed server allows beyond maxConnections (accounts, lane, ping).
const managedConnectionsSpare = 50;
// Hook mode waits this long for the database after StartServer.
const hookStartWaitMs = 120000;

export async function startNode(cfg: RecallConfig, hooks: StartNodeHooks = {}): Promise<RunningNode> {
  const log = logger('node', { nodeId: cfg.nodeId });
  if (cfg.engine !== 'mysql') {
    throw new Error(`engine ${cfg.engine} is not supported yet by this version (use engine: mysql)`);
  }
  const cleanups: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    for (const c of cleanups.reverse()) {
      await c().catch((err: Error) => log.error('shutdown step failed', { err: err.message }));
    }
    cleanups.length = 0;
  };

  try {
    // 1. The local database.
    let managed: ManagedMariaDB | undefined;
    let dsn: Dsn;
    if (cfg.managed.enabled) {
      managed = new ManagedMariaDB({
        dataDir: join(cfg.dataDir, 'mariadb'),
        port: cfg.managed.port,
        binary: cfg.managed.binary,
        extraArgs: cfg.managed.extraArgs,
        // Every client session has its own backend session, plus Recall's own connections.
        maxConnections: cfg.maxConnections + managedConnectionsSpare,
      });
      managed.on('state', (s: ManagedState) => {
        managedServerUp.set(s === 'running' ? 1 : 0);
        hooks.onManagedState?.(s);
      });
      managed.on('restarted', () => managedServerRestartsTotal.inc());
      cleanups.push(() => managed!.stop());
      await managed.start();
      dsn = { engine: 'mysql', host: '127.0.0.1', port: managed.port, socketPath: managed.socketPath, user: 'root', password: '' };
    } else {
      dsn = parseDsn(cfg.dsn!);
      try {
        await pingDatabase(dsn, 2000);
      } catch (err) {
        if (!cfg.startServer) throw new Error(`local database at ${cfg.dsn} is unreachable: ${(err as Error).message}`);
        log.info('local database unreachable; running startServer', { reason: (err as Error).message });
        await runHook('startServer', cfg.startServer);
        await waitFor(() => pingDatabase(dsn, 2000), hookStartWaitMs);
      }
      log.info('local database reachable', { dsn: redact(cfg.dsn!) });
    }

    // 2. Admin HTTP.
    let adminPort = 0;
    const adminAddr = listenAddress(cfg.listen.admin);
    if (adminAddr) {
      const admin = new AdminHttpServer({
        host: adminAddr.host,
        port: adminAddr.port,
        nodeId: cfg.nodeId,
        engine: cfg.engine,
        version: recallVersion(),
        pingDatabase: () => pingDatabase(dsn, 2000),
        databaseMode: () =>
          managed
            ? { mode: 'managed', state: managed.state, port: managed.port, socketPath: managed.socketPath, restarts: managed.restartCount }
            : { mode: cfg.startServer ? 'hook' : 'external' },
      });
      adminPort = await admin.listen();
      cleanups.push(() => admin.close());
    }

    // 3. Client listeners.
    let mysqlPort = 0;
    const mysqlAddr = listenAddress(cfg.listen.mysql);
    if (mysqlAddr) {
      const fe: ClientListener = await startMysqlFrontend({
        host: mysqlAddr.host,
        port: mysqlAddr.port,
        backend: {
          ...(dsn.socketPath ? { socketPath: dsn.socketPath } : {}),
          ...(dsn.host && !dsn.socketPath ? { host: dsn.host, port: dsn.port ?? 3306 } : {}),
          adminUser: dsn.user,
          adminPassword: dsn.password,
        },
        tls: cfg.tls ? { cert: readFileSync(cfg.tls.cert, 'utf8'), key: readFileSync(cfg.tls.key, 'utf8') } : undefined,
        maxConnections: cfg.maxConnections,
        maxPacketBytes: cfg.maxPacketBytes,
        connectTimeoutMs: cfg.connectTimeoutMs,
        netReadTimeoutMs: cfg.netReadTimeoutMs,
      });
      mysqlPort = fe.port;
      // Listeners close before the database stops, so clients get a clean close.
      cleanups.push(() => fe.close());
    }
    if (cfg.listen.postgres !== 'off') log.debug('PostgreSQL listener not available yet in this version', { listen: cfg.listen.postgres });

    return {
      nodeId: cfg.nodeId,
      mysqlPort,
      adminPort,
      managed,
      dsn,
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

function redact(dsn: string): string {
  return dsn.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}
