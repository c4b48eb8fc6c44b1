// `recall demo` (one managed replica with a self-signed TLS certificate, Ctrl-C stops it)
// and `recall status` against it, as real processes.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import { recallCommand, cleanEnv, repoRoot, waitExit } from '../harness/recall.js';
import { freePort } from '../harness/ports.js';
import { tempDir } from '../harness/tmp.js';

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** A base port whose demo offsets (+0, +32, +100, +200) are all free. */
async function demoPortBase(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const p = await freePort();
    if (p > 65000) continue;
    const ok = await Promise.all([p, p + 32, p + 100, p + 200].map(canBind));
    if (ok.every(Boolean)) return p;
  }
  throw new Error('no free demo port range');
}

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [...recallCommand(), ...args], { cwd: repoRoot(), env: cleanEnv() });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (b: Buffer) => (stdout += b));
    c.stderr.on('data', (b: Buffer) => (stderr += b));
    c.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('recall demo and recall status', () => {
  test('demo comes up with TLS, status reads it, Ctrl-C stops everything', async () => {
    const tmp = tempDir('recall-demo-');
    const base = await demoPortBase();
    const child = spawn(process.execPath, [...recallCommand(), 'demo', '--dir', tmp.path, '--port-base', String(base)], {
      cwd: repoRoot(),
      env: cleanEnv(),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b));
    child.stderr.on('data', (b: Buffer) => (stderr += b));
    try {
      const deadline = Date.now() + 90000;
      while (!stdout.includes('Press Ctrl-C to stop.')) {
        assert.equal(child.exitCode, null, `demo exited early:\n${stdout}\n${stderr}`);
        assert.ok(Date.now() < deadline, `demo not ready:\n${stdout}\n${stderr}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.match(stdout, /replica 1: initialising a new MariaDB data directory/);
      assert.match(stdout, /replica 1: MariaDB running \(\d+\.\d s\)/);
      assert.ok(stdout.includes(`mariadb -h 127.0.0.1 -P ${base} -u root`), stdout);
      assert.ok(existsSync(join(tmp.path, 'tls', 'cert.pem')));
      // quiet: the demo's own progress on stdout, no info log lines on stderr
      assert.equal(stderr.trim(), '', stderr);

      const conn = await mysql.createConnection({ host: '127.0.0.1', port: base, user: 'root', ssl: { rejectUnauthorized: false } });
      const [rows] = await conn.query('SELECT 7 * 6 AS answer');
      // TLS is between the client and Recall (Recall's own link to mariadbd is the local socket)
      const stream = (conn as unknown as { connection: { stream: { encrypted?: boolean; getProtocol?: () => string } } }).connection.stream;
      assert.equal(stream.encrypted, true);
      assert.match(stream.getProtocol?.() ?? '', /^TLSv1\.[23]$/);
      await conn.end();
      assert.equal((rows as Array<{ answer: number }>)[0]!.answer, 42);

      const st = await run(['status', '--admin', `127.0.0.1:${base + 200}`]);
      assert.equal(st.code, 0, st.stderr);
      assert.match(st.stdout, /^nodeId\s+1$/m);
      assert.match(st.stdout, /^database\.state\s+running$/m);
      assert.match(st.stdout, /^database\.reachable\s+true$/m);
      const js = await run(['status', '--admin', `127.0.0.1:${base + 200}`, '--json']);
      assert.equal(js.code, 0);
      assert.equal((JSON.parse(js.stdout) as { engine: string }).engine, 'mysql');
    } finally {
      child.kill('SIGINT');
      const code = await waitExit(child, 30000);
      tmp.remove();
      assert.equal(code, 0, stderr);
    }
    assert.match(stdout, /stopped\.\n$/);
  });

  test('status of a replica that is not running: exit 1 and what to check', async () => {
    const port = await freePort();
    const r = await run(['status', '--admin', `127.0.0.1:${port}`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot reach http:\/\/127\.0\.0\.1:\d+\/status: ECONNREFUSED/);
  });

  test('demo refuses what this version cannot do yet, with exit 2', async () => {
    const r = await run(['demo', '--replicas', '3', '--dir', '/nonexistent-recall-demo']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--replicas 3/);
    assert.equal(existsSync('/nonexistent-recall-demo'), false);
  });

  test('demo on a busy port: exit 1 with a hint, nothing left running', async () => {
    const base = await demoPortBase();
    const blocker = net.createServer().listen(base, '127.0.0.1');
    await new Promise((r) => blocker.once('listening', r));
    const tmp = tempDir('recall-demo-busy-');
    try {
      const r = await run(['demo', '--dir', tmp.path, '--port-base', String(base)]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /EADDRINUSE.*--port-base/);
      assert.equal(existsSync(join(tmp.path, 'replica-1', 'mariadb', 'mysqld.pid')), false);
    } finally {
      blocker.close();
      tmp.remove();
    }
  });

  test('version prints the package version', async () => {
    const r = await run(['version']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^recall \d+\.\d+\.\d+\n$/);
  });
});
