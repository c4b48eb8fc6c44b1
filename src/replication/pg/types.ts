// The PostgreSQL write lane's contract with the router (requests and results) and its
// dependencies beyond the dialect's LaneBaseDeps.
import type { Credential } from '../../frontend/postgres/authenticate.js';

/** What a statement is to the lane (the router classifies, the lane trusts it only for routing). */
export type PgLaneKind =
  | 'write' // INSERT/UPDATE/DELETE/MERGE/DDL/locking read...: recorded in the entry with its outcome
  | 'read' // runs in the lane transaction, not recorded
  | 'session' // SET/SAVEPOINT/RELEASE/ROLLBACK TO inside a lane transaction: recorded (replicas replay them)
  | 'commit' // COMMIT/END of the lane transaction
  | 'rollback' // ROLLBACK/ABORT of the lane transaction
  | 'alone'; // cannot run in a transaction block (CREATE DATABASE, CREATE INDEX CONCURRENTLY, ...)

export interface PgLaneStatement {
  kind: PgLaneKind;
  /** the statement's text as the client sent it (UTF-8) */
  sql: string;
  /** an extended-query execution: parameter type OIDs, formats and values (null: NULL) */
  x?: { types: number[]; formats: number[]; values: Array<Buffer | null>; resultFormats: number[]; describe: boolean };
  /** COPY FROM STDIN: the data the client sent (CopyData contents, concatenated) */
  copy?: Buffer;
}

export interface PgLaneRequest {
  /** `<nodeId>:<session id>` */
  session: string;
  role: string;
  database: string;
  credential: Credential;
  /** the session's settings that change how statements read (PG_ENTRY_SETTINGS), lower-case names */
  settings: Record<string, string>;
  /** 'auto': these statements are one implicit transaction; 'txn': part of the session's lane
   * transaction, opened with `begin` on its first request */
  mode: 'auto' | 'txn';
  begin?: string;
  /** the session's `SET recall.optimistic` (the lane's configured default when absent) */
  optimistic?: boolean;
  /** the lane epoch of the transaction these statements continue (PgLaneResult.txn), once it is open */
  txn?: string;
  stmts: PgLaneStatement[];
}

export interface PgLaneResult {
  /** per statement executed, the backend's messages for it (ParseComplete, BindComplete and
   * ReadyForQuery left out); statements after a failed one are not executed (no entry) */
  replies: Buffer[][];
  /** log index that made the writes durable (0: nothing replicated) */
  index: number;
  /** transaction status after the request: 'I', 'T' or 'E' (a byte) */
  status: number;
  /** in a transaction: the epoch of the lane that holds it (see laneEpoch in ../lane-util.ts) */
  txn?: string;
}
