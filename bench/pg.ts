// pgbench select-only and tpcb-like against one direct postgres and through a 3-replica Recall
// cluster (3 `recall serve --engine postgres` processes, 3 managed postgres, all on this
// machine), side by side, with the issue's targets, where the CPU went, and a check that the
// three replicas hold the same balances and pgbench_history afterwards.
// Run by `npm run bench` (all benchmarks) or `npm run bench -- pg`, or `node dist/bench/pg.js`.
// Settings (environment):
//   BENCH_PG_SECONDS  measured seconds per side and workload (default 10), split into BENCH_ROUNDS
//                     alternating rounds (default 2); a short warm-up per side precedes them
//   BENCH_PG_SCALE    pgbench scale (default 10)
//   BENCH_PG_CLIENTS  clients (default 8; -j 2)
//   BENCH_PG_MODE     pgbench -M (default simple, pgbench's own default)
//   BENCH_PG_PORTS    all (default: the clients spread over the 3 replicas, one pgbench per port,
//                     tps added) or leader (one pgbench on the leader's port)
//   BENCH_PG_WORKLOADS comma-separated subset of select-only,tpcb-like,tpcb-optimistic (default all);
//                     without tpcb-like the one-client run and the replica comparison are skipped;
//                     tpcb-optimistic is tpcb-like with PGOPTIONS='-c recall.optimistic=on' and
//                     pgbench --max-tries=10 on both sides (Recall's optimistic transactions, whose
//                     rare 40001 pgbench retries; on the direct side the setting does nothing)
//   BENCH_PG_OPTIMISTIC 1: the recall processes run with pgOptimistic (optimistic transactions and
//                      group commit of their COMMITs; off by default, as in recall's configuration)
//   BENCH_PG_CPU_PROF  a directory: the recall processes run under node --cpu-prof and write a
//                      .cpuprofile each there when they stop (for finding where Recall's CPU goes)
// Both sides are initialised with `pgbench -i -I dtGvp` (server-side generation): COPY FROM
// STDIN in a replicated write is refused by Recall for now, and the tables come out the same.
// The direct server is a ManagedPostgres with the defaults a managed replica gets, so the
// comparison is the cost of the extra hop and of replication. Recall's lane and appliers commit
// with synchronous_commit off (the Raft log is the durable copy); the direct server's
// transactions commit with postgres's default (on).
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { ManagedPostgres } from '../src/supervisor/postgres.js';
import { freePort } from '../test/harness/ports.js';
import { tempDir, type TempDir } from '../test/harness/tmp.js';
import { startPgBenchCluster, postmasterPid, type PgBenchCluster } from './lib/pg-cluster.js';
import { runCommand, runPgbenchPorts, combineSequential, spreadClients, type PgbenchResult } from './lib/pg-pgbench.js';
import { cpuSince, postgresCpu, processCpu } from './lib/pg-cpu.js';
import { machineBusySeconds, raftDelta, raftNumbers, type RaftNumbers } from './lib/pg-metrics.js';
import { printReport, type SideAccount, type WorkloadResult } from './lib/pg-report.js';
import { configureLogging } from '../src/util/log.js';

const seconds = Number(process.env.BENCH_PG_SECONDS ?? 10);
const rounds = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 2));
const scale = Number(process.env.BENCH_PG_SCALE ?? 10);
const clients = Number(process.env.BENCH_PG_CLIENTS ?? 8);
const threads = 2;
const mode = process.env.BENCH_PG_MODE ?? 'simple';
const portsMode = process.env.BENCH_PG_PORTS === 'leader' ? 'leader' : 'all';
const warmupSeconds = Math.max(2, Math.round(seconds / 5));
const cpuProfDir = process.env.BENCH_PG_CPU_PROF;
const optimistic = process.env.BENCH_PG_OPTIMISTIC === '1';
const workloads = (['select-only', 'tpcb-like', 'tpcb-optimistic'] as const).filter((w) => (process.env.BENCH_PG_WORKLOADS ?? 'select-only,tpcb-like,tpcb-optimistic').split(',').includes(w));
/** Seconds of the unloaded-cluster CPU reading and of the one-client tpcb-like profile run. */
const idleSeconds = 3;
const soloSeconds = 4;

// the direct ManagedPostgres logs in this process: only its warnings belong in the report
configureLogging({ quiet: true });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One value (first column of the first row) from a postgres reached directly. */
async function one(port: number, sql: string): Promise<string> {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
  await c.connect();
  try {
    return String((await c.query({ text: sql, rowMode: 'array' })).rows[0]![0]);
  } finally {
    await c.end();
  }
}

