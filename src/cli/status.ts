// `recall status`: asks replicas' admin HTTP for /status and prints one row per replica:
// node id, role (learner, joining and removed from the membership), term, leader, commit
// and applied index, lag, diverged, connectivity; then the membership.
// Given one admin address, the other replicas are found from its replication peers: their
// peer addresses, with the admin port at the same distance from the peer port as on the
// asked replica (the demo and a fleet of hosts with the same ports both lay it out so).
// Several --admin flags name the replicas explicitly and nothing is discovered.
import { formatHostPort, parseHostPort } from '../util/ports.js';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export interface PeerStatus {
  id: number;
  address: string;
  match?: number;
  lag?: number;
  connected?: boolean;
}

/** The agreed `replication` field of /status (absent while replication is not running). */
export interface ReplicationStatus {
  role: string;
  /** This replica's own peer address, when the replica says it. */
  address?: string;
  term: number;
  leader: number;
  leaderAddress?: string;
  commit: number;
  applied: number;
  lastIndex?: number;
  diverged: boolean;
  divergedReason?: string;
  peers: PeerStatus[];
  /** A full resync of this replica (absent or state 'idle' when none runs). */
  resync?: ResyncReport;
}

export interface ResyncReport {
  state: string;
  reason?: string;
  lastError?: string;
  progress?: { phase: string; donor: number; bytes: number; totalBytes?: number; bytesPerSec: number; etaSec?: number };
}

/** The `membership` field of /status: the replica's own view of the configuration. */
export interface MembershipStatus {
  voters: number[];
  learners: number[];
  leader: number;
  term: number;
}

export interface ReplicaStatus {
  nodeId: number;
  database: { state?: string; reachable?: boolean; mode?: string };
  replication?: ReplicationStatus;
  membership?: MembershipStatus;
}

/** One asked admin address: its parsed status and raw body, or why it did not answer. */
export interface ReplicaReport {
  admin: string;
  /** The node id expected at this address (from a peer list or the demo's layout). */
  expectedId?: number;
  status?: ReplicaStatus;
  raw?: Json;
  error?: string;
}

// Assumed when the asked replica does not say its own peer address: the default layout
// (peer 8600+i, admin 8700+i).
const adminMinusPeerDefault = 100;
const askTimeoutMsDefault = 3000;

const isObj = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** Reads a /status body defensively (it comes from the network); undefined if it is not one. */
export function parseStatus(body: unknown): ReplicaStatus | undefined {
  if (!isObj(body)) return undefined;
  const nodeId = num(body.nodeId);
  if (nodeId === undefined) return undefined;
  const db = isObj(body.database) ? body.database : {};
  const out: ReplicaStatus = {
    nodeId,
    database: { state: str(db.state), reachable: typeof db.reachable === 'boolean' ? db.reachable : undefined, mode: str(db.mode) },
  };
  const m = body.membership;
  if (isObj(m)) {
    const ids = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is number => num(x) !== undefined) : []);
    out.membership = { voters: ids(m.voters), learners: ids(m.learners), leader: num(m.leader) ?? 0, term: num(m.term) ?? 0 };
  }
  const r = body.replication;
  if (isObj(r)) {
    const peers: PeerStatus[] = [];
    for (const p of Array.isArray(r.peers) ? r.peers : []) {
      if (!isObj(p) || num(p.id) === undefined || str(p.address) === undefined) continue;
      peers.push({
        id: num(p.id)!,
        address: str(p.address)!,
        match: num(p.match),
        lag: num(p.lag),
        connected: typeof p.connected === 'boolean' ? p.connected : undefined,
      });
    }
    out.replication = {
      role: str(r.role) ?? '?',
      address: str(r.address),
      term: num(r.term) ?? 0,
      leader: num(r.leader) ?? 0,
      leaderAddress: str(r.leaderAddress),
      commit: num(r.commit) ?? 0,
      applied: num(r.applied) ?? 0,
      lastIndex: num(r.lastIndex),
      diverged: r.diverged === true,
      divergedReason: str(r.divergedReason),
      peers,
      ...(r.resync && typeof r.resync === 'object' ? { resync: parseResync(r.resync as Record<string, unknown>) } : {}),
    };
  }
  return out;
}

