// A real Recall cluster for tests: N `recall serve` processes on loopback, each with its
// own managed mariadbd (reachable directly as root on its --managed-port) and data
// directory, and a fault relay on every directed peer link.
//
// Why one relay per ordered pair: every node dials every peer and sends only on its own
// outbound link (src/transport/transport.ts), so node i's traffic to j crosses relay (i->j)
// and j's traffic to i crosses relay (j->i). Each node gets its own --replicas list in which
// the other nodes' entries name the relays dedicated to it; cut(i) cuts every relay with i
// at either end, which isolates i completely while the others still reach one another.
//
// With `engine: 'postgres'` each node runs a managed postgres instead (its superuser reached
// over the private socket by dbQuery/pgQuery) and the PostgreSQL front end on postgresPort.
//
// Node indexes are 0-based everywhere in this API; node ids (--node-id) are index + 1.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { FaultRelay, type CutMode } from './fault-relay.js';
import { freePort } from './ports.js';
import { alive } from './process.js';
import { cleanEnv, recallCommand, repoRoot, waitExit } from './recall.js';
import { tempDir } from './tmp.js';

export interface StartClusterOptions {
  /** Default 3. */
  size?: number;
  /** Extra `recall serve` flags for every node. */
  extraArgs?: string[];
  /** Extra flags for one node (0-based index). */
  nodeArgs?: (index: number) => string[];
  /** How long each start waits for /ready; default 120 s (3 mariadbd initialise on 2 cores). */
  readyTimeoutMs?: number;
  /**
   * Default 'mysql'. 'postgres': every node runs `--engine postgres` with a managed postgres
   * (its superuser reached by dbQuery over the private socket) and the PostgreSQL front end on
   * its postgresPort.
   */
  engine?: 'mysql' | 'postgres';
  /** --postgres-auth of every node (postgres engine); default scram-sha-256. */
  postgresAuth?: 'scram-sha-256' | 'md5' | 'trust';
}

/** Password the harness gives the postgres superuser on every node (not trust), so that tests can log in through Recall as it. */
export const pgSuperuserPassword = 'recall-test-super';

export interface PeerStatus {
  id: number;
  address: string;
  match: number;
  lag: number;
  connected: boolean;
}

/** The `replication` part of GET /status (agreed interface of issue 3). */
export interface ReplicationStatus {
  role: 'leader' | 'follower' | 'candidate' | 'precandidate' | 'learner';
  term: number;
  leader: number;
  leaderAddress?: string;
  commit: number;
  applied: number;
  lastIndex: number;
  diverged: boolean;
  divergedReason?: string;
  laneOpen: boolean;
  peers: PeerStatus[];
}

export interface NodeStatus {
  nodeId: number;
  database: { mode: string; state?: string; port?: number; reachable: boolean; error?: string };
  replication?: ReplicationStatus;
  /** The node's own view of the membership (src/replication/membership.ts). */
  membership?: { voters: number[]; learners: number[]; leader: number; term: number };
  [key: string]: unknown;
}

export interface ClusterNode {
  index: number;
  nodeId: number;
  mysqlPort: number;
  adminPort: number;
  /** Where this node's peer listener really listens (the relays forward here). */
  peerPort: number;
  /** The managed mariadbd's TCP port (root, empty password); the managed postgres's port with the postgres engine. */
  dbPort: number;
  /** The PostgreSQL front end's port (postgres engine; 0 otherwise). */
  postgresPort: number;
  dataDir: string;
  /** Pid of the recall process while it runs. */
  pid(): number | undefined;
  /** Pid of the managed mariadbd, from its pid file, if that process is alive and ours. */
  dbPid(): number | undefined;
  running(): boolean;
  /** Everything the recall process wrote (last 400 KB), across restarts. */
  output(): string;
}

export type Row = Record<string, unknown>;

