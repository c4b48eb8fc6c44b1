// One Recall replica in this process: the local database (managed, hook or external), the
// admin HTTP server and the client protocol listeners. `recall serve` runs one; `recall
// demo` runs several. Later issues add the peer listener and the replication engine here.
import { readFileSync } from 'node:fs';
import type { RecallConfig } from '../config/load.js';
import { listenAddress } from '../config/load.js';
import type { Dsn } from '../config/dsn.js';
import type { ManagedState } from '../supervisor/mariadb.js';
import type { SupervisedServer } from '../supervisor/supervised-server.js';
import { localDatabase, redactDsn, type LocalDatabase } from '../supervisor/local-database.js';
import { AdminHttpServer } from '../admin/http.js';
import { managedServerRestartsTotal, managedServerUp } from '../admin/metrics.js';
import { logger } from '../util/log.js';
import { recallVersion } from './version.js';
import { startMysqlFrontend, type ClientListener } from './frontends.js';
import { startPostgresFrontend } from '../frontend/postgres/server.js';
import { postgresRouting } from '../frontend/postgres/router.js';
import { pgDialect } from '../replication/pg/dialect.js';
import { loadPgParser } from '../sql/pg-parse.js';
import type { PgApplier } from '../replication/pg/applier.js';
import type { PgLaneRequest, PgLaneResult } from '../replication/pg/types.js';
import { Replicator } from '../replication/replicator.js';
import { mysqlDialect } from '../replication/mysql-dialect.js';
import type { Applier } from '../replication/applier.js';
import type { LaneRequest, LaneResult } from '../replication/lane-types.js';
import { Membership } from '../replication/membership.js'; // membership (H3)
import { sha1 } from '../protocol/mysql/auth.js';
import crypto from 'node:crypto';
import { join } from 'node:path';
import { parseHostPort } from '../util/ports.js';
import { snapshotMethod } from '../recovery/snapshot-method.js';
import { rsyncMethod } from '../recovery/rsync-joiner.js';
import { recoverInstall } from '../recovery/snapshot-install.js';
import { pgBasebackupTool } from '../recovery/pg-basebackup.js';
import type { LocalDatabase as LocalDb } from '../supervisor/local-database.js';

export interface RunningNode {
  nodeId: number;
  /** Bound ports, 0 for a listener that is off. */
  mysqlPort: number;
  postgresPort: number;
  adminPort: number;
  managed?: SupervisedServer;
  database: LocalDatabase;
  /** How Recall reaches the local database. */
  dsn: Dsn;
  replicator?: Replicator<unknown, unknown>;
  stop(): Promise<void>;
}

export interface StartNodeHooks {
  /** Called on every managed-server state change (the demo shows progress with it). */
  onManagedState?: (state: ManagedState) => void;
}

