// Admin HTTP: /health (process up), /ready (ready for traffic), /metrics (Prometheus text)
// and /status (JSON). Plain node:http; every answer is small and computed on request.
// With a members API: GET/POST /members and DELETE /members/<id> (membership changes).
import crypto from 'node:crypto';
import http from 'node:http';
import { registry, clientConnections, databaseReachable } from './metrics.js';
import { logger } from '../util/log.js';

/** A readiness check: resolves with undefined when fine, or with the reason it is not. */
export type ReadyCheck = () => Promise<string | undefined>;

/**
 * What /members needs (src/replication/membership.ts provides it). Results are JSON-able
 * objects; a rejection may carry `status` (the HTTP status to answer with) and `code`.
 */
export interface MembersApi {
  list(): Promise<object>;
  add(id: number, address: string, opts: { voter?: boolean; timeoutMs?: number }): Promise<object>;
  remove(id: number): Promise<object>;
  replace(deadId: number, id: number, address: string, opts: { timeoutMs?: number }): Promise<object>;
  /** This member's own view, cheap and synchronous (shown in /status). */
  localView(): object;
}

/** Largest POST /members body accepted. */
const membersBodyBytesMax = 16 * 1024;

export interface AdminHttpOptions {
  host: string;
  port: number;
  nodeId: number;
  engine: string;
  /** Pings the local database; rejects with the reason it cannot be reached. */
  pingDatabase(): Promise<void>;
  /** 'managed' with the supervisor's state, or 'hook'/'external'. */
  databaseMode(): { mode: 'managed' | 'hook' | 'external'; state?: string; port?: number; socketPath?: string; restarts?: number };
  /** More conditions for /ready (later: caught up with the leader). */
  readyChecks?: ReadyCheck[];
  /** More fields for /status (later: role, term, commit and applied index). */
  extraStatus?: () => Record<string, unknown> | Promise<Record<string, unknown>>;
  version?: string;
  /** Enables /members. */
  members?: MembersApi;
  /**
   * When set, POST and DELETE /members require the header X-Recall-Secret with this value
   * (the cluster secret): a membership change can take the cluster down, and the admin port
   * is often opened to a monitoring network for /metrics. GET stays open, like /status.
   */
  membersSecret?: string;
}

export class AdminHttpServer {
  private readonly server: http.Server;
  private readonly startedAt = Date.now();
  private readonly log;

