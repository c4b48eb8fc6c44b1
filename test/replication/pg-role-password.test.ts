// Role passwords in replicated PostgreSQL DDL become one SCRAM verifier computed by the leader
// (src/replication/pg/role-password.ts): no plain text in the log, the same verifier everywhere.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { loadPgParser } from '../../src/sql/pg-parse.js';
import { hashRolePasswords, scramVerifier } from '../../src/replication/pg/role-password.js';

before(() => loadPgParser());

test('the verifier follows RFC 5802/7677 as postgres stores it', () => {
  const salt = Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64');
  const v = scramVerifier('pencil', salt, 4096);
  // RFC 7677's example: salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096 iterations, password "pencil"
  const salted = crypto.pbkdf2Sync('pencil', salt, 4096, 32, 'sha256');
  const stored = crypto.createHash('sha256').update(crypto.createHmac('sha256', salted).update('Client Key').digest()).digest('base64');
  assert.equal(v, `SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$${stored}:${crypto.createHmac('sha256', salted).update('Server Key').digest('base64')}`);
  assert.equal(crypto.createHmac('sha256', salted).update('Server Key').digest('base64'), 'wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=');
});

test('CREATE/ALTER ROLE plain passwords are replaced, verifiers and other statements kept', () => {
  const a = hashRolePasswords("CREATE ROLE bob LOGIN PASSWORD 'it''s secret'");
  assert.match(a, /^CREATE ROLE bob LOGIN PASSWORD 'SCRAM-SHA-256\$4096:[^']+'$/);
  assert.doesNotMatch(a, /secret/);
  const b = hashRolePasswords("ALTER USER bob WITH PASSWORD 'x2' VALID UNTIL 'infinity'");
  assert.match(b, /^ALTER USER bob WITH PASSWORD 'SCRAM-SHA-256\$[^']+' VALID UNTIL 'infinity'$/);
  const md5 = "CREATE USER u PASSWORD 'md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'";
  assert.equal(hashRolePasswords(md5), md5);
  assert.equal(hashRolePasswords('CREATE TABLE password (x int)'), 'CREATE TABLE password (x int)');
  assert.equal(hashRolePasswords("CREATE ROLE r PASSWORD NULL"), "CREATE ROLE r PASSWORD NULL");
});
