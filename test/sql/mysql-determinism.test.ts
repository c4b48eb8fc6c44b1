import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { classifyMysql } from '../../src/sql/mysql-classify.js';
import { checkDeterminism } from '../../src/sql/mysql-determinism.js';
import { list, parseExtras, readTsv } from './fixtures.js';

describe('checkDeterminism: fixtures/sql/determinism.tsv', () => {
  const rows = readTsv('determinism.tsv', 4);
  test('has a hundred statements', () => assert.ok(rows.length >= 100, `${rows.length} rows`));
  for (const { line, cols: [unsafeText, warningsText, contextText, sql] } of rows) {
    test(`line ${line}: ${sql.slice(0, 70)}`, () => {
      const out = classifyMysql(sql);
      assert.equal(out.length, 1);
      const r = checkDeterminism(out[0]);
      const expectUnsafe = unsafeText === '-' ? [] : unsafeText.split('|');
      assert.deepEqual(r.unsafe.map((f) => f.construct + (f.rewritable ? '!' : '')), expectUnsafe, 'unsafe');
      assert.deepEqual(r.warnings.map((f) => f.construct), warningsText === '-' ? [] : warningsText.split('|'), 'warnings');
      for (const f of [...r.unsafe, ...r.warnings]) {
        assert.ok(f.reason.length > 20, `reason for ${f.construct}`);
        assert.ok(f.workaround.length > 10, `workaround for ${f.construct}`);
      }
      const ctx = parseExtras(contextText);
      for (const k of ctx.keys()) assert.ok(['time', 'rand', 'lastid', 'vars', 'sys', 'account', 'local', 'notime'].includes(k), k);
      assert.equal(r.context.timestamp, !ctx.has('notime'), 'timestamp');
      assert.deepEqual(r.context.timeFunctions, list(ctx.get('time')), 'timeFunctions');
      assert.equal(r.context.rand, ctx.has('rand'), 'rand');
      assert.equal(r.context.lastInsertId, ctx.has('lastid'), 'lastInsertId');
      assert.deepEqual(r.context.userVariables, list(ctx.get('vars')), 'userVariables');
      assert.deepEqual(r.context.systemVariables, list(ctx.get('sys')), 'systemVariables');
      assert.equal(r.context.account, ctx.has('account'), 'account');
      assert.equal(r.context.localInfile, ctx.has('local'), 'localInfile');
    });
  }
});

describe('checkDeterminism: details', () => {
  test('findings name the construct and the way around it', () => {
    const [st] = classifyMysql('UPDATE t SET d = SYSDATE()');
    const [f] = checkDeterminism(st).unsafe;
    assert.match(f.reason, /differs on each replica/);
    assert.match(f.workaround, /NOW\(\)/);
    assert.equal(f.rewritable, false);
  });
  test('UUID() is rewritable exactly where it is evaluated once', () => {
    const rewritable = (sql: string): boolean | undefined => checkDeterminism(classifyMysql(sql)[0]).unsafe[0]?.rewritable;
    assert.equal(rewritable('INSERT INTO t VALUES (UUID())'), true);
    assert.equal(rewritable('INSERT INTO t SELECT UUID() FROM u'), false);
    assert.equal(rewritable('UPDATE t SET u = UUID()'), false);
    assert.match(checkDeterminism(classifyMysql('INSERT INTO t VALUES (UUID())')[0]).unsafe[0].workaround, /let Recall rewrite/);
  });
  test('reads need no timestamp and report no unsafe functions', () => {
    const r = checkDeterminism(classifyMysql('SELECT UUID(), SYSDATE(), NOW(), @a')[0]);
    assert.deepEqual(r.unsafe, []);
    assert.equal(r.context.timestamp, false);
    assert.deepEqual(r.context.timeFunctions, ['NOW']);
    assert.deepEqual(r.context.userVariables, ['a']);
  });
  test('every sysbench write is deterministic', () => {
    for (const sql of ['UPDATE sbtest1 SET k=k+1 WHERE id=?', 'UPDATE sbtest1 SET c=? WHERE id=?', 'DELETE FROM sbtest1 WHERE id=?',
      'INSERT INTO sbtest1 (id, k, c, pad) VALUES (?, ?, ?, ?)']) {
      const r = checkDeterminism(classifyMysql(sql)[0]);
      assert.deepEqual([...r.unsafe, ...r.warnings], [], sql);
      assert.equal(r.context.timestamp, true);
      assert.equal(r.context.insertId, true);
    }
  });
});
