// `recall demo` (3 replicas, each a `recall serve` child with its own managed mariadbd,
// self-signed TLS, Ctrl-C stops everything, a second start reuses the data) and
// `recall status` against it, as real processes with the real mariadb client.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import { recallCommand, cleanEnv, repoRoot, waitExit } from '../harness/recall.js';
import { freePort } from '../harness/ports.js';
import { tempDir } from '../harness/tmp.js';
import { alive } from '../harness/process.js';
import { clusterStatus, discoverAdmins, formatTable, parseStatus, tableSignature, type ReplicaReport } from '../../src/cli/status.js';

const replicas = 3;

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** Every port the demo uses for n replicas, from a base. */
function demoPortList(base: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => [base + i, base + 32 + i, base + 100 + i, base + 200 + i]).flat();
}

/** A base port whose demo ports (+0.., +32.., +100.., +200..) are all free. */
async function demoPortBase(n = replicas): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const p = await freePort();
    if (p < 1024 || p > 65000) continue;
    const ok = await Promise.all(demoPortList(p, n).map(canBind));
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

/** The mariadb command-line client, batch mode without column names; resolves with stdout. */
function mariadbCli(port: number, sql: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('mariadb', ['-h', '127.0.0.1', '-P', String(port), '-u', 'root', '-N', '-B', '-e', sql], { timeout: 20000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`mariadb -P ${port}: ${err.message}\n${stderr}`)) : resolve(stdout),
    );
  });
}

interface Demo {
  child: ChildProcess;
  out(): string;
  err(): string;
  waitFor(pattern: RegExp, ms: number): Promise<void>;
  /** SIGINT (Ctrl-C) and the exit code. */
  interrupt(): Promise<number | null>;
}