export async function startNode(cfg: RecallConfig, hooks: StartNodeHooks = {}): Promise<RunningNode> {
  const log = logger('node', { nodeId: cfg.nodeId });
  const cleanups: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    for (const c of cleanups.reverse()) {
      await c().catch((err: Error) => log.error('shutdown step failed', { err: err.message }));
    }
    cleanups.length = 0;
  };

  try {
    // 1. The local database.
    checkResyncConfig(cfg);
    const db = localDatabase(cfg);
    if (db.managed) {
      const managed = db.managed;
      managed.on('state', (st: ManagedState) => {
        managedServerUp.set(st === 'running' ? 1 : 0);
        hooks.onManagedState?.(st);
      });
      managed.on('restarted', () => managedServerRestartsTotal.inc());
    }
    cleanups.push(() => db.close());
    // A snapshot install cut short by a crash is completed or undone before the server starts
    // (a managed server started first would initialise an empty datadir where the copy belongs).
    const datadir = serverDatadir(cfg);
    if (datadir) {
      const outcome = await recoverInstall(datadir, log);
      if (outcome !== 'nothing') log.warn('an interrupted resync install was found at start-up', { datadir, outcome });
    }
    await db.start();
    const dsn = db.dsn;
    if (!db.managed) log.info('local database reachable', { dsn: redactDsn(cfg.dsn!), mode: db.mode });

    // 2. Replication: the Raft node on the peer listener, the applier, the write lane.
    let replicator: Replicator<LaneRequest, LaneResult, Applier> | undefined;
    let pgReplicator: Replicator<PgLaneRequest, PgLaneResult, PgApplier> | undefined;
    const socketDir = cfg.engine === 'postgres' && dsn.socketPath ? dsn.socketPath.replace(/\/[^/]*$/, '') : undefined;
    if (cfg.listen.peer !== 'off' && cfg.replicas.length > 0) {
      if (cfg.replicas.length > 1 && !cfg.clusterSecret) {
        throw new Error('clusterSecret is required with more than one replica (it authenticates the peer links)');
      }
      const target = dsn.socketPath ? { socketPath: dsn.socketPath } : { host: dsn.host ?? '127.0.0.1', port: dsn.port ?? 3306 };
      const base = {
        nodeId: cfg.nodeId,
        peers: new Map(cfg.replicas.map((a, i) => [i + 1, a] as [number, string])),
        listen: cfg.listen.peer,
        dataDir: cfg.dataDir,
        clusterId: cfg.clusterId ?? 'recall',
        secret: cfg.clusterSecret ?? crypto.randomBytes(32).toString('hex'),
        // a client payload, its context and base64 in the entry
        entryBytesMax: cfg.maxPacketBytes * 4 + (1 << 20),
        laneTimeoutMs: cfg.laneTimeoutMs,
        leaderWaitMs: cfg.leaderWaitMs,
        readWaitMs: cfg.readWaitMs,
        join: cfg.join,
        logRetainEntries: cfg.logRetainEntries,
        logRetainBytes: cfg.logRetainBytes,
        autoResync: cfg.autoResync,
        recovery: resyncMethodFor(cfg, db, dsn, datadir),
      };
      if (cfg.engine === 'postgres') {
        await loadPgParser(); // the router classifies every batch synchronously
        pgReplicator = await Replicator.start(
          base,
          pgDialect({
            target: { host: dsn.host ?? '127.0.0.1', port: dsn.port ?? 5432, ...(socketDir ? { socketDir } : {}) },
            // the managed superuser is trusted on the private socket
            admin: { user: dsn.user, credential: null },
            connectTimeoutMs: cfg.connectTimeoutMs,
            optimistic: cfg.pgOptimistic,
          }),
        );
        const rep = pgReplicator;
        cleanups.push(() => rep.close());
      } else {
        replicator = await Replicator.start(
          base,
          mysqlDialect({
            target,
            admin: { user: dsn.user, stage1: dsn.password ? sha1(Buffer.from(dsn.password, 'utf8')) : null },
            payloadBytesMax: cfg.maxPacketBytes,
            connectTimeoutMs: cfg.connectTimeoutMs,
          }),
        );
        const rep = replicator;
        cleanups.push(() => rep.close());
      }
    }
    const anyReplicator: Replicator<unknown, unknown> | undefined = (replicator ?? pgReplicator) as Replicator<unknown, unknown> | undefined;
    // membership (H3): add/remove replicas through /members and `recall join|remove|members`.
    const membership = anyReplicator ? new Membership({ node: anyReplicator.node, selfAddress: cfg.replicas[cfg.nodeId - 1] ?? cfg.listen.peer, appliedIndex: () => anyReplicator.applied, resync: () => anyReplicator.status().resync }) : undefined;

    // 3. Admin HTTP.
    let adminPort = 0;
    const adminAddr = listenAddress(cfg.listen.admin);
    if (adminAddr) {
      const admin = new AdminHttpServer({
        host: adminAddr.host,
        port: adminAddr.port,
        nodeId: cfg.nodeId,
        engine: cfg.engine,
        version: recallVersion(),
        pingDatabase: () => db.ping(2000),
        databaseMode: () => db.status(),
        ...(membership ? { members: membership, membersSecret: cfg.clusterSecret } : {}), // membership (H3)
        ...(anyReplicator
          ? {
              readyChecks: [async () => anyReplicator.readiness()],
              extraStatus: () => ({ replication: anyReplicator.status() }),
            }
          : {}),
      });
      adminPort = await admin.listen();
      cleanups.push(() => admin.close());
    }

    // 4. Client listeners.
    let mysqlPort = 0;
    const mysqlAddr = cfg.engine === 'mysql' ? listenAddress(cfg.listen.mysql) : undefined;
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
        tlsRequired: cfg.tlsRequired,
        defaultAuthPlugin: cfg.defaultAuthPlugin,
        maxConnections: cfg.maxConnections,
        maxPacketBytes: cfg.maxPacketBytes,
        connectTimeoutMs: cfg.connectTimeoutMs,
        netReadTimeoutMs: cfg.netReadTimeoutMs,
        ...(replicator ? { writes: replicator, nodeId: cfg.nodeId, consistency: cfg.consistency } : {}),
      });
      mysqlPort = fe.port;
      // Listeners close before the database stops, so clients get a clean close.
      cleanups.push(() => fe.close());
    }
    let postgresPort = 0;
    const pgAddr = cfg.engine === 'postgres' ? listenAddress(cfg.listen.postgres) : undefined;
    if (pgAddr) {
      const fe = await startPostgresFrontend({
        host: pgAddr.host,
        port: pgAddr.port,
        backend: { host: dsn.host ?? '127.0.0.1', port: dsn.port ?? 5432, ...(socketDir ? { socketDir } : {}) },
        admin: { host: socketDir ?? dsn.host ?? '127.0.0.1', port: dsn.port ?? 5432, user: dsn.user, ...(dsn.password ? { password: dsn.password } : {}) },
        tls: cfg.tls ? { cert: readFileSync(cfg.tls.cert, 'utf8'), key: readFileSync(cfg.tls.key, 'utf8') } : undefined,
        tlsRequired: cfg.tlsRequired,
        connectionsMax: cfg.maxConnections,
        nodeId: cfg.nodeId,
        auth: cfg.postgresAuth,
        ...(pgReplicator ? postgresRouting({ nodeId: cfg.nodeId, service: pgReplicator, log: logger('postgres-router', { nodeId: cfg.nodeId }), consistency: cfg.consistency }) : {}),
      });
      postgresPort = fe.port;
      cleanups.push(() => fe.close());
    }

    return {
      nodeId: cfg.nodeId,
      mysqlPort,
      postgresPort,
      adminPort,
      managed: db.managed,
      database: db,
      dsn,
      replicator: anyReplicator,
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** The local server's own data directory, when Recall knows it (managed, or syncPath in hook mode). */
function serverDatadir(cfg: RecallConfig): string | undefined {
  if (cfg.managed.enabled) return join(cfg.dataDir, cfg.engine === 'postgres' ? 'postgres' : 'mariadb');
  return cfg.syncPath;
}

/** A resync configuration this engine cannot run, refused before anything starts. */
function checkResyncConfig(cfg: RecallConfig): void {
  if (cfg.engine === 'postgres' && cfg.resyncMethod === 'rsync') {
    // The rsync hooks copy a MariaDB datadir with the donor quiesced; a PostgreSQL datadir copied
    // that way is not built nor tested, so it is refused rather than half supported.
    throw new Error('config resyncMethod: rsync is not supported with engine postgres; use resyncMethod: snapshot (pg_basebackup over the peer link)');
  }
}

/** The full-resync method of this replica (DESIGN.md "Recovery"), or undefined when it has none. */
function resyncMethodFor(cfg: RecallConfig, db: LocalDb, dsn: Dsn, datadir: string | undefined) {
  const method = cfg.resyncMethod === 'auto' ? (cfg.syncPath && cfg.syncCmd && cfg.engine !== 'postgres' ? 'rsync' : 'snapshot') : cfg.resyncMethod;
  const log = logger('node', { nodeId: cfg.nodeId });
  if (method === 'rsync') {
    if (!cfg.syncCmd || !datadir) {
      log.warn('resyncMethod rsync needs syncPath and syncCmd: this replica cannot be resynced', {});
      return undefined;
    }
    return rsyncMethod({
      syncPath: datadir,
      syncCmd: cfg.syncCmd,
      server: db,
      donorHost: (peer) => parseHostPort(cfg.replicas[peer - 1] ?? '')?.host ?? '127.0.0.1',
      rateBytes: cfg.resyncRateBytes,
      // a --delete must never reach the Raft log
      protect: [cfg.dataDir],
    });
  }
  if (!datadir) {
    log.warn('the built-in resync needs the server\'s data directory (syncPath) outside managed mode: this replica cannot be resynced', {});
    return undefined;
  }
  return snapshotMethod({
    datadir,
    dataDir: cfg.dataDir,
    target: { ...(dsn.socketPath ? { socketPath: dsn.socketPath } : { host: dsn.host ?? '127.0.0.1', port: dsn.port ?? 3306 }), user: dsn.user, password: dsn.password ?? '' },
    server: db,
    rateBytes: cfg.resyncRateBytes,
    listenHost: cfg.listen.peer === 'off' ? undefined : parseHostPort(cfg.listen.peer)?.host,
    ...(cfg.engine === 'postgres'
      ? // the bin dir ManagedPostgres uses (managed.binary names its postgres binary)
        { tool: pgBasebackupTool({ datadir, ...(cfg.managed.binary ? { binDir: join(cfg.managed.binary, '..') } : {}) }) }
      : {}),
  });
}
