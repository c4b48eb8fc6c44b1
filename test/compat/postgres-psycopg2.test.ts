// Python psycopg2 (Debian's python3-psycopg2, run with /usr/bin/python3) through Recall's PostgreSQL
// frontend compared with psycopg2 straight to postgres: parameters, executemany, a named
// (server-side) cursor, copy_expert both ways, errors with pgcode, notices, LISTEN/NOTIFY, and a
// TLS session with sslmode=require. The Python side prints one JSON document per side.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { startPostgres, startFrontend, ROLES, selfSignedCert, type TestPostgres } from '../frontend/postgres/helpers.js';
import type { PostgresFrontend } from '../../src/frontend/postgres/server.js';

const python = '/usr/bin/python3';

let db: TestPostgres;
let fe: PostgresFrontend;
let recallPort: number;

before(async () => {
  db = await startPostgres();
  ({ frontend: fe, port: recallPort } = await startFrontend(db, { auth: 'md5', tls: selfSignedCert() }));
  for (const d of ['py_d', 'py_r']) await db.admin(`CREATE DATABASE ${d} OWNER alice`);
});

after(async () => {
  await fe?.close();
  await db?.stop();
});

const runner = String.raw`
import sys, json, io, decimal, datetime, select
import psycopg2, psycopg2.extras

spec = json.load(sys.stdin)
def conv(v):
    if isinstance(v, decimal.Decimal): return 'dec:' + str(v)
    if isinstance(v, (datetime.datetime, datetime.date)): return 'dt:' + v.isoformat()
    if isinstance(v, memoryview): return 'hex:' + bytes(v).hex()
    return v
dsn = dict(host='127.0.0.1', port=spec['port'], user='alice', password=spec['password'], dbname=spec['db'], sslmode=spec['sslmode'], connect_timeout=10)
conn = psycopg2.connect(**dsn)
out = {'ssl': conn.info.ssl_in_use, 'server_version': conn.server_version}
steps = []
cur = conn.cursor()
def rows():
    return [[conv(v) for v in r] for r in cur.fetchall()] if cur.description else None
cur.execute('CREATE TABLE t (id int PRIMARY KEY, name text, n numeric, ts timestamptz)')
cur.executemany('INSERT INTO t VALUES (%s, %s, %s, %s)', [(i, 'n%d' % i, decimal.Decimal(i) / 4, datetime.datetime(2024, 1, 1, 0, 0, i, tzinfo=datetime.timezone.utc)) for i in range(50)])
steps.append({'rowcount': cur.rowcount})
conn.commit()
cur.execute('SELECT id, name, n, ts FROM t WHERE id < %s ORDER BY id', (5,))
steps.append({'rows': rows(), 'desc': [d.name for d in cur.description]})
named = conn.cursor(name='big')
named.itersize = 7
named.execute('SELECT id FROM t ORDER BY id')
steps.append({'named': [r[0] for r in named]})
named.close()
conn.commit()
buf = io.StringIO('100\tcopied\t1.5\t\\N\n101\tcopied too\t\\N\t2020-01-01 00:00:00+00\n')
cur.copy_expert('COPY t FROM STDIN', buf)
steps.append({'copy_in': cur.rowcount})
outbuf = io.StringIO()
cur.copy_expert('COPY (SELECT id, name FROM t WHERE id >= 98 ORDER BY id) TO STDOUT', outbuf)
steps.append({'copy_out': outbuf.getvalue()})
conn.commit()
try:
    cur.execute('INSERT INTO t (id) VALUES (1)')
except psycopg2.Error as e:
    steps.append({'pgcode': e.pgcode, 'error': e.pgerror, 'diag': [e.diag.constraint_name, e.diag.table_name, e.diag.message_detail]})
conn.rollback()
cur.execute("DO $$ BEGIN RAISE NOTICE 'hi %', 1; END $$")
steps.append({'notices': conn.notices[:]})
conn.commit()
conn.autocommit = True
cur.execute('LISTEN chan')
other = psycopg2.connect(**dsn)
other.autocommit = True
other.cursor().execute("NOTIFY chan, 'from other'")
select.select([conn], [], [], 5)
conn.poll()
steps.append({'notifies': [(n.channel, n.payload) for n in conn.notifies]})
other.close()
cur.execute('SELECT %s::text, %s::int[], %s::bytea', ('quote\'s', [1, 2], psycopg2.Binary(b'\x00\xff')))
steps.append({'rows': rows()})
out['steps'] = steps
conn.close()
print(json.dumps(out))
`;

/** Runs the Python side (asynchronously: the frontend under test runs in this process). */
async function runPython(port: number, dbName: string, sslmode: string): Promise<Record<string, unknown>> {
  const child = spawn(python, ['-c', runner], { stdio: ['pipe', 'pipe', 'pipe'], timeout: 60000 });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdin.end(JSON.stringify({ port, db: dbName, password: ROLES.alice, sslmode }));
  const code = await new Promise<number | null>((res) => child.on('close', res));
  assert.equal(code, 0, stderr);
  return JSON.parse(stdout.split('py_d').join('<db>').split('py_r').join('<db>')) as Record<string, unknown>;
}

describe('psycopg2', () => {
  test('the same results as direct, over TLS (sslmode=require) and without', async () => {
    const direct = await runPython(db.port, 'py_d', 'disable');
    const viaTls = await runPython(recallPort, 'py_r', 'require');
    assert.equal(viaTls.ssl, true);
    assert.deepEqual(viaTls.steps, direct.steps);
    assert.equal(viaTls.server_version, direct.server_version);
    await db.admin('DROP DATABASE py_r');
    await db.admin('CREATE DATABASE py_r OWNER alice');
    const plain = await runPython(recallPort, 'py_r', 'disable');
    assert.equal(plain.ssl, false);
    assert.deepEqual(plain.steps, direct.steps);
    const steps = JSON.stringify(direct.steps);
    assert.match(steps, /"named":\[0,1,2/);
    assert.match(steps, /"copy_in":2/);
    assert.match(steps, /"pgcode":"23505"/);
    assert.match(steps, /"notifies":\[\["chan","from other"\]\]/);
  });
});
