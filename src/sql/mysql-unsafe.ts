// The catalogue of MySQL/MariaDB constructs that replaying a statement on
// another server cannot reproduce, with the reason and the way around each.
// Modelled on the list of statements MySQL marks unsafe for statement-based
// replication (https://dev.mysql.com/doc/refman/8.0/en/replication-rbr-safe-unsafe.html),
// adjusted to what Recall records per entry (TIMESTAMP, RAND seeds, INSERT_ID,
// user variables, session variables).

export interface Finding {
  construct: string;
  reason: string;
  workaround: string;
  /** Recall can replace it with a literal fixed by the leader instead of refusing the statement */
  rewritable?: boolean;
}

/** How an unsafe function behaves under rewriting to a literal. */
type Rewrite =
  | 'never' // the value must come from the server that runs it each time
  | 'once' // a fresh value per evaluation: a literal is only right where it is evaluated once (INSERT ... VALUES)
  | 'constant'; // the same value for the whole statement on one server: a literal of the leader's value is right

interface FunctionRule {
  reason: string;
  workaround: string;
  rewrite: Rewrite;
  /** harmless for the data but worth telling: reported as a warning, never refused */
  warnOnly?: boolean;
}

const lockRule: FunctionRule = {
  reason: 'user-level locks belong to one server connection; replaying it takes or releases the lock on every replica, held by the applier instead of the client',
  workaround: 'take the lock in a statement of its own (SELECT GET_LOCK(...)) outside the write, or lock a row with SELECT ... FOR UPDATE',
  rewrite: 'never',
};

const freshValue = (what: string): FunctionRule => ({
  reason: `${what} returns a new value each time it is evaluated, so every replica would store a different one`,
  workaround: 'generate the value in the client and send it as a literal or parameter, or let Recall rewrite it to a literal fixed by the leader (only where it is evaluated once, as in INSERT ... VALUES)',
  rewrite: 'once',
});

const userRule: FunctionRule = {
  reason: 'returns the user and the host the connection comes from; behind Recall that is the Recall process, and replicas apply through their own connection',
  workaround: 'use CURRENT_USER() (the account, which Recall keeps the same on every replica) or send the user name as a value',
  rewrite: 'never',
};

const serverConstant = (what: string): FunctionRule => ({
  reason: `${what} describes the server that runs it and differs between replicas (or during a rolling upgrade)`,
  workaround: "send the value from the client, or let Recall rewrite it to the leader's value",
  rewrite: 'constant',
});