export async function askReplica(admin: string, timeoutMs = askTimeoutMsDefault, expectedId?: number): Promise<ReplicaReport> {
  const r = await askOnce(admin, timeoutMs);
  return expectedId === undefined ? r : { ...r, expectedId };
}

async function askOnce(admin: string, timeoutMs: number): Promise<ReplicaReport> {
  const hp = parseHostPort(admin);
  if (!hp) return { admin, error: 'not host:port' };
  const url = `http://${formatHostPort(hp)}/status`;
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    if (!r.ok) return { admin, error: `HTTP ${r.status}` };
    const raw = (await r.json()) as Json;
    const status = parseStatus(raw);
    return status ? { admin, status, raw } : { admin, raw, error: 'answer is not a recall /status' };
  } catch (err) {
    const c = (err as { cause?: { code?: string; message?: string; errors?: Array<{ code?: string }> } }).cause;
    return { admin, error: c?.code ?? c?.errors?.[0]?.code ?? c?.message ?? (err as Error).message };
  }
}

/** Admin addresses (and node ids) of the other replicas, from one replica's peer list. */
export function discoverAdmins(admin: string, st: ReplicaStatus): Array<{ admin: string; nodeId: number }> {
  const hp = parseHostPort(admin);
  const peers = st.replication?.peers ?? [];
  if (!hp) return [];
  const selfAddress = st.replication?.address ?? peers.find((p) => p.id === st.nodeId)?.address;
  const selfPeerPort = selfAddress ? parseHostPort(selfAddress)?.port : undefined;
  const delta = selfPeerPort !== undefined ? hp.port - selfPeerPort : adminMinusPeerDefault;
  const out: Array<{ admin: string; nodeId: number }> = [];
  for (const p of [...peers].sort((a, b) => a.id - b.id)) {
    if (p.id === st.nodeId) continue;
    const php = parseHostPort(p.address);
    if (!php || php.port + delta < 1 || php.port + delta > 65535) continue;
    out.push({ admin: formatHostPort({ host: php.host, port: php.port + delta }), nodeId: p.id });
  }
  return out;
}

/**
 * Asks every address (expectedIds[i]: the node id expected at admins[i], if known); with
 * exactly one address, also the replicas it names as peers.
 */
export async function clusterStatus(admins: string[], timeoutMs = askTimeoutMsDefault, expectedIds: number[] = []): Promise<ReplicaReport[]> {
  const reports = await Promise.all(admins.map((a, i) => askReplica(a, timeoutMs, expectedIds[i])));
  if (admins.length === 1 && reports[0]!.status) {
    const more = discoverAdmins(admins[0]!, reports[0]!.status).filter((a) => a.admin !== admins[0]);
    reports.push(...(await Promise.all(more.map((a) => askReplica(a.admin, timeoutMs, a.nodeId)))));
  }
  // By node id; a replica that did not answer and whose id is not known keeps the place of
  // its address.
  const key = (r: ReplicaReport, i: number) => r.status?.nodeId ?? r.expectedId ?? i + 1;
  return reports.map((r, i) => ({ r, k: key(r, i) })).sort((a, b) => a.k - b.k).map((x) => x.r);
}

export interface StatusRow {
  node: string;
  admin: string;
  role: string;
  term: string;
  leader: string;
  commit: string;
  applied: string;
  lag: string;
  diverged: string;
  connectivity: string;
  database: string;
}

const header: StatusRow = {
  node: 'node', admin: 'admin', role: 'role', term: 'term', leader: 'leader', commit: 'commit',
  applied: 'applied', lag: 'lag', diverged: 'diverged', connectivity: 'connectivity', database: 'database',
};

