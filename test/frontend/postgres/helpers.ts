// Shared set-up for the PostgreSQL frontend tests: a real postgres (ManagedPostgres in a temp dir)
// whose pg_hba makes every role but the superuser authenticate with its password (md5 method:
// SCRAM for SCRAM verifiers, md5 for md5 ones), test roles of each kind, and frontends on it.
import { execFileSync } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { ManagedPostgres } from '../../../src/supervisor/postgres.js';
import { PostgresFrontend, type PostgresFrontendOptions } from '../../../src/frontend/postgres/server.js';
import { tempDir } from '../../harness/tmp.js';

export interface TestPostgres {
  server: ManagedPostgres;
  port: number;
  socketDir: string;
  /** Runs SQL as the superuser over the private socket (set-up only, not under test). */
  admin(sql: string, params?: unknown[]): Promise<pg.QueryResult>;
  stop(): Promise<void>;
}

/** Roles: alice (SCRAM), bob (md5), nopw (no password), nologin (may not log in); database app owned by alice. */
export const ROLES = { alice: 'alice-pw', bob: 'bob-pw' } as const;

// Recall's own admin connection keeps trust over the private socket; everyone else gives a password.
const HBA = `
local all postgres trust
host  all postgres 127.0.0.1/32 trust
local all all md5
host  all all 127.0.0.1/32 md5
`;

export async function startPostgres(extraArgs: string[] = []): Promise<TestPostgres> {
  const dir = tempDir('recall-pgfe-');
  // mkdtemp makes 0700 directories; the unprivileged postgres user must be able to enter it
  chmodSync(dir.path, 0o755);
  const server = new ManagedPostgres({ dataDir: join(dir.path, 'db'), port: 0, startTimeoutMs: 60000, stopTimeoutMs: 10000, autoRestart: false, extraArgs });
  try {
    await server.start();
    writeFileSync(join(dir.path, 'db', 'pg_hba.conf'), HBA);
    const admin = new pg.Client({ host: server.socketDir, port: server.port, user: 'postgres', database: 'postgres' });
    await admin.connect();
    try {
      await admin.query('SELECT pg_reload_conf()');
      await admin.query(`CREATE ROLE alice LOGIN PASSWORD '${ROLES.alice}'`);
      await admin.query(`SET password_encryption = 'md5'; CREATE ROLE bob LOGIN PASSWORD '${ROLES.bob}'; RESET password_encryption`);
      await admin.query('CREATE ROLE nopw LOGIN');
      await admin.query(`CREATE ROLE nologin NOLOGIN PASSWORD 'x'`);
      await admin.query('CREATE DATABASE app OWNER alice');
      await admin.query('GRANT ALL ON DATABASE app TO bob');
    } finally {
      await admin.end();
    }
  } catch (e) {
    await server.stop();
    dir.remove();
    throw e;
  }
  return {
    server,
    port: server.port,
    socketDir: server.socketDir,
    async admin(sql, params) {
      const c = new pg.Client({ host: server.socketDir, port: server.port, user: 'postgres', database: 'app' });
      await c.connect();
      try {
        return await c.query(sql, params);
      } finally {
        await c.end();
      }
    },
    async stop() {
      await server.stop();
      dir.remove();
    },
  };
}

export function frontendOptions(db: TestPostgres, extra: Partial<PostgresFrontendOptions> = {}): PostgresFrontendOptions {
  return {
    host: '127.0.0.1',
    port: 0,
    backend: { host: '127.0.0.1', port: db.port, socketDir: db.socketDir },
    admin: { host: db.socketDir, port: db.port, user: 'postgres' },
    authTimeoutMs: 10_000,
    ...extra,
  };
}

export async function startFrontend(db: TestPostgres, extra: Partial<PostgresFrontendOptions> = {}): Promise<{ frontend: PostgresFrontend; port: number }> {
  const frontend = new PostgresFrontend(frontendOptions(db, extra));
  const { port } = await frontend.listen();
  return { frontend, port };
}

/** A node-postgres client through Recall. */
export async function connect(port: number, config: pg.ClientConfig = {}): Promise<pg.Client> {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'alice', password: ROLES.alice, database: 'app', ...config });
  await c.connect();
  return c;
}

/** A self-signed certificate made with openssl. */
export function selfSignedCert(): { cert: string; key: string } {
  const dir = tempDir('recall-tls-');
  try {
    const key = join(dir.path, 'key.pem');
    const cert = join(dir.path, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-days', '1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
    return { cert: readFileSync(cert, 'utf8'), key: readFileSync(key, 'utf8') };
  } finally {
    dir.remove();
  }
}
