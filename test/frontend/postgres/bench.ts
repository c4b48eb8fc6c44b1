// Measurement, not a test: pgbench select-only (-S, 8 clients) through Recall's PostgreSQL frontend
// and straight to the same postgres, alternating, one run. Prints tps side by side and the ratio.
//   npx tsx test/frontend/postgres/bench.ts [--scale 10] [--seconds 10] [--rounds 2] [--mode simple] [--cpu-prof]
// With --cpu-prof the frontend runs in this process under the inspector's profiler and writes
// postgres-frontend.cpuprofile in the working directory.
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { startPostgres, startFrontend, ROLES } from './helpers.js';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : def;
}
const scale = arg('scale', '10');
const seconds = arg('seconds', '10');
const rounds = Number(arg('rounds', '2'));
const mode = arg('mode', 'simple');
const clients = arg('clients', '8');
const profile = process.argv.includes('--cpu-prof');

function pgbench(port: number, args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile('pgbench', ['-h', '127.0.0.1', '-p', String(port), '-U', 'alice', ...args, 'bench'], { env: { ...process.env, PGPASSWORD: ROLES.alice } }, (e, so, se) =>
      e ? reject(new Error(so + se)) : resolve(so + se),
    ),
  );
}

const db = await startPostgres(['-c', 'max_connections=100']);
const { frontend, port } = await startFrontend(db, { auth: 'md5' });
try {
  await db.admin('CREATE DATABASE bench OWNER alice');
  await pgbench(db.port, ['-i', '-s', scale, '-q']);
  const results: Record<string, number[]> = { direct: [], recall: [] };
  const inspector = profile ? new Session() : null;
  for (let i = 0; i < rounds; i++) {
    for (const side of ['direct', 'recall'] as const) {
      if (side === 'recall' && inspector) {
        inspector.connect();
        await inspector.post('Profiler.enable');
        await inspector.post('Profiler.start');
      }
      const cpu0 = process.cpuUsage();
      const out = await pgbench(side === 'direct' ? db.port : port, ['-S', '-n', '-M', mode, '-c', clients, '-j', '2', '-T', seconds]);
      const cpu = process.cpuUsage(cpu0);
      if (side === 'recall' && inspector) {
        const { profile: p } = await inspector.post('Profiler.stop');
        writeFileSync('postgres-frontend.cpuprofile', JSON.stringify(p));
        inspector.disconnect();
      }
      const tps = Number(/tps = ([\d.]+)/.exec(out)?.[1]);
      const failed = /number of failed transactions: (\d+)/.exec(out)?.[1];
      results[side]!.push(tps);
      const txns = Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1]);
      // the frontend's own CPU per transaction (user + system), steadier than tps on a shared machine
      const perTx = side === 'recall' ? ` frontend CPU ${((cpu.user + cpu.system) / txns).toFixed(1)} us/txn (user ${(cpu.user / txns).toFixed(1)})` : '';
      console.log(`${side.padEnd(6)} round ${i + 1}: ${tps.toFixed(0)} tps (failed ${failed})${perTx}`);
    }
  }
  const avg = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
  console.log(`select-only, scale ${scale}, ${clients} clients, -M ${mode}, ${seconds} s x ${rounds}: direct ${avg(results.direct!).toFixed(0)} tps, recall ${avg(results.recall!).toFixed(0)} tps, ratio ${(avg(results.recall!) / avg(results.direct!)).toFixed(2)}`);
} finally {
  await frontend.close();
  await db.stop();
}