const stateSql = "SELECT (SELECT sum(abalance) FROM pgbench_accounts) || ' ' || (SELECT sum(bbalance) FROM pgbench_branches) || ' ' || " +
  "(SELECT sum(tbalance) FROM pgbench_tellers) || ' ' || (SELECT count(*) || ' ' || md5(coalesce(string_agg(h::text, '|' ORDER BY h::text), '')) FROM pgbench_history h)";

interface Side {
  name: 'direct' | 'recall';
  ports: number[];
}

async function main(): Promise<void> {
  console.log(`\n== pg: pgbench direct postgres vs 3-replica Recall cluster (scale ${scale}, ${clients} clients, -j ${threads}, -M ${mode}, ` +
    `${seconds} s per side and workload in ${rounds} alternating rounds, warm-up ${warmupSeconds} s${optimistic ? ', recall with pgOptimistic' : ''}) ==`);
  let dir: TempDir | undefined;
  let direct: ManagedPostgres | undefined;
  let cluster: PgBenchCluster | undefined;
  const cleanup = async () => {
    await Promise.allSettled([cluster?.stop(), direct?.stop()]);
    dir?.remove();
  };
  process.once('SIGINT', () => {
    console.error('\ninterrupted: stopping the cluster and the direct server');
    void cleanup().then(() => process.exit(130));
  });
  let failures = 0;
  try {
    dir = tempDir('recall-bench-pgd-');
    chmodSync(dir.path, 0o711); // the postgres OS user walks through it
    const directDir = join(dir.path, 'pg');
    direct = new ManagedPostgres({ dataDir: directDir, port: await freePort(), startTimeoutMs: 120_000 });
    const t0 = Date.now();
    const [d, cl] = await Promise.allSettled([direct.start(), startPgBenchCluster({
      ...(cpuProfDir ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] } : {}),
      ...(optimistic ? { extraArgs: ['--pg-optimistic'] } : {}),
    })]);
    if (cl.status === 'fulfilled') cluster = cl.value;
    if (d.status === 'rejected') throw d.reason;
    if (cl.status === 'rejected') throw cl.reason;
    if (!cluster) throw new Error('unreachable');
    const c3 = cluster;
    const leader = await c3.waitLeader();
    const directPort = direct.dsn.port;
    console.log(`started in ${((Date.now() - t0) / 1000).toFixed(1)} s: direct postgres port ${directPort}; Recall PostgreSQL ports ${c3.nodes.map((n) => n.pgPort).join(',')} ` +
      `(leader node ${leader + 1}), recall pids ${c3.nodes.map((n) => n.process.pid).join(',')}`);

    const sides: Side[] = [
      { name: 'direct', ports: [directPort] },
      { name: 'recall', ports: portsMode === 'leader' ? [c3.nodes[leader]!.pgPort] : c3.nodes.map((n) => n.pgPort) },
    ];
    for (const side of sides) {
      const t = Date.now();
      await runCommand('pgbench', ['-h', '127.0.0.1', '-p', String(side.ports[0]), '-U', 'postgres', '-i', '-I', 'dtGvp', '-s', String(scale), 'postgres'], { timeoutMs: 600_000 });
      if (side.name === 'recall') await c3.waitConverged(300_000);
      console.log(`initialised ${side.name} (pgbench -i -I dtGvp -s ${scale}${side.name === 'recall' ? ', through the leader, all replicas applied' : ''}) in ${((Date.now() - t) / 1000).toFixed(1)} s`);
    }
    const clientSplit = sides[1]!.ports.length > 1 ? spreadClients(clients, sides[1]!.ports.length).join('+') : String(clients);
    console.log(`Recall side: ${portsMode === 'all' ? `one pgbench per replica's port with ${clientSplit} clients (-j 1 each), tps added` : `one pgbench on the leader's port`}`);

    const recallPids = c3.nodes.map((n) => n.process.pid);
    const clusterPostmasters = c3.nodes.map((n) => postmasterPid(n.dbDir));
    const directPostmaster = postmasterPid(directDir);
    const meters = {
      recall: () => recallPids.reduce<number>((a, p) => a + processCpu(p), 0),
      clusterDb: () => clusterPostmasters.reduce<number>((a, p) => a + postgresCpu(p), 0),
      directDb: () => postgresCpu(directPostmaster),
      machine: machineBusySeconds,
    };
    // What the cluster costs with no clients (heartbeats, timers), to tell apart from per-transaction work.
    const idleMeter = cpuSince(meters);
    await sleep(idleSeconds * 1000);
    const idle = idleMeter();
    const idleLine = `idle cluster over ${idleSeconds} s: recall processes ${((idle.recall! / idleSeconds) * 100).toFixed(1)}% of a core, ` +
      `their postgres ${((idle.clusterDb! / idleSeconds) * 100).toFixed(1)}%, whole machine ${((idle.machine! / idleSeconds) * 100).toFixed(0)}% (of ${cpus().length * 100}%)`;
    console.log(idleLine);
    const raftNow = async (): Promise<RaftNumbers[]> => Promise.all(c3.nodes.map(async (_, i) => raftNumbers(await c3.metrics(i))));

    const results: WorkloadResult[] = [];
    for (const [w, workload] of workloads.entries()) {
      const selectOnly = workload === 'select-only';
      const acct: Record<Side['name'], SideAccount> = {
        direct: { cpu: { recall: 0, clusterDb: 0, directDb: 0, machine: 0 }, tx: 0, secs: 0 },
        recall: { cpu: { recall: 0, clusterDb: 0, directDb: 0, machine: 0 }, tx: 0, secs: 0, raft: [] },
      };
      const run = async (side: Side, secs: number, measured: boolean): Promise<PgbenchResult | string> => {
        try {
          const raft0 = measured && side.name === 'recall' ? await raftNow() : undefined;
          const meter = cpuSince(meters);
          const opt = workload === 'tpcb-optimistic' ? { pgOptions: '-c recall.optimistic=on', maxTries: 10 } : {};
          const res = await runPgbenchPorts({ ports: side.ports, clients, threads, seconds: secs, selectOnly, mode, perStatement: !selectOnly, ...opt });
          const used = meter();
          if (res.aborted) console.log(`${workload} on ${side.name}: pgbench clients aborted: ${res.aborted}`);
          if (measured) {
            const a = acct[side.name];
            for (const k of Object.keys(a.cpu) as Array<keyof typeof a.cpu>) a.cpu[k] += used[k]!;
            a.tx += res.transactions;
            a.secs += res.tps > 0 ? res.transactions / res.tps : 0;
            if (raft0) {
              const raft1 = await raftNow();
              a.raft!.push(...raft1.map((r, i) => raftDelta(raft0[i]!, r)));
            }
          }
          return res;
        } catch (e) {
          const msg = (e as Error).message;
          const line = msg.split('\n').find((l) => /FATAL|ERROR|error|aborted/.test(l)) ?? msg.split('\n')[0]!;
          console.log(`${workload} on ${side.name} failed: ${line}`);
          return msg;
        }
      };
      // Alternate which side goes first, so that neither always gets the warmer caches.
      const order = w % 2 === 0 ? sides : [...sides].reverse();
      const before = await c3.replication(await c3.waitLeader().catch(() => leader));
      for (const side of order) await run(side, warmupSeconds, false);
      const parts: Record<Side['name'], Array<PgbenchResult | string>> = { direct: [], recall: [] };
      for (let round = 0; round < rounds; round++) {
        for (const side of round % 2 === 0 ? order : [...order].reverse()) {
          parts[side.name].push(await run(side, Math.max(1, Math.round(seconds / rounds)), true));
        }
      }
      const combined = (list: Array<PgbenchResult | string>): PgbenchResult | string =>
        list.find((x): x is string => typeof x === 'string') ?? combineSequential(list as PgbenchResult[]);
      const nowLeader = await c3.waitLeader().catch(() => -1);
      const after = nowLeader >= 0 ? await c3.replication(nowLeader) : undefined;
      const elections = before && after && after.term !== before.term
        ? `leader changed during ${workload}: node ${before.leader} term ${before.term} -> node ${after.leader} term ${after.term}` : undefined;
      if (elections) console.log(elections);
      const res: WorkloadResult = { workload, direct: combined(parts.direct), recall: combined(parts.recall), acct, raftLeader: nowLeader, elections };
      for (const x of [res.direct, res.recall]) if (typeof x === 'string' || x.aborted) failures++;
      results.push(res);
      const tps = (x: PgbenchResult | string) => (typeof x === 'string' ? 'failed' : `${x.tps.toFixed(0)} tps (${x.failed} failed${x.aborted ? ', clients aborted' : ''})`);
      console.log(`${workload}: direct ${tps(res.direct)}, recall ${tps(res.recall)}`);
    }

    // The floor of any proxy written in Node on this machine: select-only through a bare TCP
    // pass-through (socket.pipe both ways, no parsing at all) in front of the direct postgres,
    // measured right after a direct run of the same length.
    let floorLine: string | undefined;
    if (workloads.includes('select-only')) {
      const pipePort = await freePort();
      const proxy = startPipeProxy(pipePort, directPort);
      try {
        await sleep(300);
        const secs = Math.max(1, Math.round(seconds / rounds));
        const d = await runPgbenchPorts({ ports: [directPort], clients, threads, seconds: secs, selectOnly: true, mode, perStatement: false });
        const p = await runPgbenchPorts({ ports: [pipePort], clients, threads, seconds: secs, selectOnly: true, mode, perStatement: false });
        floorLine = `floor of a Node proxy: select-only through a bare pass-through (socket.pipe, no parsing) ${p.tps.toFixed(0)} tps against ${d.tps.toFixed(0)} direct = ${(p.tps / d.tps).toFixed(2)}`;
        console.log(floorLine);
      } catch (e) {
        console.log(`the pass-through floor could not be measured: ${(e as Error).message.split('\n')[0]}`);
      } finally {
        proxy.kill('SIGKILL');
      }
    }

    // One client on the leader: a transaction's statements without waiting for the lane.
    let solo: PgbenchResult | string = 'skipped (no tpcb-like run)';
    let soloDirect: PgbenchResult | string = solo;
    let equal = 'not checked (no tpcb-like run)';
    if (workloads.includes('tpcb-like')) {
      try {
        soloDirect = await runPgbenchPorts({ ports: [directPort], clients: 1, threads: 1, seconds: soloSeconds, selectOnly: false, mode, perStatement: true });
      } catch (e) {
        soloDirect = (e as Error).message;
      }
      try {
        const l = await c3.waitLeader();
        solo = await runPgbenchPorts({ ports: [c3.nodes[l]!.pgPort], clients: 1, threads: 1, seconds: soloSeconds, selectOnly: false, mode, perStatement: true });
      } catch (e) {
        solo = (e as Error).message;
        console.log(`tpcb-like with one client failed: ${solo.split('\n')[0]}`);
    }

    // After the tpcb-like runs: every replica applied everything and holds the same data.
    try {
      await c3.waitConverged(120_000);
      const states = await Promise.all(c3.nodes.map((n) => one(n.dbPort, stateSql)));
      const [a, b, t, hCount] = states[0]!.split(' ');
      if (states.some((s) => s !== states[0])) {
        failures++;
        equal = `NO: the replicas differ:\n  ${states.map((s, i) => `node ${i + 1}: ${s}`).join('\n  ')}`;
      } else if (a !== b || a !== t || Number(hCount) === 0) {
        failures++;
        equal = `NO: balances do not add up or no history (${states[0]})`;
      } else {
        equal = `yes: sum(abalance) = sum(bbalance) = sum(tbalance) = ${a}, pgbench_history ${hCount} rows md5 ${states[0]!.split(' ')[4]} on all 3`;
      }
    } catch (e) {
      failures++;
      equal = `NO: ${(e as Error).message}`;
    }
    }

    printReport({ results, equal, solo, soloDirect, idleLine, cores: cpus().length, load: loadavg(), seconds, rounds, portsMode, clientSplit, nodes: c3.nodes.length });
    if (floorLine) console.log(floorLine);
  } finally {
    await cleanup();
  }
  if (failures) throw new Error(`${failures} part(s) of the pg benchmark failed (see above)`);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);

/** A bare TCP pass-through on 127.0.0.1:listen to 127.0.0.1:target, in a process of its own (as Recall is). */
function startPipeProxy(listen: number, target: number): ChildProcess {
  const code = `const net = require('node:net');
net.createServer((c) => {
  const s = net.connect(${target}, '127.0.0.1');
  c.setNoDelay(true); s.setNoDelay(true);
  c.pipe(s); s.pipe(c);
  const end = () => { c.destroy(); s.destroy(); };
  c.on('error', end); s.on('error', end); c.on('close', end); s.on('close', end);
}).listen(${listen}, '127.0.0.1');`;
  return spawn(process.execPath, ['-e', code], { stdio: 'ignore' });
}
