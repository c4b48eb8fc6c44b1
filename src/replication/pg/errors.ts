// The errors Recall itself answers for replicated PostgreSQL statements. They are SqlErrors (the
// type the Replicator and the peer link carry) with the errno of the matching RecallErrors entry,
// so code that tells them apart by errno works for both dialects, and PostgreSQL's SQLSTATE, which
// the router puts in the ErrorResponse (pgSqlState maps MySQL-flavoured ones too).
import { SqlError } from '../../backend/mysql/client.js';
import {
  ER_BINLOG_UNSAFE_STATEMENT,
  ER_DBACCESS_DENIED,
  ER_ERROR_DURING_COMMIT,
  ER_LOCK_DEADLOCK,
  ER_LOCK_WAIT_TIMEOUT,
  ER_NOT_SUPPORTED_YET,
  ER_OPTION_PREVENTS_STATEMENT,
} from '../errors.js';

export const PgRecallErrors = {
  noLeader: (why: string) => new SqlError(ER_OPTION_PREVENTS_STATEMENT, '25006', `Recall: no leader reachable from this replica (${why}); writes are refused, reads still work`),
  notApplied: (why: string) => new SqlError(ER_OPTION_PREVENTS_STATEMENT, '25006', `Recall: no leader could take the write (${why}); it was not applied, retry`),
  outcomeUnknown: (why: string) => new SqlError(ER_ERROR_DURING_COMMIT, '40003', `Recall: outcome unknown, the write may or may not have been applied (${why}); check and retry`),
  laneWait: (ms: number) => new SqlError(ER_LOCK_WAIT_TIMEOUT, '55P03', `Recall: the write lane stayed busy for ${ms} ms; retry`),
  laneHeld: (ms: number) => new SqlError(ER_LOCK_WAIT_TIMEOUT, '57014', `Recall rolled the transaction back after it held the write lane for ${ms} ms; keep write transactions short`),
  txnAborted: (why: string) => new SqlError(ER_LOCK_DEADLOCK, '40001', `could not serialize the transaction (Recall: ${why}); retry the transaction`),
  refused: (sqlstate: string, message: string) => new SqlError(ER_BINLOG_UNSAFE_STATEMENT, sqlstate, message),
  unsupported: (what: string) => new SqlError(ER_NOT_SUPPORTED_YET, '0A000', `Recall does not support ${what} yet`),
  reserved: () => new SqlError(ER_DBACCESS_DENIED, '42501', 'permission denied: the schema recall holds Recall\'s own bookkeeping and is not writable through Recall'),
  diverged: (why: string) => new SqlError(ER_OPTION_PREVENTS_STATEMENT, '57P03', `Recall: replica diverged or resyncing (${why}); it refuses reads until it is resynced, use another replica`),
  readTimeout: (index: number, applied: number, ms: number) =>
    new SqlError(ER_LOCK_WAIT_TIMEOUT, '55P03', `Recall: this replica did not apply index ${index} within ${ms} ms (applied ${applied}); retry or use another replica`),
};

const SQLSTATE_RE = /^[0-9A-Z]{5}$/;

/** The SQLSTATE for a client: PostgreSQL's own when the error has one, else mapped from the errno. */
export function pgSqlState(e: SqlError): string {
  if (SQLSTATE_RE.test(e.sqlState) && e.sqlState !== 'HY000' && e.sqlState !== '42000') return e.sqlState;
  switch (e.errno) {
    case ER_OPTION_PREVENTS_STATEMENT:
      return /diverged|resync/.test(e.message) ? '57P03' : '25006';
    case ER_ERROR_DURING_COMMIT:
      return '40003';
    case ER_LOCK_WAIT_TIMEOUT:
      return '55P03';
    case ER_LOCK_DEADLOCK:
      return '40001';
    case ER_BINLOG_UNSAFE_STATEMENT:
    case ER_NOT_SUPPORTED_YET:
      return '0A000';
    case ER_DBACCESS_DENIED:
      return '42501';
    default:
      return 'XX000';
  }
}
