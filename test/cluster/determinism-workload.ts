// A workload of MySQL constructs whose replay is only identical on every replica when the
// leader's context (clock, insert ids, RAND seeds, user variables) travels with the statement:
// NOW()/CURRENT_TIMESTAMP(6), DEFAULT and ON UPDATE CURRENT_TIMESTAMP(6) columns, unseeded RAND()
// in INSERT and UPDATE, AUTO_INCREMENT with multi-row INSERT and INSERT … SELECT,
// LAST_INSERT_ID() feeding the next insert, a trigger writing an AUTO_INCREMENT audit table,
// user variables, a stored procedure, INSERT … ON DUPLICATE KEY UPDATE on hot keys, explicit
// transactions that commit and that roll back (the rollback also burns AUTO_INCREMENT values on
// the leader, in the parent table and through the trigger in the audit table), a statement that
// fails with a duplicate key, and mysql2 prepared statements (COM_STMT_EXECUTE).
// Clients are spread over the given ports and run concurrently. The workload records what each
// client was told (ids, user variable values, counts) so that `spotCheck` can compare every
// replica's tables with it, beyond CHECKSUM TABLE equality.
import mysql from 'mysql2/promise';

export const determinismTables = ['parent', 'child', 'audit', 'copy', 'counter', 'uvars', 'seq', 'seqlog', 'sess'] as const;

export interface DeterminismOptions {
  host?: string;
  ports: number[];
  user: string;
  password?: string;
  database: string;
  /** Concurrent clients on each port (default 2). */
  clientsPerPort?: number;
  /** Iterations of the whole statement mix per client (default 10). */
  iterations?: number;
  /** Letters of the steps to run (A…M, see iteration()); default all. For narrowing a failure down. */
  steps?: string;
}

export interface UserVarSeen {
  client: number;
  seq: number;
  v: string;
  n: number;
}

export interface DeterminismReport {
  /** Statements that succeeded. */
  okStatements: number;
  /** Statements that failed as the workload meant them to (duplicate key). */
  expectedErrors: number;
  /** Anything else: one line each with port, client, statement and error. */
  failures: string[];
  /** What each session held in @x/@n when it inserted them. */
  userVars: UserVarSeen[];
  /** Rows in parent that the clients were told were inserted (and committed). */
  parents: number;
  /** Successful ON DUPLICATE KEY UPDATE statements on the shared k0..k2 keys. */
  odkuHot: number;
  /** Successful CALL det_bump(). */
  calls: number;
  /** Committed explicit transactions. */
  txCommits: number;
  /** Values the sequence idiom (step L) handed to clients. */
  seqTaken: number[];
  /** Read-your-writes checks on the writing session that did not see the write. */
  staleOwnReads: string[];
  elapsedMs: number;
}

type Row = Record<string, unknown>;