export interface TestCluster {
  nodes: ClusterNode[];
  /** The relay carrying traffic from node index `from` to node index `to`. */
  relay(from: number, to: number): FaultRelay;
  status(i: number): Promise<NodeStatus>;
  /** status(i), or undefined when the node does not answer. */
  tryStatus(i: number): Promise<NodeStatus | undefined>;
  /** Index of the leader that every running, uncut, unfrozen node agrees on. */
  waitLeader(timeoutMs?: number): Promise<number>;
  /** SIGKILL of node i's recall process (its mariadbd survives; the next start stops it). */
  kill(i: number): Promise<void>;
  /** SIGKILL of node i's managed mariadbd; resolves with the killed pid once it is gone. */
  killDatabase(i: number): Promise<number>;
  /** Starts node i again with the same data directory and ports; waits for /ready unless told not to. */
  restart(i: number, opts?: { waitReady?: boolean; readyTimeoutMs?: number }): Promise<void>;
  /** Waits until node i's /ready answers 200. */
  waitReady(i: number, timeoutMs?: number): Promise<void>;
  /** Isolates node i from every peer, both directions. */
  cut(i: number, mode?: CutMode): void;
  heal(i: number): void;
  /** SIGSTOP of node i's recall process: a frozen process whose kernel still accepts bytes. */
  freeze(i: number): void;
  /** SIGCONT after freeze(i). */
  thaw(i: number): void;
  /** Delays every byte to and from node i's peers by ms (0 removes the delay). */
  delay(i: number, ms: number): void;
  /** Undoes every cut, freeze and delay (a test that failed half-way leaves its faults in place). */
  healAll(): void;
  /** A query straight to node i's mariadbd as root (bypassing Recall); postgres engine: as the superuser to database `postgres`, $1 parameters. */
  dbQuery(i: number, sql: string, params?: unknown[]): Promise<Row[]>;
  /** Postgres engine: a query straight to node i's postgres as the superuser (over its socket), in `database`. */
  pgQuery(i: number, database: string, sql: string, params?: unknown[]): Promise<Row[]>;
  /**
   * Postgres engine: per node (default all with a reachable database), table -> "rows:md5" of
   * its contents ordered by the whole row's text, for every base table of the public schema of
   * `database` (recall's own schema excluded).
   */
  pgChecksums(database: string, which?: number[]): Promise<Record<string, string>[]>;
  /** Per node (the given indexes, default all with a reachable database): table -> CHECKSUM TABLE value, for every base table of `db` (postgres engine: pgChecksums). */
  checksums(db: string, which?: number[]): Promise<Record<string, string>[]>;
  /** Until every running node applied the leader's commit index (and the leader too); resolves with the leader's index. */
  waitConverged(timeoutMs?: number, which?: number[]): Promise<{ leader: number; commit: number }>;
  /** Tail of every node's output and of its mariadbd log, for failure reports. */
  dumpLogs(tailChars?: number): string;
  /** Stops everything, removes the data, closes the relays. Idempotent. */
  stop(): Promise<void>;
  /** The cluster secret (peer links; X-Recall-Secret of the admin /members changes). */
  secret: string;
  /**
   * Starts `count` more nodes with `recall serve --join` (node ids continue after the last
   * node), each with a --replicas list of every node's direct peer address, the new ones
   * included, and waits until their admin /health answers (not /ready: a joining node is
   * ready only once the cluster added it). Their links use no relays (cut/heal/delay do not
   * touch them). They are appended to `nodes`; add them with recall join or POST /members.
   */
  addJoiners(count: number, opts?: { extraArgs?: string[]; healthTimeoutMs?: number }): Promise<ClusterNode[]>;
  /** SIGTERM of node i's recall process (a clean stop, its mariadbd stopped with it). */
  stopNode(i: number): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One node's status in a few words, for timeout messages. */
function describe(s: NodeStatus | undefined): string {
  if (!s) return 'no answer';
  const r = s.replication;
  if (!r) return 'no replication in /status';
  return `${r.role} t${r.term} L${r.leader} commit=${r.commit} applied=${r.applied} last=${r.lastIndex}${r.diverged ? ' DIVERGED' : ''}`;
}
const outputCharsMax = 400_000;

/** Whether a node counts itself a member (voter or learner); true when it does not say. */
function isMember(s: NodeStatus | undefined): boolean {
  const m = s?.membership;
  return !m || m.voters.includes(s.nodeId) || m.learners.includes(s.nodeId);
}

interface NodeProc {
  info: ClusterNode;
  args: string[];
  child: ChildProcess | undefined;
  out: string;
}

/**
 * Ports for listeners that bind late (mariadbd binds seconds after we pick its port): taken
 * below the kernel's ephemeral range, so that nothing bound to port 0 (our relays, other
 * tests' servers) and no outgoing connection can take one in the meantime. Each is checked
 * free by binding it.
 */
async function distinctFreePorts(n: number): Promise<number[]> {
  let low = 32768;
  try {
    low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || low;
  } catch {
    /* not Linux: the default range */
  }
  const lowest = 10000;
  if (low - lowest < 1000) {
    // No room below the ephemeral range: fall back to the kernel's choice.
    const ports = new Set<number>();
    while (ports.size < n) ports.add(await freePort());
    return [...ports];
  }
  const ports = new Set<number>();
  for (let tries = 0; ports.size < n; tries++) {
    if (tries > n * 50) throw new Error('could not find free ports below the ephemeral range');
    const p = lowest + Math.floor(Math.random() * (low - lowest));
    if (ports.has(p)) continue;
    if (await canBind(p)) ports.add(p);
  }
  return [...ports];
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/**
 * Undoes the faults a failed test left in place and restarts any node it left dead, so that one
 * failure does not cascade, and waits until the cluster converged. A diverged replica stays so
 * until resynced: that throws at once instead of timing out later.
 */
export async function ensureAllUp(c: TestCluster): Promise<void> {
  c.healAll();
  for (const n of c.nodes) {
    const r = (await c.tryStatus(n.index))?.replication;
    if (r?.diverged) throw new Error(`node ${n.nodeId} diverged in an earlier test and cannot take part: ${r.divergedReason ?? '(no reason given)'}`);
  }
  for (const n of c.nodes) {
    if (n.running()) continue;
    console.log(`# node ${n.nodeId} was down at the start of this test; restarting it`);
    await c.restart(n.index, { readyTimeoutMs: 90_000 });
  }
  await c.waitConverged(60_000);
}

export async function startCluster(opts: StartClusterOptions = {}): Promise<TestCluster> {
  const size = opts.size ?? 3;
  const engine = opts.engine ?? 'mysql';
  const postgresAuth = opts.postgresAuth ?? 'scram-sha-256';
  // mysql, admin, peer, database (and the PostgreSQL front end)
  const portsPerNode = engine === 'postgres' ? 5 : 4;
  const readyTimeoutMs = opts.readyTimeoutMs ?? 120_000;
  const root = tempDir('recall-cl-');
  // postgres runs as its own OS user and must traverse the temp dirs down to its data directory.
  if (engine === 'postgres') chmodSync(root.path, 0o711);
  const relays = new Map<string, FaultRelay>();
  const procs: NodeProc[] = [];
  const cutSet = new Set<number>();
  const frozen = new Set<number>();
  let stopped = false;
  const secret = randomBytes(16).toString('hex');
  const clusterId = `test-${randomBytes(4).toString('hex')}`;

  const ports = await distinctFreePorts(size * portsPerNode);
  const relayKey = (from: number, to: number) => `${from}->${to}`;
  const relay = (from: number, to: number): FaultRelay => {
    const r = relays.get(relayKey(from, to));
    if (!r) throw new Error(`no relay ${from}->${to}`);
    return r;
  };

  const dbPidOf = (dataDir: string): number | undefined => {
    const dbDir = join(dataDir, engine === 'postgres' ? 'postgres' : 'mariadb');
    const pidFile = join(dbDir, engine === 'postgres' ? 'postmaster.pid' : 'mysqld.pid');
    if (!existsSync(pidFile)) return undefined;
    // postmaster.pid: the pid is its first line
    const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]!.trim());
    if (!Number.isInteger(pid) || pid <= 1 || !alive(pid)) return undefined;
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (engine === 'postgres' ? !cmd.includes(dbDir) : !cmd.includes(`--datadir=${dbDir}`)) return undefined;
      if (/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'))) return undefined;
    } catch {
      return undefined;
    }
    return pid;
  };

