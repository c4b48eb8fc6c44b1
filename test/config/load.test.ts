// Configuration: defaults, file (YAML and JSON, original module keys), env, flags,
// precedence flag > env > file > default, and error messages that name the key.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import yargs from 'yargs';
import { loadConfig } from '../../src/config/load.js';
import { ConfigError, didYouMean } from '../../src/config/errors.js';
import { withConfigOptions, configReference } from '../../src/config/flags.js';
import { keySpecs, envName, flagName } from '../../src/config/keys.js';
import { parseDsn } from '../../src/config/dsn.js';
import { tempDir } from '../harness/tmp.js';

const dir = tempDir('recall-cfg-');
after(() => dir.remove());

function file(name: string, text: string): string {
  const p = join(dir.path, name);
  writeFileSync(p, text);
  return p;
}

function flags(argv: string[]): Record<string, unknown> {
  return withConfigOptions(yargs(argv)).strict().parseSync() as Record<string, unknown>;
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a ConfigError');
}

describe('config defaults', () => {
  test('no sources at all gives a managed single replica on the default ports', () => {
    const c = loadConfig({ cwd: dir.path });
    assert.equal(c.nodeId, 1);
    assert.equal(c.engine, 'mysql');
    assert.deepEqual(c.listen, { mysql: '127.0.0.1:8500', postgres: '127.0.0.1:8532', peer: '127.0.0.1:8600', admin: '127.0.0.1:8700' });
    assert.deepEqual(c.replicas, ['127.0.0.1:8600']);
    assert.equal(c.managed.enabled, true);
    assert.equal(c.managed.port, 0);
    assert.equal(c.dataDir, join(dir.path, 'recall-data'));
    assert.equal(c.maxConnections, 1000);
    assert.equal(c.maxPacketBytes, 64 * 1024 * 1024);
    assert.equal(c.debug, false);
    assert.equal(c.dsn, undefined);
    assert.equal(c.tls, undefined);
    assert.equal(c.tlsRequired, false);
    assert.equal(c.defaultAuthPlugin, 'mysql_native_password');
  });

  test('a dsn turns managed mode off by default; hook commands too', () => {
    const c = loadConfig({ env: { RECALL_DSN: 'mysql://root@127.0.0.1:3306/app' } });
    assert.equal(c.managed.enabled, false);
    const h = loadConfig({ env: { RECALL_DSN: 'mysql://root@127.0.0.1:3306/', RECALL_START_SERVER: 'service mariadb start', RECALL_STOP_SERVER: 'service mariadb stop' } });
    assert.equal(h.managed.enabled, false);
    assert.equal(h.startServer, 'service mariadb start');
  });
});

