// SQL-level PREPARE / EXECUTE through 3 real `recall serve --engine postgres` processes: writes by
// EXECUTE (with now(), random(), a volatile default, and now() as an argument) through psql on a
// follower's port and node-postgres on the leader's, reads by EXECUTE answered by the local
// database, EXECUTE inside a transaction (committed and rolled back), PREPARE inside a transaction
// that writes, DEALLOCATE, a failed second PREPARE of a name, an EXECUTE of an unknown name (postgres'
// own 26000); the md5 of the table is equal on all replicas afterwards. Then statements that cannot
// run in a transaction block: their outcome is compared (a replica where CREATE DATABASE fails
// while it succeeded on the leader says it diverged).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import pg from 'pg';
import { startCluster, pgSuperuserPassword, type TestCluster } from '../harness/cluster.js';
import { failureGuard } from '../harness/failure-guard.js';

const database = 'ptest';

function psqlRun(port: number, input: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const args = ['-X', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', database, '-A', '-t', '-v', 'ON_ERROR_STOP=1'];
    const ch = spawn('psql', args, { env: { ...process.env, PGPASSWORD: pgSuperuserPassword, PGCONNECT_TIMEOUT: '10' }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    ch.stdout.on('data', (d) => (out += d));
    ch.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => ch.kill('SIGKILL'), 60_000);
    ch.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
    ch.stdin.end(input);
  });
}

const failures = failureGuard();
const guard = failures.guard;

