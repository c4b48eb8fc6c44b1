// What the built-in snapshot transfer needs of an engine's physical backup tools, so one donor,
// one joiner and one direct data connection serve every engine (STYLE.md: the consumer declares
// the narrow interface). MariaDB: mariadb-backup --stream / mbstream -x / --prepare
// (mariadb-backup.ts); PostgreSQL: pg_basebackup tar to stdout / tar -x / a clean-up of the
// server's own leftovers (pg-basebackup.ts). Failures carry the tail of the tool's stderr, which
// is where the tools say what went wrong.
import type { ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import type { AdminTarget } from './types.js';

const stderrTailBytesMax = 8192;

export class BackupToolError extends Error {
  constructor(
    readonly tool: string,
    message: string,
    readonly stderrTail: string,
  ) {
    super(`${tool}: ${message}${stderrTail ? `\n${stderrTail}` : ''}`);
    this.name = 'BackupToolError';
  }
}

/** A running tool; `done` settles when it exited (rejects unless it exited 0). */
export interface ToolProcess {
  readonly pid: number | undefined;
  readonly done: Promise<void>;
  kill(): void;
}

export interface BackupProcess extends ToolProcess {
  /** The backup stream (null with stdoutTo). */
  readonly stdout: Readable;
}

export interface ExtractProcess extends ToolProcess {
  readonly stdin: Writable;
}

export interface StreamBackupOptions {
  target: AdminTarget;
  /** The server's data directory. */
  datadir: string;
  /** Private scratch directory of this backup (removed by the caller afterwards). */
  workDir: string;
  /** Write the stream straight into this connected socket instead of a pipe to us. */
  stdoutTo?: Socket;
}

/** One engine's physical copy: stream a backup out, unpack it, make it a datadir. */
export interface BackupTool {
  /** For logs and errors, e.g. 'mariadb-backup'. */
  readonly name: string;
  /** Files of the supervisor that live in the datadir and stay the joiner's own (its log, markers). */
  readonly keepFiles: readonly string[];
  /** A consistent hot copy of the running server as one stream on stdout (or into stdoutTo). */
  streamBackup(o: StreamBackupOptions): BackupProcess;
  /** Unpacks a stream read from stdin (or from stdinFrom) into dir, which exists and is empty. */
  extract(o: { dir: string; stdinFrom?: Socket }): ExtractProcess;
  /** Turns the unpacked copy into a data directory the server starts on. */
  prepare(o: { dir: string; signal?: AbortSignal }): Promise<void>;
}

/** Wraps a spawned tool: its exit status, with the tail of its stderr on failure. */
export function watchTool(tool: string, child: ChildProcess): ToolProcess {
  let tail = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (s: string) => {
    tail = (tail + s).slice(-stderrTailBytesMax);
  });
  const done = new Promise<void>((resolve, reject) => {
    child.once('error', (e) => reject(new BackupToolError(tool, `could not run: ${e.message}`, tail)));
    child.once('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new BackupToolError(tool, `exited with ${signal ? `signal ${signal}` : `code ${code}`}`, tail.trimEnd()));
    });
  });
  // Callers may look at done only later; a failure is theirs to report, not an unhandled rejection.
  done.catch(() => undefined);
  return {
    pid: child.pid,
    done,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    },
  };
}