describe('config file', () => {
  test('YAML with nested groups and the original module key names', () => {
    const p = file(
      'a.yaml',
      [
        'nodeId: 2',
        'Replicas: [10.0.0.1:8600, 10.0.0.2:8600, 10.0.0.3:8600]',
        'DSN: mysql://root:pw@127.0.0.1:3306/app',
        'StopServer: systemctl stop mariadb',
        'StartServer: systemctl start mariadb',
        'SyncPath: /var/lib/mysql/',
        'SyncCmd: ssh -l mysql',
        'Debug: true',
        'listen:',
        '  mysql: 0.0.0.0:3306',
        '  postgres: off',
        'maxPacketBytes: 16MiB',
        'dataDir: data',
      ].join('\n'),
    );
    const c = loadConfig({ configFile: p, cwd: '/' });
    assert.equal(c.nodeId, 2);
    assert.deepEqual(c.replicas, ['10.0.0.1:8600', '10.0.0.2:8600', '10.0.0.3:8600']);
    assert.equal(c.dsn, 'mysql://root:pw@127.0.0.1:3306/app');
    assert.equal(c.managed.enabled, false);
    assert.equal(c.stopServer, 'systemctl stop mariadb');
    assert.equal(c.syncCmd, 'ssh -l mysql');
    assert.equal(c.debug, true);
    assert.equal(c.listen.mysql, '0.0.0.0:3306');
    assert.equal(c.listen.postgres, 'off');
    assert.equal(c.listen.admin, '127.0.0.1:8700');
    assert.equal(c.maxPacketBytes, 16 << 20);
    // relative paths in a file are relative to the file
    assert.equal(c.dataDir, join(dir.path, 'data'));
    assert.equal(c.configFile, p);
  });

  test('JSON file', () => {
    const p = file('b.json', JSON.stringify({ nodeId: 1, managed: { enabled: true, port: 3390, extraArgs: ['--skip-log-bin'] }, logFormat: 'json' }));
    const c = loadConfig({ configFile: p });
    assert.equal(c.managed.port, 3390);
    assert.deepEqual(c.managed.extraArgs, ['--skip-log-bin']);
    assert.equal(c.logFormat, 'json');
  });

  test('unknown keys are errors, with a did-you-mean hint when close', () => {
    const e = configError(() => loadConfig({ configFile: file('c.yaml', 'replica: [a:1]\n') }));
    assert.equal(e.key, 'replica');
    assert.match(e.message, /unknown key/);
    assert.match(e.message, /did you mean "replicas"\?/);
    const e2 = configError(() => loadConfig({ configFile: file('d.yaml', 'listen:\n  mysqll: 127.0.0.1:1\n') }));
    assert.equal(e2.key, 'listen.mysqll');
    assert.match(e2.message, /did you mean "listen.mysql"/);
    const e3 = configError(() => loadConfig({ configFile: file('e.yaml', 'totallyDifferent: 1\n') }));
    assert.doesNotMatch(e3.message, /did you mean/);
  });

  test('a missing file and a file that does not parse are errors', () => {
    assert.match(configError(() => loadConfig({ configFile: join(dir.path, 'nope.yaml') })).message, /does not exist/);
    assert.match(configError(() => loadConfig({ configFile: file('f.json', '{nodeId: ') })).message, /cannot parse/);
    assert.match(configError(() => loadConfig({ configFile: file('g.yaml', '- a\n- b\n') })).message, /mapping/);
  });
});

