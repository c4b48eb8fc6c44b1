// `recall demo`: a local cluster on this machine. Each replica is its own `recall serve`
// child process with its own managed mariadbd and data directory under --dir, one shared
// cluster secret (kept in --dir so a restart of the demo reuses it) and a self-signed TLS
// certificate. The demo shows progress while the databases initialise, prints how to
// connect, then shows the cluster's state whenever it changes; Ctrl-C stops it all.
// Replica i (0-based) listens on the default ports + i: MySQL 8500+i, PostgreSQL 8532+i,
// peer 8600+i, admin 8700+i (shifted together by --port-base).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import { configureLogging, type LogFormat } from '../util/log.js';
import { loadConfig, type RecallConfig } from '../config/load.js';
import { ConfigError } from '../config/errors.js';
import { findServerBinary } from '../supervisor/binaries.js';
import { shutdownSignal } from './serve.js';
import { ReplicaProcess, stopStaleReplica, type ReplicaEvent } from './demo-replica.js';
import { clusterStatus, formatTable, tableSignature } from './status.js';

export interface DemoArgs {
  dir: string;
  replicas: number;
  engine: string;
  portBase: number;
  debug?: boolean;
  logFormat?: LogFormat;
}

// An odd count: 2n-1 replicas survive n-1 failures; an even one adds a member but no tolerance.
const demoReplicasMax = 7;
const clusterId = 'recall-demo';
const watchIntervalMs = 1000;
// The table is printed again on a change, but not more often than this.
const redrawMinMs = 2000;
const waitingNoteEveryMs = 10_000;
const leaderWaitMaxMs = 30_000;

const say = (line: string) => process.stdout.write(line + '\n');

/** Ports of demo replica i (0-based), named for the progress and error messages. */
export function demoPorts(portBase: number, i: number): { mysql: number; postgres: number; peer: number; admin: number } {
  return { mysql: portBase + i, postgres: portBase + 32 + i, peer: portBase + 100 + i, admin: portBase + 200 + i };
}

/** The `recall serve` flags of demo replica i (the secret goes through the environment). */
export function demoReplicaFlags(args: DemoArgs, i: number, certDir: string): Record<string, string> {
  const peers = Array.from({ length: args.replicas }, (_, j) => `127.0.0.1:${demoPorts(args.portBase, j).peer}`);
  const p = demoPorts(args.portBase, i);
  return {
    'node-id': String(i + 1),
    replicas: peers.join(','),
    'cluster-id': clusterId,
    engine: args.engine,
    'listen-mysql': `127.0.0.1:${p.mysql}`,
    'listen-postgres': `127.0.0.1:${p.postgres}`,
    'listen-peer': peers[i]!,
    'listen-admin': `127.0.0.1:${p.admin}`,
    'data-dir': join(resolve(args.dir), `replica-${i + 1}`),
    'tls-cert': join(certDir, 'cert.pem'),
    'tls-key': join(certDir, 'key.pem'),
    // No role has a password in a fresh postgres: the local demo lets every role in (set one with
    // ALTER ROLE ... PASSWORD and a real deployment keeps scram-sha-256).
    ...(args.engine === 'postgres' ? { 'postgres-auth': 'trust' } : {}),
  };
}

/** The configuration of demo replica i, built through the normal loader so it is validated. */
export function demoReplicaConfig(args: DemoArgs, i: number, certDir: string, secret = 'x'): RecallConfig {
  return loadConfig({ env: {}, flags: { ...demoReplicaFlags(args, i, certDir), 'cluster-secret': secret, debug: args.debug } });
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

/** The cluster secret of this demo directory: made once, then reused by every start. */
export function demoClusterSecret(dir: string): string {
  const path = join(dir, 'cluster-secret');
  if (existsSync(path)) {
    const s = readFileSync(path, 'utf8').trim();
    if (s.length >= 16) return s;
  }
  const s = randomBytes(32).toString('base64url');
  writeFileSync(path, s + '\n', { mode: 0o600 });
  return s;
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

function portFree(port: number): Promise<string | undefined> {
  return new Promise((res) => {
    const s = net.createServer();
    s.once('error', (err: NodeJS.ErrnoException) => res(err.code ?? err.message));
    s.listen(port, '127.0.0.1', () => s.close(() => res(undefined)));
  });
}

/** The first demo port that cannot be bound, as a message, or undefined when all are free. */
async function busyPort(args: DemoArgs): Promise<string | undefined> {
  for (let i = 0; i < args.replicas; i++) {
    for (const [name, port] of Object.entries(demoPorts(args.portBase, i))) {
      if (name === 'postgres') continue; // no PostgreSQL listener in this version
      const err = await portFree(port);
      if (err) return `port ${port} (${name} of replica ${i + 1}) is taken (${err})`;
    }
  }
  return undefined;
}

/** The children's environment: the demo defines their whole configuration itself. */
function childEnv(secret: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('RECALL_') || k === 'RECALL_TEST' || k === 'RECALL_TEST_VERBOSE') env[k] = v;
  }
  // Through the environment, not argv, so that `ps` does not show it.
  env.RECALL_CLUSTER_SECRET = secret;
  return env;
}

