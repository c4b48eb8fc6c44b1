// The local database in hook mode (StartServer/StopServer commands, as the original module
// ran them) and external mode, against a real mariadbd started and stopped by shell hooks.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { localDatabase } from '../../src/supervisor/local-database.js';
import { loadConfig } from '../../src/config/load.js';
import { startTestMariaDB } from '../harness/mariadb.js';
import { tempDir } from '../harness/tmp.js';

/** Alive and not a zombie (a server started by a shell hook is reparented, maybe to a pid 1 that does not reap). */
function running(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

describe('hook mode', () => {
  test('stop() runs stopServer and waits until the server is gone; start() runs startServer', async () => {
    const seed = await startTestMariaDB({ keepDataDir: true });
    const { port, socketPath, dataDir } = seed;
    await seed.server.stop();
    const tmp = tempDir('recall-hooks-');
    const pidFile = join(tmp.path, 'db.pid');
    const start = join(tmp.path, 'start.sh');
    writeFileSync(
      start,
      `#!/bin/sh\nmariadbd --no-defaults --datadir=${dataDir} --port=${port} --socket=${socketPath} --pid-file=${pidFile} --bind-address=127.0.0.1 --user=root >>${tmp.path}/db.log 2>&1 &\n`,
    );
    const cfg = loadConfig({
      env: { RECALL_DSN: `mysql://root@127.0.0.1:${port}/`, RECALL_START_SERVER: `sh ${start}`, RECALL_STOP_SERVER: `mariadb-admin --no-defaults -S ${socketPath} -u root shutdown` },
    });
    const db = localDatabase(cfg);
    try {
      assert.equal(db.mode, 'hook');
      await assert.rejects(db.ping(500));
      await db.start();
      await db.ping();
      const pid = Number(readFileSync(pidFile, 'utf8'));
      await db.stop();
      await assert.rejects(db.ping(500));
      // mariadb-admin shutdown, like systemctl stop, returns once the server has exited
      assert.equal(running(pid), false);
      await db.start();
      await db.ping();
      await db.close(); // not ours: still running
      await db.ping();
      assert.deepEqual(db.status(), { mode: 'hook' });
    } finally {
      await db.stop().catch(() => undefined);
      tmp.remove();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test('a failing hook command is an error with its output', async () => {
    const cfg = loadConfig({ env: { RECALL_DSN: 'mysql://root@localhost/?socket=/nonexistent.sock', RECALL_START_SERVER: 'echo no disk >&2; exit 3' } });
    await assert.rejects(localDatabase(cfg).start(), /startServer \(echo no disk >&2; exit 3\) failed with exit code 3: no disk/);
  });
});

describe('external mode', () => {
  test('start() only checks it answers; stop() is refused', async () => {
    const seed = await startTestMariaDB();
    try {
      const db = localDatabase(loadConfig({ env: { RECALL_DSN: `mysql://root@127.0.0.1:${seed.port}/` } }));
      assert.equal(db.mode, 'external');
      await db.start();
      await assert.rejects(db.stop(), /stopServer is not configured/);
      await db.close();
      await db.ping();
    } finally {
      await seed.stop();
    }
  });
});