/** Tables, trigger and procedure; run through a Recall port (DDL replicates). */
export async function createDeterminismSchema(conn: mysql.Connection, database: string): Promise<void> {
  // Qualified names, no USE: trigger and procedure bodies run in their own database anyway.
  const q = `\`${database}\``;
  const ddl = [
    `CREATE DATABASE IF NOT EXISTS \`${database}\``,
    `CREATE TABLE ${q}.parent (
       id INT AUTO_INCREMENT PRIMARY KEY,
       client INT NOT NULL, seq INT NOT NULL, label VARCHAR(64) NOT NULL,
       r DOUBLE NULL, ts_now DATETIME(6) NULL,
       created DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
       updated TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
       UNIQUE KEY client_seq (client, seq)) ENGINE=InnoDB`,
    `CREATE TABLE ${q}.child (
       id INT AUTO_INCREMENT PRIMARY KEY,
       parent_id INT NOT NULL, client INT NOT NULL, seq INT NOT NULL, note VARCHAR(32) NOT NULL,
       at DATETIME(6) NOT NULL, KEY (parent_id)) ENGINE=InnoDB`,
    `CREATE TABLE ${q}.audit (
       id INT AUTO_INCREMENT PRIMARY KEY,
       parent_id INT NOT NULL, action VARCHAR(80) NOT NULL, at DATETIME(6) NOT NULL, r DOUBLE NULL) ENGINE=InnoDB`,
    `CREATE TABLE ${q}.copy (
       id BIGINT AUTO_INCREMENT PRIMARY KEY,
       src_id INT NOT NULL, label VARCHAR(64) NOT NULL, r DOUBLE NULL, at DATETIME(6) NOT NULL) ENGINE=InnoDB`,
    `CREATE TABLE ${q}.counter (
       k VARCHAR(32) PRIMARY KEY, n INT NOT NULL, r DOUBLE NULL,
       touched TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)) ENGINE=InnoDB`,
    `CREATE TABLE ${q}.uvars (
       id INT AUTO_INCREMENT PRIMARY KEY,
       client INT NOT NULL, seq INT NOT NULL, v VARCHAR(80) NULL, n BIGINT NULL) ENGINE=InnoDB`,
    // MySQL's documented sequence idiom: UPDATE seq SET id = LAST_INSERT_ID(id + 1).
    `CREATE TABLE ${q}.seq (name VARCHAR(16) PRIMARY KEY, id BIGINT NOT NULL) ENGINE=InnoDB`,
    `CREATE TABLE ${q}.seqlog (v BIGINT PRIMARY KEY, client INT NOT NULL, seen BIGINT NOT NULL) ENGINE=InnoDB`,
    `CREATE TABLE ${q}.sess (
       id INT AUTO_INCREMENT PRIMARY KEY, client INT NOT NULL, seq INT NOT NULL, how VARCHAR(16) NOT NULL,
       local_now DATETIME(6) NULL, short VARCHAR(10) NULL, UNIQUE KEY (client, seq)) ENGINE=InnoDB`,
    `INSERT INTO ${q}.seq (name, id) VALUES ('s', 0)`,
    `CREATE TRIGGER ${q}.parent_ai AFTER INSERT ON ${q}.parent FOR EACH ROW
       INSERT INTO audit (parent_id, action, at, r) VALUES (NEW.id, 'insert', NOW(6), RAND())`,
    `CREATE TRIGGER ${q}.parent_au AFTER UPDATE ON ${q}.parent FOR EACH ROW
       INSERT INTO audit (parent_id, action, at) VALUES (NEW.id, CONCAT('update:', NEW.label), NOW(6))`,
    `CREATE PROCEDURE ${q}.det_bump(IN p_client INT, IN p_seq INT)
     BEGIN
       DECLARE pid INT;
       INSERT INTO parent (client, seq, label, r, ts_now) VALUES (p_client, p_seq, 'proc', RAND(), NOW(6));
       SET pid = LAST_INSERT_ID();
       INSERT INTO child (parent_id, client, seq, note, at) VALUES (pid, p_client, p_seq, 'proc', NOW(6));
       UPDATE parent SET r = r + RAND(), label = 'proc-updated' WHERE id = pid;
       INSERT INTO counter (k, n, r) VALUES ('proc', 1, RAND()) ON DUPLICATE KEY UPDATE n = n + 1, r = RAND();
     END`,
    `INSERT INTO ${q}.counter (k, n, r) VALUES ('tx-commits', 0, 0)`,
  ];
  for (const sql of ddl) await conn.query(sql);
}

function errText(e: unknown): string {
  const x = e as { errno?: number; sqlState?: string; message?: string };
  return `${x.errno ?? '?'} (${x.sqlState ?? '?'}) ${x.message ?? String(e)}`;
}

function errno(e: unknown): number | undefined {
  return (e as { errno?: number }).errno;
}

interface ClientCtx {
  conn: mysql.Connection;
  port: number;
  client: number;
  nextSeq: number;
  report: DeterminismReport;
  steps: string;
}

/** One statement; a failure is recorded (not thrown) unless `expectErrno` matches. */
async function run(cx: ClientCtx, op: string, sql: string, params?: unknown[], prepared = false, expectErrno?: number): Promise<mysql.ResultSetHeader | Row[] | undefined> {
  if (!cx.steps.includes(op[0]!)) return undefined;
  try {
    const [res] = prepared ? await cx.conn.execute(sql, params as never) : await cx.conn.query(sql, params);
    if (expectErrno !== undefined) {
      cx.report.failures.push(`port ${cx.port} client ${cx.client} ${op}: ${sql} ${JSON.stringify(params ?? [])} succeeded, expected error ${expectErrno}`);
      return undefined;
    }
    cx.report.okStatements++;
    return res as mysql.ResultSetHeader | Row[];
  } catch (e) {
    if (expectErrno !== undefined && errno(e) === expectErrno) {
      cx.report.expectedErrors++;
      return undefined;
    }
    cx.report.failures.push(`port ${cx.port} client ${cx.client} ${op}: ${sql.replace(/\s+/g, ' ')} ${JSON.stringify(params ?? [])} -> ${errText(e)}`);
    return undefined;
  }
}

