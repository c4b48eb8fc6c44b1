// A real MariaDB server for tests: fresh data directory, free port, private socket.
// Usage:
//   const db = await startTestMariaDB();
//   after(() => db.stop());
//   const conn = await mysql.createConnection({ host: '127.0.0.1', port: db.port, user: db.rootUser });
import { ManagedMariaDB, type ManagedMariaDBOptions } from '../../src/supervisor/mariadb.js';
import { tempDir } from './tmp.js';

export interface TestMariaDB {
  port: number;
  socketPath: string;
  dataDir: string;
  rootUser: 'root';
  /** The managed server itself (for tests that crash or inspect it). */
  server: ManagedMariaDB;
  /** Stops the server and removes its data directory. */
  stop(): Promise<void>;
}

export interface TestMariaDBOptions {
  extraArgs?: string[];
  /** Default 2: survives a kill -9 of mariadbd (not of the machine) and is faster for tests. */
  flushLogAtTrxCommit?: 0 | 1 | 2;
  /** Keep the data directory after stop() (for restart tests). */
  keepDataDir?: boolean;
  /** Use this data directory instead of a fresh one (it is then not removed). */
  dataDir?: string;
  autoRestart?: boolean;
  restart?: ManagedMariaDBOptions['restart'];
}

export async function startTestMariaDB(opts: TestMariaDBOptions = {}): Promise<TestMariaDB> {
  const tmp = opts.dataDir ? undefined : tempDir('recall-db-');
  const dataDir = opts.dataDir ?? tmp!.path;
  const server = new ManagedMariaDB({
    dataDir,
    port: 0,
    extraArgs: opts.extraArgs,
    flushLogAtTrxCommit: opts.flushLogAtTrxCommit ?? 2,
    autoRestart: opts.autoRestart,
    restart: opts.restart ?? { backoffMsMin: 100, backoffMsMax: 2000 },
    stopTimeoutMs: 20000,
  });
  try {
    await server.start();
  } catch (err) {
    await server.stop().catch(() => undefined);
    if (tmp && !opts.keepDataDir) tmp.remove();
    throw err;
  }
  let stopped = false;
  return {
    port: server.port,
    socketPath: server.socketPath,
    dataDir,
    rootUser: 'root',
    server,
    async stop() {
      if (stopped) return;
      stopped = true;
      await server.stop();
      if (tmp && !opts.keepDataDir) tmp.remove();
    },
  };
}