function startDemo(dir: string, base: number): Demo {
  const child = spawn(process.execPath, [...recallCommand(), 'demo', '--replicas', String(replicas), '--dir', dir, '--port-base', String(base)], {
    cwd: repoRoot(),
    env: cleanEnv(),
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (b: Buffer) => (stdout += b));
  child.stderr!.on('data', (b: Buffer) => (stderr += b));
  return {
    child,
    out: () => stdout,
    err: () => stderr,
    async waitFor(pattern, ms) {
      const deadline = Date.now() + ms;
      while (!pattern.test(stdout)) {
        assert.equal(child.exitCode, null, `demo exited early:\n${stdout}\n${stderr}`);
        assert.ok(Date.now() < deadline, `no ${pattern} within ${ms} ms:\n${stdout}\n${stderr}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async interrupt() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGINT');
      return waitExit(child, 120000);
    },
  };
}

/** pids of the recall children (the demo's pid files) and of their mariadbd servers. */
function demoPids(dir: string): number[] {
  const pids: number[] = [];
  const read = (p: string) => {
    if (existsSync(p)) pids.push(Number(readFileSync(p, 'utf8').trim()));
  };
  const runDir = join(dir, 'run');
  if (existsSync(runDir)) for (const f of readdirSync(runDir)) read(join(runDir, f));
  for (let i = 1; i <= replicas; i++) read(join(dir, `replica-${i}`, 'mariadb', 'mysqld.pid'));
  return pids;
}

/** Running, not a zombie: an orphaned mariadbd the demo stopped is reaped by init, which may take a moment. */
function running(pid: number): boolean {
  if (!alive(pid)) return false;
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

async function assertAllGone(pids: number[], base: number): Promise<void> {
  for (const pid of pids) assert.equal(running(pid), false, `process ${pid} still running after the demo stopped`);
  const bindable = await Promise.all([...Array(replicas).keys()].flatMap((i) => [base + i, base + 100 + i, base + 200 + i]).map(canBind));
  assert.ok(bindable.every(Boolean), 'a demo port is still taken after the demo stopped');
}

interface StatusEntry {
  admin: string;
  status?: { nodeId: number; replication?: { role: string; leader: number } };
  error?: string;
}

/** A /status body of the agreed shape (what the admin HTTP of a replicating node answers). */
function body(nodeId: number, role: string, commit: number, applied: number, extra: Record<string, unknown> = {}): unknown {
  const peers = [1, 2, 3].filter((i) => i !== nodeId).map((id) => ({ id, address: `127.0.0.1:${8599 + id}`, match: applied, lag: 0, connected: true }));
  return {
    nodeId,
    engine: 'mysql',
    database: { mode: 'managed', state: 'running', reachable: true },
    replication: { role, term: 4, leader: 1, commit, applied, lastIndex: commit, diverged: false, laneOpen: role === 'leader', peers, ...extra },
  };
}

function report(admin: string, raw: unknown): ReplicaReport {
  const status = parseStatus(raw);
  return status ? { admin, status } : { admin, error: 'bad' };
}

describe('recall status formatting', () => {
  test('garbage from the network is not a status, bad peers are skipped', () => {
    for (const b of [null, 7, 'x', [], {}, { nodeId: '1' }]) assert.equal(parseStatus(b), undefined);
    const st = parseStatus({ nodeId: 2, replication: { role: 'follower', peers: [null, { id: 'x' }, { id: 1, address: '127.0.0.1:8600' }] } });
    assert.deepEqual(st?.replication?.peers.map((p) => p.id), [1]);
    assert.equal(parseStatus({ nodeId: 1 })?.replication, undefined);
  });

  test('one admin address finds the others from its peers', () => {
    assert.deepEqual(discoverAdmins('127.0.0.1:8701', parseStatus(body(2, 'follower', 5, 5))!), [
      { admin: '127.0.0.1:8700', nodeId: 1 },
      { admin: '127.0.0.1:8702', nodeId: 3 },
    ]);
    // when the replica says its own peer address, the admin port keeps the same distance from it
    const st = parseStatus({ nodeId: 1, replication: { role: 'leader', address: '10.0.0.1:7000', peers: [{ id: 2, address: '10.0.0.2:7000' }] } })!;
    assert.deepEqual(discoverAdmins('10.0.0.1:9000', st), [{ admin: '10.0.0.2:9000', nodeId: 2 }]);
  });

  test('table: a replica in the middle of a full resync gets a progress line', () => {
    const resync = { state: 'running', reason: 'the log was compacted past this database', progress: { phase: 'transfer', donor: 1, bytes: 12_300_000, totalBytes: 30_100_000, bytesPerSec: 14_700_000, etaSec: 1.2 } };
    const reports = [report('127.0.0.1:8700', body(1, 'leader', 10, 10)), report('127.0.0.1:8701', body(2, 'follower', 10, 3, { resync }))];
    const text = formatTable(reports);
    assert.match(text, /^node 2: resync running, transfer 41% \(12\.3 of 30\.1 MB\) at 14\.7 MB\/s, ETA 1 s, from node 1 \(the log was compacted past this database\)$/m);
    const idle = [report('127.0.0.1:8701', body(2, 'follower', 10, 10, { resync: { state: 'idle' } }))];
    assert.doesNotMatch(formatTable(idle), /resync/);
  });

  test('table: lag against the leader commit, diverged, down replicas; redraw only on changes that matter', () => {
    const reports = [
      report('127.0.0.1:8700', body(1, 'leader', 10, 10)),
      report('127.0.0.1:8701', body(2, 'follower', 9, 7)),
      report('127.0.0.1:8702', body(3, 'follower', 10, 10, { diverged: true, divergedReason: 'outcome mismatch at 8' })),
    ];
    const lines = formatTable(reports).trimEnd().split('\n');
    assert.equal(lines.length, 4);
    assert.match(lines[1]!, /^1\s+127\.0\.0\.1:8700\s+leader\s+4\s+1\s+10\s+10\s+0\s+no\s+2\/2 peers\s+running$/);
    assert.match(lines[2]!, /^2\s+127\.0\.0\.1:8701\s+follower\s+4\s+1\s+9\s+7\s+3\s+no\s/);
    assert.match(lines[3]!, /\sYES \(outcome mismatch at 8\)\s/);
    const more = [reports[0]!, report('127.0.0.1:8701', body(2, 'follower', 9, 5)), reports[2]!];
    assert.equal(tableSignature(more), tableSignature(reports), 'lag 3 -> 5 is not worth a redraw');
    const caughtUp = [reports[0]!, report('127.0.0.1:8701', body(2, 'follower', 10, 10)), reports[2]!];
    assert.notEqual(tableSignature(caughtUp), tableSignature(reports));
    const down = [reports[0]!, { admin: '127.0.0.1:8701', error: 'ECONNREFUSED' }, reports[2]!];
    assert.notEqual(tableSignature(down), tableSignature(reports));
    assert.match(formatTable(down), /^\?\s+127\.0\.0\.1:8701\s+down\s.*no answer \(ECONNREFUSED\)/m);
    // a replica known from a peer list keeps its node id while it does not answer
    assert.match(formatTable([reports[0]!, { admin: '127.0.0.1:8701', expectedId: 2, error: 'ECONNREFUSED' }]), /^2\s+127\.0\.0\.1:8701\s+down\s/m);
    assert.doesNotMatch(formatTable(reports), /replication: not running/);
    assert.match(formatTable([report('a:1', { nodeId: 1, database: { state: 'running' } })]), /not running.*\nreplication: not running on node 1 /);
  });
});

describe('recall demo and recall status', () => {
  test('3-replica demo: progress, mariadb on all three ports, status rows, Ctrl-C stops all, restart reuses the data', async (t) => {
    const tmp = tempDir('recall-demo-');
    const base = await demoPortBase();
    const admins = [0, 1, 2].map((i) => `127.0.0.1:${base + 200 + i}`);
    const ports = [0, 1, 2].map((i) => base + i);
    let demo = startDemo(tmp.path, base);
    let pids: number[] = [];
    try {
      await demo.waitFor(/Press Ctrl-C to stop\./, 240000);
      const out = demo.out();
      for (let i = 1; i <= replicas; i++) {
        assert.match(out, new RegExp(`replica ${i}: initialising a new MariaDB data directory`));
        assert.match(out, new RegExp(`replica ${i}: MariaDB running \\(\\d+\\.\\d s\\)`));
        assert.match(out, new RegExp(`replica ${i}: recall ready`));
        assert.ok(out.includes(`mariadb -h 127.0.0.1 -P ${base + i - 1} -u root`), out);
        assert.ok(existsSync(join(tmp.path, 'logs', `replica-${i}.log`)));
      }
      assert.ok(existsSync(join(tmp.path, 'tls', 'cert.pem')));
      const secret = readFileSync(join(tmp.path, 'cluster-secret'), 'utf8');
      assert.ok(secret.trim().length >= 32);
      // quiet: the demo's own progress on stdout, the replicas' logs in files
      assert.equal(demo.err().trim(), '', demo.err());
      // the cluster table follows the connect lines
      await demo.waitFor(/cluster state at [\d:]+:\nnode\s+admin\s+role/, 20000);

      // Each replica is a separate `recall serve` process with its own mariadbd.
      pids = demoPids(tmp.path);
      assert.equal(new Set(pids).size, 2 * replicas, `pids ${pids}`);
      for (const pid of pids) assert.ok(alive(pid));

      // The mariadb client through every MySQL port.
      for (const p of ports) assert.equal((await mariadbCli(p, 'SELECT 7 * 6')).trim(), '42');
      await mariadbCli(ports[0]!, 'CREATE DATABASE demo_keep; CREATE TABLE demo_keep.t (id INT PRIMARY KEY, v VARCHAR(20)); INSERT INTO demo_keep.t VALUES (1, \'kept\')');

      // TLS is between the client and Recall (Recall's own link to mariadbd is the local socket).
      const conn = await mysql.createConnection({ host: '127.0.0.1', port: base, user: 'root', ssl: { rejectUnauthorized: false } });
      const stream = (conn as unknown as { connection: { stream: { encrypted?: boolean; getProtocol?: () => string } } }).connection.stream;
      assert.equal(stream.encrypted, true);
      assert.match(stream.getProtocol?.() ?? '', /^TLSv1\.[23]$/);
      await conn.end();

      // recall status: one row per replica.
      const st = await run(['status', ...admins.flatMap((a) => ['--admin', a])]);
      assert.equal(st.code, 0, st.stderr);
      const lines = st.stdout.trimEnd().split('\n');
      assert.match(lines[0]!, /^node\s+admin\s+role\s+term\s+leader\s+commit\s+applied\s+lag\s+diverged\s+connectivity\s+database$/);
      for (let i = 1; i <= replicas; i++) {
        assert.match(lines[i]!, new RegExp(`^${i}\\s+127\\.0\\.0\\.1:${base + 199 + i}\\s+\\S+.*\\srunning$`), st.stdout);
      }
      const js = await run(['status', ...admins.flatMap((a) => ['--admin', a]), '--json']);
      assert.equal(js.code, 0);
      const entries = JSON.parse(js.stdout) as StatusEntry[];
      assert.deepEqual(entries.map((e) => e.status?.nodeId), [1, 2, 3]);

      const replicated = entries.every((e) => e.status?.replication);
      if (replicated) {
        // "ready" waits for an elected leader that all three know
        assert.match(demo.out(), /replica [123] is the leader \(term \d+, [\d.]+ s\)\n\nRecall is ready/);
        // One admin address is enough: the others are found from its peers.
        const one = await run(['status', '--admin', admins[1]!]);
        assert.equal(one.code, 0, one.stderr);
        for (let i = 1; i <= replicas; i++) assert.match(one.stdout, new RegExp(`^${i}\\s+127\\.0\\.0\\.1:${base + 199 + i}\\s`, 'm'), one.stdout);
        // A write through replica 1 is read through replica 3.
        await mariadbCli(ports[0]!, "INSERT INTO demo_keep.t VALUES (2, 'replicated')");
        const deadline = Date.now() + 10000;
        let seen = '';
        while (Date.now() < deadline && !seen.includes('replicated')) {
          seen = await mariadbCli(ports[2]!, 'SELECT v FROM demo_keep.t WHERE id = 2').catch((e: Error) => e.message);
          if (!seen.includes('replicated')) await new Promise((r) => setTimeout(r, 200));
        }
        assert.equal(seen.trim(), 'replicated');
        // the demo's own table shows the leader
        await demo.waitFor(/^\d\s+127\.0\.0\.1:\d+\s+leader\s/m, 20000);
      } else {
        assert.match(demo.out(), /replication: not running on node 1, 2, 3/);
        t.diagnostic('replication core not in /status yet: cross-replica write check not run');
      }

      // Ctrl-C: exit 0, every child and every mariadbd gone, ports free.
      const code = await demo.interrupt();
      assert.equal(code, 0, demo.err());
      assert.match(demo.out(), /stopping \.\.\.\nstopped\.\n$/);
      await assertAllGone(pids, base);

      // Second start: same secret, no initialisation, the data is still there.
      demo = startDemo(tmp.path, base);
      await demo.waitFor(/Press Ctrl-C to stop\./, 240000);
      assert.doesNotMatch(demo.out(), /initialising/);
      assert.equal(readFileSync(join(tmp.path, 'cluster-secret'), 'utf8'), secret);
      assert.equal((await mariadbCli(ports[0]!, 'SELECT v FROM demo_keep.t WHERE id = 1')).trim(), 'kept');
      if (replicated) assert.equal((await mariadbCli(ports[2]!, 'SELECT v FROM demo_keep.t WHERE id = 1')).trim(), 'kept');

      // A replica that dies is reported and restarted; with replication the leader is the
      // victim, the others elect a new one and keep taking writes, and it catches up.
      let victimId = 2;
      if (replicated) {
        const now = JSON.parse((await run(['status', '--admin', admins[0]!, '--json'])).stdout) as StatusEntry[];
        victimId = now.find((e) => e.status?.replication?.role === 'leader')?.status?.nodeId ?? 2;
      }
      const victim = Number(readFileSync(join(tmp.path, 'run', `replica-${victimId}.pid`), 'utf8'));
      process.kill(victim, 'SIGKILL');
      await demo.waitFor(new RegExp(`replica ${victimId} exited unexpectedly \\(signal SIGKILL\\); restarting it in 5 s`), 10000);
      if (replicated) {
        const survivors = [1, 2, 3].filter((i) => i !== victimId);
        // In process, not through the CLI: a loaded machine may take longer to start a CLI
        // than the demo waits before restarting the replica.
        const down = formatTable(await clusterStatus([admins[survivors[0]! - 1]!]));
        assert.match(down, new RegExp(`^${victimId}\\s+\\S+\\s+down\\s`, 'm'), down);
        const deadline = Date.now() + 20000;
        let written = false;
        while (!written) {
          written = await mariadbCli(ports[survivors[0]! - 1]!, "INSERT INTO demo_keep.t VALUES (3, 'after failover')").then(() => true, (e: Error) => {
            // an earlier try answered "outcome unknown" but did commit
            if (/Duplicate entry/.test(e.message)) return true;
            assert.ok(Date.now() < deadline, `no write within 20 s of the leader's death: ${e.message}`);
            return false;
          });
          if (!written) await new Promise((r) => setTimeout(r, 200));
        }
        // the demo's own table showed the replica down
        const shownDown = new RegExp(`^${victimId}\\s+\\S+\\s+down\\s`, 'm');
        const after = () => demo.out().slice(demo.out().indexOf(`replica ${victimId} exited unexpectedly`));
        for (const end = Date.now() + 10000; !shownDown.test(after()) && Date.now() < end; ) await new Promise((r) => setTimeout(r, 100));
        assert.match(after(), shownDown);
      }
      await demo.waitFor(new RegExp(`replica ${victimId} is back and ready`), 60000);
      assert.equal((await mariadbCli(ports[victimId - 1]!, 'SELECT 1')).trim(), '1');
      if (replicated) {
        const deadline = Date.now() + 15000;
        let seen = '';
        while (Date.now() < deadline && !seen.includes('after failover')) {
          seen = await mariadbCli(ports[victimId - 1]!, 'SELECT v FROM demo_keep.t WHERE id = 3').catch((e: Error) => e.message);
          if (!seen.includes('after failover')) await new Promise((r) => setTimeout(r, 200));
        }
        assert.equal(seen.trim(), 'after failover', 'the restarted replica caught up');
      }
      pids = [...pids, victim, ...demoPids(tmp.path)];
      const code2 = await demo.interrupt();
      assert.equal(code2, 0, demo.err());
      await assertAllGone(pids, base);
    } finally {
      const code = await demo.interrupt();
      // Whatever happened above, nothing may stay running.
      for (const pid of demoPids(tmp.path)) if (running(pid)) process.kill(pid, 'SIGKILL');
      tmp.remove();
      assert.equal(code, 0, demo.err());
    }
  });

  test('status of a replica that is not running: exit 1 and what to check', async () => {
    const port = await freePort();
    const r = await run(['status', '--admin', `127.0.0.1:${port}`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot reach http:\/\/127\.0\.0\.1:\d+\/status: ECONNREFUSED/);
    assert.match(r.stdout, /^\?\s+127\.0\.0\.1:\d+\s+down\s.*no answer \(ECONNREFUSED\)/m);
  });

  test('demo refuses an even or too large replica count, with exit 2 and nothing created', async () => {
    for (const n of ['2', '9']) {
      const r = await run(['demo', '--replicas', n, '--dir', '/nonexistent-recall-demo']);
      assert.equal(r.code, 2);
      assert.match(r.stderr, new RegExp(`--replicas ${n}: give an odd number from 1 to 7`));
    }
    assert.equal(existsSync('/nonexistent-recall-demo'), false);
  });

  test('demo on a busy port: exit 1 with a hint, nothing left running', async () => {
    const base = await demoPortBase();
    const blocker = net.createServer().listen(base + 201, '127.0.0.1');
    await new Promise((r) => blocker.once('listening', r));
    const tmp = tempDir('recall-demo-busy-');
    try {
      const r = await run(['demo', '--replicas', '3', '--dir', tmp.path, '--port-base', String(base)]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, new RegExp(`port ${base + 201} \\(admin of replica 2\\).*EADDRINUSE.*--port-base`));
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
