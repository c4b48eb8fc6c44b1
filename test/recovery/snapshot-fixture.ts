// Shared by the snapshot resync test and its benchmark: a donor database with the recall.applied
// row, tables in several engines, a view, a trigger and an account; checksums to compare replicas.
import mysql from 'mysql2/promise';
import type { ApplierPause } from '../../src/recovery/types.js';

export type Conn = mysql.Connection;

export function connect(socketPath: string): Promise<Conn> {
  return mysql.createConnection({ socketPath, user: 'root', password: '', multipleStatements: true });
}

/**
 * Fills the database: recall.applied at `index`, and about `mb` MB of user data over InnoDB
 * (two tables, one with a secondary index), Aria and MyISAM tables.
 */
export async function populate(c: Conn, opts: { index: number; mb: number }): Promise<void> {
  await c.query(`CREATE DATABASE IF NOT EXISTS recall`);
  await c.query(
    `CREATE TABLE IF NOT EXISTS recall.applied (id TINYINT UNSIGNED PRIMARY KEY, idx BIGINT UNSIGNED NOT NULL, term BIGINT UNSIGNED NOT NULL, checksum INT UNSIGNED NOT NULL) ENGINE=InnoDB`,
  );
  await c.query(`REPLACE INTO recall.applied VALUES (1, ?, 3, 987654)`, [opts.index]);
  await c.query(`CREATE DATABASE IF NOT EXISTS app`);
  await c.query(`USE app`); // the seq_1_to_N tables of the Sequence engine need a current database
  await c.query(`CREATE TABLE app.big (id INT PRIMARY KEY AUTO_INCREMENT, a INT NOT NULL, b CHAR(32) NOT NULL, c TEXT NOT NULL) ENGINE=InnoDB`);
  await c.query(`CREATE TABLE app.indexed (id INT PRIMARY KEY, k INT NOT NULL, v VARCHAR(200) NOT NULL, stamp VARCHAR(40) NOT NULL DEFAULT '', KEY (k)) ENGINE=InnoDB`);
  await c.query(`CREATE TABLE app.aria (id INT PRIMARY KEY, v VARCHAR(200) NOT NULL) ENGINE=Aria`);
  await c.query(`CREATE TABLE app.myisam (id INT PRIMARY KEY, v VARCHAR(200) NOT NULL) ENGINE=MyISAM`);
  await c.query(`CREATE VIEW app.v_big AS SELECT id, a FROM app.big WHERE a % 2 = 0`);
  await c.query(`CREATE TRIGGER app.indexed_stamp BEFORE INSERT ON app.indexed FOR EACH ROW SET NEW.stamp = CONCAT('t', NEW.k)`);
  await c.query(`CREATE USER IF NOT EXISTS 'appuser'@'%' IDENTIFIED BY 'app-pw'`);
  await c.query(`GRANT SELECT, INSERT ON app.* TO 'appuser'@'%'`);
  // About 260 bytes per row of app.big; the other tables add about a fifth.
  const bigRows = Math.max(1000, Math.round((opts.mb * 1e6 * 0.8) / 260));
  const step = 50_000;
  for (let from = 1; from <= bigRows; from += step) {
    const to = Math.min(bigRows, from + step - 1);
    await c.query(`INSERT INTO app.big (a, b, c) SELECT seq, MD5(seq), REPEAT(MD5(seq * 7), 7) FROM seq_${from}_to_${to}`);
  }
  const small = Math.max(1000, Math.round(bigRows / 10));
  await c.query(`INSERT INTO app.indexed (id, k, v) SELECT seq, seq * 13 % 1000, REPEAT(MD5(seq), 4) FROM seq_1_to_${small}`);
  await c.query(`INSERT INTO app.aria SELECT seq, REPEAT(SHA1(seq), 3) FROM seq_1_to_${small}`);
  await c.query(`INSERT INTO app.myisam SELECT seq, REPEAT(SHA1(seq + 1), 3) FROM seq_1_to_${small}`);
}

/** CHECKSUM TABLE of every base table in the app and recall schemas, by name. */
export async function checksums(c: Conn): Promise<Record<string, string>> {
  const [tables] = await c.query<mysql.RowDataPacket[]>(
    `SELECT CONCAT(table_schema, '.', table_name) AS t FROM information_schema.tables WHERE table_schema IN ('app', 'recall') AND table_type = 'BASE TABLE' ORDER BY 1`,
  );
  const out: Record<string, string> = {};
  for (const { t } of tables) {
    const [rows] = await c.query<mysql.RowDataPacket[]>(`CHECKSUM TABLE ${t}`);
    out[t as string] = String(rows[0]!.Checksum);
  }
  return out;
}

export async function appliedIndex(c: Conn): Promise<number> {
  const [rows] = await c.query<mysql.RowDataPacket[]>(`SELECT idx FROM recall.applied WHERE id = 1`);
  return Number(rows[0]!.idx);
}

/** The donor's applier as the test sees it: it records calls and reports the database's index. */
export class RecordingApplier implements ApplierPause {
  pauses = 0;
  resumes = 0;
  failPause: Error | undefined;
  constructor(private readonly socketPath: string) {}
  async pause(minIndex: number, _timeoutMs: number): Promise<number> {
    if (this.failPause) throw this.failPause;
    const c = await connect(this.socketPath);
    try {
      const idx = await appliedIndex(c);
      if (idx < minIndex) throw new Error(`applied index ${idx} is below ${minIndex}`);
      this.pauses++;
      return idx;
    } finally {
      await c.end();
    }
  }
  resume(): void {
    this.resumes++;
  }
}