function header(r: unknown): mysql.ResultSetHeader | undefined {
  return r && !Array.isArray(r) ? (r as mysql.ResultSetHeader) : undefined;
}

async function iteration(cx: ClientCtx, it: number): Promise<void> {
  const c = cx.client;
  const seq = () => cx.nextSeq++;
  const rep = cx.report;

  // A: text INSERT with RAND()/NOW(6), LAST_INSERT_ID() in the next insert, then read back on
  // the same session (read-your-writes).
  const sA = seq();
  if (header(await run(cx, 'A insert', 'INSERT INTO parent (client, seq, label, r, ts_now) VALUES (?, ?, ?, RAND(), NOW(6))', [c, sA, 'text']))) rep.parents++;
  await run(cx, 'A lid child', `INSERT INTO child (parent_id, client, seq, note, at) VALUES (LAST_INSERT_ID(), ?, ?, 'lid', CURRENT_TIMESTAMP(6))`, [c, sA]);
  const seen = await run(cx, 'A read own write', `SELECT p.id FROM parent p JOIN child ch ON ch.parent_id = p.id WHERE ch.client = ? AND ch.seq = ? AND ch.note = 'lid'`, [c, sA]);
  if (Array.isArray(seen) && seen.length !== 1) rep.staleOwnReads.push(`port ${cx.port} client ${c} seq ${sA}: ${seen.length} rows right after the write`);

  // B: multi-row INSERT; LAST_INSERT_ID() is the first row's id.
  const sB = [seq(), seq(), seq()];
  const multi = header(await run(cx, 'B multi-row', 'INSERT INTO parent (client, seq, label, r) VALUES (?, ?, ?, RAND()), (?, ?, ?, RAND()), (?, ?, ?, RAND())',
    sB.flatMap((s, k) => [c, s, `multi${k}`])));
  if (multi) rep.parents += multi.affectedRows;
  await run(cx, 'B lid child', `INSERT INTO child (parent_id, client, seq, note, at) VALUES (LAST_INSERT_ID(), ?, ?, 'multi', NOW(6))`, [c, sB[0]]);

  // C: INSERT … SELECT into another AUTO_INCREMENT table (ordered, so the rows are determined).
  await run(cx, 'C insert-select', 'INSERT INTO copy (src_id, label, r, at) SELECT id, label, r, NOW(6) FROM parent WHERE client = ? ORDER BY id DESC LIMIT 3', [c]);

  // D: UPDATE with RAND(): the ON UPDATE column moves and the update trigger writes audit.
  await run(cx, 'D update rand', `UPDATE parent SET r = RAND(), label = CONCAT(label, '+') WHERE client = ? AND seq = ?`, [c, sA]);

  // E: user variables, one of them computed with RAND() in this session.
  const sE = seq();
  await run(cx, 'E set @x', `SET @x = CONCAT('c', ?, '-', ?, '-', FLOOR(RAND() * 1000000)), @n = ? * 100000 + ?`, [c, sE, c, sE]);
  await run(cx, 'E insert vars', 'INSERT INTO uvars (client, seq, v, n) VALUES (?, ?, @x, @n)', [c, sE]);
  const vars = await run(cx, 'E read vars', 'SELECT @x AS x, @n AS n');
  if (Array.isArray(vars) && vars[0]) rep.userVars.push({ client: c, seq: sE, v: String(vars[0].x), n: Number(vars[0].n) });

  // F: stored procedure (insert, LAST_INSERT_ID into a local variable, update, ODKU).
  if (header(await run(cx, 'F call', 'CALL det_bump(?, ?)', [c, seq()]))) {
    rep.calls++;
    rep.parents++;
  }

  // G: INSERT … ON DUPLICATE KEY UPDATE on keys every client shares.
  if (header(await run(cx, 'G odku', 'INSERT INTO counter (k, n, r) VALUES (?, 1, RAND()) ON DUPLICATE KEY UPDATE n = n + 1, r = RAND()', [`k${it % 3}`]))) rep.odkuHot++;

  // H: explicit transaction that commits, with a read inside it.
  const sH = seq();
  if (await run(cx, 'H begin', 'BEGIN')) {
    const okIns = header(await run(cx, 'H insert', 'INSERT INTO parent (client, seq, label, r, ts_now) VALUES (?, ?, ?, RAND(), NOW(6))', [c, sH, 'tx']));
    await run(cx, 'H lid child', `INSERT INTO child (parent_id, client, seq, note, at) VALUES (LAST_INSERT_ID(), ?, ?, 'tx', NOW(6))`, [c, sH]);
    await run(cx, 'H bump', `UPDATE counter SET n = n + 1 WHERE k = 'tx-commits'`);
    const inTx = await run(cx, 'H read in tx', `SELECT COUNT(*) AS n FROM child WHERE client = ? AND seq = ? AND note = 'tx'`, [c, sH]);
    if (Array.isArray(inTx) && Number(inTx[0]?.n) !== 1) rep.staleOwnReads.push(`port ${cx.port} client ${c} seq ${sH}: own insert not visible inside its transaction`);
    if (await run(cx, 'H commit', 'COMMIT')) {
      rep.txCommits++;
      if (okIns) rep.parents++;
    }
  }

  // I: explicit transaction that rolls back. On the leader its inserts used up AUTO_INCREMENT
  // values of parent, child and (through the trigger) audit; no replica may keep any of its rows.
  const sI = seq();
  if (await run(cx, 'I start', 'START TRANSACTION')) {
    await run(cx, 'I insert', 'INSERT INTO parent (client, seq, label, r) VALUES (?, ?, ?, RAND())', [c, sI, 'rolled-back']);
    await run(cx, 'I lid child', `INSERT INTO child (parent_id, client, seq, note, at) VALUES (LAST_INSERT_ID(), ?, ?, 'rolled-back', NOW(6))`, [c, sI]);
    await run(cx, 'I bump', `UPDATE counter SET n = n + 1000 WHERE k = 'tx-commits'`);
    await run(cx, 'I rollback', 'ROLLBACK');
  }

  // J: prepared statements (binary protocol), LAST_INSERT_ID() across two executes.
  const sJ = seq();
  if (header(await run(cx, 'J ps insert', 'INSERT INTO parent (client, seq, label, r, ts_now) VALUES (?, ?, ?, RAND(), NOW(6))', [c, sJ, 'ps'], true))) rep.parents++;
  await run(cx, 'J ps lid child', 'INSERT INTO child (parent_id, client, seq, note, at) VALUES (LAST_INSERT_ID(), ?, ?, ?, CURRENT_TIMESTAMP(6))', [c, sJ, 'ps'], true);
  await run(cx, 'J ps update', 'UPDATE parent SET r = RAND() * ? WHERE client = ? AND seq = ?', [2, c, sJ], true);

  // K: a statement that fails (duplicate key) after taking an AUTO_INCREMENT value on the leader.
  await run(cx, 'K duplicate', 'INSERT INTO parent (client, seq, label) VALUES (?, ?, ?)', [c, sA, 'dup'], false, 1062);

  // L: the sequence idiom. LAST_INSERT_ID(expr) sets the session's value on the leader; the
  // client reads it back (a read, wherever this session runs reads) and inserts it.
  if (header(await run(cx, 'L next', `UPDATE seq SET id = LAST_INSERT_ID(id + 1) WHERE name = 's'`))) {
    const got = await run(cx, 'L read', 'SELECT LAST_INSERT_ID() AS v');
    const v = Array.isArray(got) ? Number(got[0]?.v) : NaN;
    if (header(await run(cx, 'L log', 'INSERT INTO seqlog (v, client, seen) VALUES (LAST_INSERT_ID(), ?, ?)', [c, v]))) rep.seqTaken.push(v);
  }

  // M: session settings travel with the statement: a time zone for NOW() into DATETIME,
  // a non-strict sql_mode that truncates, INSERT IGNORE of a duplicate (takes an
  // AUTO_INCREMENT value and inserts nothing), REPLACE (delete + insert, a new id).
  const sM = seq();
  if (await run(cx, 'M set', `SET time_zone = '+05:30', sql_mode = ''`)) {
    await run(cx, 'M tz insert', `INSERT INTO sess (client, seq, how, local_now, short) VALUES (?, ?, 'tz', NOW(6), 'longer than ten')`, [c, sM]);
    await run(cx, 'M ignore', `INSERT IGNORE INTO sess (client, seq, how) VALUES (?, ?, 'ignored')`, [c, sM]);
    await run(cx, 'M replace', `REPLACE INTO sess (client, seq, how, local_now, short) VALUES (?, ?, 'replaced', NOW(6), ?)`, [c, sM, `r${it}-${c}-truncated-here`]);
    await run(cx, 'M restore', 'SET time_zone = @@global.time_zone, sql_mode = @@global.sql_mode');
  }
}

