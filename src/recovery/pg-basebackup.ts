// PostgreSQL's physical copy as a BackupTool (backup-tool.ts), the counterpart of mariadb-backup:
//   donor:  pg_basebackup -D - -Ft -X fetch -c fast  (one tar on stdout, WAL included)
//   joiner: tar -x, run as the user the server runs as, so every file is owned right
//   prepare: drop the donor server's leftovers; postgres replays the copied WAL at its start
// Why pg_basebackup: it is PostgreSQL's own hot physical backup, consistent by itself (a
// checkpoint starts it, backup_label names it, and the WAL written during the copy travels in the
// tar; the server replays it up to the backup's end at start-up), it streams to stdout instead of
// needing a directory on the donor, and it moves the files at disk speed where a dump would
// rebuild every index. It connects over the server's private unix socket as the superuser,
// which the managed server's pg_hba trusts for replication there and nowhere else.
// -X fetch (not stream, which cannot go to stdout with a tar) reads the WAL at the end of the
// copy: the donor must still have it. Its applier is paused for the copy and a checkpoint
// recycles WAL only every checkpoint_timeout or max_wal_size, so this holds unless the copy
// takes longer than that on a donor still written to (a leader donor): then the backup fails
// and the joiner tries again; wal_keep_size on the donor widens the margin.
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { findPostgresBinDir } from '../supervisor/postgres.js';
import { BackupToolError, watchTool, type BackupTool } from './backup-tool.js';
import type { AdminTarget } from './types.js';

/** The managed supervisor's own files in the datadir (src/supervisor/postgres.ts): its log. */
export const PG_KEEP_FILES: readonly string[] = ['postgres.log'];
/** The managed server's private socket directory inside the datadir (its lock file is the donor's). */
const socketDirName = 'sock';

export interface PgToolOptions {
  /** The server's data directory on this node: the copy is given its owner. */
  datadir: string;
  /** Directory of pg_basebackup (default: the newest installed server's, as ManagedPostgres uses). */
  binDir?: string;
  tarBinary?: string;
}

/** pg_basebackup's connection: the socket's directory and port, from .../.s.PGSQL.<port>. */
export function pgConnectArgs(t: AdminTarget): string[] {
  const m = t.socketPath ? /^(.*)\/\.s\.PGSQL\.(\d+)$/.exec(t.socketPath) : null;
  if (t.socketPath && !m) throw new Error(`${t.socketPath} is not a PostgreSQL socket path (<dir>/.s.PGSQL.<port>)`);
  const host = m ? m[1]! : (t.host ?? '127.0.0.1');
  const port = m ? m[2]! : String(t.port ?? 5432);
  return ['-h', host, '-p', port, '-U', t.user];
}

/** The uid/gid the copy must belong to: those of the data directory the server runs on now. */
function ownerOf(datadir: string): { uid: number; gid: number } | undefined {
  let st;
  try {
    st = statSync(datadir);
  } catch (e) {
    if (process.getuid?.() === 0) throw new Error(`cannot tell which user postgres runs as: ${datadir}: ${(e as Error).message}`);
    return undefined; // not root: the files are ours, as the server is
  }
  return process.getuid?.() === st.uid ? undefined : { uid: st.uid, gid: st.gid };
}

export function pgBasebackupTool(o: PgToolOptions): BackupTool {
  let binDir: string | undefined;
  const bin = (name: string) => join((binDir ??= findPostgresBinDir(o.binDir)), name);
  return {
    name: 'pg_basebackup',
    keepFiles: PG_KEEP_FILES,
    streamBackup: (b) => {
      const args = [
        ...pgConnectArgs(b.target),
        '-D', '-', '-Ft', '-X', 'fetch',
        // a spread checkpoint (the default) would hold the start for minutes
        '-c', 'fast',
        // the manifest is for pg_verifybackup; nothing here reads it
        '--no-manifest',
        '--no-password',
      ];
      const env = { ...process.env, ...(b.target.password ? { PGPASSWORD: b.target.password } : {}) };
      const child = spawn(bin('pg_basebackup'), args, { stdio: ['ignore', b.stdoutTo ?? 'pipe', 'pipe'], env, cwd: b.workDir });
      return { ...watchTool('pg_basebackup', child), stdout: child.stdout! };
    },
    extract: (x) => {
      const ids = ownerOf(o.datadir);
      // tar runs as the server's user: it can write the directory, and everything it makes is owned right
      if (ids) chownSync(x.dir, ids.uid, ids.gid);
      const child = spawn(o.tarBinary ?? 'tar', ['-x', '-f', '-', '-C', x.dir, '--no-same-owner'], { stdio: [x.stdinFrom ?? 'pipe', 'ignore', 'pipe'], ...ids });
      child.stdin?.on('error', () => undefined); // EPIPE when tar dies mid-stream shows up as its exit status
      return { ...watchTool('tar -x', child), stdin: child.stdin! };
    },
    prepare: async (p) => {
      if (p.signal?.aborted) throw new Error('snapshot prepare aborted');
      if (!existsSync(join(p.dir, 'backup_label')) || !existsSync(join(p.dir, 'PG_VERSION'))) {
        throw new BackupToolError('pg_basebackup', `${p.dir} holds no base backup (no backup_label or PG_VERSION)`, '');
      }
      // The donor's server files: its log (the joiner keeps its own) and its socket lock, which
      // names the donor's pid and would stop a server on the same port from starting.
      for (const f of PG_KEEP_FILES) rmSync(join(p.dir, f), { force: true });
      const sock = join(p.dir, socketDirName);
      if (existsSync(sock)) for (const f of readdirSync(sock)) rmSync(join(sock, f), { recursive: true, force: true });
      // postgres refuses a data directory others can read
      chmodSync(p.dir, 0o700);
      const ids = ownerOf(o.datadir);
      if (ids) chownSync(p.dir, ids.uid, ids.gid);
    },
  };
}
