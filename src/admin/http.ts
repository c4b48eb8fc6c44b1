// Admin HTTP: /health (process up), /ready (ready for traffic), /metrics (Prometheus text)
// and /status (JSON). Plain node:http; every answer is small and computed on request.
import http from 'node:http';
import { registry, clientConnections, databaseReachable } from './metrics.js';
import { logger } from '../util/log.js';

/** A readiness check: resolves with undefined when fine, or with the reason it is not. */
export type ReadyCheck = () => Promise<string | undefined>;

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
    const path = (req.url ?? '/').split('?')[0];
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
        return send(res, 404, { error: `no such path ${path}; try /health, /ready, /metrics, /status` });
    }
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
      ...(this.opts.extraStatus ? await this.opts.extraStatus() : {}),
    };
  }
}

function send(res: http.ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(res.req.method === 'HEAD' ? undefined : text);
}
