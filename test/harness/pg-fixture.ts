// The set-up the PostgreSQL replication tests share: managed postgres servers in one temp dir
// (each with the role alice and a database she owns), admin queries as the superuser, a
// PgApplier over an in-memory log, and a single-node RaftNode with one applier per server and
// a PgLane on the first. Everything started here is stopped by the matching stop()/close().
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import pg from 'pg';
import { ManagedPostgres, type ManagedPostgresOptions } from '../../src/supervisor/postgres.js';
import { RaftNode } from '../../src/engine/node.js';
import { Role, type Entry } from '../../src/consensus/types.js';
import { PgApplier } from '../../src/replication/pg/applier.js';
import { pgDialect, type PgDialectOptions } from '../../src/replication/pg/dialect.js';
import type { PgLaneRequest, PgLaneResult } from '../../src/replication/pg/types.js';
import type { ReplicaLane, ApplierBaseDeps } from '../../src/replication/dialect.js';
import { commandTag, errorOf } from '../../src/replication/pg/conn.js';
import type { Logger } from '../../src/util/log.js';
import { tempDir, type TempDir } from './tmp.js';
import { freePort } from './ports.js';

/** Rows of `sql` as arrays, run as the superuser over TCP (managed postgres trusts it there). */
export async function pgAdminQuery(port: number, sql: string, database: string): Promise<unknown[][]> {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database });
  await c.connect();
  try {
    return (await c.query({ text: sql, rowMode: 'array' })).rows as unknown[][];
  } finally {
    await c.end();
  }
}

/** md5 of every user table's rows in order, by table name (two databases compare equal or not). */
export async function pgFingerprint(port: number, database = 'app'): Promise<Record<string, string>> {
  const tables = (await pgAdminQuery(port, "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname = 'public' ORDER BY 1", database)).map((r) => String(r[0]));
  const out: Record<string, string> = {};
  for (const t of tables) out[t] = String((await pgAdminQuery(port, `SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM ${t} x`, database))[0]![0]);
  return out;
}

/** The command tags (or E + SQLSTATE) of a lane result, one per statement. */
export function laneTags(r: PgLaneResult): string[] {
  return r.replies.map((ms) => {
    const e = ms.find((m) => m[0] === 0x45);
    if (e) return `E${errorOf(e).code}`;
    const c = [...ms].reverse().find((m) => m[0] === 0x43);
    return c ? commandTag(c) : '?';
  });
}