  const newProc = (i: number, nodePorts: number[]): NodeProc => {
    const [mysqlPort, adminPort, peerPort, dbPort, postgresPort = 0] = nodePorts as [number, number, number, number, number?];
    const dataDir = join(root.path, `n${i + 1}`);
    mkdirSync(dataDir);
    if (engine === 'postgres') chmodSync(dataDir, 0o711);
    const p: NodeProc = {
      args: [],
      child: undefined,
      out: '',
      info: {
        index: i,
        nodeId: i + 1,
        mysqlPort,
        adminPort,
        peerPort,
        dbPort,
        postgresPort,
        dataDir,
        pid: () => (p.child && p.child.exitCode === null && p.child.signalCode === null ? p.child.pid : undefined),
        dbPid: () => dbPidOf(dataDir),
        running: () => !!p.child && p.child.exitCode === null && p.child.signalCode === null,
        output: () => p.out,
      },
    };
    return p;
  };
  for (let i = 0; i < size; i++) procs.push(newProc(i, ports.slice(i * portsPerNode, (i + 1) * portsPerNode)));
  for (let from = 0; from < size; from++) {
    for (let to = 0; to < size; to++) {
      if (from === to) continue;
      relays.set(relayKey(from, to), await FaultRelay.start({ targetPort: procs[to]!.info.peerPort, name: `${from + 1}->${to + 1}` }));
    }
  }
  const serveArgs = (p: NodeProc, replicas: string[]): string[] => [
    ...recallCommand(),
    'serve',
    '--node-id', String(p.info.nodeId),
    '--replicas', replicas.join(','),
    '--listen-peer', `127.0.0.1:${p.info.peerPort}`,
    '--listen-mysql', `127.0.0.1:${p.info.mysqlPort}`,
    '--listen-admin', `127.0.0.1:${p.info.adminPort}`,
    ...(engine === 'postgres'
      ? ['--engine', 'postgres', '--listen-postgres', `127.0.0.1:${p.info.postgresPort}`, '--postgres-auth', postgresAuth]
      : ['--listen-postgres', 'off']),
    '--data-dir', p.info.dataDir,
    '--managed-port', String(p.info.dbPort),
    '--cluster-secret', secret,
    '--cluster-id', clusterId,
    '--log-format', 'json',
    ...(opts.extraArgs ?? []),
    ...(opts.nodeArgs?.(p.info.index) ?? []),
  ];
  for (const p of procs) {
    const i = p.info.index;
    p.args = serveArgs(p, procs.map((q) => (q === p ? `127.0.0.1:${p.info.peerPort}` : relay(i, q.info.index).address)));
  }

