// ManagedMariaDB against a real mariadbd: start, connect as root over socket and TCP,
// crash and restart with backoff, clean stop, restart on an existing data directory.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import { ManagedMariaDB, type ManagedState } from '../../src/supervisor/mariadb.js';
import { tempDir } from '../harness/tmp.js';
import { startTestMariaDB } from '../harness/mariadb.js';
import { alive } from '../harness/process.js';

async function rootQuery(opts: mysql.ConnectionOptions, sql: string): Promise<unknown[]> {
  const conn = await mysql.createConnection({ user: 'root', password: '', ...opts });
  try {
    const [rows] = await conn.query(sql);
    return rows as unknown[];
  } finally {
    await conn.end();
  }
}

describe('ManagedMariaDB', () => {
  const dir = tempDir('recall-sup-');
  const db = new ManagedMariaDB({ dataDir: join(dir.path, 'db'), port: 0, restart: { backoffMsMin: 100, backoffMsMax: 1000 }, flushLogAtTrxCommit: 2 });
  const states: ManagedState[] = [];
  db.on('state', (s: ManagedState) => states.push(s));
  after(async () => {
    await db.stop();
    dir.remove();
  });

  test('initialises an empty data dir and starts; root connects over socket and TCP', async () => {
    assert.equal(db.state, 'stopped');
    await db.start();
    assert.equal(db.state, 'running');
    assert.deepEqual(states.slice(0, 3), ['initializing', 'starting', 'running']);
    assert.ok(db.port > 0);
    assert.ok(existsSync(db.socketPath));
    const viaSocket = await rootQuery({ socketPath: db.socketPath }, 'SELECT CURRENT_USER() AS u, @@port AS p');
    assert.equal((viaSocket[0] as { p: number }).p, db.port);
    const viaTcp = await rootQuery({ host: '127.0.0.1', port: db.port }, 'SELECT 1 + 1 AS two, @@max_allowed_packet AS m, @@performance_schema AS ps');
    assert.equal((viaTcp[0] as { two: number }).two, 2);
    assert.equal(Number((viaTcp[0] as { m: number }).m), 1 << 30);
    assert.equal(Number((viaTcp[0] as { ps: number }).ps), 0);
    assert.match(readFileSync(db.logPath, 'utf8'), /ready for connections/);
  });

  test('kill -9 of the server: crash is detected and the server restarted on the same port', async () => {
    await rootQuery({ socketPath: db.socketPath }, 'CREATE DATABASE IF NOT EXISTS t1');
    await rootQuery({ socketPath: db.socketPath }, 'CREATE TABLE t1.x (id INT PRIMARY KEY) ENGINE=InnoDB');
    await rootQuery({ socketPath: db.socketPath }, 'INSERT INTO t1.x VALUES (1),(2)');
    const pid = db.pid!;
    const port = db.port;
    states.length = 0;
    const crashed = new Promise((res) => db.once('crash', res));
    const restarted = new Promise((res) => db.once('restarted', res));
    process.kill(pid, 'SIGKILL');
    const info = (await crashed) as { signal: string; restartInMs: number };
    assert.equal(info.signal, 'SIGKILL');
    assert.equal(info.restartInMs, 100);
    await restarted;
    assert.equal(db.state, 'running');
    assert.deepEqual(states, ['crashed', 'backoff', 'starting', 'running']);
    assert.notEqual(db.pid, pid);
    assert.equal(db.port, port);
    assert.equal(db.restartCount, 1);
    const rows = await rootQuery({ host: '127.0.0.1', port }, 'SELECT COUNT(*) AS n FROM t1.x');
    assert.equal(Number((rows[0] as { n: number }).n), 2);
  });

  test('a second crash soon after doubles the backoff', async () => {
    const crashed = new Promise((res) => db.once('crash', res));
    const restarted = new Promise((res) => db.once('restarted', res));
    process.kill(db.pid!, 'SIGKILL');
    const info = (await crashed) as { restartInMs: number };
    assert.equal(info.restartInMs, 200);
    await restarted;
    assert.equal(db.state, 'running');
  });

  test('stop is clean (SIGTERM) and leaves no process', async () => {
    const pid = db.pid!;
    await db.stop();
    assert.equal(db.state, 'stopped');
    assert.equal(alive(pid), false);
    assert.match(readFileSync(db.logPath, 'utf8'), /Shutdown complete/);
  });

  test('starts again on the existing data directory without re-initialising', async () => {
    states.length = 0;
    await db.start();
    assert.deepEqual(states, ['starting', 'running']);
    const rows = await rootQuery({ socketPath: db.socketPath }, 'SELECT COUNT(*) AS n FROM t1.x');
    assert.equal(Number((rows[0] as { n: number }).n), 2);
    await db.stop();
  });

  test('a long data dir path gets a short socket path', async () => {
    const long = join(dir.path, 'a'.repeat(60), 'b'.repeat(60));
    const m = new ManagedMariaDB({ dataDir: long, port: 0 });
    assert.ok(Buffer.byteLength(m.socketPath) < 108, m.socketPath);
    assert.ok(!m.socketPath.startsWith(long));
    await m.stop();
  });
});

