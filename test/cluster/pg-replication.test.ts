// PostgreSQL replication across 3 real `recall serve --engine postgres` processes, each with its
// managed postgres (issue 6, "Must show" 1 and 2). Unmodified clients through the Recall ports:
// psql (-c and a script), node-postgres (simple, unnamed extended and named prepared statements),
// Python psycopg2 and pgbench (-M simple / extended / prepared at once, one per port); then a
// determinism workload over the 3 ports (time and random functions in values and column defaults,
// SERIAL and IDENTITY, a trigger writing an audit row with now(), CTEs with writes, INSERT ... ON
// CONFLICT DO UPDATE, multi-statement transactions, COPY). Afterwards the md5 of every table's
// ordered contents is equal on all replicas, and every row a client was told about is there with
// the values it was told.
//
// Logins: the cluster uses scram-sha-256; the harness gives the superuser a password on every
// node, and the test creates its own role and database through Recall (so they are replicated).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, createHmac, pbkdf2Sync, randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { startCluster, pgSuperuserPassword, type TestCluster } from '../harness/cluster.js';
import { failureGuard } from '../harness/failure-guard.js';

const database = 'rtest';
const role = 'app';
const password = 'app-secret';
const python = '/usr/bin/python3';
const pgbenchSeconds = 5;
const workloadClients = 6;
const workloadRounds = 25;

/**
 * A SCRAM-SHA-256 verifier for CREATE ROLE ... PASSWORD: the same on every replica (a plain
 * password would be salted by each replica on its own, see the test of that below).
 */
