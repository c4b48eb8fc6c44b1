// Is the local database answering? One short-lived connection and a trivial query, so
// the check exercises accept, authentication and the query path, and holds nothing open.
import mysql from 'mysql2/promise';
import pg from 'pg';
import type { Dsn } from '../config/dsn.js';

/** Resolves when the database answers `SELECT 1` within timeoutMs; rejects with the reason. */
export async function pingDatabase(dsn: Dsn, timeoutMs = 2000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, rej) => {
    timer = setTimeout(() => rej(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([dsn.engine === 'mysql' ? pingMysql(dsn, timeoutMs) : pingPostgres(dsn, timeoutMs), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function pingMysql(dsn: Dsn, timeoutMs: number): Promise<void> {
  const conn = await mysql.createConnection({
    ...(dsn.socketPath ? { socketPath: dsn.socketPath } : { host: dsn.host, port: dsn.port ?? 3306 }),
    user: dsn.user,
    password: dsn.password,
    connectTimeout: timeoutMs,
  });
  try {
    await conn.query('SELECT 1');
  } finally {
    conn.destroy();
  }
}

async function pingPostgres(dsn: Dsn, timeoutMs: number): Promise<void> {
  const client = new pg.Client({
    host: dsn.socketPath ? dsn.socketPath.replace(/\/[^/]*$/, '') : dsn.host,
    port: dsn.port ?? 5432,
    user: dsn.user,
    password: dsn.password,
    database: dsn.database ?? 'postgres',
    connectionTimeoutMillis: timeoutMs,
  });
  await client.connect();
  try {
    await client.query('SELECT 1');
  } finally {
    await client.end().catch(() => undefined);
  }
}
