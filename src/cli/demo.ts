// `recall demo`: a local cluster on this machine, each replica with its own managed
// database and data directory under --dir, a self-signed TLS certificate, progress on
// stdout while the databases initialise, and Ctrl-C to stop it all.
// Replica i (0-based) listens on the default ports + i: MySQL 8500+i, PostgreSQL 8532+i,
// peer 8600+i, admin 8700+i (shifted together by --port-base).
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { configureLogging, type LogFormat } from '../util/log.js';
import { loadConfig, type RecallConfig } from '../config/load.js';
import { ConfigError } from '../config/errors.js';
import { findServerBinary } from '../supervisor/binaries.js';
import type { ManagedState } from '../supervisor/mariadb.js';
import { startNode, type RunningNode } from './node.js';
import { shutdownSignal } from './serve.js';

export interface DemoArgs {
  dir: string;
  replicas: number;
  engine: string;
  portBase: number;
  debug?: boolean;
  logFormat?: LogFormat;
}

// Replicas the demo can run before replication exists (later issues raise it).
const demoReplicasMax = 1;

const say = (line: string) => process.stdout.write(line + '\n');

/** The configuration of demo replica i, built through the normal loader so it is validated. */
export function demoReplicaConfig(args: DemoArgs, i: number, certDir: string): RecallConfig {
  const base = args.portBase;
  const peers = Array.from({ length: args.replicas }, (_, j) => `127.0.0.1:${base + 100 + j}`);
  return loadConfig({
    env: {},
    flags: {
      'node-id': String(i + 1),
      replicas: peers.join(','),
      engine: args.engine,
      'listen-mysql': `127.0.0.1:${base + i}`,
      'listen-postgres': `127.0.0.1:${base + 32 + i}`,
      'listen-peer': peers[i],
      'listen-admin': `127.0.0.1:${base + 200 + i}`,
      'data-dir': join(resolve(args.dir), `replica-${i + 1}`),
      'tls-cert': join(certDir, 'cert.pem'),
      'tls-key': join(certDir, 'key.pem'),
      debug: args.debug,
      'log-format': args.logFormat,
    },
  });
}

/** A self-signed certificate for localhost, made once with openssl. */
export function ensureDemoCertificate(certDir: string): void {
  const cert = join(certDir, 'cert.pem');
  const key = join(certDir, 'key.pem');
  if (existsSync(cert) && existsSync(key)) return;
  mkdirSync(certDir, { recursive: true });
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '825', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
}

/** Makes sure a database server is installed, running scripts/setup.sh once if not. */
function ensureServerInstalled(): void {
  try {
    findServerBinary();
    return;
  } catch {
    /* install below */
  }
  const setup = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'scripts', 'setup.sh');
  const alt = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'scripts', 'setup.sh');
  const script = existsSync(setup) ? setup : alt;
  say('installing the database server (scripts/setup.sh) ...');
  const r = spawnSync('bash', [script], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error('scripts/setup.sh failed; install mariadb-server and try again');
  findServerBinary();
}

export async function demoCommand(args: DemoArgs): Promise<number> {
  if (!Number.isInteger(args.replicas) || args.replicas < 1 || args.replicas > demoReplicasMax) {
    process.stderr.write(`demo: --replicas ${args.replicas}: this version runs ${demoReplicasMax} replica (replication arrives in a later version) (example: --replicas 1)\n`);
    return 2;
  }
  if (args.engine !== 'mysql') {
    process.stderr.write(`demo: --engine ${args.engine}: only mysql is available in this version (example: --engine mysql)\n`);
    return 2;
  }
  configureLogging({ debug: args.debug, format: args.logFormat, quiet: !args.debug });
  const dir = resolve(args.dir);
  mkdirSync(dir, { recursive: true });
  const certDir = join(dir, 'tls');
  let configs: RecallConfig[];
  try {
    ensureServerInstalled();
    ensureDemoCertificate(certDir);
    configs = Array.from({ length: args.replicas }, (_, i) => demoReplicaConfig(args, i, certDir));
  } catch (err) {
    process.stderr.write(`demo: ${(err as Error).message}\n`);
    return err instanceof ConfigError ? 2 : 1;
  }

  const signal = shutdownSignal();
  let interrupted = false;
  void signal.then(() => {
    interrupted = true;
    say('stopping ...');
  });
  say(`Recall demo: ${args.replicas} replica(s), data in ${dir}`);
  const nodes: RunningNode[] = [];
  const stopAll = async () => {
    for (const n of nodes.reverse()) await n.stop();
  };
  for (const cfg of configs) {
    const started = Date.now();
    const progress = (s: ManagedState) => {
      const secs = ((Date.now() - started) / 1000).toFixed(1);
      const text: Partial<Record<ManagedState, string>> = {
        initializing: `initialising a new MariaDB data directory in ${join(cfg.dataDir, 'mariadb')} ...`,
        starting: 'starting MariaDB ...',
        running: `MariaDB running (${secs} s)`,
        crashed: 'MariaDB stopped unexpectedly; restarting',
      };
      if (text[s]) say(`  replica ${cfg.nodeId}: ${text[s]}`);
    };
    try {
      nodes.push(await startNode(cfg, { onManagedState: progress }));
    } catch (err) {
      const msg = (err as Error).message;
      const hint = /EADDRINUSE/.test(msg) ? ' (is another recall running? pick other ports with --port-base)' : '';
      process.stderr.write(`demo: replica ${cfg.nodeId} failed to start: ${msg}${hint}\n`);
      await stopAll();
      return 1;
    }
    if (interrupted) break;
  }
  if (!interrupted) {
    say('');
    say('Recall is ready. Connect with the MariaDB client:');
    for (const [i, n] of nodes.entries()) {
      say(`  mariadb -h 127.0.0.1 -P ${n.mysqlPort || configs[i]!.listen.mysql.split(':')[1]} -u root            # replica ${n.nodeId}`);
    }
    say(`  mariadb -h 127.0.0.1 -P ${nodes[0]!.mysqlPort || args.portBase} -u root --ssl      # TLS (self-signed certificate in ${certDir})`);
    say('Status and metrics:');
    say(`  recall status --admin 127.0.0.1:${nodes[0]!.adminPort}      http://127.0.0.1:${nodes[0]!.adminPort}/metrics`);
    say('Press Ctrl-C to stop.');
  }
  await signal;
  await stopAll();
  say('stopped.');
  return 0;
}
