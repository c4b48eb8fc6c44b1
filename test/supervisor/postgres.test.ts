// ManagedPostgres against a real postgres: initdb on an empty dir, queries over TCP and the
// unix socket, clean stop, start again on the same data, kill -9 and restart with backoff,
// a server left behind by a dead process, and no process left after stop.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { ManagedPostgres, childPids, type ManagedState } from '../../src/supervisor/postgres.js';
import { tempDir } from '../harness/tmp.js';
import { freePort } from '../harness/ports.js';
import { alive } from '../harness/process.js';

async function query(conn: pg.ClientConfig, sql: string): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({ user: 'postgres', database: 'postgres', ...conn });
  await client.connect();
  try {
    return (await client.query(sql)).rows as Record<string, unknown>[];
  } finally {
    await client.end();
  }
}

/** The processes in `pids` still alive (zombies count as gone). */
function living(pids: number[]): number[] {
  return pids.filter((pid) => {
    try {
      return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
    } catch {
      return false;
    }
  });
}

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return cond();
}

describe('ManagedPostgres', () => {
  const dir = tempDir('recall-pg-');
  // mkdtemp makes 0700 directories; the unprivileged postgres user must be able to enter it.
  chmodSync(dir.path, 0o755);
  const dataDir = join(dir.path, 'db');
  let db: ManagedPostgres;
  const states: ManagedState[] = [];
  after(async () => {
    await db?.stop();
    dir.remove();
  });

  test('initdb on an empty dir, then postgres answers over TCP 127.0.0.1 and the unix socket', async () => {
    const port = await freePort();
    db = new ManagedPostgres({ dataDir, port, restart: { backoffMsMin: 100, backoffMsMax: 1000 }, startTimeoutMs: 30000, stopTimeoutMs: 10000 });
    db.on('state', (s: ManagedState) => states.push(s));
    assert.equal(db.state, 'stopped');
    await db.start();
    assert.equal(db.state, 'running');
    assert.deepEqual(states, ['initializing', 'starting', 'running']);
    assert.equal(db.port, port);
    assert.deepEqual(db.dsn, { host: '127.0.0.1', port, user: 'postgres' });
    assert.ok(existsSync(join(dataDir, 'PG_VERSION')));
    assert.ok(existsSync(join(db.socketDir, `.s.PGSQL.${port}`)));
    const tcp = await query({ ...db.dsn }, "SELECT current_user AS u, inet_server_addr()::text AS a, current_setting('port') AS p");
    assert.deepEqual(tcp, [{ u: 'postgres', a: '127.0.0.1/32', p: String(port) }]);
    // Over the socket inet_server_addr() is NULL: proof that this one did not go through TCP.
    const sock = await query({ host: db.socketDir, port }, 'SELECT inet_server_addr() AS a, 40 + 2 AS n');
    assert.deepEqual(sock, [{ a: null, n: 42 }]);
    await query({ ...db.dsn }, 'CREATE TABLE t (id int PRIMARY KEY, v text)');
    await query({ host: db.socketDir, port }, "INSERT INTO t VALUES (1, 'one')");
    // The server does not run as root.
    const uid = readFileSync(`/proc/${db.pid}/status`, 'utf8').match(/^Uid:\s+(\d+)/m)![1];
    if (process.getuid?.() === 0) assert.notEqual(uid, '0');
  });

  test('stop is a clean fast shutdown that leaves no postgres process', async () => {
    const pid = db.pid!;
    // postgres puts each child in a session of its own, so they are found by parent pid.
    const children = childPids(pid);
    assert.ok(children.length >= 3, `postmaster children: ${children.join(',')}`);
    await db.stop();
    assert.equal(db.state, 'stopped');
    assert.equal(alive(pid), false);
    assert.deepEqual(living(children), []);
    assert.equal(existsSync(join(dataDir, 'postmaster.pid')), false);
    assert.match(readFileSync(db.logPath, 'utf8'), /received fast shutdown request/);
  });

  test('starts again on the same data dir without initdb; the data is kept', async () => {
    states.length = 0;
    await db.start();
    assert.deepEqual(states, ['starting', 'running']);
    assert.deepEqual(await query({ ...db.dsn }, 'SELECT id, v FROM t'), [{ id: 1, v: 'one' }]);
  });

  test('kill -9 of postgres: crash detected, restarted on the same port with the data', async () => {
    const pid = db.pid!;
    const children = childPids(pid);
    assert.ok(children.length >= 3);
    const port = db.port;
    states.length = 0;
    const crashed = new Promise<{ signal: string; restartInMs: number }>((res) => db.once('crash', res));
    const restarted = new Promise((res) => db.once('restarted', res));
    process.kill(pid, 'SIGKILL');
    const info = await crashed;
    assert.equal(info.signal, 'SIGKILL');
    assert.equal(info.restartInMs, 100);
    await restarted;
    assert.equal(db.state, 'running');
    assert.deepEqual(states.slice(0, 3), ['crashed', 'backoff', 'starting']);
    assert.equal(states.at(-1), 'running');
    assert.notEqual(db.pid, pid);
    assert.equal(db.port, port);
    assert.equal(db.restartCount, 1);
    assert.deepEqual(await query({ ...db.dsn }, 'SELECT id, v FROM t'), [{ id: 1, v: 'one' }]);
    assert.ok(await waitFor(() => living(children).length === 0, 10000), 'children of the killed postmaster exit');
  });

  test('a postgres left running by a dead process is stopped before a new start', async () => {
    const orphan = db.pid!;
    const orphanChildren = childPids(orphan);
    // Forget the child without stopping it, as a Recall process killed with -9 would.
    db.removeAllListeners();
    (db as unknown as { child: unknown }).child = undefined;
    (db as unknown as { _state: ManagedState })._state = 'stopped';
    const second = new ManagedPostgres({ dataDir, port: 0, startTimeoutMs: 30000, stopTimeoutMs: 10000 });
    try {
      await second.start();
      assert.equal(alive(orphan), false);
      assert.notEqual(second.pid, orphan);
      assert.notEqual(second.port, 0);
      assert.deepEqual(await query({ host: second.socketDir, port: second.port }, 'SELECT count(*)::int AS n FROM t'), [{ n: 1 }]);
      const pid = second.pid!;
      const children = childPids(pid);
      await second.stop();
      assert.equal(alive(pid), false);
      assert.deepEqual(living([...children, ...orphanChildren]), []);
    } finally {
      await second.stop();
      if (alive(orphan)) process.kill(orphan, 'SIGKILL');
    }
  });

  test('a long data dir path gets a short socket directory', () => {
    const long = join(dir.path, 'a'.repeat(60), 'b'.repeat(60));
    const m = new ManagedPostgres({ dataDir: long });
    assert.ok(Buffer.byteLength(join(m.socketDir, '.s.PGSQL.65535')) < 108, m.socketDir);
    assert.ok(!m.socketDir.startsWith(long));
    return m.stop();
  });
});

