// `recall serve` as a real process: managed MariaDB, ready on /ready, queries through the
// MySQL listener, clean shutdown on SIGTERM/SIGINT that leaves no mariadbd behind, restart
// on the same data directory, external (dsn) and hook (startServer) modes, config errors.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import { startRecall, recallCommand, cleanEnv, repoRoot, waitExit } from '../harness/recall.js';
import { startTestMariaDB } from '../harness/mariadb.js';
import { tempDir } from '../harness/tmp.js';
import { alive } from '../harness/process.js';

async function waitGone(pid: number, ms = 10000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!alive(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return !alive(pid);
}

/** Runs the CLI to completion; resolves with its exit code and output. */
function runCli(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...recallCommand(), ...args], { cwd: repoRoot(), env: cleanEnv(env) });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b));
    child.stderr.on('data', (b: Buffer) => (stderr += b));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('recall serve, managed mode', () => {
  const dir = tempDir('recall-serve-');
  after(() => dir.remove());

  test('ready, queried through 8500, stopped by SIGTERM with the mariadbd child gone', async () => {
    const r = await startRecall({ dataDir: dir.path });
    let mariadbPid = 0;
    try {
      mariadbPid = Number(readFileSync(join(dir.path, 'mariadb', 'mysqld.pid'), 'utf8'));
      assert.ok(mariadbPid > 0 && alive(mariadbPid));
      const conn = await mysql.createConnection({ host: '127.0.0.1', port: r.mysqlPort, user: 'root', password: '' });
      try {
        await conn.query('CREATE DATABASE app');
        await conn.query('CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20))');
        await conn.query("INSERT INTO app.t VALUES (1, 'one'), (2, NULL)");
        const [rows] = await conn.query('SELECT id, v FROM app.t ORDER BY id');
        assert.deepEqual(rows, [{ id: 1, v: 'one' }, { id: 2, v: null }]);
        const [[st]] = (await conn.query('SELECT @@port AS p')) as unknown as [[{ p: number }]];
        assert.notEqual(st.p, r.mysqlPort); // answered by the private mariadbd behind Recall
        const status = (await (await fetch(`http://127.0.0.1:${r.adminPort}/status`)).json()) as {
          nodeId: number;
          database: { mode: string; state: string; reachable: boolean; port: number };
          connections: Record<string, number>;
        };
        assert.equal(status.nodeId, 1);
        assert.deepEqual([status.database.mode, status.database.state, status.database.reachable], ['managed', 'running', true]);
        assert.equal(status.database.port, st.p);
        assert.ok((status.connections.mysql ?? 0) >= 1);
      } finally {
        await conn.end();
      }
      const metrics = await (await fetch(`http://127.0.0.1:${r.adminPort}/metrics`)).text();
      assert.match(metrics, /^recall_managed_server_up 1$/m);
      assert.match(metrics, /^recall_client_connections_total\{protocol="mysql",outcome="accepted"\} [1-9]/m);
    } finally {
      const code = await r.stop();
      assert.equal(code, 0, r.output().slice(-3000));
    }
    assert.ok(await waitGone(mariadbPid), 'mariadbd still running after recall stopped');
    const lines = r.output().trim().split('\n');
    for (const l of lines) assert.doesNotThrow(() => JSON.parse(l), `not JSON: ${l}`);
    const messages = lines.map((l) => (JSON.parse(l) as { message: string }).message);
    assert.ok(messages.includes('ready'));
    assert.ok(messages.includes('stopped'));
    // quiet by default: a handful of lines for a whole start and stop
    assert.ok(lines.length <= 10, `too many log lines at info level:\n${r.output()}`);
    assert.match(readFileSync(join(dir.path, 'mariadb', 'mariadbd.log'), 'utf8'), /Shutdown complete/);
  });

  test('starts again on the same data directory; SIGINT stops it too; --debug is verbose', async () => {
    const r = await startRecall({ dataDir: dir.path, extraArgs: ['--debug'] });
    const mariadbPid = Number(readFileSync(join(dir.path, 'mariadb', 'mysqld.pid'), 'utf8'));
    try {
      const conn = await mysql.createConnection({ host: '127.0.0.1', port: r.mysqlPort, user: 'root', database: 'app' });
      const [rows] = await conn.query('SELECT COUNT(*) AS n FROM t');
      assert.deepEqual(rows, [{ n: 2 }]);
      assert.doesNotMatch(r.output(), /initialising database directory/);
      assert.match(r.output(), /"level":"debug"/);
      // a client still connected does not hold up the shutdown; it sees its connection end
      const closed = new Promise<void>((res) => conn.on('error', () => res()));
      const t0 = Date.now();
      r.process.kill('SIGINT');
      assert.equal(await waitExit(r.process, 30000), 0);
      assert.ok(Date.now() - t0 < 10000, `shutdown took ${Date.now() - t0} ms`);
      await closed;
      conn.destroy();
    } finally {
      await r.stop();
    }
    assert.ok(await waitGone(mariadbPid));
  });
});

