// `recall join`, `recall remove` and `recall members`: membership changes through any
// member's admin HTTP (/members); the member forwards them to the leader.
//
// join: the new replica must already run `recall serve --join --node-id N --replicas <every
// member's peer address, its own included>`; this asks the cluster to add it as a learner,
// waits while it receives the database and catches up (printing its progress every second),
// then it becomes a voter. Plain node:http rather than fetch: fetch gives up waiting for the
// answer's headers after 5 minutes, and copying a large database can take longer.
import http from 'node:http';
import { parseHostPort } from '../util/ports.js';

export interface MembersArgs {
  admin: string;
  secret?: string;
  json?: boolean;
  /** Where progress and results go (tests capture them). */
  out?: (text: string) => void;
  err?: (text: string) => void;
}

interface Member {
  id: number;
  role: string;
  address?: string;
  leader?: boolean;
  match?: number;
  connected?: boolean;
  applied?: number;
}

interface Change {
  op: string;
  id: number;
  phase: string;
  startedAt?: string;
  match?: number;
  applied?: number;
  commit?: number;
  resync?: { state: string; progress?: { phase: string; bytes: number; totalBytes?: number; bytesPerSec: number; etaSec?: number } };
}

interface View {
  from?: number;
  leader?: number;
  term?: number;
  commit?: number;
  voters?: number[];
  learners?: number[];
  members?: Member[];
  change?: Change;
  local?: boolean;
}

interface HttpAnswer {
  status: number;
  body: unknown;
}

const progressIntervalMs = 1000;

/** One JSON request to an admin endpoint; rejects only when there is no HTTP answer at all. */
export function adminRequest(admin: string, method: string, path: string, opts: { body?: unknown; secret?: string; timeoutMs?: number } = {}): Promise<HttpAnswer> {
  const hp = parseHostPort(admin);
  if (!hp) return Promise.reject(new Error(`--admin "${admin}" is not host:port`));
  const payload = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: hp.host,
        port: hp.port,
        method,
        path,
        headers: {
          Accept: 'application/json',
          ...(payload ? { 'Content-Type': 'application/json', 'Content-Length': payload.length } : {}),
          ...(opts.secret ? { 'X-Recall-Secret': opts.secret } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {
            /* not JSON: keep the text for the message */
          }
          resolve({ status: res.statusCode ?? 0, body });
        });
      },
    );
    if (opts.timeoutMs) req.setTimeout(opts.timeoutMs, () => req.destroy(new Error(`no answer within ${Math.round(opts.timeoutMs! / 1000)} s`)));
    req.on('error', reject);
    req.end(payload);
  });
}

function errorText(a: HttpAnswer): string {
  const b = a.body as { error?: unknown } | string;
  if (b && typeof b === 'object' && typeof b.error === 'string') return b.error;
  return `HTTP ${a.status}${typeof b === 'string' && b ? `: ${b.slice(0, 200)}` : ''}`;
}

/** The members as an aligned table, the leader marked. */
export function formatMembers(v: View): string {
  const rows = [['node', 'role', 'address', 'match', 'link']];
  for (const m of v.members ?? []) {
    rows.push([
      String(m.id),
      m.role + (m.leader ? ' (leader)' : ''),
      m.address ?? '?',
      m.match !== undefined ? String(m.match) : '-',
      m.connected === undefined ? (m.id === v.from ? 'self' : '-') : m.connected ? 'up' : 'DOWN',
    ]);
  }
  const width = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const head = `leader ${v.leader || 'none'}, term ${v.term ?? '?'}, commit ${v.commit ?? '?'}: voters ${(v.voters ?? []).join(',') || 'none'}; learners ${(v.learners ?? []).join(',') || 'none'}${v.local ? `  (node ${v.from}'s own view: no leader answered)` : ''}`;
  const lines = rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(width[i]!))).join('  ').trimEnd());
  const change = v.change ? [`change in progress: ${describeChange(v.change)}`] : [];
  return [head, ...lines, ...change].join('\n') + '\n';
}