describe('precedence flag > env > file > default', () => {
  test('each source overrides the ones below it', () => {
    const p = file('p.yaml', 'maxConnections: 10\nnodeId: 1\nlisten:\n  admin: 127.0.0.1:9001\n  peer: 127.0.0.1:9002\n');
    const env = { RECALL_MAX_CONNECTIONS: '20', RECALL_LISTEN_ADMIN: '127.0.0.1:9003' };
    const c = loadConfig({ configFile: p, env, flags: flags(['--max-connections', '30']) });
    assert.equal(c.maxConnections, 30); // flag
    assert.equal(c.listen.admin, '127.0.0.1:9003'); // env
    assert.equal(c.listen.peer, '127.0.0.1:9002'); // file
    assert.equal(c.listen.mysql, '127.0.0.1:8500'); // default
    const c2 = loadConfig({ configFile: p, env });
    assert.equal(c2.maxConnections, 20);
  });

  test('the config file itself can come from --config or RECALL_CONFIG', () => {
    const p = file('q.yaml', 'clusterId: from-file\n');
    assert.equal(loadConfig({ flags: flags(['--config', p]) }).clusterId, 'from-file');
    assert.equal(loadConfig({ env: { RECALL_CONFIG: p } }).clusterId, 'from-file');
  });

  test('every key has a flag and an env variable that set it', () => {
    const pem = file('x.pem', 'not checked here\n');
    const samples: Record<string, string> = {
      nodeId: '2', replicas: 'h1:1,h2:2', dsn: 'mysql://root@127.0.0.1:3306/', engine: 'mysql', 'listen.mysql': '127.0.0.1:1',
      'listen.postgres': 'off', 'listen.peer': '127.0.0.1:3', 'listen.admin': '127.0.0.1:4', dataDir: '/tmp/x',
      'managed.enabled': 'false', 'managed.binary': '/usr/sbin/mariadbd', 'managed.port': '3333', 'managed.extraArgs': '--a --b',
      stopServer: 'stop', startServer: 'start', syncPath: '/d', syncCmd: 'ssh', debug: 'true', logFormat: 'json', 'tls.cert': pem,
      'tls.key': pem, 'tls.required': 'true', defaultAuthPlugin: 'caching_sha2_password', maxConnections: '7', maxPacketBytes: '2048', connectTimeoutMs: '5', netReadTimeoutMs: '6', clusterSecret: 's', clusterId: 'c',
      laneTimeoutMs: '1500', leaderWaitMs: '300', readWaitMs: '700', consistency: 'linearizable',
      join: 'true', logRetainEntries: '500', logRetainBytes: '1MiB', resyncMethod: 'rsync', resyncRateBytes: '10MiB', autoResync: 'false', postgresAuth: 'md5', pgOptimistic: 'true',
    };
    assert.deepEqual(Object.keys(samples).sort(), keySpecs.map((s) => s.path).sort());
    const env: Record<string, string> = {};
    const argv: string[] = [];
    for (const s of keySpecs) {
      env[envName(s)] = samples[s.path]!;
      argv.push(s.kind === 'bool' ? `--${samples[s.path] === 'true' ? '' : 'no-'}${flagName(s)}` : `--${flagName(s)}=${samples[s.path]}`);
    }
    for (const c of [loadConfig({ env }), loadConfig({ flags: flags(argv) })]) {
      assert.equal(c.nodeId, 2);
      assert.deepEqual(c.replicas, ['h1:1', 'h2:2']);
      assert.equal(c.managed.enabled, false);
      assert.equal(c.managed.port, 3333);
      assert.deepEqual(c.managed.extraArgs, ['--a', '--b']);
      assert.equal(c.listen.postgres, 'off');
      assert.equal(c.debug, true);
      assert.deepEqual(c.tls, { cert: pem, key: pem });
      assert.equal(c.tlsRequired, true);
      assert.equal(c.defaultAuthPlugin, 'caching_sha2_password');
      assert.equal(c.maxPacketBytes, 2048);
      assert.equal(c.netReadTimeoutMs, 6);
      assert.equal(c.laneTimeoutMs, 1500);
      assert.equal(c.leaderWaitMs, 300);
      assert.equal(c.readWaitMs, 700);
      assert.equal(c.consistency, 'linearizable');
      assert.equal(c.clusterSecret, 's');
      assert.equal(c.syncCmd, 'ssh');
      assert.equal(c.join, true);
      assert.equal(c.logRetainEntries, 500);
      assert.equal(c.logRetainBytes, 1 << 20);
      assert.equal(c.resyncMethod, 'rsync');
      assert.equal(c.resyncRateBytes, 10 << 20);
      assert.equal(c.autoResync, false);
      assert.equal(c.postgresAuth, 'md5');
      assert.equal(c.pgOptimistic, true);
    }
    assert.equal(envName(keySpecs.find((s) => s.path === 'listen.mysql')!), 'RECALL_LISTEN_MYSQL');
    assert.equal(flagName(keySpecs.find((s) => s.path === 'nodeId')!), 'node-id');
    assert.equal(flagName(keySpecs.find((s) => s.path === 'defaultAuthPlugin')!), 'default-auth-plugin');
    assert.equal(envName(keySpecs.find((s) => s.path === 'tls.required')!), 'RECALL_TLS_REQUIRED');
  });
});

