// Shared set-up for the compatibility tests: one real mariadbd, a self-signed certificate, and the
// two targets every test compares — "direct" (the mariadbd itself) and "recall" (Recall's MySQL
// front end relaying to that same mariadbd). Each side works in its own database so they never
// collide; results are compared after replacing the database name.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestMariaDB } from '../harness/mariadb.js';
import { startRecall, type RunningRecall } from '../harness/recall.js';

export interface Target {
  name: 'direct' | 'recall';
  host: string;
  port: number;
  /** The database this side works in; the other side uses a different one. */
  db: string;
}

export interface Cert {
  dir: string;
  certFile: string;
  keyFile: string;
  cert: string;
  key: string;
}

export interface CompatEnv {
  direct: Target;
  recall: Target;
  /** Same mariadbd, TLS-capable direct side and a TLS-capable Recall. */
  cert: Cert;
  socketPath: string;
  /** What the Recall process logged (for failure messages). */
  recallOutput(): string;
  stop(): Promise<void>;
}

// Big enough for the 33 MiB BLOB sent as an X'…' hex literal (66 MiB) in the text protocol.
export const packetBytesMax = 128 * 1024 * 1024;

export function makeCert(): Cert {
  const dir = mkdtempSync(join(tmpdir(), 'recall-cert-'));
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=127.0.0.1',
      '-keyout', keyFile, '-out', certFile],
    { stdio: 'ignore' },
  );
  return { dir, certFile, keyFile, cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') };
}

/**
 * Starts mariadbd (TLS on, big packets) and Recall's front end in front of it.
 * `prefix` names the two databases: `${prefix}_d` (direct) and `${prefix}_r` (through Recall).
 */
export async function startCompatEnv(prefix: string): Promise<CompatEnv> {
  const cert = makeCert();
  const maria = await startTestMariaDB({
    extraArgs: [
      '--character-set-server=utf8mb4',
      '--collation-server=utf8mb4_general_ci',
      `--ssl-cert=${cert.certFile}`,
      `--ssl-key=${cert.keyFile}`,
      `--max-allowed-packet=${packetBytesMax}`,
      '--local-infile=1',
    ],
  });
  let recall: RunningRecall | undefined;
  try {
    // A real `recall serve` process (not managed: it relays to the mariadbd above).
    recall = await startRecall({
      dsn: `mysql://root@localhost/?socket=${encodeURIComponent(maria.socketPath)}`,
      extraArgs: [
        '--tls-cert', cert.certFile, '--tls-key', cert.keyFile,
        '--max-packet-bytes', String(packetBytesMax),
        '--max-connections', '300',
        '--net-read-timeout-ms', '120000',
      ],
    });
    const running = recall;
    const env: CompatEnv = {
      direct: { name: 'direct', host: '127.0.0.1', port: maria.port, db: `${prefix}_d` },
      recall: { name: 'recall', host: '127.0.0.1', port: running.mysqlPort, db: `${prefix}_r` },
      cert,
      socketPath: maria.socketPath,
      recallOutput: () => running.output(),
      async stop() {
        await running.stop();
        await maria.stop();
        rmSync(cert.dir, { recursive: true, force: true });
      },
    };
    return env;
  } catch (e) {
    await recall?.stop().catch(() => null);
    await maria.stop();
    rmSync(cert.dir, { recursive: true, force: true });
    throw e;
  }
}

/** Runs SQL as root straight on the server's socket (set-up only, not under test). */
export function rootSql(env: { socketPath: string }, sql: string): string {
  return execFileSync('mariadb', ['--no-defaults', '-S', env.socketPath, '-uroot', '--batch', '-e', sql], {
    encoding: 'utf8',
  });
}

/**
 * Creates each side's database and an account with all privileges on both, from any host and
 * from localhost (the backend sees Recall's local connection).
 */
export function createSideDatabases(env: CompatEnv, user: string, password: string): void {
  for (const t of [env.direct, env.recall]) {
    rootSql(env, `CREATE DATABASE ${t.db} CHARACTER SET utf8mb4`);
    for (const host of ['%', 'localhost']) {
      rootSql(env, `CREATE USER IF NOT EXISTS '${user}'@'${host}' IDENTIFIED BY '${password}';
        GRANT ALL ON ${t.db}.* TO '${user}'@'${host}'`);
    }
  }
}

/** Replaces a side's database name so two sides' outputs can be compared. */
export function normalizeDb(text: string, t: Target): string {
  return text.split(t.db).join('<db>');
}
