// `recall config`: the effective configuration with its precedence, and the key reference.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { cleanEnv, recallCommand, repoRoot } from '../harness/recall.js';
import { tempDir } from '../harness/tmp.js';

function run(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [...recallCommand(), ...args], { cwd: repoRoot(), env: cleanEnv(env), encoding: 'utf8', timeout: 60000 });
}

test('recall config shows flag > env > file > default, secrets masked', () => {
  const tmp = tempDir();
  try {
    const file = join(tmp.path, 'r.yaml');
    writeFileSync(file, 'maxConnections: 5\nclusterId: file-id\nclusterSecret: hunter2\nlisten: { admin: 127.0.0.1:9999 }\n');
    const r = run(['config', '--config', file, '--max-connections', '7'], { RECALL_CLUSTER_ID: 'env-id' });
    assert.equal(r.status, 0, r.stderr);
    const c = YAML.parse(r.stdout) as Record<string, unknown>;
    assert.equal(c.maxConnections, 7);
    assert.equal(c.clusterId, 'env-id');
    assert.equal((c.listen as Record<string, string>).admin, '127.0.0.1:9999');
    assert.equal(c.nodeId, 1);
    assert.equal(c.clusterSecret, '***');
    assert.doesNotMatch(r.stdout, /hunter2/);
  } finally {
    tmp.remove();
  }
});

test('recall config --reference lists every key', () => {
  const r = run(['config', '--reference']);
  assert.equal(r.status, 0);
  assert.match(r.stdout, /^\| file key \| flag \| environment \| default \| meaning \|$/m);
  assert.match(r.stdout, /\| `listen\.mysql` \| `--listen-mysql` \| `RECALL_LISTEN_MYSQL` \| `127\.0\.0\.1:8500` \|/);
  assert.match(r.stdout, /`replicas` \(or `Replicas`\)/);
});

test('recall config with a bad value exits 2', () => {
  const r = run(['config'], { RECALL_ENGINE: 'sqlite' });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^config error: engine: "sqlite" is not one of mysql, postgres/);
});