/** Polls `cond` every 50 ms until it holds; throws after `ms`. */
export async function until(cond: () => boolean | Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** How Recall's applier and lane reach a managed postgres: TCP port, private socket, trusted superuser. */
export function pgConnOptions(db: ManagedPostgres): PgDialectOptions {
  return { target: { host: '127.0.0.1', port: db.dsn.port, socketDir: db.socketDir }, admin: { user: 'postgres', credential: null }, connectTimeoutMs: 5000 };
}

export interface PgServersOptions {
  /** temp dir prefix */
  prefix: string;
  /** one server per name, its data dir under the temp dir */
  names: string[];
  /** the database created OWNER alice on every server */
  database: string;
  /** the statement that creates alice (default: CREATE ROLE alice LOGIN) */
  roleSql?: string;
  restart?: ManagedPostgresOptions['restart'];
}

/** Managed postgres servers on free ports in one temp dir, with alice and her database. */
export class PgServers {
  readonly dir: TempDir;
  readonly dbs: ManagedPostgres[] = [];

  constructor(private readonly o: PgServersOptions) {
    this.dir = tempDir(o.prefix);
    // postgres runs as its own OS user and must reach its data dir below this one
    chmodSync(this.dir.path, 0o755);
  }

  async start(): Promise<ManagedPostgres[]> {
    for (const name of this.o.names) {
      const port = await freePort();
      this.dbs.push(new ManagedPostgres({ dataDir: join(this.dir.path, name), port, startTimeoutMs: 60000, ...(this.o.restart ? { restart: this.o.restart } : {}) }));
    }
    await Promise.all(this.dbs.map((d) => d.start()));
    for (const d of this.dbs) {
      await pgAdminQuery(d.dsn.port, this.o.roleSql ?? 'CREATE ROLE alice LOGIN', 'postgres');
      await pgAdminQuery(d.dsn.port, `CREATE DATABASE ${this.o.database} OWNER alice`, 'postgres');
    }
    return this.dbs;
  }

  /** Stops the servers that were started and removes the temp dir. */
  async stop(): Promise<void> {
    await Promise.all(this.dbs.map((d) => d.stop()));
    this.dir.remove();
  }
}

/**
 * A PgApplier on `db` over an in-memory log: entries [lo, hi) are slices of `entries` (index i
 * at i - 1), committed up to `commit.index`.
 */
export function memoryLogApplier(db: ManagedPostgres, log: Logger, entries: Entry[], commit: { index: number }, onDiverged?: (reason: string) => void): PgApplier {
  return new PgApplier(
    {
      nodeId: 1,
      log,
      entries: (lo, hi) => entries.slice(lo - 1, Math.min(hi - 1, entries.length)),
      commitIndex: () => commit.index,
      firstIndex: () => 1,
      ...(onDiverged ? { onDiverged } : {}),
    },
    pgConnOptions(db),
  );
}

export interface PgLaneRig {
  node: RaftNode;
  /** the lane as the router drives it (see asRouter) */
  lane: ReplicaLane<PgLaneRequest, PgLaneResult>;
  /** the lane itself: requests name a transaction only when they say so */
  bare: ReplicaLane<PgLaneRequest, PgLaneResult>;
  /** one per server, in order; the lane runs on the first (node 1), the others apply as nodes 2.. */
  appliers: PgApplier[];
  /** the last index the node reported committed (what the appliers may apply) */
  delivered: { index: number };
  close(): Promise<void>;
}

/**
 * A single-node RaftNode (its log under `dataDir`), an applier per server fed by its committed
 * entries, and a PgLane on the first server proposing to the node once it leads.
 */
export async function startPgLane(dbs: ManagedPostgres[], dataDir: string, log: Logger, laneTimeoutMs: number, lane0: { optimistic?: boolean } = {}): Promise<PgLaneRig> {
  const raftPort = await freePort();
  mkdirSync(dataDir);
  const node = await RaftNode.open({ id: 1, peers: new Map([[1, `127.0.0.1:${raftPort}`]]), dataDir, clusterId: 't', secret: 'k', tickMs: 10, onFatal: (e) => assert.fail(e) });
  const delivered = { index: 0 };
  const appliers: PgApplier[] = [];
  let lane: ReplicaLane<PgLaneRequest, PgLaneResult> | undefined;
  const close = async (): Promise<void> => {
    await lane?.close();
    for (const x of appliers) x.close();
    await node.close();
  };
  try {
    const deps = (nodeId: number): ApplierBaseDeps => ({
      nodeId,
      log,
      entries: (lo, hi) => node.storage.entries(lo, Math.min(hi, node.storage.lastIndex() + 1), 64 << 20),
      commitIndex: () => delivered.index,
      firstIndex: () => node.storage.firstIndex(),
    });
    const dialects = dbs.map((d, i) => pgDialect({ ...pgConnOptions(d), ...(i === 0 ? lane0 : {}) }));
    // every applier but the first stands for another node: it applies every entry itself
    for (const [i, d] of dialects.entries()) appliers.push(d.createApplier(deps(i + 1)));
    for (const x of appliers) await x.open();
    node.onCommitted((es) => {
      if (es.length) delivered.index = es[es.length - 1]!.index;
      for (const x of appliers) x.notify();
    });
    const end = Date.now() + 10000;
    while (node.status().role !== Role.Leader) {
      if (Date.now() > end) throw new Error('no leader');
      await new Promise((r) => setTimeout(r, 20));
    }
    lane = dialects[0]!.createLane(
      { nodeId: 1, log, laneTimeoutMs, propose: (d) => node.propose(d), ready: async () => undefined, databaseFailed: (why) => assert.fail(why) },
      appliers[0]!,
    );
  } catch (err) {
    await close();
    throw err;
  }
  return { node, lane: asRouter(lane!), bare: lane!, appliers, delivered, close };
}

/**
 * The lane as the PostgreSQL router drives it: once a transaction's first request has answered,
 * its later requests name it with the lane epoch that answer carried (PgLaneResult.txn), until a
 * result leaves it (status I) or a lone COMMIT/ROLLBACK of it fails. A request that names a
 * transaction itself (`txn`) keeps its own.
 */
function asRouter(lane: ReplicaLane<PgLaneRequest, PgLaneResult>): ReplicaLane<PgLaneRequest, PgLaneResult> {
  const named = new Map<string, string>();
  const TX_IDLE = 0x49;
  return {
    submit: async (req) => {
      const txn = req.mode === 'txn' ? (req.txn ?? named.get(req.session)) : undefined;
      try {
        const r = await lane.submit(txn === undefined ? req : { ...req, txn });
        if (r.status === TX_IDLE || r.txn === undefined) named.delete(req.session);
        else named.set(req.session, r.txn);
        return r;
      } catch (e) {
        const kind = req.stmts.length === 1 ? req.stmts[0]!.kind : undefined;
        if (kind === 'commit' || kind === 'rollback') named.delete(req.session);
        throw e;
      }
    },
    endSession: (session) => {
      named.delete(session);
      lane.endSession(session);
    },
    abort: (err) => lane.abort(err),
    holderSession: () => lane.holderSession(),
    close: () => lane.close(),
  };
}
