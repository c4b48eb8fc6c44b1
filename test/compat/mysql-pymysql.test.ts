// Python PyMySQL (Debian's python3-pymysql, run with /usr/bin/python3) through Recall compared with
// PyMySQL straight to mariadbd, with and without TLS. The Python side runs a list of steps and prints
// one JSON document; the two documents must be equal once the database name is replaced.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { startCompatEnv, createSideDatabases, type CompatEnv, type Target } from './env.js';
import { assertSame } from './compare.js';
import { typesTable, typesRows, typesSelect, procedure, failing } from './content.js';

const python = '/usr/bin/python3';
const user = 'pyuser';
const password = 'py-pw-3';

// Steps: ["sql", text, args?] runs cursor.execute (PyMySQL interpolates args client-side) and
// reads every result set; ["select_db", name] is COM_INIT_DB; ["ping"] is COM_PING;
// ["blob", bytes] stores and reads back a BLOB of that size and reports its sha1 both ways.
const runner = String.raw`
import sys, json, hashlib, datetime, decimal
import pymysql
from pymysql.constants import CLIENT

spec = json.load(sys.stdin)

def conv(v):
    if isinstance(v, (bytes, bytearray)): return 'hex:' + bytes(v).hex()
    if isinstance(v, decimal.Decimal): return 'dec:' + str(v)
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)): return 'dt:' + v.isoformat()
    if isinstance(v, datetime.timedelta): return 'td:' + str(v.total_seconds())
    if isinstance(v, set): return sorted(v)
    if isinstance(v, float): return repr(v)
    return v

def err(e):
    return {'errno': e.args[0], 'message': e.args[1] if len(e.args) > 1 else ''}

kw = dict(host=spec['host'], port=spec['port'], user=spec['user'], password=spec['password'],
          database=spec['db'], charset='utf8mb4', client_flag=CLIENT.MULTI_STATEMENTS,
          max_allowed_packet=128 * 1024 * 1024, connect_timeout=20, local_infile=True)
if spec.get('tls'):
    kw.update(ssl_ca=spec['ca'], ssl_verify_cert=False, ssl_verify_identity=False)
out = {}
try:
    conn = pymysql.connect(**kw)
except pymysql.err.MySQLError as e:
    print(json.dumps({'connect_error': err(e)}))
    sys.exit(0)
out['tls'] = hasattr(conn._sock, 'cipher') and conn._sock.cipher() is not None
steps = []
for step in spec['steps']:
    kind = step[0]
    if kind == 'sql':
        cur = conn.cursor()
        r = {}
        try:
            cur.execute(step[1], step[2] if len(step) > 2 else None)
            sets = []
            while True:
                d = cur.description
                sets.append({
                    'description': [list(x) for x in d] if d else None,
                    'rows': [[conv(v) for v in row] for row in cur.fetchall()] if d else None,
                    'rowcount': cur.rowcount, 'lastrowid': cur.lastrowid,
                    'warnings': cur._result.warning_count if cur._result else None,
                    'status': cur._result.server_status if cur._result else None,
                })
                if not cur.nextset():
                    break
            r['sets'] = sets
        except pymysql.err.MySQLError as e:
            r['error'] = err(e)
        cur.close()
        steps.append(r)
    elif kind == 'select_db':
        conn.select_db(step[1])
        steps.append({'select_db': step[1]})
    elif kind == 'ping':
        conn.ping(reconnect=False)
        steps.append({'ping': True})
    elif kind == 'blob':
        n = step[1]
        data = bytes((i * 131 + 7) % 256 for i in range(4096)) * (n // 4096)
        cur = conn.cursor()
        cur.execute('CREATE TABLE pyblob (b LONGBLOB)')
        cur.execute('INSERT INTO pyblob VALUES (%s)', (data,))
        cur.execute('SELECT SHA1(b), LENGTH(b) FROM pyblob')
        stored = cur.fetchone()
        cur.execute('SELECT b FROM pyblob')
        back = cur.fetchone()[0]
        cur.execute('DROP TABLE pyblob')
        steps.append({'sent_sha1': hashlib.sha1(data).hexdigest(), 'stored': [stored[0], int(stored[1])],
                      'read_sha1': hashlib.sha1(back).hexdigest(), 'read_equal': back == data})
out['steps'] = steps
conn.close()
print(json.dumps(out))
`;

