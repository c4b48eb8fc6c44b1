// Finding the database server binaries and telling MariaDB from MySQL.
// Debian installs mariadbd in /usr/sbin, which is not on every PATH, so well-known
// directories are searched after PATH.
import { accessSync, constants } from 'node:fs';
import { execFile } from 'node:child_process';
import { delimiter, dirname, join } from 'node:path';

export type ServerFlavor = 'mariadb' | 'mysql';

const extraDirs = ['/usr/sbin', '/usr/local/sbin', '/usr/bin', '/usr/local/bin', '/usr/local/mysql/bin', '/opt/mysql/bin'];

function isExecutable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** First executable named one of `names` in PATH, `hintDirs`, or the usual system directories. */
export function findExecutable(names: string[], hintDirs: string[] = []): string | undefined {
  const dirs = [...hintDirs, ...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...extraDirs];
  for (const name of names) {
    if (name.includes('/')) {
      if (isExecutable(name)) return name;
      continue;
    }
    for (const d of dirs) {
      const p = join(d, name);
      if (isExecutable(p)) return p;
    }
  }
  return undefined;
}

/** The server binary: the configured one, else mariadbd, else mysqld. */
export function findServerBinary(configured?: string): string {
  if (configured) {
    const p = findExecutable([configured]);
    if (!p) throw new Error(`database server binary "${configured}" not found or not executable`);
    return p;
  }
  const p = findExecutable(['mariadbd', 'mysqld']);
  if (!p) {
    throw new Error('no mariadbd or mysqld found (install mariadb-server: bash scripts/setup.sh, or set managed.binary)');
  }
  return p;
}

export interface ServerVersion {
  flavor: ServerFlavor;
  /** e.g. "10.11.19" */
  version: string;
  text: string;
}

/** Runs `binary --version` and classifies the answer. */
export function serverVersion(binary: string): Promise<ServerVersion> {
  return new Promise((resolve, reject) => {
    execFile(binary, ['--no-defaults', '--version'], { timeout: 15000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`${binary} --version failed: ${err.message} ${stderr}`.trim()));
      const text = String(stdout).trim();
      const m = /Ver\s+(\d+\.\d+\.\d+)/.exec(text);
      resolve({ flavor: /mariadb/i.test(text) ? 'mariadb' : 'mysql', version: m ? m[1]! : 'unknown', text });
    });
  });
}

/** mariadb-install-db (or its old name), looked up next to the server binary first. */
export function findInstallDb(serverBinary: string): string | undefined {
  const base = dirname(dirname(serverBinary));
  return findExecutable(['mariadb-install-db', 'mysql_install_db'], [join(base, 'bin'), join(base, 'scripts')]);
}
