// The errors Recall itself answers for replicated statements, in MySQL's terms (errno and
// SQLSTATE a client library already knows how to treat), each saying what happened and what
// the client can do.
import { SqlError } from '../backend/mysql/client.js';

export const ER_OPTION_PREVENTS_STATEMENT = 1290;
export const ER_ERROR_DURING_COMMIT = 1180;
export const ER_LOCK_WAIT_TIMEOUT = 1205;
export const ER_LOCK_DEADLOCK = 1213;
export const ER_BINLOG_UNSAFE_STATEMENT = 1592;
export const ER_NOT_SUPPORTED_YET = 1235;
export const ER_DBACCESS_DENIED = 1044;

export const RecallErrors = {
  noLeader: (why: string) => new SqlError(ER_OPTION_PREVENTS_STATEMENT, 'HY000', `Recall: no leader reachable from this replica (${why}); writes and linearizable reads are refused, local reads still work`),
  /** Definitely not applied anywhere: safe to retry. */
  notApplied: (why: string) => new SqlError(ER_OPTION_PREVENTS_STATEMENT, 'HY000', `Recall: no leader could take the write (${why}); it was not applied, retry`),
  outcomeUnknown: (why: string) => new SqlError(ER_ERROR_DURING_COMMIT, 'HY000', `Recall: outcome unknown, the write may or may not have been applied (${why}); check and retry`),
  laneWait: (ms: number) => new SqlError(ER_LOCK_WAIT_TIMEOUT, 'HY000', `Lock wait timeout exceeded; try restarting transaction (Recall: the write lane stayed busy for ${ms} ms)`),
  laneHeld: (ms: number) => new SqlError(ER_LOCK_WAIT_TIMEOUT, 'HY000', `Lock wait timeout exceeded; Recall rolled the transaction back after it held the write lane for ${ms} ms`),
  txnAborted: (why: string) => new SqlError(ER_LOCK_DEADLOCK, '40001', `Deadlock found when trying to get lock; try restarting transaction (Recall: ${why})`),
  diverged: (why: string) =>
    why.startsWith('resync ')
      ? new SqlError(ER_OPTION_PREVENTS_STATEMENT, 'HY000', `Recall: replica resyncing (${why}); it serves again once its new copy of the database is installed, use another replica meanwhile`)
      : new SqlError(ER_OPTION_PREVENTS_STATEMENT, 'HY000', `Recall: replica diverged (${why}); it refuses reads until it is resynced, use another replica`),
  unsafe: (what: string) => new SqlError(ER_BINLOG_UNSAFE_STATEMENT, 'HY000', `Recall refuses a statement that would not replay identically on every replica: ${what}`),
  unsupported: (what: string) => new SqlError(ER_NOT_SUPPORTED_YET, '42000', `Recall does not support ${what} yet`),
  reserved: () => new SqlError(ER_DBACCESS_DENIED, '42000', "Access denied: the database 'recall' holds Recall's own bookkeeping and is not writable through Recall"),
  readTimeout: (index: number, applied: number, ms: number) => new SqlError(ER_LOCK_WAIT_TIMEOUT, 'HY000', `Recall: this replica did not apply index ${index} within ${ms} ms (applied ${applied}); retry or use another replica`),
};