describe('recall serve, managed database crash', () => {
  test('mariadbd killed with -9: /ready goes 503, the server is restarted, /ready 200 again', async () => {
    const r = await startRecall();
    try {
      const pidFile = join(r.dataDir, 'mariadb', 'mysqld.pid');
      const pid = Number(readFileSync(pidFile, 'utf8'));
      process.kill(pid, 'SIGKILL');
      let sawNotReady = false;
      const deadline = Date.now() + 30000;
      for (;;) {
        const res = await fetch(`http://127.0.0.1:${r.adminPort}/ready`);
        if (res.status === 503) sawNotReady = true;
        if (res.status === 200 && sawNotReady) break;
        assert.ok(Date.now() < deadline, `not ready again after the crash:\n${r.output().slice(-3000)}`);
        await new Promise((res2) => setTimeout(res2, 20));
      }
      assert.notEqual(Number(readFileSync(pidFile, 'utf8')), pid);
      const conn = await mysql.createConnection({ host: '127.0.0.1', port: r.mysqlPort, user: 'root' });
      const [rows] = await conn.query('SELECT 1 AS one');
      await conn.end();
      assert.deepEqual(rows, [{ one: 1 }]);
      const metrics = await (await fetch(`http://127.0.0.1:${r.adminPort}/metrics`)).text();
      assert.match(metrics, /^recall_managed_server_restarts_total 1$/m);
      assert.match(r.output(), /managed database exited unexpectedly/);
    } finally {
      assert.equal(await r.stop(), 0);
    }
  });
});

describe('recall serve, existing database', () => {
  test('external mode: --dsn to a running server, managed off', async () => {
    const db = await startTestMariaDB();
    try {
      const r = await startRecall({ dsn: `mysql://root@127.0.0.1:${db.port}/` });
      try {
        const conn = await mysql.createConnection({ host: '127.0.0.1', port: r.mysqlPort, user: 'root' });
        const [rows] = await conn.query('SELECT @@port AS p');
        await conn.end();
        assert.deepEqual(rows, [{ p: db.port }]);
        const s = (await (await fetch(`http://127.0.0.1:${r.adminPort}/status`)).json()) as { database: { mode: string; reachable: boolean } };
        assert.deepEqual(s.database, { mode: 'external', reachable: true });
      } finally {
        assert.equal(await r.stop(), 0);
      }
      // the external server is not ours to stop
      const conn = await mysql.createConnection({ socketPath: db.socketPath, user: 'root' });
      await conn.query('SELECT 1');
      await conn.end();
    } finally {
      await db.stop();
    }
  });

  test('hook mode: the server is down, startServer brings it up', async () => {
    const db = await startTestMariaDB({ keepDataDir: true });
    const { port, socketPath, dataDir } = db;
    await db.server.stop();
    const tmp = tempDir('recall-hook-');
    const pidFile = join(tmp.path, 'hook.pid');
    const script = join(tmp.path, 'start.sh');
    writeFileSync(
      script,
      `#!/bin/sh\nexec mariadbd --no-defaults --datadir=${dataDir} --port=${port} --socket=${socketPath} --pid-file=${pidFile} --bind-address=127.0.0.1 --user=root >>${tmp.path}/hook.log 2>&1 &\n`,
    );
    try {
      const r = await startRecall({ dsn: `mysql://root@127.0.0.1:${port}/`, extraArgs: ['--start-server', `sh ${script}`, '--stop-server', 'true'] });
      try {
        assert.match(r.output(), /running startServer/);
        const conn = await mysql.createConnection({ host: '127.0.0.1', port: r.mysqlPort, user: 'root' });
        const [rows] = await conn.query('SELECT @@port AS p');
        await conn.end();
        assert.deepEqual(rows, [{ p: port }]);
        const s = (await (await fetch(`http://127.0.0.1:${r.adminPort}/status`)).json()) as { database: { mode: string } };
        assert.equal(s.database.mode, 'hook');
      } finally {
        assert.equal(await r.stop(), 0);
      }
    } finally {
      try {
        const pid = Number(readFileSync(pidFile, 'utf8'));
        process.kill(pid, 'SIGTERM');
        await waitGone(pid, 30000);
      } catch {
        /* never started */
      }
      tmp.remove();
      await db.stop();
      (await import('node:fs')).rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test('unreachable database and no startServer: exit 1 with the reason', async () => {
    const r = await runCli(['serve', '--no-managed', '--dsn', 'mysql://root@localhost/?socket=/nonexistent.sock', '--listen-admin', 'off', '--listen-mysql', 'off']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /unreachable/);
  });
});

describe('recall serve, invalid configuration', () => {
  test('a bad flag value exits 2 naming the key and an example', async () => {
    const r = await runCli(['serve', '--listen-mysql', 'abc']);
    assert.equal(r.code, 2);
    assert.equal(r.stderr.trim(), 'config error: listen.mysql: "abc" is not host:port or off (example: 127.0.0.1:8500) [from --listen-mysql]');
  });

  test('a bad environment variable exits 2', async () => {
    const r = await runCli(['serve'], { RECALL_MAX_CONNECTIONS: 'lots' });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^config error: maxConnections: "lots" is not an integer \(example: 1000\) \[from RECALL_MAX_CONNECTIONS\]/);
  });

  test('an unknown key in the config file exits 2 with a suggestion', async () => {
    const tmp = tempDir();
    try {
      const file = join(tmp.path, 'recall.yaml');
      writeFileSync(file, 'nodeId: 1\nlisten:\n  amdin: 127.0.0.1:1\n');
      const r = await runCli(['serve', '--config', file]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /config error: listen\.amdin: unknown key in .*; did you mean "listen\.admin"\?/);
    } finally {
      tmp.remove();
    }
  });

  test('an unknown flag exits 2', async () => {
    const r = await runCli(['serve', '--lisen-mysql', '1']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /Unknown argument/);
  });
});

describe('startRecall harness', () => {
  test('nodeArgs reach node: --cpu-prof writes a profile on a clean exit', async () => {
    const prof = tempDir('recall-prof-');
    try {
      const r = await startRecall({ nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${prof.path}`] });
      assert.equal(await r.stop(), 0);
      const files = (await import('node:fs')).readdirSync(prof.path);
      assert.ok(files.some((f) => f.endsWith('.cpuprofile')), files.join(','));
    } finally {
      prof.remove();
    }
  });
});