export const UNSAFE_FUNCTIONS: ReadonlyMap<string, FunctionRule> = new Map<string, FunctionRule>([
  ['SYSDATE', {
    reason: 'SYSDATE() returns the time at which it executes, which differs on each replica; NOW() returns the statement start time, which Recall fixes with SET TIMESTAMP',
    workaround: 'use NOW() or CURRENT_TIMESTAMP (or run the servers with --sysdate-is-now)',
    rewrite: 'never',
  }],
  ['UUID', freshValue('UUID()')],
  ['UUID_SHORT', freshValue('UUID_SHORT()')],
  ['SYS_GUID', freshValue('SYS_GUID()')],
  ['RANDOM_BYTES', freshValue('RANDOM_BYTES()')],
  ['LOAD_FILE', {
    reason: 'LOAD_FILE() reads a file of the server that runs it; the file exists (or has the same content) on one replica only',
    workaround: 'read the file in the client and send its content as a parameter',
    rewrite: 'never',
  }],
  ['GET_LOCK', lockRule],
  ['RELEASE_LOCK', lockRule],
  ['RELEASE_ALL_LOCKS', lockRule],
  ['IS_FREE_LOCK', lockRule],
  ['IS_USED_LOCK', lockRule],
  ['USER', userRule],
  ['SESSION_USER', userRule],
  ['SYSTEM_USER', userRule],
  ['CONNECTION_ID', {
    reason: 'CONNECTION_ID() is the id of the connection on the server that runs it; it differs on every replica',
    workaround: 'send the value you want to store as a literal',
    rewrite: 'never',
  }],
  ['FOUND_ROWS', {
    reason: "FOUND_ROWS() depends on the session's previous SELECT, which replicas never ran",
    workaround: 'read it first (SELECT FOUND_ROWS() INTO @n) and use @n in the write: Recall records the user variables a write reads',
    rewrite: 'never',
  }],
  ['ROW_COUNT', {
    reason: "ROW_COUNT() depends on the session's previous statement, which replicas may apply in another session or batch",
    workaround: 'read it first (SELECT ROW_COUNT() INTO @n) and use @n in the write: Recall records the user variables a write reads',
    rewrite: 'never',
  }],
  ['MASTER_POS_WAIT', { reason: 'waits for a replication position of one server', workaround: 'do not use it in writes', rewrite: 'never' }],
  ['MASTER_GTID_WAIT', { reason: 'waits for a replication position of one server', workaround: 'do not use it in writes', rewrite: 'never' }],
  ['SOURCE_POS_WAIT', { reason: 'waits for a replication position of one server', workaround: 'do not use it in writes', rewrite: 'never' }],
  ['VERSION', serverConstant('VERSION()')],
  ['SLEEP', {
    reason: 'SLEEP() does not change the data (it returns 0), but the write holds the write lane while it sleeps and every replica sleeps again when it applies the entry',
    workaround: 'sleep in the client, outside the write',
    rewrite: 'never',
    warnOnly: true,
  }],
  ['BENCHMARK', {
    reason: 'BENCHMARK() does not change the data, but it holds the write lane and runs again on every replica',
    workaround: 'run it as a read, outside the write',
    rewrite: 'never',
    warnOnly: true,
  }],
]);

/** System variables whose value describes the server itself, not the session. */
export const SERVER_VARIABLES: ReadonlySet<string> = new Set([
  'hostname', 'server_id', 'server_uuid', 'port', 'socket', 'pid_file', 'datadir', 'basedir', 'tmpdir',
  'report_host', 'report_port', 'log_bin_basename', 'version', 'version_comment', 'version_compile_os',
  'version_compile_machine', 'gtid_binlog_pos', 'gtid_current_pos', 'gtid_slave_pos', 'gtid_executed',
  'gtid_binlog_state', 'wsrep_node_name', 'wsrep_node_address', 'innodb_version', 'plugin_dir', 'general_log_file',
  'slow_query_log_file', 'log_error',
]);

export const TIME_FUNCTIONS: ReadonlySet<string> = new Set([
  'NOW', 'CURRENT_TIMESTAMP', 'CURRENT_DATE', 'CURRENT_TIME', 'CURDATE', 'CURTIME', 'LOCALTIME', 'LOCALTIMESTAMP',
  'UTC_DATE', 'UTC_TIME', 'UTC_TIMESTAMP', 'UNIX_TIMESTAMP',
]);

/** Time functions that may be written without parentheses. */
export const TIME_WORDS: ReadonlySet<string> = new Set([
  'CURRENT_TIMESTAMP', 'CURRENT_DATE', 'CURRENT_TIME', 'LOCALTIME', 'LOCALTIMESTAMP', 'UTC_DATE', 'UTC_TIME', 'UTC_TIMESTAMP',
]);

/** Storage engines without transactions: a write cannot be rolled back when quorum is lost. */
export const NON_TRANSACTIONAL_ENGINES: ReadonlySet<string> = new Set([
  'MYISAM', 'MEMORY', 'HEAP', 'ARIA', 'CSV', 'ARCHIVE', 'MERGE', 'MRG_MYISAM', 'FEDERATED', 'FEDERATEDX', 'CONNECT',
  'SPIDER', 'OQGRAPH', 'S3',
]);

export type { FunctionRule };