function runPy(env: CompatEnv, t: Target, steps: unknown[], o: { tls?: boolean; password?: string } = {}): string {
  const spec = { host: t.host, port: t.port, user, password: o.password ?? password, db: t.db, tls: !!o.tls, ca: env.cert.certFile, steps };
  const r = spawnSync(python, ['-c', runner], { input: JSON.stringify(spec), encoding: 'utf8', maxBuffer: 64 << 20, timeout: 120_000 });
  assert.equal(r.status, 0, `${t.name}: python failed: ${r.stderr}`);
  return r.stdout.split(t.db).join('<db>');
}

function same(env: CompatEnv, steps: unknown[], o: { tls?: boolean } = {}): string {
  const d = runPy(env, env.direct, steps, o);
  const r = runPy(env, env.recall, steps, o);
  assertSame(r, d, 'PyMySQL');
  return d;
}

describe('PyMySQL through Recall vs direct', { timeout: 240_000 }, () => {
  let env: CompatEnv;

  before(async () => {
    const probe = spawnSync(python, ['-c', 'import pymysql; print(pymysql.__version__)'], { encoding: 'utf8' });
    assert.equal(probe.status, 0, `PyMySQL missing for ${python} (apt-get install python3-pymysql): ${probe.stderr}`);
    env = await startCompatEnv('py');
    createSideDatabases(env, user, password);
  });
  after(async () => {
    await env?.stop();
  });

  test('DDL, DML, every column type, NULLs, parameters, multi-statements, CALL, errors, warnings', () => {
    const steps: unknown[] = [
      ['sql', typesTable],
      ...typesRows.map((r) => ['sql', r]),
      ['sql', typesSelect],
      ['sql', 'SELECT %s, %s, %s, %s, %s', [1, 'x\'y', null, 2.5, '😀']],
      ['sql', 'SELECT id, vc FROM types WHERE id IN (%s, %s) OR vc = %s ORDER BY id', [1, 2, '']],
      ['sql', 'SELECT 1 AS one; SELECT 2 AS two, NULL AS n; UPDATE types SET c = %s WHERE id = 3', ['py']],
      ['sql', procedure],
      ['sql', 'CALL multi(%s)', [2]],
      ...failing.map((f) => ['sql', f.sql]),
      ['sql', "SET SESSION sql_mode = ''"],
      ['sql', 'INSERT INTO types (id, ti) VALUES (50, 1000)'],
      ['sql', 'SHOW WARNINGS'],
      ['sql', 'BEGIN'],
      ['sql', 'DELETE FROM types WHERE id = 50'],
      ['sql', 'ROLLBACK'],
      ['ping'],
      ['select_db', 'information_schema'],
      ['sql', 'SELECT DATABASE()'],
    ];
    const out = same(env, steps);
    for (const f of failing) assert.match(out, new RegExp(`"errno": ${f.errno}`));
    assert.match(out, /"warnings": 1/);
    assert.match(out, /"rows": \[\[1, -128, 255, /, 'the types table was read');
    assert.match(out, /"rows": \[\[2, "one"\]\]/, "the first result set of CALL multi(2)");
  });

  test('a 17 MiB BLOB, byte for byte', () => {
    const out = same(env, [['blob', 17 * 1024 * 1024]]);
    assert.match(out, /"read_equal": true/);
  });

  for (const tls of [false, true]) {
    test(`connect with TLS ${tls ? 'on' : 'off'}; wrong password gets 1045`, () => {
      const out = same(env, [['sql', 'SELECT CURRENT_USER(), id, vc, j FROM types ORDER BY id']], { tls });
      assert.match(out, new RegExp(`"tls": ${tls}`));
      for (const t of [env.direct, env.recall]) {
        assert.match(runPy(env, t, [], { tls, password: 'bad' }), /"errno": 1045/, t.name);
      }
    });
  }
});