/** Runs the workload with `clientsPerPort` clients on each port, all at once. */
export async function runDeterminismWorkload(opts: DeterminismOptions): Promise<DeterminismReport> {
  const report: DeterminismReport = {
    okStatements: 0, expectedErrors: 0, failures: [], userVars: [], parents: 0, odkuHot: 0, calls: 0, txCommits: 0,
    staleOwnReads: [], elapsedMs: 0, seqTaken: [],
  };
  const perPort = opts.clientsPerPort ?? 2;
  const iterations = opts.iterations ?? 10;
  const t0 = Date.now();
  const clients = opts.ports.flatMap((port, p) => Array.from({ length: perPort }, (_, k) => ({ port, client: p * perPort + k + 1 })));
  await Promise.all(clients.map(async ({ port, client }) => {
    let conn: mysql.Connection;
    try {
      conn = await mysql.createConnection({ host: opts.host ?? '127.0.0.1', port, user: opts.user, password: opts.password ?? '', database: opts.database });
    } catch (e) {
      report.failures.push(`port ${port} client ${client}: connect -> ${errText(e)}`);
      return;
    }
    // Errors after a broken connection would all repeat the first one; stop this client then.
    conn.on('error', () => undefined);
    const cx: ClientCtx = { conn, port, client, nextSeq: 1, report, steps: opts.steps ?? 'ABCDEFGHIJKLM' };
    try {
      for (let it = 0; it < iterations; it++) {
        const before = report.failures.length;
        await iteration(cx, it);
        if (report.failures.slice(before).some((f) => /PROTOCOL_CONNECTION_LOST|ECONNRESET|closed state/.test(f))) break;
      }
    } finally {
      await conn.end().catch(() => undefined);
    }
  }));
  report.elapsedMs = Date.now() - t0;
  return report;
}

