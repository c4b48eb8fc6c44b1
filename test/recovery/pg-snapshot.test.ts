// The built-in snapshot resync for PostgreSQL with real servers: a donor and a joiner managed
// postgres, two authenticated Transports; pg_basebackup's tar through the chunked protocol and
// through the direct data connection, installed with the joiner's server stopped; then the
// ordered contents of every table, recall.applied in each database and the files' owner/mode.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { Transport } from '../../src/transport/transport.js';
import { logger } from '../../src/util/log.js';
import { ManagedPostgres } from '../../src/supervisor/postgres.js';
import { SnapshotDonor } from '../../src/recovery/snapshot-donor.js';
import { DirectSnapshotDonor, fetchSnapshotDirect } from '../../src/recovery/snapshot-direct.js';
import { fetchSnapshot, SNAPSHOT_MARKER } from '../../src/recovery/snapshot-joiner.js';
import { installSnapshot, stagingDirFor } from '../../src/recovery/snapshot-install.js';
import { pgBasebackupTool, pgConnectArgs } from '../../src/recovery/pg-basebackup.js';
import type { ApplierPause, ServerControl } from '../../src/recovery/types.js';
import { tempDir, type TempDir } from '../harness/tmp.js';
import { loadConfig } from '../../src/config/load.js';
import { startNode } from '../../src/cli/node.js';

const log = logger('pg-snapshot-test');
const INDEX = 4321;

async function query(m: ManagedPostgres, database: string, sql: string): Promise<Record<string, unknown>[]> {
  const c = new pg.Client({ host: m.socketDir, port: m.port, user: 'postgres', database });
  c.on('error', () => undefined);
  await c.connect();
  try {
    const r = await c.query(sql);
    const last = Array.isArray(r) ? (r as pg.QueryResult[]).at(-1)! : r;
    return last.rows as Record<string, unknown>[];
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** md5 of each public table's ordered rows, and recall.applied, in both databases. */
async function contents(m: ManagedPostgres): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const db of ['postgres', 'app']) {
    const tables = await query(m, db, "SELECT table_name AS t FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1");
    for (const { t } of tables) {
      const [r] = await query(m, db, `SELECT count(*) AS n, md5(string_agg(x::text, ',' ORDER BY x::text)) AS h FROM public."${String(t)}" x`);
      out[`${db}.${String(t)}`] = `${String(r!.n)}:${String(r!.h)}`;
    }
    const [a] = await query(m, db, 'SELECT idx FROM recall.applied WHERE id = 1');
    out[`${db}.applied`] = String(a!.idx);
  }
  return out;
}