/** The commit index lag is measured against: the leader's, else the highest seen. */
function referenceCommit(reports: ReplicaReport[]): number | undefined {
  const reps = reports.map((r) => r.status?.replication).filter((r): r is ReplicationStatus => !!r);
  const leader = reports.find((r) => r.status?.replication?.role === 'leader')?.status?.replication;
  if (leader) return leader.commit;
  return reps.length ? Math.max(...reps.map((r) => r.commit)) : undefined;
}

/**
 * The engine reports a learner as a follower; the membership says what it is. A node that
 * sees no voters has not been added yet (recall serve --join waiting for recall join); one
 * absent from a non-empty membership was removed.
 */
function memberRole(st: ReplicaStatus, raftRole: string): string {
  const m = st.membership;
  if (!m) return raftRole;
  if (m.learners.includes(st.nodeId)) return 'learner';
  if (m.voters.includes(st.nodeId)) return raftRole;
  return m.voters.length === 0 ? 'joining' : 'removed';
}

/** The membership line: the leader's view (highest term), else any replica's. */
export function membershipLine(reports: ReplicaReport[]): string | undefined {
  const views = reports.map((r) => r.status).filter((s): s is ReplicaStatus => !!s?.membership);
  if (views.length === 0) return undefined;
  views.sort((a, b) => b.membership!.term - a.membership!.term);
  const best = views.find((s) => s.membership!.leader === s.nodeId) ?? views[0]!;
  const m = best.membership!;
  const seen = best.membership!.leader === best.nodeId ? 'the leader' : `node ${best.nodeId}`;
  return `membership (as ${seen} sees it): voters ${m.voters.join(',') || 'none'}; learners ${m.learners.join(',') || 'none'}`;
}

export function statusRows(reports: ReplicaReport[]): StatusRow[] {
  const ref = referenceCommit(reports);
  return reports.map((rep) => {
    const st = rep.status;
    const r = st?.replication;
    const dash = '-';
    const db = st ? (st.database.state ?? (st.database.reachable === false ? 'unreachable' : st.database.reachable ? 'up' : dash)) : dash;
    const others = r ? r.peers.filter((p) => p.id !== st!.nodeId) : [];
    return {
      node: st ? String(st.nodeId) : rep.expectedId !== undefined ? String(rep.expectedId) : '?',
      admin: rep.admin,
      role: r ? memberRole(st!, r.role) : st ? 'not running' : 'down',
      term: r ? String(r.term) : dash,
      leader: r ? (r.leader ? String(r.leader) : 'none') : dash,
      commit: r ? String(r.commit) : dash,
      applied: r ? String(r.applied) : dash,
      lag: r && ref !== undefined ? String(Math.max(0, ref - r.applied)) : dash,
      diverged: r ? (r.diverged ? `YES${r.divergedReason ? ` (${r.divergedReason})` : ''}` : 'no') : dash,
      connectivity: st
        ? r
          ? `${others.filter((p) => p.connected).length}/${others.length} peers`
          : 'admin ok'
        : `no answer (${rep.error ?? 'unknown'})`,
      database: db,
    };
  });
}

/** An aligned table, one row per replica, and a note when replication is not running. */
export function formatTable(reports: ReplicaReport[]): string {
  const rows = [header, ...statusRows(reports)];
  const keys = Object.keys(header) as Array<keyof StatusRow>;
  const width = Object.fromEntries(keys.map((k) => [k, Math.max(...rows.map((r) => r[k].length))])) as Record<keyof StatusRow, number>;
  const lines = rows.map((r) => keys.map((k, i) => (i === keys.length - 1 ? r[k] : r[k].padEnd(width[k]))).join('  ').trimEnd());
  const membership = membershipLine(reports);
  if (membership) lines.push(membership);
  for (const r of reports) {
    const line = r.status?.replication?.resync ? resyncLine(r.status.nodeId, r.status.replication.resync) : undefined;
    if (line) lines.push(line);
  }
  const standalone = reports.filter((r) => r.status && !r.status.replication).map((r) => r.status!.nodeId);
  if (standalone.length) lines.push(`replication: not running on node ${standalone.join(', ')} (each serves its own database alone)`);
  return lines.join('\n') + '\n';
}

