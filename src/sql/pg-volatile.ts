// The catalogue of PostgreSQL functions whose value a replica cannot reproduce by running the
// same text, with what Recall does about each: rewrite to a literal fixed by the leader, or
// refuse with the reason and the way round. The PostgreSQL counterpart of mysql-unsafe.ts.
// See DESIGN.md "PostgreSQL" for the decisions.

/** Volatile built-ins that change nothing in the database: a SELECT calling them stays a read. */
export const READ_SAFE_VOLATILE: ReadonlySet<string> = new Set([
  'random', 'random_normal', 'setseed', 'clock_timestamp', 'timeofday', 'gen_random_uuid', 'currval', 'lastval',
  'set_config', 'pg_notify', 'pg_sleep', 'pg_sleep_for', 'pg_sleep_until', 'current_query', 'pg_backend_pid',
  'pg_current_wal_lsn', 'pg_current_wal_insert_lsn', 'pg_current_wal_flush_lsn', 'pg_last_wal_receive_lsn',
  'pg_last_wal_replay_lsn', 'pg_last_xact_replay_timestamp', 'pg_is_in_recovery', 'pg_is_wal_replay_paused',
  'pg_get_wal_replay_pause_state', 'pg_database_size', 'pg_relation_size', 'pg_table_size', 'pg_indexes_size',
  'pg_total_relation_size', 'pg_tablespace_size', 'pg_lock_status', 'pg_blocking_pids', 'pg_safe_snapshot_blocking_pids',
  'pg_control_checkpoint', 'pg_control_init', 'pg_control_recovery', 'pg_control_system', 'pg_current_logfile',
  'pg_partition_ancestors', 'pg_partition_tree', 'pg_prepared_xact', 'pg_show_all_file_settings', 'pg_hba_file_rules',
  'pg_ident_file_mappings', 'pg_get_backend_memory_contexts', 'pg_get_shmem_allocations', 'pg_get_multixact_members',
  'pg_get_wal_resource_managers', 'pg_jit_available', 'pg_notification_queue_usage', 'pg_xact_commit_timestamp',
  'pg_xact_commit_timestamp_origin', 'pg_last_committed_xact', 'txid_status', 'pg_xact_status', 'pg_sequence_last_value',
  'pg_stat_clear_snapshot', 'pg_stat_have_stats', 'pg_stat_get_recovery_prefetch', 'pg_collation_actual_version',
  'pg_database_collation_actual_version', 'pg_isolation_test_session_is_blocked', 'pg_stat_file', 'pg_ls_dir',
  'pg_ls_logdir', 'pg_ls_waldir', 'pg_ls_tmpdir', 'pg_ls_archive_statusdir', 'pg_ls_logicalmapdir', 'pg_ls_logicalsnapdir',
  'pg_ls_replslotdir', 'pg_read_file', 'pg_read_file_old', 'pg_read_binary_file', 'lo_get',
  'pg_stat_get_xact_blocks_fetched', 'pg_stat_get_xact_blocks_hit', 'pg_stat_get_xact_function_calls',
  'pg_stat_get_xact_function_self_time', 'pg_stat_get_xact_function_total_time', 'pg_stat_get_xact_numscans',
  'pg_stat_get_xact_tuples_deleted', 'pg_stat_get_xact_tuples_fetched', 'pg_stat_get_xact_tuples_hot_updated',
  'pg_stat_get_xact_tuples_inserted', 'pg_stat_get_xact_tuples_returned', 'pg_stat_get_xact_tuples_updated',
]);

/** Functions whose value lives in the client's own server session (earlier statements of the
 * session, its settings, its locks): route to the backend session that ran those. */
export const SESSION_FUNCTIONS: ReadonlySet<string> = new Set([
  'currval', 'lastval', 'set_config', 'setseed', 'pg_backend_pid', 'pg_notify', 'pg_advisory_lock', 'pg_advisory_lock_shared',
  'pg_advisory_unlock', 'pg_advisory_unlock_shared', 'pg_advisory_unlock_all', 'pg_try_advisory_lock', 'pg_try_advisory_lock_shared',
  'pg_advisory_xact_lock', 'pg_advisory_xact_lock_shared', 'pg_try_advisory_xact_lock', 'pg_try_advisory_xact_lock_shared',
  'current_query', 'pg_export_snapshot', 'txid_current', 'pg_current_xact_id', 'txid_current_if_assigned', 'pg_current_xact_id_if_assigned',
]);

/** What a rewritable time function becomes: the leader's timestamp cast to `type`. */
export interface TimeRule {
  /** which of the leader's clocks: transaction start, statement start, or the moment of the call */
  clock: 'transaction' | 'statement' | 'clock';
  /** the cast chain after the timestamptz literal; `(p)` is appended for a precision */
  casts: string[];
  /** timeofday(): text in its own format */
  text?: true;
}

/** Time functions called as functions (pg_catalog), all without arguments. */
export const TIME_FUNCTIONS: ReadonlyMap<string, TimeRule> = new Map<string, TimeRule>([
  ['now', { clock: 'transaction', casts: ['timestamptz'] }],
  ['transaction_timestamp', { clock: 'transaction', casts: ['timestamptz'] }],
  ['statement_timestamp', { clock: 'statement', casts: ['timestamptz'] }],
  ['clock_timestamp', { clock: 'clock', casts: ['timestamptz'] }],
  ['timeofday', { clock: 'clock', casts: ['timestamptz'], text: true }],
]);