/**
 * Checks one replica's tables against what the clients were told. `query` runs SQL straight
 * on that replica's database (not through Recall). Returns the problems found (empty: fine).
 */
export async function spotCheck(query: (sql: string) => Promise<Row[]>, database: string, report: DeterminismReport): Promise<string[]> {
  const problems: string[] = [];
  const one = async (sql: string): Promise<number> => Number(Object.values((await query(sql))[0] ?? {})[0]);
  const d = `\`${database}\``;

  // Every LAST_INSERT_ID() child points at the parent its client had just inserted.
  const wrong = await query(`SELECT ch.id, ch.client, ch.seq, ch.note, ch.parent_id, p.client AS pc, p.seq AS ps
    FROM ${d}.child ch LEFT JOIN ${d}.parent p ON p.id = ch.parent_id
    WHERE p.id IS NULL OR p.client <> ch.client OR p.seq <> ch.seq LIMIT 5`);
  if (wrong.length) problems.push(`child rows pointing at the wrong parent: ${JSON.stringify(wrong)}`);
  const children = await one(`SELECT COUNT(*) FROM ${d}.child`);
  const parents = await one(`SELECT COUNT(*) FROM ${d}.parent`);
  if (parents !== report.parents) problems.push(`parent has ${parents} rows, clients were told ${report.parents} inserts succeeded`);
  // One child per parent except the two extra rows of each multi-row insert.
  const multiExtra = await one(`SELECT COUNT(*) FROM ${d}.parent WHERE label IN ('multi1', 'multi2')`);
  if (children !== parents - multiExtra) problems.push(`child has ${children} rows, expected ${parents - multiExtra} (one per parent but the multi-row tails)`);

  // The insert trigger fired once per parent row, for the right id.
  const orphanAudit = await one(`SELECT COUNT(*) FROM ${d}.audit a LEFT JOIN ${d}.parent p ON p.id = a.parent_id WHERE p.id IS NULL`);
  if (orphanAudit) problems.push(`${orphanAudit} audit rows for parents that do not exist (rolled back or misnumbered)`);
  const insAudit = await one(`SELECT COUNT(*) FROM ${d}.audit WHERE action = 'insert'`);
  if (insAudit !== parents) problems.push(`${insAudit} insert audit rows for ${parents} parents`);

  // Nothing of the rolled-back transactions or of the failed duplicate.
  const rolled = await one(`SELECT (SELECT COUNT(*) FROM ${d}.parent WHERE label LIKE 'rolled-back%' OR label = 'dup') + (SELECT COUNT(*) FROM ${d}.child WHERE note = 'rolled-back')`);
  if (rolled) problems.push(`${rolled} rows of rolled-back transactions or failed statements are present`);

  // Counters.
  const counters = new Map((await query(`SELECT k, n FROM ${d}.counter`)).map((r) => [String(r.k), Number(r.n)]));
  const hot = (counters.get('k0') ?? 0) + (counters.get('k1') ?? 0) + (counters.get('k2') ?? 0);
  if (hot !== report.odkuHot) problems.push(`ON DUPLICATE KEY UPDATE counters sum to ${hot}, expected ${report.odkuHot}`);
  if ((counters.get('proc') ?? 0) !== report.calls) problems.push(`procedure counter ${counters.get('proc')}, expected ${report.calls}`);
  if (counters.get('tx-commits') !== report.txCommits) problems.push(`tx-commits ${counters.get('tx-commits')}, expected ${report.txCommits} (a rolled-back +1000 applied?)`);

  // User variables hold what the session had.
  const uv = new Map((await query(`SELECT client, seq, v, n FROM ${d}.uvars`)).map((r) => [`${r.client}/${r.seq}`, r]));
  if (uv.size !== report.userVars.length) problems.push(`uvars has ${uv.size} rows, sessions inserted ${report.userVars.length}`);
  for (const s of report.userVars) {
    const r = uv.get(`${s.client}/${s.seq}`);
    if (!r || String(r.v) !== s.v || Number(r.n) !== s.n) {
      problems.push(`uvars client ${s.client} seq ${s.seq}: session had @x=${s.v} @n=${s.n}, table has ${r ? `${String(r.v)} ${String(r.n)}` : 'no row'}`);
      break;
    }
  }

  // The sequence idiom handed out 1..n exactly once, and each client logged the value it read.
  const seqRows = await query(`SELECT v, seen FROM ${d}.seqlog ORDER BY v`);
  const seqMax = await one(`SELECT id FROM ${d}.seq WHERE name = 's'`);
  const taken = [...report.seqTaken].sort((a, b) => a - b);
  if (seqRows.length !== taken.length || seqRows.some((r, i) => Number(r.v) !== taken[i] || Number(r.seen) !== Number(r.v))) {
    problems.push(`seqlog ${JSON.stringify(seqRows.slice(0, 5))}… does not hold the values the clients read (${taken.slice(0, 5).join(',')}…)`);
  }
  if (taken.length && seqMax !== taken.length) problems.push(`sequence at ${seqMax} after ${taken.length} increments`);
  if (new Set(taken).size !== taken.length) problems.push('the sequence handed a value to two clients');

  // Session settings: every 'tz' row was replaced, truncated to 10 characters, in +05:30.
  const sessBad = await one(`SELECT COUNT(*) FROM ${d}.sess WHERE how <> 'replaced' OR CHAR_LENGTH(short) <> 10`);
  if (sessBad) problems.push(`${sessBad} sess rows not replaced or not truncated to 10 characters`);
  const offset = await one(`SELECT ROUND(AVG(TIMESTAMPDIFF(MINUTE, UTC_TIMESTAMP(), local_now))) FROM ${d}.sess`);
  const sessRows = await one(`SELECT COUNT(*) FROM ${d}.sess`);
  if (sessRows && Math.abs(offset - 330) > 60) problems.push(`sess.local_now is ${offset} minutes from UTC on average, expected about +330 (time_zone '+05:30')`);

  // The clock columns were set (not NULL / zero) and ON UPDATE moved on updated rows.
  const badTime = await one(`SELECT COUNT(*) FROM ${d}.parent WHERE created < '2000-01-01' OR (label LIKE '%+' AND updated < created)`);
  if (badTime) problems.push(`${badTime} parent rows with a bad created/updated timestamp`);
  return problems;
}