function validate(args: DemoArgs): string | undefined {
  const n = args.replicas;
  if (!Number.isInteger(n) || n < 1 || n > demoReplicasMax || n % 2 === 0) {
    return `--replicas ${n}: give an odd number from 1 to ${demoReplicasMax} (2n-1 replicas keep serving while n are up) (example: --replicas 3)`;
  }
  if (args.engine !== 'mysql' && args.engine !== 'postgres') return `--engine ${args.engine}: mysql or postgres (example: --engine postgres)`;
  if (!Number.isInteger(args.portBase) || args.portBase < 1024 || demoPorts(args.portBase, n - 1).admin > 65535) {
    return `--port-base ${args.portBase}: the demo needs ports from it up to +${200 + n - 1} within 1024..65535 (example: --port-base 8500)`;
  }
  return undefined;
}

/**
 * Until every replica knows the same leader (or replication is not running), so that the
 * first write after "ready" does not wait for an election; gives up after leaderWaitMaxMs.
 */
async function awaitLeader(admins: string[], interrupted: () => boolean, secs: () => string): Promise<void> {
  let noted = false;
  for (const end = Date.now() + leaderWaitMaxMs; Date.now() < end && !interrupted(); ) {
    const reps = (await clusterStatus(admins, 1500)).map((r) => r.status?.replication);
    if (reps.every((r) => r === undefined)) return;
    const leader = reps.find((r) => r?.role === 'leader');
    if (leader && reps.every((r) => r?.leader === leader.leader)) {
      say(`  replica ${leader.leader} is the leader (term ${leader.term}, ${secs()} s)`);
      return;
    }
    if (!noted) say('  waiting for the replicas to elect a leader ...');
    noted = true;
    await new Promise((r) => setTimeout(r, 200));
  }
  if (!interrupted()) say(`  no leader after ${leaderWaitMaxMs / 1000} s; the table below shows why (logs in the log files)`);
}

