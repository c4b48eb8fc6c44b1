// Loads the configuration from CLI flags, RECALL_* environment variables, a YAML or JSON
// file and defaults, in that order of precedence, and validates it as a whole.
// Any problem throws a ConfigError that names the key (the CLI exits with code 2).
import { readFileSync, existsSync, accessSync, constants } from 'node:fs';
import { dirname, resolve, extname } from 'node:path';
import YAML from 'yaml';
import { parseHostPort } from '../util/ports.js';
import { ConfigError, didYouMean } from './errors.js';
import { coerce, envName, flagName, keySpecs, type KeySpec, type KeyValue } from './keys.js';
import { parseDsn } from './dsn.js';

export type Listen = string; // "host:port" or "off"

export interface RecallConfig {
  nodeId: number;
  replicas: string[];
  dsn?: string;
  engine: 'mysql' | 'postgres';
  listen: { mysql: Listen; postgres: Listen; peer: Listen; admin: Listen };
  dataDir: string;
  managed: { enabled: boolean; binary?: string; port: number; extraArgs: string[] };
  stopServer?: string;
  startServer?: string;
  syncPath?: string;
  syncCmd?: string;
  debug: boolean;
  /** Absent: readable on a terminal, JSON otherwise. */
  logFormat?: 'text' | 'json';
  tls?: { cert: string; key: string };
  /** Refuse MySQL clients that do not upgrade to TLS (only with tls). */
  tlsRequired: boolean;
  /** Plugin named in the MySQL handshake. */
  defaultAuthPlugin: 'mysql_native_password' | 'caching_sha2_password';
  maxConnections: number;
  maxPacketBytes: number;
  connectTimeoutMs: number;
  netReadTimeoutMs: number;
  laneTimeoutMs: number;
  /** Read consistency of new sessions. */
  consistency: 'local' | 'session' | 'linearizable';
  leaderWaitMs: number;
  readWaitMs: number;
  clusterSecret?: string;
  clusterId?: string;
  /** Start as a new member of a running cluster. */
  join: boolean;
  /** How PostgreSQL clients authenticate. */
  postgresAuth: 'scram-sha-256' | 'md5' | 'trust';
  logRetainEntries: number;
  logRetainBytes: number;
  resyncMethod: 'auto' | 'snapshot' | 'rsync';
  resyncRateBytes: number;
  autoResync: boolean;
  pgOptimistic: boolean;
  /** The config file that was read, if any. */
  configFile?: string;
}

export const configDefaults = {
  nodeId: 1,
  engine: 'mysql',
  listen: { mysql: '127.0.0.1:8500', postgres: '127.0.0.1:8532', peer: '127.0.0.1:8600', admin: '127.0.0.1:8700' },
  dataDir: './recall-data',
  managedPort: 0,
  maxConnections: 1000,
  maxPacketBytes: 64 << 20,
  connectTimeoutMs: 10000,
  netReadTimeoutMs: 30000,
  laneTimeoutMs: 10000,
  consistency: 'session',
  leaderWaitMs: 2000,
  readWaitMs: 5000,
  logRetainEntries: 100000,
  logRetainBytes: 256 << 20,
  defaultAuthPlugin: 'mysql_native_password',
} as const;

export interface ConfigSources {
  /** Parsed flags keyed by kebab-case flag name (yargs output); undefined means not given. */
  flags?: Record<string, unknown>;
  env?: Record<string, string | undefined>;
  /** Explicit config file; otherwise flags.config or RECALL_CONFIG. */
  configFile?: string;
  cwd?: string;
}

const groups = ['listen', 'managed', 'tls'];

/** Flattens a parsed file into dotted paths, refusing keys we do not know. */
function flattenFile(doc: unknown, file: string): Map<string, unknown> {
  const out = new Map<string, unknown>();
  if (doc === null || doc === undefined) return out;
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new ConfigError(file, 'the file must hold a mapping of keys to values', 'nodeId: 1');
  }
  const paths = keySpecs.map((s) => s.path);
  const names = [...paths, ...keySpecs.flatMap((s) => (s.alias ? [s.alias] : [])), ...groups];
  const unknown = (key: string) => {
    const hint = didYouMean(key, names);
    return new ConfigError(key, `unknown key in ${file}${hint ? `; did you mean "${hint}"?` : ''}`);
  };
  for (const [k, v] of Object.entries(doc as Record<string, unknown>)) {
    const alias = keySpecs.find((s) => s.alias === k);
    if (alias) {
      out.set(alias.path, v);
    } else if (k === 'managed' && typeof v === 'boolean') {
      out.set('managed.enabled', v);
    } else if (groups.includes(k)) {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) {
        const example = keySpecs.find((s) => s.path.startsWith(k + '.'))!;
        throw new ConfigError(k, `${JSON.stringify(v)} is not a mapping`, `${k}: { ${example.path.slice(k.length + 1)}: ${example.example} }`);
      }
      for (const [sub, sv] of Object.entries(v as Record<string, unknown>)) {
        const path = `${k}.${sub}`;
        if (!paths.includes(path)) throw unknown(path);
        out.set(path, sv);
      }
    } else if (paths.includes(k)) {
      out.set(k, v);
    } else {
      throw unknown(k);
    }
  }
  return out;
}