/** SQL value functions (keywords, with an optional precision): SQLValueFunction ops. These are
 * evaluated in the session's TimeZone, so they stay casts that the server evaluates: the replica
 * applies with the leader's TimeZone (recorded with the entry), and gets the same value. */
export const TIME_KEYWORDS: ReadonlyMap<string, { casts: string[]; precision: boolean }> = new Map([
  ['SVFOP_CURRENT_DATE', { casts: ['timestamptz', 'date'], precision: false }],
  ['SVFOP_CURRENT_TIME', { casts: ['timestamptz', 'timetz'], precision: false }],
  ['SVFOP_CURRENT_TIME_N', { casts: ['timestamptz', 'timetz'], precision: true }],
  ['SVFOP_CURRENT_TIMESTAMP', { casts: ['timestamptz'], precision: false }],
  ['SVFOP_CURRENT_TIMESTAMP_N', { casts: ['timestamptz'], precision: true }],
  ['SVFOP_LOCALTIME', { casts: ['timestamptz', 'time'], precision: false }],
  ['SVFOP_LOCALTIME_N', { casts: ['timestamptz', 'time'], precision: true }],
  ['SVFOP_LOCALTIMESTAMP', { casts: ['timestamptz', 'timestamp'], precision: false }],
  ['SVFOP_LOCALTIMESTAMP_N', { casts: ['timestamptz', 'timestamp'], precision: true }],
]);

/** Functions with a fresh value per call: a literal is right only where the call is evaluated once. */
export const FRESH_FUNCTIONS: ReadonlyMap<string, 'random' | 'uuid'> = new Map([
  ['random', 'random'],
  ['gen_random_uuid', 'uuid'],
  ['uuid_generate_v4', 'uuid'],
]);

export interface NeverRule {
  reason: string;
  workaround: string;
}

const xid: NeverRule = {
  reason: 'transaction ids and snapshots are numbered by each server on its own, so every replica would store a different value',
  workaround: 'store a value generated by the client (or a sequence: nextval is replicated deterministically)',
};
const serverFact = (what: string): NeverRule => ({
  reason: `${what} describes the server or connection that runs it, which differs between replicas (replicas apply through their own connection)`,
  workaround: 'read it in a statement of its own and send the value as a literal or parameter',
});
const sessionValue: NeverRule = {
  reason: "its value comes from earlier statements of this client's server session, which replicas apply in another session",
  workaround: 'use INSERT ... RETURNING or a WITH ... INSERT ... RETURNING to pass generated values along, or read the value first and send it as a literal',
};
const serverFile: NeverRule = {
  reason: 'it reads or writes a file of the server that runs it, which exists (or has the same content) on one replica only',
  workaround: 'read the file in the client and send its content as a parameter (COPY ... FROM STDIN for tables)',
};

/** Functions that cannot be made deterministic: a write calling one is refused. */
export const NEVER_FUNCTIONS: ReadonlyMap<string, NeverRule> = new Map<string, NeverRule>([
  ['txid_current', xid], ['txid_current_if_assigned', xid], ['pg_current_xact_id', xid], ['pg_current_xact_id_if_assigned', xid],
  ['txid_current_snapshot', xid], ['pg_current_snapshot', xid], ['pg_export_snapshot', xid],
  ['pg_backend_pid', serverFact('pg_backend_pid()')], ['inet_client_addr', serverFact('inet_client_addr()')],
  ['inet_client_port', serverFact('inet_client_port()')], ['inet_server_addr', serverFact('inet_server_addr()')],
  ['inet_server_port', serverFact('inet_server_port()')], ['pg_postmaster_start_time', serverFact('pg_postmaster_start_time()')],
  ['pg_conf_load_time', serverFact('pg_conf_load_time()')], ['version', serverFact('version()')],
  ['pg_current_wal_lsn', serverFact('pg_current_wal_lsn()')], ['pg_current_wal_insert_lsn', serverFact('pg_current_wal_insert_lsn()')],
  ['pg_is_in_recovery', serverFact('pg_is_in_recovery()')], ['pg_database_size', serverFact('pg_database_size()')],
  ['pg_relation_size', serverFact('pg_relation_size()')], ['pg_table_size', serverFact('pg_table_size()')],
  ['pg_total_relation_size', serverFact('pg_total_relation_size()')], ['pg_indexes_size', serverFact('pg_indexes_size()')],
  ['pg_xact_commit_timestamp', serverFact('pg_xact_commit_timestamp()')], ['pg_last_committed_xact', serverFact('pg_last_committed_xact()')],
  ['currval', sessionValue], ['lastval', sessionValue],
  ['pg_read_file', serverFile], ['pg_read_binary_file', serverFile], ['pg_ls_dir', serverFile], ['pg_stat_file', serverFile],
  ['lo_import', serverFile], ['lo_export', serverFile],
  ['random_normal', {
    reason: 'random_normal() returns a new value for each call and Recall does not rewrite it',
    workaround: 'generate the value in the client and send it as a literal or parameter',
  }],
  ['pg_sleep', {
    reason: 'the write would hold the write lane while it sleeps, and every replica would sleep again when it applies it',
    workaround: 'sleep in the client, outside the write',
  }],
]);
