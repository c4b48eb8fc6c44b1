// Admin HTTP against a real MariaDB: /health, /ready (200 while the database answers, 503
// with a reason when it does not), /metrics in Prometheus text format, /status JSON.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { AdminHttpServer } from '../../src/admin/http.js';
import { clientConnections, statementsTotal } from '../../src/admin/metrics.js';
import { pingDatabase } from '../../src/supervisor/ping.js';
import { parseDsn, socketDsn } from '../../src/config/dsn.js';
import { startTestMariaDB, type TestMariaDB } from '../harness/mariadb.js';

describe('admin HTTP', () => {
  let db: TestMariaDB;
  let admin: AdminHttpServer;
  let base: string;
  let extraReason: string | undefined;
  before(async () => {
    db = await startTestMariaDB();
    const dsn = parseDsn(socketDsn('mysql', db.socketPath));
    admin = new AdminHttpServer({
      host: '127.0.0.1',
      port: 0,
      nodeId: 3,
      engine: 'mysql',
      version: '0.0.test',
      pingDatabase: () => pingDatabase(dsn, 1000),
      databaseMode: () => ({ mode: 'managed', state: db.server.state, port: db.port }),
      readyChecks: [async () => extraReason],
      extraStatus: () => ({ role: 'leader', term: 7 }),
    });
    const port = await admin.listen();
    base = `http://127.0.0.1:${port}`;
  });
  after(async () => {
    await admin?.close();
    await db?.stop();
  });

  test('/health answers up', async () => {
    const r = await fetch(`${base}/health`);
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { status: 'up' });
  });

  test('/ready is 200 while the database answers and an extra check passes', async () => {
    const r = await fetch(`${base}/ready`);
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { status: 'ready' });
    extraReason = 'catching up: applied 3 of 9';
    const r2 = await fetch(`${base}/ready`);
    assert.equal(r2.status, 503);
    assert.equal(((await r2.json()) as { reason: string }).reason, 'catching up: applied 3 of 9');
    extraReason = undefined;
  });

  test('/metrics is Prometheus text with the connection and statement metrics', async () => {
    clientConnections.set({ protocol: 'mysql' }, 4);
    statementsTotal.inc({ protocol: 'mysql', kind: 'read' }, 2);
    const r = await fetch(`${base}/metrics`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /text\/plain/);
    const text = await r.text();
    assert.match(text, /^# TYPE recall_client_connections gauge$/m);
    assert.match(text, /^recall_client_connections\{protocol="mysql"\} 4$/m);
    assert.match(text, /^recall_statements_total\{protocol="mysql",kind="read"\} 2$/m);
    assert.match(text, /^# TYPE recall_statement_duration_seconds histogram$/m);
    assert.match(text, /^recall_database_reachable 1$/m);
  });

  test('/status is JSON with node id, engine, database state and connections', async () => {
    const r = await fetch(`${base}/status`);
    assert.equal(r.status, 200);
    const s = (await r.json()) as Record<string, unknown>;
    assert.equal(s.nodeId, 3);
    assert.equal(s.engine, 'mysql');
    assert.equal(s.role, 'leader');
    assert.equal(s.term, 7);
    assert.deepEqual(s.database, { mode: 'managed', state: 'running', port: db.port, reachable: true });
    assert.deepEqual(s.connections, { mysql: 4 });
  });

  test('unknown paths are 404 and other methods 405', async () => {
    assert.equal((await fetch(`${base}/nope`)).status, 404);
    assert.equal((await fetch(`${base}/health`, { method: 'POST' })).status, 405);
    const head = await fetch(`${base}/health`, { method: 'HEAD' });
    assert.equal(head.status, 200);
  });

  test('/ready is 503 with a reason once the database is down; /health stays 200', async () => {
    await db.server.stop();
    const r = await fetch(`${base}/ready`);
    assert.equal(r.status, 503);
    const body = (await r.json()) as { status: string; reason: string };
    assert.equal(body.status, 'not ready');
    assert.match(body.reason, /managed database is stopped/);
    assert.equal((await fetch(`${base}/health`)).status, 200);
    const s = (await (await fetch(`${base}/status`)).json()) as { database: { reachable: boolean; error: string } };
    assert.equal(s.database.reachable, false);
    assert.ok(s.database.error.length > 0);
  });
});

test('/ready reports an unreachable external database with the reason', async () => {
  const admin = new AdminHttpServer({
    host: '127.0.0.1',
    port: 0,
    nodeId: 1,
    engine: 'mysql',
    pingDatabase: () => pingDatabase(parseDsn('mysql://root@localhost/?socket=/nonexistent/mysqld.sock'), 500),
    databaseMode: () => ({ mode: 'external' }),
  });
  const port = await admin.listen();
  try {
    const r = await fetch(`http://127.0.0.1:${port}/ready`);
    assert.equal(r.status, 503);
    assert.match(((await r.json()) as { reason: string }).reason, /^local database unreachable: .*ENOENT/);
  } finally {
    await admin.close();
  }
});