describe('validation errors name the key, the problem and an example', () => {
  const cases: [string, Record<string, string>, RegExp][] = [
    ['listen.mysql', { RECALL_LISTEN_MYSQL: 'abc' }, /^config error: listen\.mysql: "abc" is not host:port or off \(example: 127\.0\.0\.1:8500\) \[from RECALL_LISTEN_MYSQL\]$/],
    ['nodeId', { RECALL_NODE_ID: 'one' }, /nodeId: "one" is not an integer \(example: 1\)/],
    ['nodeId', { RECALL_NODE_ID: '0' }, /nodeId: 0 is below the minimum 1/],
    ['nodeId', { RECALL_NODE_ID: '4', RECALL_REPLICAS: 'a:1,b:2,c:3' }, /nodeId: 4 is not between 1 and the number of replicas \(3\)/],
    ['replicas', { RECALL_REPLICAS: 'a:1,nohost' }, /replicas: "nohost" is not host:port/],
    ['replicas', { RECALL_REPLICAS: 'a:1,a:1' }, /replicas: lists the same endpoint twice/],
    ['engine', { RECALL_ENGINE: 'oracle' }, /engine: "oracle" is not one of mysql, postgres/],
    ['dsn', { RECALL_DSN: 'http://x' }, /dsn: "http:\/\/x" has scheme "http"/],
    ['dsn', { RECALL_DSN: 'mysql://root@127.0.0.1/', RECALL_MANAGED: 'true' }, /dsn: cannot be set in managed mode/],
    ['dsn', { RECALL_MANAGED: 'false' }, /dsn: is required when managed mode is off \(example: mysql:\/\/root@127\.0\.0\.1:3306\/\)/],
    ['dsn', { RECALL_DSN: 'postgres://u@h/db', RECALL_ENGINE: 'mysql' }, /is a postgres URI but engine is mysql/],
    ['maxPacketBytes', { RECALL_MAX_PACKET_BYTES: '12 parsecs' }, /maxPacketBytes: "12 parsecs" is not a size in bytes/],
    ['debug', { RECALL_DEBUG: 'maybe' }, /debug: "maybe" is not true or false/],
    ['tls.key', { RECALL_TLS_CERT: '/etc/hostname' }, /tls\.key: tls\.cert and tls\.key must be given together/],
    ['tls.required', { RECALL_TLS_REQUIRED: 'true' }, /tls\.required: needs tls\.cert and tls\.key/],
    ['defaultAuthPlugin', { RECALL_DEFAULT_AUTH_PLUGIN: 'sha256_password' }, /defaultAuthPlugin: "sha256_password" is not one of mysql_native_password, caching_sha2_password/],
    ['tls.cert', { RECALL_TLS_CERT: '/nonexistent.crt', RECALL_TLS_KEY: '/etc/hostname' }, /tls\.cert: file \/nonexistent\.crt does not exist/],
    ['listen.admin', { RECALL_LISTEN_ADMIN: '127.0.0.1:8500' }, /listen\.admin: 127\.0\.0\.1:8500 is also used by listen\.mysql/],
    ['startServer', { RECALL_START_SERVER: 'x', RECALL_MANAGED: 'true' }, /startServer: hook commands need managed mode off/],
  ];
  for (const [key, env, re] of cases) {
    test(`${key}: ${JSON.stringify(env)}`, () => {
      const e = configError(() => loadConfig({ env }));
      assert.equal(e.key, key);
      assert.match(e.message, re);
    });
  }

  test('a flag error says it came from the flag', () => {
    const e = configError(() => loadConfig({ flags: flags(['--listen-peer', 'x:y']) }));
    assert.match(e.message, /listen\.peer: "x:y" is not host:port or off .*\[from --listen-peer\]/);
  });

  test('a file error says it came from the file', () => {
    const p = file('bad.yaml', 'maxConnections: -5\n');
    const e = configError(() => loadConfig({ configFile: p }));
    assert.match(e.message, new RegExp(`maxConnections: -5 is below the minimum 1 .*\\[from ${p.replace(/[.]/g, '\\.')}\\]`));
  });
});

describe('helpers', () => {
  test('parseDsn reads host, port, socket, user, password and database', () => {
    assert.deepEqual(parseDsn('mysql://app:p%40ss@db.example:3307/shop'), {
      engine: 'mysql', host: 'db.example', port: 3307, socketPath: undefined, user: 'app', password: 'p@ss', database: 'shop',
    });
    const s = parseDsn('mysql://root@localhost/?socket=/run/mysqld/mysqld.sock');
    assert.equal(s.socketPath, '/run/mysqld/mysqld.sock');
    assert.equal(s.database, undefined);
    assert.equal(parseDsn('postgresql://u@h/d').engine, 'postgres');
  });
  test('didYouMean', () => {
    assert.equal(didYouMean('dataDri', ['dataDir', 'debug']), 'dataDir');
    assert.equal(didYouMean('zzzzzzzz', ['dataDir', 'debug']), undefined);
  });
  test('the reference lists every key with its flag and env variable', () => {
    const ref = configReference();
    for (const s of keySpecs) {
      assert.ok(ref.includes(`--${flagName(s)}`) && ref.includes(envName(s)), s.path);
    }
  });
});