function readFile(file: string): Map<string, unknown> {
  if (!existsSync(file)) throw new ConfigError('config', `file ${file} does not exist`, 'recall.yaml');
  const text = readFileSync(file, 'utf8');
  let doc: unknown;
  try {
    doc = extname(file).toLowerCase() === '.json' ? JSON.parse(text) : YAML.parse(text, { prettyErrors: true });
  } catch (err) {
    throw new ConfigError('config', `cannot parse ${file}: ${(err as Error).message.split('\n')[0]}`);
  }
  return flattenFile(doc, file);
}

/** Builds and validates the configuration. Throws ConfigError. */
export function loadConfig(sources: ConfigSources = {}): RecallConfig {
  const flags = sources.flags ?? {};
  const env = sources.env ?? {};
  const cwd = sources.cwd ?? process.cwd();
  const fileArg = sources.configFile ?? (flags.config as string | undefined) ?? env.RECALL_CONFIG;
  const configFile = fileArg ? resolve(cwd, fileArg) : undefined;
  const fileValues = configFile ? readFile(configFile) : new Map<string, unknown>();

  const values = new Map<string, KeyValue>();
  const origin = new Map<string, string>();
  for (const spec of keySpecs) {
    const flag = flagName(spec);
    const envKey = envName(spec);
    let raw: unknown;
    let from: string;
    if (flags[flag] !== undefined) {
      raw = flags[flag];
      from = `--${flag}`;
    } else if (env[envKey] !== undefined && env[envKey] !== '') {
      raw = env[envKey];
      from = envKey;
    } else if (fileValues.has(spec.path)) {
      raw = fileValues.get(spec.path);
      from = configFile!;
    } else continue;
    const r = coerce(spec, raw);
    if ('problem' in r) throw new ConfigError(spec.path, r.problem, spec.example, from);
    let v = r.value;
    // Paths in a file are relative to the file, on the command line to the working directory.
    if (spec.kind === 'path' && typeof v === 'string') v = resolve(from === configFile ? dirname(configFile) : cwd, v);
    values.set(spec.path, v);
    origin.set(spec.path, from);
  }
  return validate(values, origin, cwd, configFile);
}

