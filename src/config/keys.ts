// Every configuration key, once: its path in the file, its CLI flag, its environment
// variable, how its text is read, a valid example and a one-line description. The loader,
// the yargs options and the README's reference are all derived from this table.
import { parseHostPort } from '../util/ports.js';
import { parseDsn } from './dsn.js';

export type KeyKind = 'int' | 'bool' | 'string' | 'list' | 'enum' | 'bytes' | 'listen' | 'dsn' | 'args' | 'path';

export interface KeySpec {
  /** Path in the config file, dotted for nested objects (listen.mysql). */
  path: string;
  kind: KeyKind;
  example: string;
  describe: string;
  choices?: readonly string[];
  /** Smallest accepted value for int and bytes. */
  min?: number;
  max?: number;
  /** Keys of the original Perl module (Replication::Recall::DBServer), accepted in files. */
  alias?: string;
  /** Overrides the flag derived from the path. */
  flag?: string;
  secret?: boolean;
}

export const keySpecs: readonly KeySpec[] = [
  { path: 'nodeId', kind: 'int', min: 1, max: 1024, example: '1', describe: 'this replica\'s id: its 1-based position in replicas' },
  { path: 'replicas', kind: 'list', alias: 'Replicas', example: '10.0.0.1:8600,10.0.0.2:8600,10.0.0.3:8600', describe: 'peer endpoints (host:port) of every replica, in node id order' },
  { path: 'dsn', kind: 'dsn', alias: 'DSN', example: 'mysql://root@127.0.0.1:3306/', describe: 'how to reach the local database; derived from the managed server in managed mode' },
  { path: 'engine', kind: 'enum', choices: ['mysql', 'postgres'], example: 'mysql', describe: 'kind of local database' },
  { path: 'listen.mysql', kind: 'listen', example: '127.0.0.1:8500', describe: 'MySQL protocol listener, or off' },
  { path: 'listen.postgres', kind: 'listen', example: '127.0.0.1:8532', describe: 'PostgreSQL protocol listener, or off' },
  { path: 'listen.peer', kind: 'listen', example: '127.0.0.1:8600', describe: 'peer (replication) listener, or off' },
  { path: 'listen.admin', kind: 'listen', example: '127.0.0.1:8700', describe: 'admin HTTP listener (/health, /ready, /metrics, /status), or off' },
  { path: 'dataDir', kind: 'path', example: '/var/lib/recall', describe: 'directory for the log, state and the managed database' },
  { path: 'managed.enabled', kind: 'bool', flag: 'managed', example: 'true', describe: 'start and stop the local database server ourselves' },
  { path: 'managed.binary', kind: 'string', example: '/usr/sbin/mariadbd', describe: 'server binary (default: mariadbd, then mysqld)' },
  { path: 'managed.port', kind: 'int', min: 0, max: 65535, example: '3307', describe: 'private TCP port of the managed server (0: any free port)' },
  { path: 'managed.extraArgs', kind: 'args', example: '--innodb-buffer-pool-size=1G', describe: 'extra server arguments (space separated in flags and env)' },
  { path: 'stopServer', kind: 'string', alias: 'StopServer', example: 'systemctl stop mariadb', describe: 'hook mode: command that stops the local database' },
  { path: 'startServer', kind: 'string', alias: 'StartServer', example: 'systemctl start mariadb', describe: 'hook mode: command that starts the local database' },
  { path: 'syncPath', kind: 'string', alias: 'SyncPath', example: '/var/lib/mysql/', describe: 'hook mode: data directory copied from a healthy peer during a full resync' },
  { path: 'syncCmd', kind: 'string', alias: 'SyncCmd', example: 'ssh -l mysql', describe: 'hook mode: remote shell rsync uses' },
  { path: 'debug', kind: 'bool', alias: 'Debug', example: 'true', describe: 'verbose logging' },
  { path: 'logFormat', kind: 'enum', choices: ['text', 'json'], example: 'json', describe: 'log lines readable (text) or one JSON object each (json)' },
  { path: 'tls.cert', kind: 'path', example: '/etc/recall/server.crt', describe: 'PEM certificate for client TLS' },
  { path: 'tls.key', kind: 'path', example: '/etc/recall/server.key', describe: 'PEM private key for client TLS' },
  { path: 'tls.required', kind: 'bool', example: 'true', describe: 'refuse MySQL clients that do not upgrade to TLS (needs tls.cert and tls.key)' },
  { path: 'defaultAuthPlugin', kind: 'enum', choices: ['mysql_native_password', 'caching_sha2_password'], example: 'caching_sha2_password', describe: 'auth plugin named in the MySQL handshake (clients such as mysql2 answer with it); default mysql_native_password' },
  { path: 'postgresAuth', kind: 'enum', choices: ['scram-sha-256', 'md5', 'trust'], example: 'md5', describe: "how PostgreSQL clients authenticate against the database's roles (as pg_hba methods; trust asks nothing: local demos only)" },
  { path: 'maxConnections', kind: 'int', min: 1, max: 1000000, example: '1000', describe: 'client connections accepted at once' },
  { path: 'maxPacketBytes', kind: 'bytes', min: 1024, max: 1 << 30, example: '64MiB', describe: 'largest client payload (a statement or row) accepted' },
  { path: 'connectTimeoutMs', kind: 'int', min: 1, example: '10000', describe: 'time a client has to finish the handshake' },
  { path: 'netReadTimeoutMs', kind: 'int', min: 1, example: '30000', describe: 'time a client may stall in the middle of a packet' },
  { path: 'consistency', kind: 'enum', choices: ['local', 'session', 'linearizable'], example: 'linearizable', describe: 'default read consistency of new sessions (a session changes its own with SET @recall_consistency)' },
  { path: 'laneTimeoutMs', kind: 'int', min: 10, example: '10000', describe: 'longest a transaction may hold the write lane, and a write may wait for it (error 1205 after)' },
  { path: 'leaderWaitMs', kind: 'int', min: 0, example: '2000', describe: 'how long a write waits for a leader to be elected before it is refused (error 1290)' },
  { path: 'readWaitMs', kind: 'int', min: 1, example: '5000', describe: "how long a read waits for this replica to apply the session's last write (session and linearizable consistency)" },
  { path: 'join', kind: 'bool', example: 'true', describe: 'start as a new member of a running cluster (added with `recall join`), not as a founder' },
  { path: 'logRetainEntries', kind: 'int', min: 0, example: '100000', describe: 'log entries kept below the applied index for replicas that were down (older ones need a full resync)' },
  { path: 'logRetainBytes', kind: 'bytes', min: 0, example: '256MiB', describe: 'log bytes kept below the applied index; the log is compacted only when both retain limits are exceeded' },
  { path: 'resyncMethod', kind: 'enum', choices: ['auto', 'snapshot', 'rsync'], example: 'snapshot', describe: 'full resync by built-in snapshot transfer or hook-mode rsync (auto: rsync when syncPath and syncCmd are set)' },
  { path: 'resyncRateBytes', kind: 'bytes', min: 0, example: '50MiB', describe: 'throttle of a resync transfer in bytes per second (0: unlimited)' },
  { path: 'pgOptimistic', kind: 'bool', example: 'true', describe: 'PostgreSQL: run write transactions optimistically, concurrently on the leader, replayed and checked on the write lane at COMMIT and committed in groups (more throughput; a transaction whose reads a concurrent one changed fails with 40001, to be retried); a session overrides it with SET recall.optimistic' },
  { path: 'autoResync', kind: 'bool', example: 'false', describe: 'resync a diverged replica on its own (a replica that lacks compacted entries always resyncs)' },
  { path: 'clusterSecret', kind: 'string', secret: true, example: 'a-long-random-string', describe: 'shared secret that authenticates peer links' },
  { path: 'clusterId', kind: 'string', example: 'prod-eu-1', describe: 'name of the cluster; peers of another cluster are refused' },
];