function describeChange(c: Change): string {
  const parts = [`${c.op} node ${c.id}: ${c.phase}`];
  if (c.match !== undefined && c.commit !== undefined) parts.push(`log ${c.match}/${c.commit}`);
  if (c.applied !== undefined && c.commit !== undefined) parts.push(`database ${c.applied}/${c.commit}`);
  const p = c.resync?.progress;
  if (c.resync) {
    const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;
    parts.push(
      p
        ? `resync ${p.phase} ${mb(p.bytes)}${p.totalBytes ? ` of ${mb(p.totalBytes)}` : ''} at ${mb(p.bytesPerSec)}/s${p.etaSec !== undefined ? `, ETA ${Math.round(p.etaSec)} s` : ''}`
        : `resync ${c.resync.state}`,
    );
  }
  if (c.startedAt) parts.push(`${Math.round((Date.now() - Date.parse(c.startedAt)) / 1000)} s`);
  return parts.join(', ');
}

export async function membersCommand(a: MembersArgs): Promise<number> {
  const out = a.out ?? ((t) => process.stdout.write(t));
  const err = a.err ?? ((t) => process.stderr.write(t));
  try {
    const r = await adminRequest(a.admin, 'GET', '/members', { timeoutMs: 15_000 });
    if (r.status !== 200) {
      err(`members: ${errorText(r)}\n`);
      return 1;
    }
    out(a.json ? JSON.stringify(r.body, null, 2) + '\n' : formatMembers(r.body as View));
    return 0;
  } catch (e) {
    err(`members: cannot reach http://${a.admin}/members: ${(e as Error).message} (is recall serve running with --listen-admin ${a.admin}?)\n`);
    return 1;
  }
}

export async function joinCommand(a: MembersArgs & { nodeId: number; peer: string; voter?: boolean; replace?: number; timeoutS?: number }): Promise<number> {
  const out = a.out ?? ((t) => process.stdout.write(t));
  const err = a.err ?? ((t) => process.stderr.write(t));
  if (!parseHostPort(a.peer)) {
    err(`join: --peer "${a.peer}" is not host:port (the new replica's peer listener, as the others reach it)\n`);
    return 2;
  }
  const body = {
    id: a.nodeId,
    address: a.peer,
    ...(a.voter === false ? { voter: false } : {}),
    ...(a.replace !== undefined ? { replace: a.replace } : {}),
    ...(a.timeoutS ? { timeoutMs: a.timeoutS * 1000 } : {}),
  };
  out(`join: asking ${a.admin} to add node ${a.nodeId} at ${a.peer}${a.replace !== undefined ? ` in place of node ${a.replace}` : ''}\n`);
  let done = false;
  const progress = (async () => {
    let last = '';
    while (!done) {
      await new Promise((r) => setTimeout(r, progressIntervalMs));
      if (done) break;
      try {
        const r = await adminRequest(a.admin, 'GET', '/members', { timeoutMs: 5000 });
        const c = (r.body as View | undefined)?.change;
        const line = c ? describeChange(c) : '';
        if (line && line !== last && !done) out(`  ${line}\n`);
        last = line;
      } catch {
        /* progress is best effort; the POST answers for the result */
      }
    }
  })();
  try {
    const r = await adminRequest(a.admin, 'POST', '/members', { body, secret: a.secret });
    done = true;
    await progress;
    if (r.status !== 200) {
      err(`join: ${errorText(r)}\n`);
      return 1;
    }
    out(a.json ? JSON.stringify(r.body, null, 2) + '\n' : `join: node ${a.nodeId} added\n${formatMembers(r.body as View)}`);
    return 0;
  } catch (e) {
    done = true;
    await progress;
    err(`join: no answer from http://${a.admin}/members: ${(e as Error).message}; the change may still complete (check with recall members --admin ${a.admin})\n`);
    return 1;
  }
}

export async function removeCommand(a: MembersArgs & { nodeId: number }): Promise<number> {
  const out = a.out ?? ((t) => process.stdout.write(t));
  const err = a.err ?? ((t) => process.stderr.write(t));
  try {
    const r = await adminRequest(a.admin, 'DELETE', `/members/${a.nodeId}`, { secret: a.secret, timeoutMs: 120_000 });
    if (r.status !== 200) {
      err(`remove: ${errorText(r)}\n`);
      return 1;
    }
    out(a.json ? JSON.stringify(r.body, null, 2) + '\n' : `remove: node ${a.nodeId} removed\n${formatMembers(r.body as View)}`);
    return 0;
  } catch (e) {
    err(`remove: no answer from http://${a.admin}/members: ${(e as Error).message}; the change may still complete (check with recall members --admin ${a.admin})\n`);
    return 1;
  }
}