export async function demoCommand(args: DemoArgs): Promise<number> {
  const invalid = validate(args);
  if (invalid) {
    process.stderr.write(`demo: ${invalid}\n`);
    return 2;
  }
  configureLogging({ debug: args.debug, format: args.logFormat, quiet: !args.debug });
  const dir = resolve(args.dir);
  const certDir = join(dir, 'tls');
  const logDir = join(dir, 'logs');
  let secret: string;
  try {
    mkdirSync(dir, { recursive: true });
    ensureServerInstalled();
    ensureDemoCertificate(certDir);
    secret = demoClusterSecret(dir);
    for (let i = 0; i < args.replicas; i++) demoReplicaConfig(args, i, certDir, secret);
  } catch (err) {
    process.stderr.write(`demo: ${(err as Error).message}\n`);
    return err instanceof ConfigError ? 2 : 1;
  }

  const replicas: ReplicaProcess[] = [];
  const signal = shutdownSignal(() => {
    say('second Ctrl-C: killing the replicas without a clean shutdown');
    for (const r of replicas) r.killNow();
  });
  // The terminal closing stops the demo like Ctrl-C (the replicas run in their own process
  // groups and would otherwise outlive it); a crash of the demo itself kills them at once.
  process.on('SIGHUP', () => process.kill(process.pid, 'SIGTERM'));
  process.on('exit', () => {
    for (const r of replicas) r.killNow();
  });
  let interrupted = false;
  void signal.then(() => {
    interrupted = true;
    say('stopping ...');
  });

  for (let i = 0; i < args.replicas; i++) {
    const dataDir = demoReplicaFlags(args, i, certDir)['data-dir']!;
    if (await stopStaleReplica(join(dir, 'run', `replica-${i + 1}.pid`), dataDir)) {
      say(`  replica ${i + 1}: stopped a replica left running by an earlier demo`);
    }
  }
  const busy = await busyPort(args);
  if (busy) {
    process.stderr.write(`demo: ${busy}; is another recall running? pick other ports with --port-base\n`);
    return 1;
  }

  say(`Recall demo: ${args.replicas} replica${args.replicas > 1 ? 's' : ''}, data and logs in ${dir}`);
  const startedAt = Date.now();
  const secs = () => ((Date.now() - startedAt) / 1000).toFixed(1);
  const ready = new Set<number>();
  let startupDone = false;
  let failure: string | undefined;
  let wake: () => void = () => undefined;

  for (let i = 0; i < args.replicas; i++) {
    const nodeId = i + 1;
    const flags = demoReplicaFlags(args, i, certDir);
    const serveArgs = Object.entries(flags).flatMap(([k, v]) => [`--${k}`, v]);
    serveArgs.push('--log-format', 'json', ...(args.debug ? ['--debug'] : []));
    const logPath = join(logDir, `replica-${nodeId}.log`);
    const onEvent = (e: ReplicaEvent) => {
      const tag = `  replica ${nodeId}:`;
      switch (e.kind) {
        case 'initializing':
          say(`${tag} initialising a new MariaDB data directory in ${e.dataDir} ...`);
          break;
        case 'database-running':
          if (!startupDone) say(`${tag} MariaDB running (${secs()} s)`);
          break;
        case 'ready':
          ready.add(nodeId);
          say(startupDone ? `replica ${nodeId} is back and ready` : `${tag} recall ready (${secs()} s)`);
          wake();
          break;
        case 'database-crashed':
          say(`replica ${nodeId}: its MariaDB stopped unexpectedly; recall restarts it (log: ${logPath})`);
          break;
        case 'error':
          if (!startupDone) say(`${tag} error: ${e.message}`);
          failure ??= e.message;
          break;
        case 'exit':
          ready.delete(nodeId);
          if (e.expected) break;
          {
            const how = e.signal ? `signal ${e.signal}` : `exit code ${e.code}`;
            if (e.restartInMs !== null) {
              say(`replica ${nodeId} exited unexpectedly (${how}); restarting it in ${Math.round(e.restartInMs / 1000)} s (log: ${logPath})`);
            } else if (!startupDone) {
              failure = `replica ${nodeId} exited during start-up (${how}): ${failure ?? 'see ' + logPath}`;
            }
          }
          wake();
          break;
      }
    };
    const rp = new ReplicaProcess({
      nodeId,
      serveArgs,
      dataDir: flags['data-dir']!,
      logPath,
      pidPath: join(dir, 'run', `replica-${nodeId}.pid`),
      env: childEnv(secret),
      echo: !!args.debug,
      onEvent,
    });
    replicas.push(rp);
    rp.start();
  }

  const stopAll = async () => {
    await Promise.all(replicas.map((r) => r.stop()));
  };
  void signal.then(() => wake());

  // Start-up: all replicas ready, one failed, or Ctrl-C; a note now and then while waiting.
  let lastNote = Date.now();
  while (!interrupted && ready.size < args.replicas && !replicas.some((r) => !r.running && failure)) {
    await new Promise<void>((r) => {
      const t = setTimeout(r, 1000);
      wake = () => {
        clearTimeout(t);
        r();
      };
    });
    if (Date.now() - lastNote >= waitingNoteEveryMs && ready.size < args.replicas && !interrupted) {
      lastNote = Date.now();
      const waiting = replicas.map((_, i) => i + 1).filter((id) => !ready.has(id));
      say(`  waiting for replica ${waiting.join(', ')} (${secs()} s) ...`);
    }
  }
  if (!interrupted && ready.size < args.replicas) {
    const hint = /EADDRINUSE/.test(failure ?? '') ? ' (is another recall running? pick other ports with --port-base)' : '';
    process.stderr.write(`demo: ${failure ?? 'a replica failed to start'}${hint}\n(logs in ${logDir})\n`);
    await stopAll();
    return 1;
  }
  startupDone = true;
  for (const r of replicas) r.restartOnExit = true;

  const admins = replicas.map((_, i) => `127.0.0.1:${demoPorts(args.portBase, i).admin}`);
  if (!interrupted) await awaitLeader(admins, () => interrupted, secs);
  if (!interrupted) {
    say('');
    if (args.engine === 'postgres') {
      say(`Recall is ready (${secs()} s). Connect with psql to any replica (local demo: no password asked):`);
      for (let i = 0; i < args.replicas; i++) {
        say(`  psql -h 127.0.0.1 -p ${demoPorts(args.portBase, i).postgres} -U postgres            # replica ${i + 1}`);
      }
      say(`  psql "host=127.0.0.1 port=${demoPorts(args.portBase, 0).postgres} user=postgres sslmode=require"   # TLS (self-signed certificate in ${certDir})`);
    } else {
      say(`Recall is ready (${secs()} s). Connect with the MariaDB client to any replica:`);
      for (let i = 0; i < args.replicas; i++) {
        say(`  mariadb -h 127.0.0.1 -P ${demoPorts(args.portBase, i).mysql} -u root            # replica ${i + 1}`);
      }
      say(`  mariadb -h 127.0.0.1 -P ${args.portBase} -u root --ssl      # TLS (self-signed certificate in ${certDir})`);
    }
    say('Cluster state, metrics and logs:');
    say(`  recall status ${admins.map((a) => `--admin ${a}`).join(' ')}`);
    say(`  curl http://${admins[0]}/status      http://${admins[0]}/metrics`);
    say(`  ${join(logDir, 'replica-N.log')}`);
    say('Press Ctrl-C to stop.');
  }

  // Watch: redraw the table when something a reader cares about changed, at most every 2 s.
  let shownSig = '';
  let shownAt = 0;
  while (!interrupted) {
    const reports = await clusterStatus(admins, 1500, admins.map((_, i) => i + 1));
    const sig = tableSignature(reports);
    if (sig !== shownSig && Date.now() - shownAt >= redrawMinMs && !interrupted) {
      say('');
      say(`cluster state at ${new Date().toTimeString().slice(0, 8)}:`);
      process.stdout.write(formatTable(reports));
      shownSig = sig;
      shownAt = Date.now();
    }
    await new Promise<void>((r) => {
      const t = setTimeout(r, watchIntervalMs);
      wake = () => {
        clearTimeout(t);
        r();
      };
    });
  }
  await stopAll();
  say('stopped.');
  return 0;
}