function scramVerifier(pw: string): string {
  const salt = randomBytes(16);
  const iterations = 4096;
  const salted = pbkdf2Sync(pw, salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

interface Run {
  code: number | null;
  out: string;
}

/** A client program as a child process (the Recall nodes are processes too; async keeps them apart). */
function run(cmd: string, args: string[], opts: { input?: string; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const ch = spawn(cmd, args, { env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    ch.stdout.on('data', (d) => (out += d));
    ch.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => ch.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    ch.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
    ch.stdin.end(opts.input ?? '');
  });
}

const appEnv = { PGPASSWORD: password, PGCONNECT_TIMEOUT: '10' };

/** Remembers a failure, so that after() prints the nodes' logs. */
const failures = failureGuard();
const guard = failures.guard;

describe('PostgreSQL replication across 3 real recall + postgres', { timeout: 300_000 }, () => {
  let c: TestCluster;
  let su: pg.Client;
  const port = (i: number) => c.nodes[i]!.postgresPort;
  const clients: pg.Client[] = [];
  const connect = async (i: number, o: { user?: string; password?: string; database?: string } = {}): Promise<pg.Client> => {
    const cl = new pg.Client({ host: '127.0.0.1', port: port(i), user: o.user ?? role, password: o.password ?? password, database: o.database ?? database, connectionTimeoutMillis: 10_000 });
    cl.on('error', () => undefined);
    await cl.connect();
    clients.push(cl);
    return cl;
  };
  const psql = (i: number, args: string[], input?: string) =>
    run('psql', ['-X', '-h', '127.0.0.1', '-p', String(port(i)), '-U', role, '-d', database, '-v', 'ON_ERROR_STOP=1', ...args], { env: appEnv, ...(input !== undefined ? { input } : {}) });

  /** pgChecksums of `database` on all nodes, asserted equal and holding `tables`; returns node 0's. */
  const assertSameContents = async (tables: string[]): Promise<Record<string, string>> => {
    await c.waitConverged(60_000);
    const sums = await c.pgChecksums(database);
    for (const t of tables) assert.ok(sums[0]![t] && !sums[0]![t]!.startsWith('0:'), `table ${t} exists and has rows (${JSON.stringify(sums[0])})`);
    assert.deepEqual(sums[1], sums[0], 'node 2 has the same table contents as node 1');
    assert.deepEqual(sums[2], sums[0], 'node 3 has the same table contents as node 1');
    return sums[0]!;
  };

  before(async () => {
    c = await startCluster({ engine: 'postgres', postgresAuth: 'scram-sha-256' });
    await c.waitLeader(30_000);
    // The role and the database are made through Recall, on a follower's port.
    const leader = await c.waitLeader(30_000);
    su = await connect((leader + 1) % 3, { user: 'postgres', password: pgSuperuserPassword, database: 'postgres' });
    await su.query(`CREATE ROLE ${role} LOGIN PASSWORD '${scramVerifier(password)}'`);
    await su.query(`CREATE DATABASE ${database} OWNER ${role}`);
    await c.waitConverged(30_000);
    // A follower reports CREATE DATABASE applied a moment before it ran it (the test below says
    // so); wait here so that the other tests do not depend on that.
    for (const n of c.nodes) {
      const q = 'SELECT (SELECT count(*) FROM pg_roles WHERE rolname = $1) AS roles, (SELECT count(*) FROM pg_database WHERE datname = $2) AS dbs';
      let r = await c.dbQuery(n.index, q, [role, database]);
      for (const end = Date.now() + 10_000; r[0]!.dbs !== '1' && Date.now() < end; await new Promise((res) => setTimeout(res, 100))) r = await c.dbQuery(n.index, q, [role, database]);
      assert.deepEqual(r[0], { roles: '1', dbs: '1' }, `node ${n.nodeId} has the role and the database made through Recall`);
    }
  });

  after(async () => {
    for (const cl of clients) await cl.end().catch(() => undefined);
    if (c && failures.failed) console.log(c.dumpLogs(8000));
    await c?.stop();
  });

  test('psql -c and a psql script, on different ports', guard(async () => {
    const create = await psql(0, ['-c', 'CREATE TABLE psql_t (id int PRIMARY KEY, name text NOT NULL, at timestamptz DEFAULT now())']);
    assert.equal(create.code, 0, create.out);
    assert.match(create.out, /CREATE TABLE/);
    const script = [
      "INSERT INTO psql_t (id, name) VALUES (1, 'one'), (2, 'two');",
      'BEGIN;',
      "INSERT INTO psql_t (id, name) SELECT g, 'gen ' || g FROM generate_series(3, 20) g;",
      "UPDATE psql_t SET name = upper(name) WHERE id % 2 = 0;",
      'COMMIT;',
      'SELECT count(*) AS n, sum(id) AS s FROM psql_t;',
      "\\echo script-done",
      '',
    ].join('\n');
    const r = await psql(1, ['-A', '-t', '-F', ','], script);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /^20,210$/m, `the script's own read sees its writes (session consistency): ${r.out}`);
    assert.match(r.out, /script-done/);
    const other = await psql(2, ['-A', '-t', '-c', "SET recall.consistency = 'linearizable'", '-c', "SELECT string_agg(name, ',' ORDER BY id) FROM psql_t WHERE id <= 4"]);
    assert.equal(other.code, 0, other.out);
    assert.match(other.out, /^one,TWO,gen 3,GEN 4$/m, other.out);
    await assertSameContents(['psql_t']);
  }));

  test('node-postgres: simple queries, unnamed extended queries and named prepared statements', guard(async () => {
    const a = await connect(0);
    await a.query('CREATE TABLE nodepg (id int PRIMARY KEY, via text NOT NULL, payload jsonb, n numeric)');
    // simple protocol (no parameters), several statements in one text
    await a.query("INSERT INTO nodepg VALUES (1, 'simple', '{\"a\":1}', 1.5); INSERT INTO nodepg VALUES (2, 'simple', NULL, 2.5)");
    // unnamed extended queries on another port
    const b = await connect(1);
    for (let k = 3; k <= 20; k++) await b.query('INSERT INTO nodepg VALUES ($1, $2, $3, $4)', [k, 'extended', JSON.stringify({ k }), k / 4]);
    // named prepared statements (Parse once per connection, then Bind/Execute) on the third port
    const d = await connect(2);
    for (let k = 21; k <= 40; k++) await d.query({ name: 'ins_nodepg', text: 'INSERT INTO nodepg VALUES ($1, $2, $3, $4) RETURNING id', values: [k, 'prepared', null, k] });
    const upd = await d.query({ name: 'upd_nodepg', text: 'UPDATE nodepg SET n = n * 2 WHERE id BETWEEN $1 AND $2', values: [1, 10] });
    assert.equal(upd.rowCount, 10);
    const own = await d.query({ name: 'count_nodepg', text: 'SELECT count(*)::int AS n, sum(n)::text AS s FROM nodepg' });
    assert.equal(own.rows[0].n, 40, 'the session on the third port reads every write (its own and, after its writes, the others\')');
    // a named statement that fails is reported with its SQLSTATE and the session goes on
    await assert.rejects(d.query({ name: 'dup_nodepg', text: 'INSERT INTO nodepg VALUES ($1, $2, NULL, NULL)', values: [1, 'dup'] }), (e: { code?: string }) => e.code === '23505');
    const again = await d.query({ name: 'count_nodepg', text: 'SELECT count(*)::int AS n, sum(n)::text AS s FROM nodepg' });
    assert.equal(again.rows[0].n, 40);
    await assertSameContents(['nodepg']);
  }));

  test('Python psycopg2 (executemany, a transaction, a server-side cursor)', guard(async () => {
    const script = String.raw`
import json, sys, psycopg2
conn = psycopg2.connect(host='127.0.0.1', port=int(sys.argv[1]), user=sys.argv[2], password=sys.argv[3], dbname=sys.argv[4], connect_timeout=10)
cur = conn.cursor()
cur.execute('CREATE TABLE py_t (id serial PRIMARY KEY, name text NOT NULL, qty int NOT NULL, at timestamptz DEFAULT now())')
conn.commit()
cur.executemany('INSERT INTO py_t (name, qty) VALUES (%s, %s)', [('item%d' % i, i * 3) for i in range(40)])
cur.execute('UPDATE py_t SET qty = qty + 1 WHERE id % 3 = 0')
conn.commit()
try:
    cur.execute('INSERT INTO py_t (id, name, qty) VALUES (1, %s, 0)', ('dup',))
    conn.commit()
    dup = 'none'
except psycopg2.Error as e:
    dup = e.pgcode
    conn.rollback()
named = conn.cursor(name='walk')
named.itersize = 7
named.execute('SELECT id, qty FROM py_t ORDER BY id')
rows = [list(r) for r in named]
named.close()
conn.commit()
print(json.dumps({'dup': dup, 'count': len(rows), 'sum': sum(r[1] for r in rows), 'ids': [r[0] for r in rows][:5]}))
conn.close()
`;
    const r = await run(python, ['-c', script, String(port(2)), role, password, database]);
    assert.equal(r.code, 0, r.out);
    const got = JSON.parse(r.out.trim().split('\n').pop()!) as { dup: string; count: number; sum: number; ids: number[] };
    // 3 * (0 + ... + 39) = 2340, plus 1 for each of the 13 ids in 1..40 divisible by 3
    assert.deepEqual(got, { dup: '23505', count: 40, sum: 2340 + 13, ids: [1, 2, 3, 4, 5] });
    await assertSameContents(['py_t']);
  }));

  test(`pgbench -M simple, extended and prepared at once (one per port, -c 4 -T ${pgbenchSeconds}): 0 failed, replicas equal`, guard(async () => {
    const bench = (i: number, args: string[]) => run('pgbench', ['-h', '127.0.0.1', '-p', String(port(i)), '-U', role, ...args, database], { env: appEnv });
    // -I dtGvp: server-side data generation (the default client-side generation uses COPY FROM STDIN)
    const init = await bench(0, ['-i', '-I', 'dtGvp', '-s', '1']);
    assert.equal(init.code, 0, init.out);
    // the runs' sessions on the other ports are new sessions: each reads pgbench_branches first
    await c.waitConverged(60_000);
    const modes = ['simple', 'extended', 'prepared'] as const;
    // -n: pgbench's own VACUUM before the run is not what is measured
    const runs = await Promise.all(modes.map((m, i) => bench(i, ['-n', '-c', '4', '-T', String(pgbenchSeconds), '-M', m])));
    const tps: string[] = [];
    runs.forEach((r, i) => {
      assert.equal(r.code, 0, `pgbench -M ${modes[i]} on node ${i + 1}:\n${r.out}`);
      assert.match(r.out, /number of failed transactions: 0 /, r.out);
      const n = Number(/number of transactions actually processed: (\d+)/.exec(r.out)?.[1] ?? 0);
      assert.ok(n > 0, `pgbench -M ${modes[i]} processed transactions:\n${r.out}`);
      tps.push(`${modes[i]}@n${i + 1} ${/tps = ([\d.]+)/.exec(r.out)?.[1]} tps (${n} txns)`);
    });
    console.log(`# pgbench, three at once: ${tps.join(', ')}`);
    const sums = await assertSameContents(['pgbench_accounts', 'pgbench_branches', 'pgbench_tellers', 'pgbench_history']);
    const bal = await c.pgQuery(0, database, 'SELECT (SELECT sum(abalance) FROM pgbench_accounts)::text AS a, (SELECT sum(bbalance) FROM pgbench_branches)::text AS b, (SELECT sum(tbalance) FROM pgbench_tellers)::text AS t, (SELECT count(*) FROM pgbench_history)::int AS h');
    assert.equal(bal[0]!.a, bal[0]!.b, 'accounts and branches balances add up');
    assert.equal(bal[0]!.a, bal[0]!.t, 'accounts and tellers balances add up');
    assert.ok(Number(bal[0]!.h) > 0, `history rows were written (${sums.pgbench_history})`);
  }));

  test('determinism workload over the 3 ports: md5 of every table equal, every acknowledged row present as told', guard(async () => {
    const setup = await connect(0);
    await setup.query(`
      CREATE TABLE ev (
        id serial PRIMARY KEY,
        iid bigint GENERATED ALWAYS AS IDENTITY,
        client int NOT NULL,
        seq int NOT NULL,
        note text,
        ts timestamptz NOT NULL DEFAULT now(),
        ct timestamptz NOT NULL DEFAULT clock_timestamp(),
        r double precision NOT NULL DEFAULT random(),
        uid uuid NOT NULL DEFAULT gen_random_uuid(),
        UNIQUE (client, seq)
      );
      CREATE TABLE ev_audit (id bigserial PRIMARY KEY, ev_id int NOT NULL, op text NOT NULL, at timestamptz NOT NULL, r double precision NOT NULL, note text);
      -- the trigger copies the row's leader-fixed values (a body calling now() is refused, below)
      CREATE FUNCTION ev_audit_fn() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        INSERT INTO ev_audit (ev_id, op, at, r, note) VALUES (NEW.id, TG_OP, NEW.ct, NEW.r, NEW.note);
        RETURN NEW;
      END $$;
      CREATE TRIGGER ev_audit_tr AFTER INSERT OR UPDATE ON ev FOR EACH ROW EXECUTE FUNCTION ev_audit_fn();
      CREATE TABLE ev_link (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, ev_id int NOT NULL, at timestamptz NOT NULL, u uuid NOT NULL);
      CREATE TABLE counters (k int PRIMARY KEY, n int NOT NULL, touched timestamptz NOT NULL DEFAULT now(), r double precision);
    `);
    // A function body that calls now() or random() would run on every replica with its own
    // clock: refused with 0A000 naming the calls, and nothing is created anywhere.
    await assert.rejects(
      setup.query("CREATE FUNCTION bad_audit_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO ev_audit (ev_id, op, at, r) VALUES (NEW.id, TG_OP, now(), random()); RETURN NEW; END $$"),
      (e: { code?: string; message?: string }) => e.code === '0A000' && /now\(\)/.test(e.message ?? '') && /random\(\)/.test(e.message ?? ''),
    );
    // Once per row, where one leader-fixed value would repeat in every row: refused, nothing written.
    await assert.rejects(setup.query('UPDATE ev SET r = random() WHERE client >= 0'), (e: { code?: string; message?: string }) => e.code === '0A000' && /random\(\)/.test(e.message ?? ''));
    await assert.rejects(setup.query('INSERT INTO ev_link (ev_id, at, u) SELECT g, now(), gen_random_uuid() FROM generate_series(1, 3) g'), (e: { code?: string; message?: string }) => e.code === '0A000' && /gen_random_uuid\(\)/.test(e.message ?? ''));
    type Told = { client: number; seq: number; row: Record<string, unknown> };
    const told: Told[] = [];
    const errors: string[] = [];
    const worker = async (ci: number) => {
      const cl = await connect(ci % 3);
      for (let s = 0; s < workloadRounds; s++) {
        const seq = s * 10;
        try {
          switch (s % 6) {
            case 0: {
              // defaults: serial, identity, now(), clock_timestamp(), random(), gen_random_uuid()
              const r = await cl.query('INSERT INTO ev (client, seq, note) VALUES ($1, $2, md5(random()::text)) RETURNING id, iid::text, note, ts, ct, r, uid', [ci, seq]);
              told.push({ client: ci, seq, row: r.rows[0] });
              break;
            }
            case 1: {
              // a CTE with writes: the new row's id feeds a second insert with now() and gen_random_uuid()
              await cl.query('WITH ins AS (INSERT INTO ev (client, seq, note, ts) VALUES ($1, $2, $3, clock_timestamp()) RETURNING id) INSERT INTO ev_link (ev_id, at, u) SELECT id, now(), $4::uuid FROM ins', [ci, seq, 'cte', randomUUID()]);
              const r = await cl.query('SELECT id, iid::text, note, ts, ct, r, uid FROM ev WHERE client = $1 AND seq = $2', [ci, seq]);
              told.push({ client: ci, seq, row: r.rows[0] });
              break;
            }
            case 2: {
              // INSERT ... ON CONFLICT DO UPDATE on keys every client shares
              await cl.query({ name: 'upsert', text: 'INSERT INTO counters (k, n, r) VALUES ($1, 1, random()) ON CONFLICT (k) DO UPDATE SET n = counters.n + 1, touched = now(), r = random()', values: [s % 4] });
              break;
            }
            case 3: {
              // a transaction with several statements, one of them an UPDATE firing the trigger
              await cl.query('BEGIN');
              const r = await cl.query('INSERT INTO ev (client, seq, note) VALUES ($1, $2, $3) RETURNING id, iid::text, note, ts, ct, r, uid', [ci, seq, 'txn']);
              await cl.query('UPDATE ev SET note = note || to_char(now(), \'"@"YYYY\') WHERE id = $1', [r.rows[0].id]);
              await cl.query('UPDATE counters SET n = n + 10, touched = clock_timestamp() WHERE k = $1', [ci % 4]);
              const r2 = await cl.query('SELECT id, iid::text, note, ts, ct, r, uid FROM ev WHERE id = $1', [r.rows[0].id]);
              await cl.query('COMMIT');
              told.push({ client: ci, seq, row: r2.rows[0] });
              break;
            }
            case 4: {
              // an UPDATE with statement-wide time functions in its values
              await cl.query("UPDATE ev SET ts = statement_timestamp(), note = note || to_char(now(), '+YYYY') WHERE client = $1 AND seq = $2", [ci, seq - 40]);
              const r = await cl.query('SELECT id, iid::text, note, ts, ct, r, uid FROM ev WHERE client = $1 AND seq = $2', [ci, seq - 40]);
              const k = told.findIndex((t) => t.client === ci && t.seq === seq - 40);
              if (k >= 0 && r.rows[0]) told[k] = { client: ci, seq: seq - 40, row: r.rows[0] };
              break;
            }
            default: {
              // a multi-statement simple query text (an implicit transaction)
              await cl.query(`INSERT INTO ev (client, seq, note) VALUES (${ci}, ${seq}, 'multi'); INSERT INTO ev_link (ev_id, at, u) VALUES ((SELECT id FROM ev WHERE client = ${ci} AND seq = ${seq}), statement_timestamp(), gen_random_uuid())`);
              const r = await cl.query('SELECT id, iid::text, note, ts, ct, r, uid FROM ev WHERE client = $1 AND seq = $2', [ci, seq]);
              told.push({ client: ci, seq, row: r.rows[0] });
            }
          }
        } catch (e) {
          errors.push(`client ${ci} round ${s}: ${(e as { code?: string }).code ?? ''} ${(e as Error).message}`);
          await cl.query('ROLLBACK').catch(() => undefined);
        }
      }
    };
    await Promise.all(Array.from({ length: workloadClients }, (_, ci) => worker(ci)));
    assert.deepEqual(errors, [], 'no statement of the workload failed');

    // COPY: FROM STDIN (a replicated write) and TO STDOUT (a read), through psql.
    const copyIn = await psql(1, ['-c', 'CREATE TABLE copied (k int PRIMARY KEY, v text)', '-c', 'CREATE TABLE copied_at (k int PRIMARY KEY, at timestamptz DEFAULT now())']);
    assert.equal(copyIn.code, 0, copyIn.out);
    // a column left to a volatile default would be evaluated by every replica: refused in any case
    const copyAt = await psql(0, ['-v', 'VERBOSITY=verbose', '-f', '-'], 'COPY copied_at (k) FROM STDIN;\n1\n\\.\n');
    assert.notEqual(copyAt.code, 0, copyAt.out);
    assert.match(copyAt.out, /ERROR:\s+0A000: .*now\(\)/, `COPY leaving a DEFAULT now() column out is refused with 0A000:\n${copyAt.out}`);
    const copy = await psql(1, ['-v', 'VERBOSITY=verbose', '-f', '-'], 'COPY copied (k, v) FROM STDIN;\n1\tone\n2\ttwo\n3\t\\N\n\\.\nSELECT count(*) AS copied_rows FROM copied;\n');
    let copySupported: boolean;
    if (copy.code === 0) {
      copySupported = true;
      assert.match(copy.out, /COPY 3/, copy.out);
    } else {
      copySupported = false;
      // refused: cleanly, with 0A000 and a message, and nothing written
      assert.match(copy.out, /ERROR:\s+0A000: .*COPY/, `COPY FROM STDIN is refused with 0A000:\n${copy.out}`);
    }
    console.log(`# COPY FROM STDIN through Recall: ${copySupported ? 'supported (3 rows copied)' : `refused: ${/ERROR:.*$/m.exec(copy.out)?.[0]}`}`);
    const out = await psql(2, ['-c', "SET recall.consistency = 'linearizable'", '-c', 'COPY (SELECT k, v FROM copied ORDER BY k) TO STDOUT']);
    assert.equal(out.code, 0, out.out);
    assert.equal(out.out.replace(/^SET\n/, ''), copySupported ? '1\tone\n2\ttwo\n3\t\\N\n' : '', 'COPY TO STDOUT on another port returns what was copied');

    const sums = await assertSameContents(['ev', 'ev_audit', 'ev_link', 'counters']);
    console.log(`# determinism workload: ${told.length} rows told to clients; contents ${JSON.stringify(sums)}`);
    if (!copySupported) assert.equal(sums.copied, '0:');

    // Every acknowledged row, with the values its client was told (also the leader-chosen time,
    // random and uuid values), is on every replica.
    const norm = (row: Record<string, unknown>) => ({ id: Number(row.id), iid: String(row.iid), note: String(row.note), ts: new Date(row.ts as string).toISOString(), ct: new Date(row.ct as string).toISOString(), r: Number(row.r), uid: String(row.uid) });
    for (const n of c.nodes) {
      const rows = await c.pgQuery(n.index, database, 'SELECT client, seq, id, iid::text, note, ts, ct, r, uid FROM ev');
      const by = new Map(rows.map((r) => [`${String(r.client)}/${String(r.seq)}`, r]));
      for (const t of told) {
        const have = by.get(`${t.client}/${t.seq}`);
        assert.ok(have, `node ${n.nodeId} has the acknowledged row client ${t.client} seq ${t.seq}`);
        assert.deepEqual(norm(have), norm(t.row), `node ${n.nodeId}: row client ${t.client} seq ${t.seq} as its client was told`);
      }
    }
    for (const n of c.nodes) assert.deepEqual(await c.pgQuery(n.index, database, "SELECT count(*)::int AS n FROM pg_proc WHERE proname = 'bad_audit_fn'"), [{ n: 0 }], `the refused function is not on node ${n.nodeId}`);
    const audit = await c.pgQuery(0, database, "SELECT count(*)::int AS n, count(DISTINCT at)::int AS ats FROM ev_audit");
    assert.ok(Number(audit[0]!.n) >= told.length, `the trigger wrote an audit row for every insert (${JSON.stringify(audit[0])})`);
    const counters = await c.pgQuery(0, database, 'SELECT sum(n)::int AS n FROM counters');
    const upserts = workloadClients * Math.ceil((workloadRounds - 2) / 6);
    assert.ok(Number(counters[0]!.n) >= upserts, `every upsert counted (${counters[0]!.n} >= ${upserts})`);
  }));

  // A trigger's INSERT into a table whose columns default to now() / random() / gen_random_uuid():
  // the defaults are evaluated inside the trigger, on every replica. Right behaviour: either the
  // contents stay equal on all replicas or Recall refuses (0A000) instead of letting them differ.
  test('a trigger inserting into a table with now(), random() and gen_random_uuid() column defaults: equal everywhere or refused with 0A000', guard(async () => {
    const a = await connect(0);
    await a.query(`
      CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL);
      CREATE TABLE orders_log (id serial PRIMARY KEY, order_id int NOT NULL, at timestamptz NOT NULL DEFAULT now(), r double precision NOT NULL DEFAULT random(), u uuid NOT NULL DEFAULT gen_random_uuid());
    `);
    let refusal: { code?: string; message?: string } | undefined;
    try {
      await a.query(`
        CREATE FUNCTION orders_log_fn() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          INSERT INTO orders_log (order_id) VALUES (NEW.id);
          RETURN NEW;
        END $$;
        CREATE TRIGGER orders_log_tr AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION orders_log_fn();
      `);
      const b = await connect(1);
      for (let k = 0; k < 10; k++) await (k % 2 ? a : b).query('INSERT INTO orders (item) VALUES ($1)', [`item ${k}`]);
    } catch (e) {
      refusal = e as { code?: string; message?: string };
    }
    if (refusal) {
      console.log(`# trigger with volatile defaults in the table it writes: refused ${refusal.code} ${refusal.message}`);
      assert.equal(refusal.code, '0A000', `refused with 0A000 (${refusal.code} ${refusal.message})`);
    }
    await c.waitConverged(60_000);
    const sums = await c.pgChecksums(database);
    const per = sums.map((x, i) => `n${i + 1} orders_log=${x.orders_log}`).join(' ');
    console.log(`# trigger with volatile defaults: ${per}`);
    assert.deepEqual(sums[1]!.orders_log, sums[0]!.orders_log, `orders_log equal on node 2 and node 1 (${per})`);
    assert.deepEqual(sums[2]!.orders_log, sums[0]!.orders_log, `orders_log equal on node 3 and node 1 (${per})`);
  }));

  // CREATE ROLE ... PASSWORD 'plain text' runs on every replica, and each salts the SCRAM verifier
  // its own way. A client of a follower authenticates against the follower's verifier; its write
  // must still reach the leader's database as that role.
  test('a role created through Recall with a plain-text password writes through every port, first thing in its session', guard(async () => {
    const a = await connect(0);
    await a.query('CREATE TABLE plain_t (k text PRIMARY KEY, via int NOT NULL)');
    await su.query("CREATE ROLE plain LOGIN PASSWORD 'plain-secret'");
    await a.query('GRANT SELECT, INSERT ON plain_t TO plain');
    await c.waitConverged(30_000);
    const verifiers = await Promise.all(c.nodes.map((n) => c.dbQuery(n.index, "SELECT rolpassword AS v FROM pg_authid WHERE rolname = 'plain'")));
    const same = verifiers.every((v) => v[0]?.v === verifiers[0]![0]?.v);
    console.log(`# CREATE ROLE ... PASSWORD 'plain': verifiers ${same ? 'equal' : 'differ'} across the replicas`);
    const leader = await c.waitLeader(20_000);
    const results: string[] = [];
    for (const i of [0, 1, 2].filter((x) => x !== leader).concat([leader])) {
      const cl = await connect(i, { user: 'plain', password: 'plain-secret' });
      try {
        await cl.query('INSERT INTO plain_t VALUES ($1, $2)', [`first-${i + 1}`, i + 1]);
        results.push(`node ${i + 1}: ok`);
      } catch (e) {
        results.push(`node ${i + 1}${i === leader ? ' (leader)' : ''}: ${(e as { code?: string }).code} ${(e as Error).message}`);
      }
    }
    console.log(`# first write of role plain per port: ${results.join('; ')}`);
    assert.deepEqual(results.filter((r) => !r.endsWith(': ok')), [], 'the first write of a session on every port succeeds');
    await c.waitConverged(30_000);
    for (const n of c.nodes) assert.equal((await c.pgQuery(n.index, database, 'SELECT count(*)::int AS n FROM plain_t'))[0]!.n, 3);
  }));

  // A statement that cannot run in a transaction block (CREATE DATABASE) is an entry of its own;
  // once every replica reports the entry applied, the database must exist on every replica.
  test('CREATE DATABASE through a follower is on every replica once all report it applied', guard(async () => {
    const leader = await c.waitLeader(20_000);
    const missing: string[] = [];
    for (let k = 0; k < 4; k++) {
      const via = (leader + 1 + (k % 2)) % 3;
      const name = `made_${k}`;
      const admin = await connect(via, { user: 'postgres', password: pgSuperuserPassword, database: 'postgres' });
      await admin.query(`CREATE DATABASE ${name}`);
      await c.waitConverged(30_000);
      const have = await Promise.all(c.nodes.map((n) => c.dbQuery(n.index, 'SELECT count(*)::int AS n FROM pg_database WHERE datname = $1', [name])));
      have.forEach((h, i) => {
        if (h[0]!.n !== 1) missing.push(`${name} (sent through node ${via + 1}) not yet on node ${i + 1}`);
      });
    }
    console.log(`# CREATE DATABASE right after all replicas reported it applied: ${missing.length ? missing.join('; ') : 'present everywhere'}`);
    assert.deepEqual(missing, [], 'every database exists on every replica once its entry is reported applied');
  }));
});