function validate(values: Map<string, KeyValue>, origin: Map<string, string>, cwd: string, configFile?: string): RecallConfig {
  const get = <T extends KeyValue>(path: string): T | undefined => values.get(path) as T | undefined;
  const fail = (path: string, problem: string, example?: string): never => {
    throw new ConfigError(path, problem, example ?? keySpecs.find((s: KeySpec) => s.path === path)?.example, origin.get(path));
  };
  const d = configDefaults;
  const listen = {
    mysql: get<string>('listen.mysql') ?? d.listen.mysql,
    postgres: get<string>('listen.postgres') ?? d.listen.postgres,
    peer: get<string>('listen.peer') ?? d.listen.peer,
    admin: get<string>('listen.admin') ?? d.listen.admin,
  };
  const dsn = get<string>('dsn');
  const engine = (get<string>('engine') ?? (dsn ? parseDsn(dsn).engine : d.engine)) as RecallConfig['engine'];
  const managedSet = get<boolean>('managed.enabled');
  const hookSet = get<string>('startServer') !== undefined || get<string>('stopServer') !== undefined;
  const managedEnabled = managedSet ?? (!dsn && !hookSet);
  const cfg: RecallConfig = {
    nodeId: get<number>('nodeId') ?? d.nodeId,
    replicas: get<string[]>('replicas') ?? (listen.peer === 'off' ? [] : [listen.peer]),
    dsn,
    engine,
    listen,
    dataDir: get<string>('dataDir') ?? resolve(cwd, d.dataDir),
    managed: {
      enabled: managedEnabled,
      binary: get<string>('managed.binary'),
      port: get<number>('managed.port') ?? d.managedPort,
      extraArgs: get<string[]>('managed.extraArgs') ?? [],
    },
    stopServer: get<string>('stopServer'),
    startServer: get<string>('startServer'),
    syncPath: get<string>('syncPath'),
    syncCmd: get<string>('syncCmd'),
    debug: get<boolean>('debug') ?? false,
    logFormat: get<'text' | 'json'>('logFormat'),
    tlsRequired: get<boolean>('tls.required') ?? false,
    defaultAuthPlugin: get<'mysql_native_password' | 'caching_sha2_password'>('defaultAuthPlugin') ?? d.defaultAuthPlugin,
    maxConnections: get<number>('maxConnections') ?? d.maxConnections,
    maxPacketBytes: get<number>('maxPacketBytes') ?? d.maxPacketBytes,
    connectTimeoutMs: get<number>('connectTimeoutMs') ?? d.connectTimeoutMs,
    netReadTimeoutMs: get<number>('netReadTimeoutMs') ?? d.netReadTimeoutMs,
    laneTimeoutMs: get<number>('laneTimeoutMs') ?? d.laneTimeoutMs,
    consistency: get<'local' | 'session' | 'linearizable'>('consistency') ?? (d.consistency as 'session'),
    leaderWaitMs: get<number>('leaderWaitMs') ?? d.leaderWaitMs,
    readWaitMs: get<number>('readWaitMs') ?? d.readWaitMs,
    clusterSecret: get<string>('clusterSecret'),
    clusterId: get<string>('clusterId'),
    join: get<boolean>('join') ?? false,
    postgresAuth: get<'scram-sha-256' | 'md5' | 'trust'>('postgresAuth') ?? 'scram-sha-256',
    logRetainEntries: get<number>('logRetainEntries') ?? d.logRetainEntries,
    logRetainBytes: get<number>('logRetainBytes') ?? d.logRetainBytes,
    resyncMethod: get<'auto' | 'snapshot' | 'rsync'>('resyncMethod') ?? 'auto',
    resyncRateBytes: get<number>('resyncRateBytes') ?? 0,
    autoResync: get<boolean>('autoResync') ?? true,
    pgOptimistic: get<boolean>('pgOptimistic') ?? false,
    configFile,
  };

  if (dsn && parseDsn(dsn).engine !== engine) fail('dsn', `"${dsn}" is a ${parseDsn(dsn).engine} URI but engine is ${engine}`);
  if (managedEnabled && dsn) {
    fail('dsn', 'cannot be set in managed mode (the managed server provides it); set managed.enabled to false to use an existing server', 'managed: { enabled: false }');
  }
  if (managedEnabled && hookSet) {
    fail(values.has('startServer') ? 'startServer' : 'stopServer', 'hook commands need managed mode off (managed.enabled: false)', 'managed: { enabled: false }');
  }
  if (!managedEnabled && !dsn) {
    fail('dsn', 'is required when managed mode is off', engine === 'postgres' ? 'postgres://postgres@127.0.0.1:5432/' : 'mysql://root@127.0.0.1:3306/');
  }

  const cert = get<string>('tls.cert');
  const key = get<string>('tls.key');
  if ((cert === undefined) !== (key === undefined)) fail(cert === undefined ? 'tls.cert' : 'tls.key', 'tls.cert and tls.key must be given together');
  if (cert !== undefined && key !== undefined) {
    for (const [path, file] of [['tls.cert', cert], ['tls.key', key]] as const) {
      try {
        accessSync(file, constants.R_OK);
      } catch {
        fail(path, `file ${file} does not exist or is not readable`);
      }
    }
    cfg.tls = { cert, key };
  }
  if (cfg.tlsRequired && !cfg.tls) fail('tls.required', 'needs tls.cert and tls.key (there is no TLS to require)');

  // Two listeners on one address would fail at bind time with a less helpful message.
  const seen = new Map<string, string>();
  for (const [name, addr] of Object.entries(listen)) {
    if (addr === 'off') continue;
    const hp = parseHostPort(addr)!;
    const k = `${hp.host}:${hp.port}`;
    if (hp.port !== 0 && seen.has(k)) fail(`listen.${name}`, `${addr} is also used by listen.${seen.get(k)}`);
    seen.set(k, name);
  }
  if (cfg.nodeId > Math.max(1, cfg.replicas.length)) {
    fail('nodeId', `${cfg.nodeId} is not between 1 and the number of replicas (${cfg.replicas.length})`, '1');
  }
  if (new Set(cfg.replicas).size !== cfg.replicas.length) fail('replicas', 'lists the same endpoint twice');
  return cfg;
}

/** The parsed host:port of a listener, or undefined when it is off. */
export function listenAddress(addr: Listen): { host: string; port: number } | undefined {
  return addr === 'off' ? undefined : parseHostPort(addr);
}