describe('ManagedPostgres stop during start-up', () => {
  for (const during of ['initializing', 'starting'] as const) {
    test(`stop() while ${during}: start() rejects, nothing keeps running`, async () => {
      const dir = tempDir('recall-pg-early-');
      chmodSync(dir.path, 0o755);
      const db = new ManagedPostgres({ dataDir: join(dir.path, 'db'), port: 0, startTimeoutMs: 30000, stopTimeoutMs: 10000 });
      let pid: number | undefined;
      try {
        const reached = new Promise<void>((res) => db.on('state', (s: ManagedState) => s === during && res()));
        const outcome = db.start().then(() => 'started', (err: Error) => err.message);
        await reached;
        // While starting, wait for the spawn so the stop has a real server process to end.
        if (during === 'starting') await waitFor(() => db.pid !== undefined, 5000);
        pid = db.pid;
        if (during === 'starting') assert.ok(pid !== undefined);
        await db.stop();
        assert.match(await outcome, /stopped during start-up/);
        assert.equal(db.state, 'stopped');
        if (pid !== undefined) assert.equal(alive(pid), false);
        assert.equal(existsSync(join(dir.path, 'db', 'postmaster.pid')), false);
      } finally {
        await db.stop();
        if (pid !== undefined && alive(pid)) process.kill(pid, 'SIGKILL');
        dir.remove();
      }
    });
  }
});