describe('startTestMariaDB harness', () => {
  test('fresh server on a free port, removed on stop', async () => {
    const db = await startTestMariaDB();
    try {
      assert.equal(db.rootUser, 'root');
      const rows = await rootQuery({ host: '127.0.0.1', port: db.port }, 'SELECT @@innodb_flush_log_at_trx_commit AS f');
      assert.equal(Number((rows[0] as { f: number }).f), 2);
      const out = execFileSync('mariadb', ['-S', db.socketPath, '-u', 'root', '-N', '-e', 'SELECT 40+2']).toString().trim();
      assert.equal(out, '42');
    } finally {
      await db.stop();
    }
    assert.equal(existsSync(db.dataDir), false);
  });
});

describe('a server left behind by a dead Recall process', () => {
  test('is stopped before a new one starts on the same data directory', async () => {
    const dir = tempDir('recall-stale-');
    const first = new ManagedMariaDB({ dataDir: dir.path, port: 0, flushLogAtTrxCommit: 2 });
    let orphanPid = 0;
    const second = new ManagedMariaDB({ dataDir: dir.path, port: 0, flushLogAtTrxCommit: 2 });
    try {
      await first.start();
      orphanPid = first.pid!;
      // Forget the child without stopping it, as a Recall process killed with -9 would.
      first.removeAllListeners();
      (first as unknown as { child: unknown }).child = undefined;
      await second.start();
      assert.equal(second.state, 'running');
      assert.notEqual(second.pid, orphanPid);
      assert.equal(alive(orphanPid), false);
      const rows = await rootQuery({ socketPath: second.socketPath }, 'SELECT 1 AS one');
      assert.deepEqual(rows, [{ one: 1 }]);
    } finally {
      await second.stop();
      if (orphanPid && alive(orphanPid)) process.kill(orphanPid, 'SIGKILL');
      await first.stop();
      dir.remove();
    }
  });
});

/** Pids of live processes whose command line names this data directory. */
function serversOn(dataDir: string): number[] {
  const pids: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8');
      const zombie = /^State:\s+Z/m.test(readFileSync(`/proc/${d}/status`, 'utf8'));
      if (!zombie && cmd.includes(`--datadir=${dataDir}`)) pids.push(Number(d));
    } catch {
      /* exited meanwhile */
    }
  }
  return pids;
}

describe('stop during start-up', () => {
  for (const during of ['initializing', 'starting'] as const) {
    test(`stop() while ${during}: start() rejects, nothing keeps running`, async () => {
      const dir = tempDir('recall-early-');
      const db = new ManagedMariaDB({ dataDir: dir.path, port: 0, flushLogAtTrxCommit: 2 });
      try {
        const reached = new Promise<void>((res) => db.on('state', (s: ManagedState) => s === during && res()));
        const started = db.start();
        const outcome = started.then(() => 'started', (err: Error) => err.message);
        await reached;
        await db.stop();
        assert.match(await outcome, /stopped during start-up/);
        assert.equal(db.state, 'stopped');
        assert.deepEqual(serversOn(dir.path), []);
        assert.equal(existsSync(join(dir.path, 'mysqld.pid')), false);
      } finally {
        await db.stop();
        dir.remove();
      }
    });
  }
});

describe('ManagedMariaDB killed while it starts', () => {
  test('start() starts it again and resolves with a running server', async () => {
    const dir = tempDir('recall-sup-kill-');
    const db = new ManagedMariaDB({ dataDir: join(dir.path, 'db'), port: 0, restart: { backoffMsMin: 100, backoffMsMax: 1000 }, flushLogAtTrxCommit: 2 });
    try {
      // initialise once, so that the next start is only the server's own start-up
      await db.start();
      await db.stop();
      let killed: number | undefined;
      db.on('state', (s: ManagedState) => {
        if (s === 'starting' && killed === undefined) {
          const poll = setInterval(() => {
            if (db.pid) {
              killed = db.pid;
              process.kill(db.pid, 'SIGKILL');
              clearInterval(poll);
            }
          }, 1);
        }
      });
      await db.start();
      assert.ok(killed, 'the first server was killed during its start-up');
      assert.notEqual(db.pid, killed);
      assert.equal(db.state, 'running');
      const rows = await rootQuery({ socketPath: db.socketPath }, 'SELECT 1 AS one');
      assert.equal((rows[0] as { one: number }).one, 1);
    } finally {
      await db.stop();
      dir.remove();
    }
  });
});
