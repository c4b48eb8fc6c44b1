// npm run sim -- --seed N | --seeds COUNT [--first S] [--nodes 3|5] [--verbose]
// A failing seed prints its seed, the violation and the last events; rerun it with --seed to replay exactly.
import { runSeed, type SeedResult } from './run.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const verbose = process.argv.includes('--verbose');
const nodesArg = arg('nodes');
const ticksArg = arg('safety-ticks');
const opts = { ...(nodesArg ? { nodes: Number(nodesArg) } : {}), ...(ticksArg ? { safetyTicks: Number(ticksArg) } : {}), traceMax: verbose ? 100000 : 40 };

function report(r: SeedResult): void {
  console.log(`seed ${r.seed}: ${r.error}`);
  console.log(r.trace.map((l) => `  ${l}`).join('\n'));
  console.log(`replay: npm run sim -- --seed ${r.seed}${nodesArg ? ` --nodes ${nodesArg}` : ''} --verbose`);
}

const t0 = performance.now();
const one = arg('seed');
if (one !== undefined) {
  const r = runSeed(Number(one), opts);
  if (!r.ok) report(r);
  else {
    if (verbose) console.log(r.trace.join('\n'));
    console.log(`seed ${r.seed}: ok (ticks=${r.ticks} committed=${r.committed})`);
  }
  console.log(`seeds=1 violations=${r.ok ? 0 : 1} elapsed=${((performance.now() - t0) / 1000).toFixed(1)}s`);
  process.exitCode = r.ok ? 0 : 1;
} else {
  const count = Number(arg('seeds') ?? 1000);
  const first = Number(arg('first') ?? 1);
  let violations = 0;
  let committed = 0;
  const stats: Record<string, number> = {};
  for (let s = first; s < first + count; s++) {
    const r = runSeed(s, opts);
    committed += r.committed;
    for (const [k, v] of Object.entries(r.stats)) stats[k] = (stats[k] ?? 0) + v;
    if (!r.ok) {
      violations++;
      report(r);
    }
    if ((s - first + 1) % 10000 === 0) console.log(`progress seeds=${s - first + 1} violations=${violations} elapsed=${((performance.now() - t0) / 1000).toFixed(1)}s`);
  }
  console.log(`seeds=${count} violations=${violations} committedEntries=${committed} elapsed=${((performance.now() - t0) / 1000).toFixed(1)}s`);
  if (process.argv.includes('--stats')) console.log(JSON.stringify(stats, Object.keys(stats).sort(), 1));
  process.exitCode = violations === 0 ? 0 : 1;
}
