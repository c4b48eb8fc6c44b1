// Regenerates fixtures/sql/mariadb-dump.sql: starts a real mariadbd, creates a schema with
// the objects mariadb-dump treats specially (views, procedures, functions, triggers, events,
// sequences, awkward strings), and captures `mariadb-dump` output.
//   npx tsx test/sql/capture-mariadb-dump.ts
// The schema script itself (fixtures/sql/dump-schema.sql) is also replayed by mysql-live.test.ts.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestMariaDB } from '../harness/mariadb.js';

const root = process.cwd();
const schema = readFileSync(join(root, 'fixtures/sql/dump-schema.sql'), 'utf8');

const db = await startTestMariaDB();
try {
  const client = ['--no-defaults', '-S', db.socketPath, '-uroot'];
  execFileSync('mariadb', client, { input: schema });
  const dump = execFileSync('mariadb-dump', [
    ...client, '--routines', '--triggers', '--events', '--databases', 'recall_dump', '--skip-dump-date',
  ]).toString();
  // The server version line changes with every package update; keep the fixture stable.
  writeFileSync(join(root, 'fixtures/sql/mariadb-dump.sql'), dump.replace(/^-- Server version.*$/m, '-- Server version\t(stripped)'));
  console.log(`wrote fixtures/sql/mariadb-dump.sql (${dump.length} bytes)`);
} finally {
  await db.stop();
}