describe('SQL PREPARE / EXECUTE across 3 real recall + postgres', { timeout: 150_000 }, () => {
  let c: TestCluster;
  let leader = 0;
  const clients: pg.Client[] = [];
  const connect = async (i: number, db = database): Promise<pg.Client> => {
    const cl = new pg.Client({ host: '127.0.0.1', port: c.nodes[i]!.postgresPort, user: 'postgres', password: pgSuperuserPassword, database: db, connectionTimeoutMillis: 10_000 });
    cl.on('error', () => undefined);
    await cl.connect();
    clients.push(cl);
    return cl;
  };
  const sqlState = async (p: Promise<unknown>): Promise<string> => {
    try {
      await p;
    } catch (e) {
      return (e as { code?: string }).code ?? `no code: ${(e as Error).message}`;
    }
    return 'no error';
  };
  const assertSame = async (): Promise<string> => {
    await c.waitConverged(30_000);
    const sums = await c.pgChecksums(database);
    assert.ok(sums[0]!.ev && !sums[0]!.ev.startsWith('0:'), `ev has rows: ${JSON.stringify(sums[0])}`);
    assert.deepEqual(sums[1], sums[0], 'node 2 has the same contents as node 1');
    assert.deepEqual(sums[2], sums[0], 'node 3 has the same contents as node 1');
    return sums[0]!.ev!;
  };

  before(async () => {
    c = await startCluster({ engine: 'postgres' });
    leader = await c.waitLeader(30_000);
    const su = await connect((leader + 1) % 3, 'postgres');
    await su.query(`CREATE DATABASE ${database}`);
    await c.waitConverged(30_000);
    for (const n of c.nodes) {
      for (let end = Date.now() + 10_000; ; await new Promise((r) => setTimeout(r, 100))) {
        const r = await c.dbQuery(n.index, 'SELECT count(*)::int AS n FROM pg_database WHERE datname = $1', [database]);
        if (r[0]!.n === 1) break;
        assert.ok(Date.now() < end, `node ${n.nodeId} has the database`);
      }
    }
    const a = await connect(leader);
    // every value a replica could compute differently: defaults calling clock_timestamp(),
    // gen_random_uuid() and random(), and (below) now() and random() in the prepared text
    await a.query(`CREATE TABLE ev (
      id serial PRIMARY KEY, k int NOT NULL, note text, at timestamptz, r float8,
      made timestamptz NOT NULL DEFAULT clock_timestamp(), u uuid NOT NULL DEFAULT gen_random_uuid(), d float8 DEFAULT random())`);
    // the first test uses the table on a follower, in a session of its own: nothing makes that
    // session wait for the leader's CREATE TABLE (it is committed by a majority, maybe without it)
    await c.waitConverged(30_000);
  });

  after(async () => {
    for (const cl of clients) await cl.end().catch(() => undefined);
    if (c && failures.failed) console.log(c.dumpLogs(8000));
    await c?.stop();
  });

  test('psql on a follower: PREPARE, EXECUTE writes and reads, DEALLOCATE', guard(async () => {
    const follower = (leader + 1) % 3;
    const r = await psqlRun(c.nodes[follower]!.postgresPort, [
      'PREPARE ins (int, text) AS INSERT INTO ev (k, note, at, r) VALUES ($1, $2, now(), random());',
      "EXECUTE ins(1, 'one');",
      "EXECUTE ins (2, 'it''s two');",
      'PREPARE upd (int) AS UPDATE ev SET note = note || $$!$$, at = now() - interval $$1 day$$ WHERE k = $1;',
      'EXECUTE upd(1);',
      'PREPARE cnt AS SELECT count(*) FROM ev;',
      'EXECUTE cnt;',
      // an argument that is itself a time function: fixed by the leader like any other
      "EXECUTE ins(3, 'three' || (extract(year FROM now())::int / 1000)::text);",
      'DEALLOCATE ins;',
      "SELECT string_agg(k || ':' || note, ',' ORDER BY k) FROM ev;",
      '',
    ].join('\n'));
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /^2$/m, `EXECUTE cnt read the session's own two writes: ${r.out}`);
    assert.match(r.out, /^1:one!,2:it's two,3:three2$/m, r.out);
    await assertSame();
    // the prepared text ran with the leader's values on every replica
    for (const n of c.nodes) {
      const rows = await c.pgQuery(n.index, database, "SELECT count(*)::int AS n FROM pg_prepared_statements");
      assert.equal(rows[0]!.n, 0, 'no PREPARE reached the superuser sessions of the check');
    }
  }));

  test('node-postgres on the leader: EXECUTE with now() as an argument, parameters in EXECUTE, a transaction, errors', guard(async () => {
    const a = await connect(leader);
    await a.query('PREPARE ins2 (int, timestamptz, text) AS INSERT INTO ev (k, at, note) VALUES ($1, $2, $3) RETURNING id');
    const ins = await a.query("EXECUTE ins2(10, now(), 'ten')");
    assert.equal(ins.rowCount, 1);
    // the EXECUTE itself with parameters (extended protocol): they stay the outer statement's
    await a.query('EXECUTE ins2($1, $2, $3)', [11, '2026-01-02T03:04:05Z', 'eleven']);
    // a transaction: EXECUTE of writes and reads, committed
    await a.query('BEGIN');
    await a.query("EXECUTE ins2(12, now(), 'twelve')");
    await a.query('PREPARE cnt2 AS SELECT count(*)::int AS n FROM ev WHERE k >= 10');
    assert.equal((await a.query('EXECUTE cnt2')).rows[0].n, 3, 'a read by EXECUTE inside the transaction sees its write');
    // prepared inside the transaction that writes: on the local session, not the shared lane's
    await a.query("PREPARE ins3 (int) AS INSERT INTO ev (k, note, r) VALUES ($1, 'in txn', random())");
    await a.query('EXECUTE ins3(13)');
    await a.query('COMMIT');
    // rolled back: nothing of it anywhere
    await a.query('BEGIN');
    await a.query('EXECUTE ins3(14)');
    await a.query('ROLLBACK');
    assert.equal((await a.query('EXECUTE cnt2')).rows[0].n, 4, 'after COMMIT and ROLLBACK: 10, 11, 12, 13');
    // a name prepared twice: the second PREPARE fails (42P05), EXECUTE runs the first one's write
    assert.equal(await sqlState(a.query('PREPARE ins3 AS SELECT 1')), '42P05');
    await a.query('EXECUTE ins3(15)');
    // an argument used twice must be a constant (it would be evaluated twice)
    await a.query("PREPARE dbl (float8) AS INSERT INTO ev (k, r, note) VALUES (16, $1, $1::text)");
    assert.equal(await sqlState(a.query('EXECUTE dbl(random())')), '0A000');
    await a.query('EXECUTE dbl(0.25)');
    // EXPLAIN ANALYZE runs what it explains: of a read, here; of a write, refused (it would write here only)
    await a.query('PREPARE cnt3 AS SELECT count(*) FROM ev');
    assert.ok((await a.query('EXPLAIN ANALYZE EXECUTE cnt3')).rows.length > 0);
    assert.equal(await sqlState(a.query('EXPLAIN (ANALYZE, COSTS off) EXECUTE dbl(0.5)')), '0A000');
    // postgres' own errors: unknown names, after DEALLOCATE ALL, the wrong number of arguments
    const unknown = await a.query('EXECUTE nosuch(1)').then(() => null, (e: { code?: string; message: string }) => e);
    assert.equal(unknown?.code, '26000');
    assert.match(unknown!.message, /prepared statement "nosuch" does not exist/);
    assert.equal(await sqlState(a.query('EXECUTE ins2(1, now())')), '42601');
    await a.query('DEALLOCATE ALL');
    assert.equal(await sqlState(a.query("EXECUTE ins2(17, now(), 'gone')")), '26000');
    assert.equal(await sqlState(a.query('EXECUTE ins3(18)')), '26000');
    // inside a transaction too, and it fails that transaction as postgres does
    await a.query('BEGIN');
    await a.query("INSERT INTO ev (k, note) VALUES (19, 'rolled back')");
    assert.equal(await sqlState(a.query('EXECUTE nosuch')), '26000');
    assert.equal(await sqlState(a.query('SELECT 1')), '25P02');
    await a.query('ROLLBACK');
    const ks = (await a.query('SELECT k FROM ev WHERE k >= 10 ORDER BY k')).rows.map((x: { k: number }) => x.k);
    assert.deepEqual(ks, [10, 11, 12, 13, 15, 16]);
    const sum = await assertSame();
    console.log(`# ev after PREPARE/EXECUTE on a follower and the leader: ${sum}`);
    const at11 = await c.pgQuery((leader + 2) % 3, database, "SELECT at = '2026-01-02T03:04:05Z' AS ok, r IS NULL AS nr FROM ev WHERE k = 11");
    assert.deepEqual(at11, [{ ok: true, nr: true }]);
  }));

  test('statements outside a transaction block: outcomes compared (the same error is fine, a different one diverges)', guard(async () => {
    const su = await connect((leader + 2) % 3, 'postgres');
    await su.query('CREATE DATABASE ptest2');
    // fails on the leader and on every replica alike: 42P04 everywhere is no divergence
    assert.equal(await sqlState(su.query('CREATE DATABASE ptest2')), '42P04');
    const a = await connect(leader);
    await a.query('VACUUM ev');
    await c.waitConverged(30_000);
    for (const n of c.nodes) assert.equal((await c.status(n.index)).replication?.diverged, false, `node ${n.nodeId} is not diverged`);
    // a database made behind Recall's back on one replica: CREATE DATABASE succeeds on the leader
    // and fails there, which that replica reports as a divergence
    const odd = (leader + 1) % 3;
    await c.dbQuery(odd, 'CREATE DATABASE clash');
    await su.query('CREATE DATABASE clash');
    const node = c.nodes[odd]!;
    for (let end = Date.now() + 30_000; !/replica diverged.*gave error 42P04 here but 'CREATE DATABASE' on the leader/.test(node.output()); await new Promise((r) => setTimeout(r, 100))) {
      assert.ok(Date.now() < end, `node ${node.nodeId} reports the divergence:\n${node.output().slice(-3000)}`);
    }
    for (const n of c.nodes) if (n.index !== odd) assert.equal((await c.status(n.index)).replication?.diverged, false, `node ${n.nodeId} is not diverged`);
  }));
});
