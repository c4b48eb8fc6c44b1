// Shared set-up for the MySQL frontend tests: a real mariadbd, test accounts, frontends.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { startTestMariaDB, type TestMariaDB } from '../../harness/mariadb.js';
import { tempDir } from '../../harness/tmp.js';
import { MysqlFrontend, type MysqlFrontendOptions } from '../../../src/frontend/mysql/server.js';
import { generateRsaKeyPair } from '../../../src/protocol/mysql/auth.js';

export const rsa = generateRsaKeyPair();

export async function startDb(): Promise<TestMariaDB> {
  const db = await startTestMariaDB({ extraArgs: ['--max-allowed-packet=256M', '--local-infile=1'] });
  const root = await mysql.createConnection({ socketPath: db.socketPath, user: 'root', multipleStatements: true });
  try {
    await root.query(`
      DELETE FROM mysql.global_priv WHERE User = '';
      FLUSH PRIVILEGES;
      CREATE DATABASE app;
      CREATE TABLE app.t (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(50), n INT NULL, b LONGBLOB NULL);
      INSERT INTO app.t (v, n) VALUES ('one', 1), ('two', NULL);
      CREATE USER 'app'@'localhost' IDENTIFIED BY 'app-pw';
      GRANT ALL ON app.* TO 'app'@'localhost';
      CREATE USER 'other'@'localhost' IDENTIFIED BY 'other-pw';
      GRANT ALL ON app.* TO 'other'@'localhost';
      CREATE USER 'ro'@'localhost' IDENTIFIED BY 'ro-pw';
      GRANT SELECT ON app.* TO 'ro'@'localhost';
      CREATE USER 'nopw'@'localhost';
      GRANT SELECT ON app.* TO 'nopw'@'localhost';
      CREATE USER 'sock'@'localhost' IDENTIFIED VIA unix_socket;
      CREATE PROCEDURE app.two_sets() BEGIN SELECT 1 AS a; SELECT 'x' AS b, 2 AS c; END;
    `);
  } finally {
    await root.end();
  }
  return db;
}

export function frontendOptions(db: TestMariaDB, extra: Partial<MysqlFrontendOptions> = {}): MysqlFrontendOptions {
  return {
    host: '127.0.0.1',
    port: 0,
    backend: { socketPath: db.socketPath, adminUser: 'root', adminPassword: '' },
    rsaKeyPair: rsa,
    maxConnections: 100,
    maxPacketBytes: 256 * 1024 * 1024,
    connectTimeoutMs: 10_000,
    netReadTimeoutMs: 30_000,
    ...extra,
  };
}

export async function startFrontend(db: TestMariaDB, extra: Partial<MysqlFrontendOptions> = {}): Promise<{ frontend: MysqlFrontend; port: number }> {
  const frontend = new MysqlFrontend(frontendOptions(db, extra));
  const { port } = await frontend.listen();
  return { frontend, port };
}

/** A self-signed certificate made with openssl, as the brief of the demo does. */
export function selfSignedCert(): { cert: string; key: string } {
  const dir = tempDir('recall-tls-');
  try {
    const key = path.join(dir.path, 'key.pem');
    const cert = path.join(dir.path, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-days', '1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
    return { cert: fs.readFileSync(cert, 'utf8'), key: fs.readFileSync(key, 'utf8') };
  } finally {
    dir.remove();
  }
}