describe('postgres snapshot resync (pg_basebackup)', () => {
  let dir: TempDir;
  let donorPg: ManagedPostgres;
  let joinerPg: ManagedPostgres;
  let donorT: Transport;
  let joinerT: Transport;
  let donor: SnapshotDonor;
  let direct: DirectSnapshotDonor;
  let donorSums: Record<string, string>;
  const pauses = { paused: 0, resumed: 0 };
  const applier: ApplierPause = {
    pause: async (minIndex) => {
      assert.ok(minIndex <= INDEX);
      pauses.paused++;
      return INDEX;
    },
    resume: () => void pauses.resumed++,
  };
  let server: ServerControl;
  let joinerDatadir: string;
  let donorDatadir: string;

  before(async () => {
    dir = tempDir('recall-pgsnap-');
    chmodSync(dir.path, 0o711); // the postgres user walks through it
    for (const n of ['donor', 'joiner']) mkdirSync(join(dir.path, n), { mode: 0o711 });
    donorDatadir = join(dir.path, 'donor', 'postgres');
    donorPg = new ManagedPostgres({ dataDir: donorDatadir });
    joinerDatadir = join(dir.path, 'joiner', 'postgres');
    joinerPg = new ManagedPostgres({ dataDir: joinerDatadir });
    await Promise.all([donorPg.start(), joinerPg.start()]);
    server = { stop: () => joinerPg.stop(), start: () => joinerPg.start() };
    await query(donorPg, 'postgres', 'CREATE DATABASE app');
    for (const db of ['postgres', 'app']) {
      await query(
        donorPg,
        db,
        `CREATE SCHEMA recall; CREATE TABLE recall.applied (id int PRIMARY KEY, idx bigint NOT NULL, term bigint NOT NULL, checksum bigint NOT NULL);
         INSERT INTO recall.applied VALUES (1, ${db === 'app' ? INDEX : INDEX - 7}, 1, 0);
         CREATE TABLE t (id serial PRIMARY KEY, v text, n bigint);
         CREATE INDEX t_n ON t (n);
         INSERT INTO t (v, n) SELECT md5(g::text), g * 7 FROM generate_series(1, 200000) g;`,
      );
    }
    // the joiner's own data, which the copy replaces
    await query(joinerPg, 'postgres', 'CREATE TABLE only_here (x int); INSERT INTO only_here VALUES (1)');
    donorSums = await contents(donorPg);
    donorT = await Transport.start({ id: 1, clusterId: 'pgsnap', secret: 's3cret', listen: '127.0.0.1:0', peers: new Map(), backoffMaxMs: 200 });
    joinerT = await Transport.start({ id: 2, clusterId: 'pgsnap', secret: 's3cret', listen: '127.0.0.1:0', peers: new Map(), backoffMaxMs: 200 });
    donorT.addPeer(2, `127.0.0.1:${joinerT.port}`);
    joinerT.addPeer(1, `127.0.0.1:${donorT.port}`);
    for (let i = 0; i < 250 && !(joinerT.isConnected(1) && donorT.isConnected(2)); i++) await new Promise((r) => setTimeout(r, 20));
    const target = { socketPath: `${donorPg.socketDir}/.s.PGSQL.${donorPg.port}`, user: 'postgres', password: '' };
    const tool = pgBasebackupTool({ datadir: donorDatadir });
    donor = new SnapshotDonor({ transport: donorT, log, applier, target, datadir: donorDatadir, spoolDir: join(dir.path, 'spool'), tool });
    direct = new DirectSnapshotDonor({ transport: donorT, log, applier, target, datadir: donorDatadir, workDir: join(dir.path, 'spool'), tool });
  });

  after(async () => {
    await donor?.close();
    await direct?.close();
    await joinerT?.close();
    await donorT?.close();
    await joinerPg?.stop();
    await donorPg?.stop();
    dir?.remove();
  });

  async function assertJoinerHoldsCopy(): Promise<void> {
    assert.deepEqual(await contents(joinerPg), donorSums);
    const [gone] = await query(joinerPg, 'postgres', "SELECT to_regclass('public.only_here') IS NULL AS gone");
    assert.equal(gone!.gone, true, "the joiner's own table was replaced");
    const st = statSync(joinerDatadir);
    const pgUid = statSync(join(joinerDatadir, 'PG_VERSION')).uid;
    assert.equal(st.mode & 0o777, 0o700);
    assert.equal(st.uid, pgUid, 'the datadir belongs to the server user');
    assert.ok(!existsSync(`${joinerDatadir}.resync-old`) && !existsSync(stagingDirFor(joinerDatadir)));
    assert.ok(!existsSync(join(joinerDatadir, SNAPSHOT_MARKER)), 'the staging marker does not stay in the datadir');
    // its own log stayed (with the lines of both starts), the donor's socket lock did not come over
    assert.match(readFileSync(join(joinerDatadir, 'postgres.log'), 'utf8'), /start:.*-p \d+/);
    assert.ok(!readdirSync(join(joinerDatadir, 'sock')).some((f) => f.includes(String(donorPg.port))), 'no donor socket lock');
    // the restored server takes writes, sequences continue
    const [r] = await query(joinerPg, 'app', "INSERT INTO t (v, n) VALUES ('new', -1) RETURNING id");
    assert.equal(Number(r!.id), 200001);
    await query(joinerPg, 'app', 'DELETE FROM t WHERE n = -1');
    await query(joinerPg, 'app', "SELECT setval('t_id_seq', 200000)");
  }

  test('recall serve --engine postgres refuses resyncMethod rsync before it starts anything', async () => {
    const d = tempDir('recall-pgsnap-cfg-');
    try {
      const cfg = loadConfig({ flags: { engine: 'postgres', 'resync-method': 'rsync', 'data-dir': d.path }, env: {} });
      await assert.rejects(startNode(cfg), /resyncMethod: rsync is not supported with engine postgres/);
      assert.ok(!existsSync(join(d.path, 'postgres')), 'no postgres was initialised');
    } finally {
      d.remove();
    }
  });

  test('unix socket target -> pg_basebackup -h dir -p port', () => {
    assert.deepEqual(pgConnectArgs({ socketPath: '/x/sock/.s.PGSQL.5433', user: 'postgres', password: '' }), ['-h', '/x/sock', '-p', '5433', '-U', 'postgres']);
    assert.deepEqual(pgConnectArgs({ host: '127.0.0.1', port: 6000, user: 'u', password: 'p' }), ['-h', '127.0.0.1', '-p', '6000', '-U', 'u']);
    assert.throws(() => pgConnectArgs({ socketPath: '/x/mysql.sock', user: 'postgres', password: '' }), /not a PostgreSQL socket/);
  });

  test('chunked transfer over the peer link, then install: equal contents and applied index', async () => {
    const staging = stagingDirFor(joinerDatadir);
    const r = await fetchSnapshot({ transport: joinerT, log, donor: 1, minIndex: INDEX, stagingDir: staging, tool: pgBasebackupTool({ datadir: joinerDatadir }) });
    assert.equal(r.index, INDEX);
    assert.ok(r.bytes > 30e6, `stream of ${r.bytes} bytes`);
    assert.equal(pauses.paused, pauses.resumed);
    await installSnapshot({ stagingDir: staging, datadir: joinerDatadir, server, log, keepFiles: ['postgres.log'] });
    await assertJoinerHoldsCopy();
    console.log(`pg chunked snapshot of ${(r.bytes / 1e6).toFixed(1)} MB: fetch ${r.seconds.toFixed(2)} s, ${(r.bytes / 1e6 / r.seconds).toFixed(1)} MB/s`);
  });

  test('direct data connection, then install: equal contents', async () => {
    await query(joinerPg, 'postgres', 'CREATE TABLE only_here (x int)');
    const staging = stagingDirFor(joinerDatadir);
    const r = await fetchSnapshotDirect({ transport: joinerT, log, donor: 1, minIndex: INDEX, stagingDir: staging, listenHost: '127.0.0.1', tool: pgBasebackupTool({ datadir: joinerDatadir }) });
    assert.equal(r.index, INDEX);
    await installSnapshot({ stagingDir: staging, datadir: joinerDatadir, server, log, keepFiles: ['postgres.log'] });
    await assertJoinerHoldsCopy();
    console.log(`pg direct snapshot of ${(r.bytes / 1e6).toFixed(1)} MB: fetch ${r.seconds.toFixed(2)} s, ${(r.bytes / 1e6 / r.seconds).toFixed(1)} MB/s`);
  });

  test('a stream that is no base backup fails in prepare and leaves the datadir alone', async () => {
    const tool = pgBasebackupTool({ datadir: joinerDatadir });
    const d = tempDir('recall-pgsnap-bad-');
    try {
      await assert.rejects(tool.prepare({ dir: d.path }), /holds no base backup/);
    } finally {
      d.remove();
    }
    rmSync(stagingDirFor(joinerDatadir), { recursive: true, force: true });
    assert.ok(existsSync(join(joinerDatadir, 'PG_VERSION')));
  });
});
