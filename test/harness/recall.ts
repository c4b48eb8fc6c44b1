// A real `recall serve` process for tests and benchmarks, on free ports, waited on until
// its /ready answers 200. Compiled (npm test): runs `node bin/recall serve`, which needs
// `npm run build`. Under tsx (one test file while developing): runs src/cli/main.ts with
// the tsx loader, so the sources under test are the current ones.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './ports.js';
import { tempDir } from './tmp.js';

export interface StartRecallOptions {
  extraArgs?: string[];
  /** Default: a fresh temp dir, removed by stop(). */
  dataDir?: string;
  /** Default true; false requires dsn. */
  managed?: boolean;
  dsn?: string;
  /** Extra environment (RECALL_* from the test's own environment are not passed on). */
  env?: Record<string, string>;
  readyTimeoutMs?: number;
  /** Options for node itself, before the script (e.g. ['--cpu-prof', '--cpu-prof-dir=/tmp/p']). */
  nodeArgs?: string[];
}

export interface RunningRecall {
  mysqlPort: number;
  adminPort: number;
  dataDir: string;
  process: ChildProcess;
  /** Everything the process wrote to stdout and stderr so far. */
  output(): string;
  /** SIGTERM, wait for a clean exit (SIGKILL after 30 s); resolves with the exit code. */
  stop(): Promise<number | null>;
}

/** The repository root (holds package.json "recall-sql"), from src or from dist. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const p = join(dir, 'package.json');
    if (existsSync(p) && (JSON.parse(readFileSync(p, 'utf8')) as { name?: string }).name === 'recall-sql') return dir;
    dir = dirname(dir);
  }
  throw new Error('repository root not found');
}

/** argv prefix that runs the recall CLI the way this test file is running. */
export function recallCommand(): string[] {
  const root = repoRoot();
  // The loader is named by URL so that it resolves whatever the child's working directory is.
  if (import.meta.url.endsWith('.ts')) return ['--import', import.meta.resolve('tsx'), join(root, 'src', 'cli', 'main.ts')];
  return [join(root, 'bin', 'recall')];
}

/** The environment without RECALL_* variables, so the test's own settings do not leak in. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('RECALL_') || k === 'RECALL_TEST') env[k] = v;
  return { ...env, ...extra };
}

export function waitExit(child: ChildProcess, timeoutMs: number): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

export async function startRecall(opts: StartRecallOptions = {}): Promise<RunningRecall> {
  const tmp = opts.dataDir ? undefined : tempDir('recall-node-');
  const dataDir = opts.dataDir ?? tmp!.path;
  const mysqlPort = await freePort();
  const adminPort = await freePort();
  const peerPort = await freePort();
  const args = [
    ...(opts.nodeArgs ?? []),
    ...recallCommand(),
    'serve',
    '--data-dir', dataDir,
    '--listen-mysql', `127.0.0.1:${mysqlPort}`,
    '--listen-admin', `127.0.0.1:${adminPort}`,
    '--listen-peer', `127.0.0.1:${peerPort}`,
    '--listen-postgres', 'off',
    '--log-format', 'json',
    ...(opts.managed === false || opts.dsn ? ['--no-managed'] : []),
    ...(opts.dsn ? ['--dsn', opts.dsn] : []),
    ...(opts.extraArgs ?? []),
  ];
  const child = spawn(process.execPath, args, { cwd: repoRoot(), env: cleanEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (b: Buffer) => {
    out = (out + b.toString()).slice(-200_000);
    if (process.env.RECALL_TEST_VERBOSE) process.stderr.write(b);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let stopped = false;
  const stop = async () => {
    if (stopped) return child.exitCode;
    stopped = true;
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const code = await waitExit(child, 30000);
    tmp?.remove();
    return code;
  };

  const deadline = Date.now() + (opts.readyTimeoutMs ?? 90000);
  try {
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`recall serve exited with ${child.exitCode ?? child.signalCode} before it was ready:\n${out.slice(-4000)}`);
      }
      try {
        const r = await fetch(`http://127.0.0.1:${adminPort}/ready`, { signal: AbortSignal.timeout(3000) });
        if (r.status === 200) break;
      } catch {
        /* not listening yet */
      }
      if (Date.now() > deadline) throw new Error(`recall serve not ready within ${opts.readyTimeoutMs ?? 90000} ms:\n${out.slice(-4000)}`);
      await new Promise((r) => setTimeout(r, 150));
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { mysqlPort, adminPort, dataDir, process: child, output: () => out, stop };
}