/**
 * What the demo redraws on: reachability, role, term, leader, divergence and whether a
 * replica lags at all (not by how much, which changes with every write).
 */
export function tableSignature(reports: ReplicaReport[]): string {
  return statusRows(reports)
    .map((r) => [r.node, r.role, r.term, r.leader, r.diverged, r.lag === '0' || r.lag === '-' ? r.lag : '>0', r.connectivity, r.database].join('|'))
    .join('\n');
}

export async function statusCommand(args: { admin: string | readonly string[]; json?: boolean; timeoutMs?: number }): Promise<number> {
  const admins = (typeof args.admin === 'string' ? [args.admin] : [...args.admin]).flatMap((a) => a.split(',')).map((a) => a.trim()).filter(Boolean);
  if (admins.length === 0) admins.push('127.0.0.1:8700');
  const bad = admins.find((a) => !parseHostPort(a));
  if (bad !== undefined) {
    process.stderr.write(`status: --admin "${bad}" is not host:port (example: --admin 127.0.0.1:8700)\n`);
    return 2;
  }
  const reports = await clusterStatus(admins, args.timeoutMs);
  const answered = reports.filter((r) => r.status).length;
  if (args.json) {
    const out = reports.map((r) => (r.raw !== undefined && r.status ? { admin: r.admin, status: r.raw } : { admin: r.admin, error: r.error ?? 'no answer' }));
    process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  } else {
    process.stdout.write(formatTable(reports));
  }
  if (answered === 0) {
    for (const r of reports) {
      process.stderr.write(`status: cannot reach http://${r.admin}/status: ${r.error} (is recall serve running with --listen-admin ${r.admin}?)\n`);
    }
    return 1;
  }
  return 0;
}

function parseResync(v: Record<string, unknown>): ResyncReport {
  const str = (x: unknown) => (typeof x === 'string' ? x : undefined);
  const num = (x: unknown) => (typeof x === 'number' && Number.isFinite(x) ? x : undefined);
  const p = v.progress && typeof v.progress === 'object' ? (v.progress as Record<string, unknown>) : undefined;
  return {
    state: str(v.state) ?? '?',
    reason: str(v.reason),
    lastError: str(v.lastError),
    ...(p
      ? { progress: { phase: str(p.phase) ?? '?', donor: num(p.donor) ?? 0, bytes: num(p.bytes) ?? 0, totalBytes: num(p.totalBytes), bytesPerSec: num(p.bytesPerSec) ?? 0, etaSec: num(p.etaSec) } }
      : {}),
  };
}

/** "node 2: resync running, transfer 40% (12.3 of 30.1 MB) at 14.7 MB/s, ETA 2 s, from node 1 (reason)". */
export function resyncLine(node: number, r: ResyncReport): string | undefined {
  if (r.state === 'idle') return undefined;
  const mb = (b: number) => (b / 1e6).toFixed(1);
  const p = r.progress;
  let what = '';
  if (p) {
    const pct = p.totalBytes ? ` ${Math.min(100, Math.round((100 * p.bytes) / p.totalBytes))}%` : '';
    const of = p.totalBytes ? ` of ${mb(p.totalBytes)}` : '';
    const eta = p.etaSec !== undefined ? `, ETA ${Math.round(p.etaSec)} s` : '';
    what = `, ${p.phase}${pct} (${mb(p.bytes)}${of} MB) at ${mb(p.bytesPerSec)} MB/s${eta}, from node ${p.donor}`;
  }
  const why = r.reason ? ` (${r.reason})` : '';
  const err = r.lastError ? `; last error: ${r.lastError}` : '';
  return `node ${node}: resync ${r.state}${what}${why}${err}`;
}