/** camelCase/dotted path -> kebab-case flag: listen.mysql -> listen-mysql, nodeId -> node-id. */
export function flagName(spec: KeySpec): string {
  return spec.flag ?? spec.path.replace(/\./g, '-').replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
}

/** RECALL_ + upper snake case of the flag: listen-mysql -> RECALL_LISTEN_MYSQL. */
export function envName(spec: KeySpec): string {
  return 'RECALL_' + flagName(spec).replace(/-/g, '_').toUpperCase();
}

export function specFor(path: string): KeySpec {
  const s = keySpecs.find((k) => k.path === path);
  if (!s) throw new Error(`unknown configuration key ${path}`);
  return s;
}

export type KeyValue = number | boolean | string | string[];

function show(raw: unknown): string {
  return typeof raw === 'string' ? JSON.stringify(raw) : JSON.stringify(raw) ?? String(raw);
}

const byteUnits: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1 << 20, mb: 1 << 20, mib: 1 << 20, g: 1 << 30, gb: 1 << 30, gib: 1 << 30 };

/**
 * Reads one raw value (typed from a file, text from a flag or the environment).
 * Returns the value or a problem description ("... is not ...").
 */
export function coerce(spec: KeySpec, raw: unknown): { value: KeyValue } | { problem: string } {
  const bad = (what: string) => ({ problem: `${show(raw)} is not ${what}` });
  switch (spec.kind) {
    case 'int': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\s*-?\d+\s*$/.test(raw) ? Number(raw) : NaN;
      if (!Number.isSafeInteger(n)) return bad('an integer');
      if (spec.min !== undefined && n < spec.min) return { problem: `${n} is below the minimum ${spec.min}` };
      if (spec.max !== undefined && n > spec.max) return { problem: `${n} is above the maximum ${spec.max}` };
      return { value: n };
    }
    case 'bytes': {
      let n = NaN;
      if (typeof raw === 'number') n = raw;
      else if (typeof raw === 'string') {
        const m = /^\s*(\d+)\s*([a-zA-Z]*)\s*$/.exec(raw);
        const unit = m ? byteUnits[m[2]!.toLowerCase()] : undefined;
        if (m && unit) n = Number(m[1]) * unit;
      }
      if (!Number.isSafeInteger(n)) return bad('a size in bytes (a number, or with KiB, MiB, GiB)');
      if (spec.min !== undefined && n < spec.min) return { problem: `${n} bytes is below the minimum ${spec.min}` };
      if (spec.max !== undefined && n > spec.max) return { problem: `${n} bytes is above the maximum ${spec.max}` };
      return { value: n };
    }
    case 'bool': {
      if (typeof raw === 'boolean') return { value: raw };
      const t = typeof raw === 'string' ? raw.trim().toLowerCase() : typeof raw === 'number' ? String(raw) : '';
      if (['true', '1', 'yes', 'on'].includes(t)) return { value: true };
      if (['false', '0', 'no', 'off'].includes(t)) return { value: false };
      return bad('true or false');
    }
    case 'enum': {
      if (typeof raw === 'string' && spec.choices!.includes(raw)) return { value: raw };
      return bad(`one of ${spec.choices!.join(', ')}`);
    }
    case 'string':
    case 'path': {
      if (typeof raw !== 'string' || raw.trim() === '') return bad('a non-empty string');
      return { value: raw };
    }
    case 'listen': {
      if (raw === 'off' || raw === false) return { value: 'off' };
      if (typeof raw !== 'string' || !parseHostPort(raw)) return bad('host:port or off');
      return { value: raw };
    }
    case 'dsn': {
      if (typeof raw !== 'string') return bad('a URI');
      try {
        parseDsn(raw);
      } catch (err) {
        return { problem: (err as Error).message };
      }
      return { value: raw };
    }
    case 'list': {
      const items = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',').map((s) => s.trim()).filter(Boolean) : undefined;
      if (!items || items.some((i) => typeof i !== 'string')) return bad('a list of host:port');
      for (const i of items as string[]) {
        const hp = parseHostPort(i);
        if (!hp || hp.port === 0) return { problem: `${show(i)} is not host:port` };
      }
      return { value: items as string[] };
    }
    case 'args': {
      const items = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(/\s+/).filter(Boolean) : undefined;
      if (!items || items.some((i) => typeof i !== 'string')) return bad('a list of arguments');
      return { value: items as string[] };
    }
  }
}
