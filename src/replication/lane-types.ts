// The write lane's contract with the front ends (requests and results) and with the applier and
// the Raft node (its dependencies).
import type { BackendTarget } from '../backend/mysql/connection.js';
import type { SysContext } from './entry.js';
import type { LaneBaseDeps } from './dialect.js';

export interface Account {
  user: string;
  /** SHA1(password), null for the empty password */
  stage1: Buffer | null;
}

export type LaneMode = 'auto' | 'txn' | 'commit' | 'rollback' | 'ddl';

export interface LaneRequest {
  session: string;
  account: Account;
  caps: number;
  mcaps: number;
  charset: number;
  sys: SysContext;
  mode: LaneMode;
  /** txn statements: keep in the entry (false for plain reads) */
  record?: boolean;
  sql?: Buffer;
  /** COM_STMT_EXECUTE body after the statement id, types always bound */
  params?: Buffer;
  vars?: string[];
  lid?: number;
  rand?: boolean;
  infile?: Buffer;
  /** the statement generates AUTO_INCREMENT values itself: replicas replay it with its insert id */
  pinInsertId?: boolean;
  /** the client session's AUTOCOMMIT status bit */
  clientStatus: number;
  /** the lane epoch of the transaction this statement continues (LaneResult.txn), if one is open */
  txn?: string;
}

export interface LaneResult {
  packets: Buffer[];
  /** log index that made the write durable (0: nothing replicated) */
  index: number;
  insertId: number;
  /** the session is (still) inside a lane transaction */
  inTxn: boolean;
  /** SHOW WARNINGS of the statement (raw response packets), when it had warnings */
  warnings?: Buffer[];
  /** with inTxn: the epoch of the lane that holds the transaction (see laneEpoch) */
  txn?: string;
}

export interface Expectation {
  committed(index: number): void;
  failed(): void;
}

export interface LaneDeps extends LaneBaseDeps {
  target: BackendTarget;
  payloadBytesMax: number;
  connectTimeoutMs: number;
  batchStatementsMax: number;
  /** the applier must wait for the lane on the entry with this sequence number */
  expect(seq: number): Expectation;
  /** run Recall's own bookkeeping statements as the admin account, in one transaction */
  bookkeep(sqls: string[]): Promise<void>;
  /** a read as the admin account (routine metadata the client's account may not see) */
  adminRows(sql: string): Promise<Array<Array<string | null>>>;
}
