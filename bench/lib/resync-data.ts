// The resync bench's database: InnoDB tables filled with INSERT ... SELECT from the Sequence
// engine until the data directory reaches a target size, the recall.applied row a donor reports,
// and CHECKSUM TABLE of every table to compare a copy with its source.
import { execFileSync } from 'node:child_process';
import mysql from 'mysql2/promise';
import type { ApplierPause } from '../../src/recovery/types.js';

export type Conn = mysql.Connection;

export const APPLIED_INDEX = 4242;
const tableCount = 4;
/** Rows per INSERT ... SELECT: about 27 MB of rows, small enough to stop near the target size. */
const batchRows = 100_000;

export function connect(socketPath: string): Promise<Conn> {
  return mysql.createConnection({ socketPath, user: 'root', password: '', multipleStatements: true });
}

/** Apparent size of everything under dir (du -sb): what rsync reads, and what MB/s divide. */
export function dirBytes(dir: string): number {
  return Number(execFileSync('du', ['-sb', dir]).toString().split('\t')[0]);
}

/**
 * Creates recall.applied (one row) and app.t1..t4 (primary key, a secondary index on an int, a
 * second one on t1's hash column), then inserts batches round robin until the data directory holds
 * at least targetBytes. Returns the rows inserted.
 */
export async function populate(c: Conn, datadir: string, targetBytes: number): Promise<number> {
  await c.query(`CREATE DATABASE recall;
    CREATE TABLE recall.applied (id TINYINT UNSIGNED PRIMARY KEY, idx BIGINT UNSIGNED NOT NULL, term BIGINT UNSIGNED NOT NULL, checksum INT UNSIGNED NOT NULL) ENGINE=InnoDB;
    INSERT INTO recall.applied VALUES (1, ${APPLIED_INDEX}, 7, 1234567);
    CREATE DATABASE app`);
  for (let t = 1; t <= tableCount; t++) {
    await c.query(
      `CREATE TABLE app.t${t} (id INT UNSIGNED PRIMARY KEY, k INT UNSIGNED NOT NULL, tag CHAR(32) NOT NULL, pad VARCHAR(1000) NOT NULL, KEY k (k)${t === 1 ? ', KEY tag (tag)' : ''}) ENGINE=InnoDB`,
    );
  }
  await c.query('USE app'); // seq_1_to_N of the Sequence engine needs a current database
  const next = new Array<number>(tableCount + 1).fill(0);
  let rows = 0;
  for (let i = 0; dirBytes(datadir) < targetBytes; i++) {
    const t = (i % tableCount) + 1;
    const from = next[t]!;
    await c.query(
      `INSERT INTO app.t${t} SELECT seq + ${from}, (seq + ${from}) * 7919 % 1000003, MD5(seq + ${from}), REPEAT(MD5((seq + ${from}) * ${t + 2}), 6) FROM seq_1_to_${batchRows}`,
    );
    next[t] = from + batchRows;
    rows += batchRows;
  }
  return rows;
}

/** CHECKSUM TABLE of every base table in the app and recall schemas, by name. */
export async function checksums(c: Conn): Promise<Record<string, string>> {
  const [tables] = await c.query<mysql.RowDataPacket[]>(
    `SELECT CONCAT(table_schema, '.', table_name) AS t FROM information_schema.tables WHERE table_schema IN ('app', 'recall') AND table_type = 'BASE TABLE' ORDER BY 1`,
  );
  const [rows] = await c.query<mysql.RowDataPacket[]>(`CHECKSUM TABLE ${tables.map((r) => r.t as string).join(', ')}`);
  return Object.fromEntries(rows.map((r) => [r.Table as string, String(r.Checksum)]));
}

export async function checksumsAt(socketPath: string): Promise<Record<string, string>> {
  const c = await connect(socketPath);
  try {
    return await checksums(c);
  } finally {
    await c.end().catch(() => c.destroy());
  }
}

/** Throws unless every table of `want` has the same checksum in `got`, and no table is missing. */
export function assertSameChecksums(what: string, want: Record<string, string>, got: Record<string, string>): void {
  const names = [...new Set([...Object.keys(want), ...Object.keys(got)])].sort();
  const bad = names.filter((n) => want[n] !== got[n] || want[n] === undefined || want[n] === 'null');
  if (names.length === 0 || bad.length > 0) {
    throw new Error(`${what}: CHECKSUM TABLE differs from the donor's for ${bad.map((n) => `${n} (donor ${want[n]}, copy ${got[n]})`).join(', ') || 'every table (none found)'}`);
  }
}

/** The donor's applier as a resync sees it: nothing applies here, pause reports recall.applied. */
export class BenchApplier implements ApplierPause {
  constructor(private readonly socketPath: () => string) {}
  async pause(minIndex: number): Promise<number> {
    const c = await connect(this.socketPath());
    try {
      const [rows] = await c.query<mysql.RowDataPacket[]>('SELECT idx FROM recall.applied WHERE id = 1');
      const idx = Number(rows[0]?.idx);
      if (!(idx >= minIndex)) throw new Error(`applied index ${idx} is below ${minIndex}`);
      return idx;
    } finally {
      await c.end().catch(() => c.destroy());
    }
  }
  resume(): void {}
}