  constructor(private readonly opts: AdminHttpOptions) {
    this.log = logger('admin', { nodeId: opts.nodeId });
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: Error) => {
        this.log.error('admin request failed', { url: req.url, err: err.message });
        if (!res.headersSent) send(res, 500, { error: err.message });
        else res.destroy();
      });
    });
    // Keep admin requests from holding the process open at shutdown.
    this.server.keepAliveTimeout = 1000;
    this.server.requestTimeout = 10000;
  }

  /** Starts listening; resolves with the bound port (useful when port 0 was asked). */
  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port, this.opts.host, () => {
        this.server.off('error', reject);
        const addr = this.server.address();
        resolve(typeof addr === 'object' && addr ? addr.port : this.opts.port);
      });
    });
  }

  get port(): number {
    const addr = this.server.address();
    return typeof addr === 'object' && addr ? addr.port : 0;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  /** Reason the node is not ready, or undefined when it is. */
  async notReadyReason(): Promise<string | undefined> {
    const db = this.opts.databaseMode();
    if (db.mode === 'managed' && db.state !== 'running') return `managed database is ${db.state}`;
    try {
      await this.opts.pingDatabase();
      databaseReachable.set(1);
    } catch (err) {
      databaseReachable.set(0);
      return `local database unreachable: ${(err as Error).message}`;
    }
    for (const check of this.opts.readyChecks ?? []) {
      const reason = await check();
      if (reason) return reason;
    }
    return undefined;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (this.opts.members && (path === '/members' || path.startsWith('/members/'))) return this.handleMembers(req, res, path, this.opts.members);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return send(res, 405, { error: 'method not allowed' });
    }
    switch (path) {
      case '/health':
        return send(res, 200, { status: 'up' });
      case '/ready': {
        const reason = await this.notReadyReason();
        return reason ? send(res, 503, { status: 'not ready', reason }) : send(res, 200, { status: 'ready' });
      }
      case '/metrics': {
        const text = await registry.metrics();
        res.writeHead(200, { 'Content-Type': registry.contentType });
        res.end(text);
        return;
      }
      case '/status':
        return send(res, 200, await this.status());
      default:
        return send(res, 404, { error: `no such path ${path}; try /health, /ready, /metrics, /status${this.opts.members ? ', /members' : ''}` });
    }
  }

  private async handleMembers(req: http.IncomingMessage, res: http.ServerResponse, path: string, api: MembersApi): Promise<void> {
    const method = req.method ?? 'GET';
    const idText = path.startsWith('/members/') ? decodeURIComponent(path.slice('/members/'.length)) : undefined;
    const allowed = idText === undefined ? ['GET', 'HEAD', 'POST'] : ['DELETE'];
    if (!allowed.includes(method)) {
      res.setHeader('Allow', allowed.join(', '));
      return send(res, 405, { error: `method ${method} not allowed on ${path}; use ${allowed.join(' or ')}` });
    }
    if (method !== 'GET' && method !== 'HEAD' && !this.secretOk(req)) {
      return send(res, 401, { error: 'membership changes need the cluster secret in the X-Recall-Secret header (recall join/remove take --cluster-secret or RECALL_CLUSTER_SECRET)' });
    }
    try {
      if (method === 'GET' || method === 'HEAD') return send(res, 200, await api.list());
      if (method === 'DELETE') {
        const id = Number(idText);
        if (!/^\d+$/.test(idText!) || !Number.isSafeInteger(id) || id <= 0) return send(res, 400, { error: `node id must be a positive integer, not "${idText}"` });
        this.log.info('membership: remove requested', { node: id, from: req.socket.remoteAddress });
        return send(res, 200, await api.remove(id));
      }
      const body = await readJson(req, membersBodyBytesMax);
      if (typeof body === 'string') return send(res, 400, { error: body });
      const { id, address, voter, replace, timeoutMs } = body;
      if (typeof id !== 'number' || typeof address !== 'string') return send(res, 400, { error: 'body must be JSON {"id": <node id>, "address": "host:port", "voter"?: true, "replace"?: <dead node id>, "timeoutMs"?: n}' });
      if (voter !== undefined && typeof voter !== 'boolean') return send(res, 400, { error: 'voter must be true or false' });
      if (replace !== undefined && typeof replace !== 'number') return send(res, 400, { error: 'replace must be a node id' });
      if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || !(timeoutMs > 0))) return send(res, 400, { error: 'timeoutMs must be a positive number' });
      this.log.info('membership: add requested', { node: id, address, voter: voter ?? true, replace, from: req.socket.remoteAddress });
      const opts = timeoutMs !== undefined ? { timeoutMs } : {};
      if (replace !== undefined) return send(res, 200, await api.replace(replace, id, address, opts));
      return send(res, 200, await api.add(id, address, { ...opts, ...(voter !== undefined ? { voter } : {}) }));
    } catch (err) {
      const e = err as Error & { status?: unknown; code?: unknown };
      const status = typeof e.status === 'number' && e.status >= 400 && e.status < 600 ? e.status : 500;
      if (status >= 500) this.log.warn('membership request failed', { path, method, error: e.message });
      return send(res, status, { error: e.message, ...(typeof e.code === 'string' ? { code: e.code } : {}) });
    }
  }

  private secretOk(req: http.IncomingMessage): boolean {
    const want = this.opts.membersSecret;
    if (!want) return true;
    const got = req.headers['x-recall-secret'];
    if (typeof got !== 'string') return false;
    // Compare digests: timingSafeEqual needs equal lengths, and the length must not leak either.
    const h = (s: string) => crypto.createHash('sha256').update(s).digest();
    return crypto.timingSafeEqual(h(got), h(want));
  }

  private async status(): Promise<Record<string, unknown>> {
    const db = this.opts.databaseMode();
    let reachable = false;
    let error: string | undefined;
    try {
      await this.opts.pingDatabase();
      reachable = true;
    } catch (err) {
      error = (err as Error).message;
    }
    databaseReachable.set(reachable ? 1 : 0);
    const conns: Record<string, number> = {};
    for (const v of (await clientConnections.get()).values) conns[String(v.labels.protocol)] = v.value;
    return {
      nodeId: this.opts.nodeId,
      engine: this.opts.engine,
      version: this.opts.version,
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      database: { ...db, reachable, ...(error ? { error } : {}) },
      connections: conns,
      ...(this.opts.members ? { membership: this.opts.members.localView() } : {}),
      ...(this.opts.extraStatus ? await this.opts.extraStatus() : {}),
    };
  }
}

/** The request body as a JSON object, or the reason it is not one. */
function readJson(req: http.IncomingMessage, bytesMax: number): Promise<Record<string, unknown> | string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > bytesMax && !done) {
        done = true;
        resolve(`body larger than ${bytesMax} bytes`);
      } else if (!done) chunks.push(c);
    });
    req.on('error', (e) => {
      if (!done) resolve(`reading the body: ${e.message}`);
      done = true;
    });
    req.on('end', () => {
      if (done) return;
      done = true;
      try {
        const v = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
        resolve(v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : 'body must be a JSON object');
      } catch {
        resolve('body is not valid JSON');
      }
    });
  });
}

function send(res: http.ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(res.req.method === 'HEAD' ? undefined : text);
}