  const spawnNode = (p: NodeProc) => {
    const child = spawn(process.execPath, p.args, { cwd: repoRoot(), env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    p.child = child;
    p.out += `\n--- ${new Date().toISOString()} start pid ${child.pid}\n`;
    const keep = (b: Buffer) => {
      p.out = (p.out + b.toString()).slice(-outputCharsMax);
      if (process.env.RECALL_TEST_VERBOSE) process.stderr.write(`[n${p.info.nodeId}] ${b.toString()}`);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    child.once('exit', (code, signal) => {
      p.out += `\n--- ${new Date().toISOString()} pid ${child.pid} exited code=${code} signal=${signal}\n`;
    });
  };

  const waitReady = async (i: number, timeoutMs = readyTimeoutMs): Promise<void> => {
    const p = procs[i]!;
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      if (!p.info.running()) throw new Error(`node ${i + 1} exited before it was ready:\n${p.out.slice(-4000)}`);
      try {
        const r = await fetch(`http://127.0.0.1:${p.info.adminPort}/ready`, { signal: AbortSignal.timeout(3000) });
        if (r.status === 200) return;
        last = await r.text();
      } catch (e) {
        last = (e as Error).message;
      }
      if (Date.now() > deadline) throw new Error(`node ${i + 1} not ready within ${timeoutMs} ms (last: ${last.trim()})`);
      await sleep(150);
    }
  };

  const status = async (i: number): Promise<NodeStatus> => {
    const r = await fetch(`http://127.0.0.1:${procs[i]!.info.adminPort}/status`, { signal: AbortSignal.timeout(3000) });
    if (r.status !== 200) throw new Error(`node ${i + 1} /status answered ${r.status}`);
    return (await r.json()) as NodeStatus;
  };
  const tryStatus = (i: number) => (procs[i]!.info.running() ? status(i).catch(() => undefined) : Promise.resolve(undefined));

  const waitLeader = async (timeoutMs = 20_000): Promise<number> => {
    const deadline = Date.now() + timeoutMs;
    let seen = '';
    for (;;) {
      const all = procs.map((p) => p.info.index).filter((i) => procs[i]!.info.running() && !cutSet.has(i) && !frozen.has(i));
      const allSts = await Promise.all(all.map((i) => tryStatus(i)));
      // A joiner not added yet, or a removed node still running, follows no leader.
      const idx = all.filter((_, k) => isMember(allSts[k]));
      const sts = allSts.filter((s) => isMember(s));
      const leaders = idx.filter((_, k) => sts[k]?.replication?.role === 'leader');
      // Highest term wins: an isolated old leader may still believe it leads.
      leaders.sort((a, b) => sts[idx.indexOf(b)]!.replication!.term - sts[idx.indexOf(a)]!.replication!.term);
      const l = leaders[0];
      if (l !== undefined && sts.every((s) => s?.replication?.leader === l + 1)) return l;
      seen = idx.map((i, k) => `n${i + 1}:${describe(sts[k])}`).join(' ');
      if (Date.now() > deadline) throw new Error(`no agreed leader within ${timeoutMs} ms (${seen})`);
      await sleep(100);
    }
  };

  const kill = async (i: number) => {
    const c = procs[i]!.child;
    if (!c || !procs[i]!.info.running()) return;
    c.kill('SIGKILL');
    await waitExit(c, 10_000);
  };

  const killDatabase = async (i: number): Promise<number> => {
    // The database may be between runs (a restart, a resync's install): wait for it a while.
    let pid = procs[i]!.info.dbPid();
    for (const end = Date.now() + 30_000; !pid && Date.now() < end; pid = procs[i]!.info.dbPid()) await sleep(50);
    if (!pid) throw new Error(`node ${i + 1}: no running mariadbd found within 30 s\n${dumpLogs(20_000)}`);
    process.kill(pid, 'SIGKILL');
    const deadline = Date.now() + 10_000;
    while (procs[i]!.info.dbPid() === pid && Date.now() < deadline) await sleep(10);
    return pid;
  };

  const restart = async (i: number, o: { waitReady?: boolean; readyTimeoutMs?: number } = {}) => {
    const p = procs[i]!;
    if (p.info.running()) throw new Error(`node ${i + 1} is still running`);
    spawnNode(p);
    if (o.waitReady !== false) await waitReady(i, o.readyTimeoutMs);
  };

  const applyCuts = (mode: CutMode) => {
    for (const [key, r] of relays) {
      const [from, to] = key.split('->').map(Number) as [number, number];
      const shouldCut = cutSet.has(from) || cutSet.has(to);
      if (shouldCut && !r.isCut) r.cut(mode);
      else if (!shouldCut && r.isCut) r.heal();
    }
  };
  const cut = (i: number, mode: CutMode = 'reset') => {
    cutSet.add(i);
    applyCuts(mode);
  };
  const heal = (i: number) => {
    cutSet.delete(i);
    applyCuts('reset');
  };

  const freeze = (i: number) => {
    const pid = procs[i]!.info.pid();
    if (!pid) throw new Error(`node ${i + 1} is not running`);
    process.kill(pid, 'SIGSTOP');
    frozen.add(i);
  };
  const thaw = (i: number) => {
    const pid = procs[i]!.info.pid();
    if (pid) process.kill(pid, 'SIGCONT');
    frozen.delete(i);
  };

  const delay = (i: number, ms: number) => {
    for (const [key, r] of relays) {
      const [from, to] = key.split('->').map(Number) as [number, number];
      if (from === i || to === i) r.setDelayMs(ms);
    }
  };

  const healAll = () => {
    for (const i of [...frozen]) thaw(i);
    cutSet.clear();
    applyCuts('reset');
    for (const r of relays.values()) r.setDelayMs(0);
  };

  /** The managed postgres's socket directory: in its data directory unless that path is too long for a socket. */
  const pgSocketDir = async (i: number): Promise<string> => {
    const inData = join(procs[i]!.info.dataDir, 'postgres', 'sock');
    if (existsSync(join(inData, `.s.PGSQL.${procs[i]!.info.dbPort}`))) return inData;
    const st = await status(i);
    const dir = (st.database as { socketPath?: string }).socketPath;
    if (!dir) throw new Error(`node ${i + 1}: no postgres socket in ${inData} and none in /status`);
    return dir;
  };

  const pgQuery = async (i: number, database: string, sql: string, params: unknown[] = []): Promise<Row[]> => {
    if (engine !== 'postgres') throw new Error('pgQuery needs a cluster started with engine postgres');
    const client = new pg.Client({ host: await pgSocketDir(i), port: procs[i]!.info.dbPort, user: 'postgres', database, connectionTimeoutMillis: 5000 });
    client.on('error', () => undefined);
    await client.connect();
    try {
      const r = await client.query(sql, params);
      // several statements give an array of results: the last one's rows
      const last = Array.isArray(r) ? (r as pg.QueryResult[])[(r as pg.QueryResult[]).length - 1] : r;
      return (last?.rows ?? []) as Row[];
    } finally {
      await client.end().catch(() => undefined);
    }
  };

  const pgChecksums = async (database: string, which?: number[]): Promise<Record<string, string>[]> => {
    const idx = which ?? procs.map((p) => p.info.index);
    return Promise.all(
      idx.map(async (i) => {
        const tables = await pgQuery(i, database, "SELECT table_name AS t FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1");
        const out: Record<string, string> = {};
        for (const r of tables) {
          const t = String(r.t);
          const q = `"${t.replace(/"/g, '""')}"`;
          // the whole row's text as the order: no key needed, and equal contents give equal text
          const [x] = await pgQuery(i, database, `SELECT count(*) AS n, coalesce(md5(string_agg(x.r, E'\n' ORDER BY x.r COLLATE "C")), '') AS h FROM (SELECT t::text AS r FROM public.${q} t) x`);
          out[t] = `${String(x!.n)}:${String(x!.h)}`;
        }
        return out;
      }),
    );
  };

  const dbQuery = async (i: number, sql: string, params: unknown[] = []): Promise<Row[]> => {
    if (engine === 'postgres') return pgQuery(i, 'postgres', sql, params);
    const conn = await mysql.createConnection({ host: '127.0.0.1', port: procs[i]!.info.dbPort, user: 'root', password: '', connectTimeout: 5000, supportBigNumbers: true, bigNumberStrings: true });
    try {
      const [rows] = await conn.query(sql, params);
      return Array.isArray(rows) ? (rows as Row[]) : [];
    } finally {
      await conn.end().catch(() => conn.destroy());
    }
  };

  const checksums = async (db: string, which?: number[]): Promise<Record<string, string>[]> => {
    if (engine === 'postgres') return pgChecksums(db, which);
    const idx = which ?? procs.map((p) => p.info.index);
    return Promise.all(
      idx.map(async (i) => {
        const tables = await dbQuery(i, "SELECT table_name AS t FROM information_schema.tables WHERE table_schema = ? AND table_type = 'BASE TABLE' ORDER BY 1", [db]);
        const out: Record<string, string> = {};
        if (tables.length === 0) return out;
        const list = tables.map((r) => `\`${db}\`.\`${String(r.t)}\``).join(', ');
        for (const r of await dbQuery(i, `CHECKSUM TABLE ${list} EXTENDED`)) out[String(r.Table).split('.').pop()!] = String(r.Checksum);
        return out;
      }),
    );
  };

  const waitConverged = async (timeoutMs = 30_000, which?: number[]) => {
    const deadline = Date.now() + timeoutMs;
    let seen = '';
    for (;;) {
      const all = which ?? procs.map((p) => p.info.index).filter((i) => procs[i]!.info.running() && !frozen.has(i));
      const allSts = await Promise.all(all.map((i) => tryStatus(i)));
      // Explicitly named nodes count whatever their membership; by default only members do.
      const idx = which ? all : all.filter((_, k) => isMember(allSts[k]));
      const sts = which ? allSts : allSts.filter((s) => isMember(s));
      const reps = sts.map((s) => s?.replication);
      // Divergence is final until a resync: waiting longer would only hide the reason.
      const d = reps.findIndex((r) => r?.diverged);
      if (d >= 0) throw new Error(`node ${idx[d]! + 1} diverged: ${reps[d]!.divergedReason ?? '(no reason given)'} (${idx.map((i, j) => `n${i + 1}:${describe(sts[j])}`).join(' ')})`);
      const k = reps.findIndex((r) => r?.role === 'leader');
      if (k >= 0) {
        const commit = reps[k]!.commit;
        if (reps.every((r) => r && r.applied === commit && r.leader === idx[k]! + 1 && !r.diverged)) return { leader: idx[k]!, commit };
      }
      seen = idx.map((i, j) => `n${i + 1}:${describe(sts[j])}`).join(' ');
      if (Date.now() > deadline) throw new Error(`not converged within ${timeoutMs} ms (${seen})`);
      await sleep(100);
    }
  };

  const dumpLogs = (tailChars = 6000): string =>
    procs
      .map((p) => {
        const dbLog = engine === 'postgres' ? join(p.info.dataDir, 'postgres', 'postgres.log') : join(p.info.dataDir, 'mariadb', 'mariadbd.log');
        // Aborted-connection warnings (health pings) would bury the lines that matter.
        const db = existsSync(dbLog)
          ? readFileSync(dbLog, 'utf8')
              .split('\n')
              .filter((l) => !l.includes('Aborted connection'))
              .join('\n')
              .slice(-Math.min(tailChars, 3000))
          : `(no ${engine === 'postgres' ? 'postgres' : 'mariadbd'} log)`;
        return `===== node ${p.info.nodeId} recall output (tail) =====\n${p.out.slice(-tailChars)}\n===== node ${p.info.nodeId} ${engine === 'postgres' ? 'postgres' : 'mariadbd'}.log (tail) =====\n${db}`;
      })
      .join('\n');

  const stop = async () => {
    if (stopped) return;
    stopped = true;
    // A stopped process would sit on SIGTERM until the 30 s SIGKILL.
    for (const i of [...frozen]) thaw(i);
    await Promise.all(
      procs.map(async (p) => {
        if (p.child && p.info.running()) {
          p.child.kill('SIGTERM');
          await waitExit(p.child, 30_000);
        }
        // A mariadbd orphaned by a kill -9 of its recall is still ours to stop.
        const pid = p.info.dbPid();
        if (pid) {
          // postgres: SIGINT is the fast shutdown (SIGTERM would wait for its sessions)
          process.kill(pid, engine === 'postgres' ? 'SIGINT' : 'SIGTERM');
          const deadline = Date.now() + 15_000;
          while (p.info.dbPid() === pid && Date.now() < deadline) await sleep(50);
          if (p.info.dbPid() === pid) process.kill(pid, 'SIGKILL');
        }
      }),
    );
    await Promise.all([...relays.values()].map((r) => r.close()));
    if (!process.env.RECALL_TEST_KEEP) root.remove();
  };

  const waitHealth = async (i: number, timeoutMs: number): Promise<void> => {
    const p = procs[i]!;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!p.info.running()) throw new Error(`node ${i + 1} exited before its admin answered:\n${p.out.slice(-4000)}`);
      try {
        const r = await fetch(`http://127.0.0.1:${p.info.adminPort}/health`, { signal: AbortSignal.timeout(3000) });
        if (r.status === 200) return;
      } catch {
        /* not listening yet */
      }
      if (Date.now() > deadline) throw new Error(`node ${i + 1}: admin /health not answering within ${timeoutMs} ms`);
      await sleep(150);
    }
  };

