#!/usr/bin/env node
// Runs the compiled test suite with node's test runner. Test files are dist/test/**/*.test.js.
// Usage: node scripts/run-tests.mjs [filter...]   (filters match substrings of the path)
import { readdirSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}
if (!existsSync('dist/test')) {
  console.error('dist/test missing: run npm run build first');
  process.exit(1);
}
const filters = process.argv.slice(2);
let files = walk('dist/test', []).sort();
if (filters.length) files = files.filter((f) => filters.some((x) => f.includes(x)));
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
const r = spawnSync(
  process.execPath,
  ['--enable-source-maps', '--test', '--test-concurrency=1', '--test-reporter=spec', ...files],
  { stdio: 'inherit', env: { ...process.env, RECALL_TEST: '1' } },
);
process.exit(r.status ?? 1);
