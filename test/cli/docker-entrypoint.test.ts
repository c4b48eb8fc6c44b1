// There is no Docker engine here, so this runs what the image runs, outside Docker: the
// Dockerfile's ENTRYPOINT with its ENV (paths mapped from /app and /var/lib/recall to this
// checkout and a temp dir, ports to free ones), as a non-root user like the image's
// `recall` user, and checks the HEALTHCHECK command reports healthy once ready. A second
// test parses the Dockerfile so the two cannot drift apart.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chownSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import { cleanEnv, recallCommand, repoRoot, waitExit } from '../harness/recall.js';
import { freePort } from '../harness/ports.js';
import { tempDir } from '../harness/tmp.js';
import { keySpecs, envName } from '../../src/config/keys.js';

interface Dockerfile {
  env: Record<string, string>;
  entrypoint: string[];
  cmd: string[];
  healthcheck: string[];
  user: string;
  volumes: string[];
  expose: number[];
  stages: string[];
}

/** The instructions this test relies on, from the final stage of the Dockerfile. */
function parseDockerfile(text: string): Dockerfile {
  const logical = text.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const stages = logical.filter((l) => /^FROM\s/i.test(l)).map((l) => l.split(/\s+/)[1]!);
  const lastFrom = logical.map((l) => /^FROM\s/i.test(l)).lastIndexOf(true);
  const final = logical.slice(lastFrom);
  const out: Dockerfile = { env: {}, entrypoint: [], cmd: [], healthcheck: [], user: 'root', volumes: [], expose: [], stages };
  for (const l of final) {
    const [, instr, rest] = /^(\w+)\s+(.*)$/.exec(l) ?? [];
    switch (instr?.toUpperCase()) {
      case 'ENV':
        for (const m of rest!.matchAll(/(\w+)=("[^"]*"|\S+)/g)) out.env[m[1]!] = m[2]!.replace(/^"|"$/g, '');
        break;
      case 'ENTRYPOINT':
        out.entrypoint = JSON.parse(rest!) as string[];
        break;
      case 'CMD':
        out.cmd = JSON.parse(rest!) as string[];
        break;
      case 'HEALTHCHECK':
        out.healthcheck = JSON.parse(/\bCMD\s+(\[.*\])$/.exec(rest!)![1]!) as string[];
        break;
      case 'USER':
        out.user = rest!.trim();
        break;
      case 'VOLUME':
        out.volumes = JSON.parse(rest!) as string[];
        break;
      case 'EXPOSE':
        out.expose = rest!.split(/\s+/).map(Number);
        break;
    }
  }
  return out;
}

const root = repoRoot();
const dockerfile = parseDockerfile(readFileSync(join(root, 'Dockerfile'), 'utf8'));

describe('Dockerfile', () => {
  test('multi-stage, non-root, managed serve entrypoint, healthcheck on /ready, volume and ports', () => {
    assert.deepEqual(dockerfile.stages, ['node:20-bookworm', 'node:20-bookworm-slim']);
    assert.deepEqual(dockerfile.entrypoint, ['node', '/app/bin/recall', 'serve']);
    assert.deepEqual(dockerfile.cmd, []);
    assert.deepEqual(dockerfile.healthcheck, ['node', '/app/docker/healthcheck.mjs']);
    assert.match(readFileSync(join(root, 'docker', 'healthcheck.mjs'), 'utf8'), /\/ready/);
    assert.equal(dockerfile.user, 'recall');
    assert.deepEqual(dockerfile.volumes, ['/var/lib/recall']);
    assert.equal(dockerfile.env.RECALL_DATA_DIR, '/var/lib/recall');
    assert.equal(dockerfile.env.RECALL_MANAGED, 'true');
    const ports = ['MYSQL', 'POSTGRES', 'PEER', 'ADMIN'].map((k) => dockerfile.env[`RECALL_LISTEN_${k}`]!);
    for (const p of ports) assert.match(p, /^0\.0\.0\.0:\d+$/);
    assert.deepEqual(dockerfile.expose, ports.map((p) => Number(p.split(':')[1])));
    assert.deepEqual(dockerfile.expose, [8500, 8532, 8600, 8700]);
    // every RECALL_ variable the image sets is one the configuration knows
    const known = new Set(keySpecs.map(envName));
    for (const k of Object.keys(dockerfile.env).filter((k) => k.startsWith('RECALL_'))) assert.ok(known.has(k), k);
  });
});

describe('the image entrypoint, run outside Docker', () => {
  test('as a non-root user: initialises, becomes healthy, serves MySQL, stops on SIGTERM', async () => {
    const tmp = tempDir('recall-docker-');
    const nobody = 65534;
    chownSync(tmp.path, nobody, nobody);
    const free = { MYSQL: await freePort(), POSTGRES: await freePort(), PEER: await freePort(), ADMIN: await freePort() };
    const mapPath = (v: string) => v.replace(/^\/var\/lib\/recall/, tmp.path).replace(/^\/app\//, root + '/');
    const env: Record<string, string> = { HOME: tmp.path };
    for (const [k, v] of Object.entries(dockerfile.env)) {
      const m = /^RECALL_LISTEN_(\w+)$/.exec(k);
      env[k] = m ? v.replace(/:\d+$/, `:${free[m[1] as keyof typeof free]}`) : mapPath(v);
    }
    assert.equal(dockerfile.entrypoint[1], '/app/bin/recall');
    // bin/recall when compiled; the same CLI through tsx when this file runs from source
    const argv = [...recallCommand(), ...dockerfile.entrypoint.slice(2), ...dockerfile.cmd];
    const health = () =>
      spawnSync(dockerfile.healthcheck[0] === 'node' ? process.execPath : dockerfile.healthcheck[0]!, dockerfile.healthcheck.slice(1).map(mapPath), {
        env: cleanEnv(env),
        encoding: 'utf8',
        timeout: 10000,
      });
    assert.equal(health().status, 1, 'healthy before the process started');

    const child = spawn(process.execPath, argv, { cwd: tmp.path, env: cleanEnv(env), uid: nobody, gid: nobody, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b));
    child.stderr.on('data', (b: Buffer) => (out += b));
    try {
      const deadline = Date.now() + 90000;
      for (;;) {
        assert.equal(child.exitCode, null, `entrypoint exited:\n${out}`);
        if (health().status === 0) break;
        assert.ok(Date.now() < deadline, `never healthy:\n${out}`);
        await new Promise((r) => setTimeout(r, 250));
      }
      // the managed server runs as the same non-root user, with its data in the volume
      const pid = Number(readFileSync(join(tmp.path, 'mariadb', 'mysqld.pid'), 'utf8'));
      const uid = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1];
      assert.equal(Number(uid), nobody);
      const conn = await mysql.createConnection({ host: '127.0.0.1', port: free.MYSQL, user: 'root' });
      const [rows] = await conn.query('SELECT CURRENT_USER() AS u');
      await conn.end();
      assert.equal((rows as Array<{ u: string }>)[0]!.u.split('@')[0], 'root');
      for (const line of out.trim().split('\n')) assert.doesNotThrow(() => JSON.parse(line), line); // RECALL_LOG_FORMAT=json
    } finally {
      child.kill('SIGTERM'); // what `docker stop` sends
      const code = await waitExit(child, 30000);
      const pidLeft = existsSync(join(tmp.path, 'mariadb', 'mysqld.pid'));
      tmp.remove();
      assert.equal(code, 0, out);
      assert.equal(pidLeft, false, 'mariadbd left running');
    }
  });
});