  const addJoiners = async (count: number, o: { extraArgs?: string[]; healthTimeoutMs?: number } = {}): Promise<ClusterNode[]> => {
    const fresh: NodeProc[] = [];
    const newPorts = await distinctFreePorts(count * portsPerNode);
    for (let k = 0; k < count; k++) fresh.push(newProc(procs.length + k, newPorts.slice(k * portsPerNode, (k + 1) * portsPerNode)));
    procs.push(...fresh);
    const direct = procs.map((q) => `127.0.0.1:${q.info.peerPort}`);
    for (const p of fresh) {
      p.args = [...serveArgs(p, direct), '--join', ...(o.extraArgs ?? [])];
      cluster.nodes.push(p.info);
      spawnNode(p);
    }
    await Promise.all(fresh.map((p) => waitHealth(p.info.index, o.healthTimeoutMs ?? readyTimeoutMs)));
    return fresh.map((p) => p.info);
  };

  const stopNode = async (i: number): Promise<void> => {
    const p = procs[i]!;
    if (!p.child || !p.info.running()) return;
    if (frozen.has(i)) thaw(i);
    p.child.kill('SIGTERM');
    await waitExit(p.child, 30_000);
  };

  const cluster: TestCluster = {
    secret,
    addJoiners,
    stopNode,
    nodes: procs.map((p) => p.info),
    relay,
    status,
    tryStatus,
    waitLeader,
    kill,
    killDatabase,
    restart,
    waitReady,
    cut,
    heal,
    freeze,
    thaw,
    delay,
    healAll,
    dbQuery,
    pgQuery,
    pgChecksums,
    checksums,
    waitConverged,
    dumpLogs,
    stop,
  };

  try {
    for (const p of procs) spawnNode(p);
    await Promise.all(procs.map((p) => waitReady(p.info.index)));
    // Roles live outside the replicated databases: the same password set on every node's own
    // server lets a test log in through Recall as the superuser and create its roles there.
    if (engine === 'postgres' && postgresAuth !== 'trust') {
      for (const p of procs) await dbQuery(p.info.index, `SET password_encryption = '${postgresAuth === 'md5' ? 'md5' : 'scram-sha-256'}'; ALTER ROLE postgres PASSWORD '${pgSuperuserPassword}'`);
    }
  } catch (err) {
    const logs = dumpLogs();
    await stop();
    throw new Error(`${(err as Error).message}\n${logs}`);
  }
  return cluster;
}
