#!/usr/bin/env node
// Runs the compiled benchmarks one after another: every dist/bench/*.js (top level only; shared
// code lives in dist/bench/lib/ and below). Each runs as its own process and prints its own table.
// Usage: node scripts/run-bench.mjs [name...]   e.g. `npm run bench -- mysql` (substring of the file name)
import { readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync, execFileSync } from 'node:child_process';
import os from 'node:os';

const dir = 'dist/bench';
if (!existsSync(dir)) {
  console.error('dist/bench missing: run npm run build first');
  process.exit(1);
}
const filters = process.argv.slice(2);
let files = readdirSync(dir)
  .filter((f) => f.endsWith('.js'))
  .sort();
if (filters.length) files = files.filter((f) => filters.some((x) => f.includes(x)));
if (files.length === 0) {
  console.error(`no benchmark matched ${filters.join(' ')}; available: ${readdirSync(dir).filter((f) => f.endsWith('.js')).join(' ')}`);
  process.exit(1);
}

function version(cmd, args) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8' }).split('\n')[0].trim();
  } catch {
    return 'not found';
  }
}
const cpus = os.cpus();
console.log('Recall benchmarks');
console.log(`  machine: ${os.hostname()}, ${cpus.length} x ${cpus[0]?.model ?? '?'}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, ` +
  `load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
console.log(`  node ${process.version}; ${version('sysbench', ['--version'])}; ${version('mariadbd', ['--version'])}`);
const settings = Object.entries(process.env).filter(([k]) => k.startsWith('BENCH_'));
console.log(`  settings: ${settings.length ? settings.map(([k, v]) => `${k}=${v}`).join(' ') : '(defaults)'}`);
console.log(`  date: ${new Date().toISOString()}; benchmarks: ${files.join(', ')}`);

let failed = 0;
for (const f of files) {
  const started = Date.now();
  const r = spawnSync(process.execPath, ['--enable-source-maps', join(dir, f)], { stdio: 'inherit' });
  const secs = ((Date.now() - started) / 1000).toFixed(0);
  if (r.status !== 0) {
    failed++;
    console.error(`benchmark ${f} failed (exit ${r.status ?? r.signal}) after ${secs} s`);
  } else console.log(`(${f}: ${secs} s)`);
}
process.exit(failed ? 1 : 0);
