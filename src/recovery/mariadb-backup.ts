// The MariaDB physical backup tools as child processes (backup-tool.ts): mariadb-backup --backup streaming
// xbstream into a file, mbstream -x unpacking a stream from our stdin, mariadb-backup --prepare.
// Failures carry the tail of the tool's stderr, which is where the tools say what went wrong.
import { spawn } from 'node:child_process';
import { accessSync, constants, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Socket } from 'node:net';
import type { AdminTarget } from './types.js';
import { watchTool as watch, type BackupProcess, type BackupTool, type ExtractProcess } from './backup-tool.js';

export { BackupToolError, type BackupProcess, type ExtractProcess, type ToolProcess } from './backup-tool.js';

/** Resolves a tool from PATH and the usual bin directories; `override` wins when given. */
export function findTool(name: 'mariadb-backup' | 'mbstream', override?: string): string {
  if (override) return override;
  // mariabackup is the name before MariaDB 10.5 (and still a symlink on many systems).
  const names = name === 'mariadb-backup' ? ['mariadb-backup', 'mariabackup'] : ['mbstream'];
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/bin', '/usr/local/bin', '/usr/sbin'];
  for (const n of names) {
    for (const d of dirs) {
      if (!d) continue;
      try {
        accessSync(join(d, n), constants.X_OK);
        return join(d, n);
      } catch {
        /* next */
      }
    }
  }
  throw new Error(`${name} not found in PATH (install the mariadb-backup package)`);
}

function optionValue(v: string): string {
  return `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
}

export interface BackupOptions {
  target: AdminTarget;
  /** The server's data directory (mariadb-backup reads the files itself). */
  datadir: string;
  /** Private scratch directory: mariadb-backup's --target-dir and the credentials file. */
  workDir: string;
  /** Copy threads (--parallel). */
  parallel?: number;
  binary?: string;
  extraArgs?: string[];
  /** Write the stream straight into this connected socket instead of a pipe to us. */
  stdoutTo?: Socket;
}

/**
 * mariadb-backup --backup --stream=xbstream to its stdout. The credentials go in a 0600 option
 * file (--defaults-file, which also keeps the host's my.cnf out) rather than on the command line.
 */
export function startBackup(o: BackupOptions): BackupProcess {
  const tool = findTool('mariadb-backup', o.binary);
  const cnf = join(o.workDir, 'client.cnf');
  const lines = ['[client]', `user=${optionValue(o.target.user)}`, `password=${optionValue(o.target.password)}`];
  if (o.target.socketPath) lines.push(`socket=${optionValue(o.target.socketPath)}`);
  if (o.target.host) lines.push(`host=${optionValue(o.target.host)}`);
  if (o.target.port) lines.push(`port=${o.target.port}`);
  writeFileSync(cnf, lines.join('\n') + '\n', { mode: 0o600 });
  const args = [
    `--defaults-file=${cnf}`,
    '--backup',
    '--stream=xbstream',
    `--target-dir=${join(o.workDir, 'target')}`,
    `--datadir=${o.datadir}`,
    `--parallel=${o.parallel ?? 2}`,
    // The redo log copier polls every second by default, and the backup's end waits for its
    // next poll: up to a second added to every backup, a third of a small one.
    '--log-copy-interval=20',
    ...(o.extraArgs ?? []),
  ];
  // stdoutTo: the stream goes straight into that socket (its fd is the tool's stdout; see snapshot-direct.ts)
  const child = spawn(tool, args, { stdio: ['ignore', o.stdoutTo ?? 'pipe', 'pipe'] });
  return { ...watch('mariadb-backup --backup', child), stdout: child.stdout! };
}

/** mbstream -x -C dir, fed through stdin. */
export function startExtract(o: { dir: string; parallel?: number; binary?: string; stdinFrom?: Socket }): ExtractProcess {
  const tool = findTool('mbstream', o.binary);
  // One writer thread: a second one measured no faster and only competes for the CPU.
  const child = spawn(tool, ['-x', '-C', o.dir, `--parallel=${o.parallel ?? 1}`], { stdio: [o.stdinFrom ?? 'pipe', 'ignore', 'pipe'] });
  // EPIPE when mbstream dies mid-stream shows up as its exit status; do not crash on it.
  child.stdin?.on('error', () => undefined);
  return { ...watch('mbstream -x', child), stdin: child.stdin! };
}

/** mariadb-backup --prepare: applies the copied redo log so the directory is a consistent datadir. */
export function prepareBackup(o: { dir: string; useMemory?: string; binary?: string; signal?: AbortSignal }): Promise<void> {
  const tool = findTool('mariadb-backup', o.binary);
  const child = spawn(tool, ['--no-defaults', '--prepare', `--target-dir=${o.dir}`, `--use-memory=${o.useMemory ?? '256M'}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const p = watch('mariadb-backup --prepare', child);
  const onAbort = () => p.kill();
  o.signal?.addEventListener('abort', onAbort, { once: true });
  return p.done.finally(() => o.signal?.removeEventListener('abort', onAbort));
}

/**
 * Files of the managed supervisor (src/supervisor/mariadb.ts) that live in the datadir but are
 * not database files, so no backup carries them: its log, and its first-start marker (without
 * it the supervisor would redo its first-start account setup). The socket and pid file are
 * made by the server at each start and removed at its stop.
 */
export const MARIADB_KEEP_FILES: readonly string[] = ['mariadbd.log', 'recall-managed.json'];

export interface MariadbToolOptions {
  /** Copy threads of the backup (--parallel). */
  backupParallel?: number;
  backupBinary?: string;
  backupExtraArgs?: string[];
  mbstreamBinary?: string;
  extractParallel?: number;
  /** --use-memory of --prepare. */
  prepareMemory?: string;
}

/** mariadb-backup --stream=xbstream / mbstream -x / mariadb-backup --prepare as a BackupTool. */
export function mariadbBackupTool(o: MariadbToolOptions = {}): BackupTool {
  return {
    name: 'mariadb-backup',
    keepFiles: MARIADB_KEEP_FILES,
    streamBackup: (b) => startBackup({ ...b, parallel: o.backupParallel, binary: o.backupBinary, extraArgs: o.backupExtraArgs }),
    extract: (x) => startExtract({ ...x, parallel: o.extractParallel, binary: o.mbstreamBinary }),
    prepare: (p) => prepareBackup({ ...p, useMemory: o.prepareMemory, binary: o.backupBinary }),
  };
}
