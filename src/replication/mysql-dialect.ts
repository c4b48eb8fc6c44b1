// The MySQL/MariaDB dialect of the replicator (see dialect.ts): the applier and write lane of
// this folder, and how a lane request and its result travel over the peer link (JSON; the
// account's stage-1 hash, password-equivalent for the backend, sealed under the cluster secret).
import { SqlError } from '../backend/mysql/client.js';
import type { BackendTarget } from '../backend/mysql/connection.js';
import { Applier } from './applier.js';
import { WriteLane } from './lane.js';
import type { LaneRequest, LaneResult } from './lane-types.js';
import { RecallErrors } from './errors.js';
import type { CredentialSeal, Dialect } from './dialect.js';

export interface MysqlDialectOptions {
  target: BackendTarget;
  /** The account replicas apply as. */
  admin: { user: string; stage1: Buffer | null };
  payloadBytesMax: number;
  connectTimeoutMs: number;
}

export function mysqlDialect(o: MysqlDialectOptions): Dialect<LaneRequest, LaneResult, Applier> {
  return {
    name: 'mysql',
    createApplier: (deps) => new Applier({ ...deps, target: o.target, admin: o.admin, payloadBytesMax: o.payloadBytesMax, connectTimeoutMs: o.connectTimeoutMs }),
    createLane: (deps, applier) =>
      new WriteLane({
        ...deps,
        target: o.target,
        payloadBytesMax: o.payloadBytesMax,
        connectTimeoutMs: o.connectTimeoutMs,
        batchStatementsMax: 512,
        expect: (seq) => applier.expect(seq),
        bookkeep: (sqls) => applier.bookkeep(sqls),
        adminRows: (sql) => applier.adminRows(sql),
      }),
    sessionOf: (req) => req.session,
    mayHaveRun: (req) => req.mode === 'auto' || req.mode === 'commit' || req.mode === 'ddl',
    encodeRequest,
    decodeRequest,
    encodeResult,
    decodeResult,
  };
}

function encodeRequest(req: LaneRequest, seal: CredentialSeal): Buffer {
  return Buffer.from(
    JSON.stringify({
      ...req,
      account: { user: req.account.user, cred: req.account.stage1 ? seal.seal(req.account.stage1) : null },
      sql: req.sql?.toString('base64'),
      params: req.params?.toString('base64'),
      infile: req.infile?.toString('base64'),
    }),
  );
}

function decodeRequest(payload: Buffer, seal: CredentialSeal): LaneRequest {
  const v = JSON.parse(payload.toString('utf8')) as Record<string, unknown> & { account: { user: string; cred: string | null } };
  if (!v || typeof v !== 'object' || typeof v.session !== 'string' || typeof v.account?.user !== 'string') throw new Error('bad request');
  const modes = ['auto', 'txn', 'commit', 'rollback', 'ddl'];
  if (!modes.includes(v.mode as string)) throw new Error('bad mode');
  if (v.txn !== undefined && typeof v.txn !== 'string') throw new Error('bad txn');
  const stage1 = v.account.cred ? seal.open(v.account.cred) : null;
  const b = (x: unknown) => (typeof x === 'string' ? Buffer.from(x, 'base64') : undefined);
  return {
    ...(v as unknown as LaneRequest),
    account: { user: v.account.user, stage1 },
    sql: b(v.sql),
    params: b(v.params),
    infile: b(v.infile),
  };
}

function encodeResult(r: LaneResult | SqlError): Buffer {
  if (r instanceof SqlError) return Buffer.from(JSON.stringify({ err: { errno: r.errno, sqlState: r.sqlState, message: r.message } }));
  return Buffer.from(
    JSON.stringify({ ...r, packets: r.packets.map((p) => p.toString('base64')), warnings: r.warnings?.map((p) => p.toString('base64')) }),
  );
}

function decodeResult(b: Buffer): LaneResult {
  const v = JSON.parse(b.toString('utf8')) as {
    err?: { errno: number; sqlState: string; message: string };
    packets?: string[];
    warnings?: string[];
    index?: number;
    insertId?: number;
    inTxn?: boolean;
    txn?: unknown;
  };
  if (v.err) throw new SqlError(v.err.errno, v.err.sqlState, v.err.message);
  if (!Array.isArray(v.packets)) throw RecallErrors.outcomeUnknown('malformed reply from the leader');
  const r: LaneResult = { packets: v.packets.map((p) => Buffer.from(p, 'base64')), index: v.index ?? 0, insertId: v.insertId ?? 0, inTxn: v.inTxn ?? false };
  if (typeof v.txn === 'string') r.txn = v.txn;
  if (Array.isArray(v.warnings)) r.warnings = v.warnings.map((p) => Buffer.from(p, 'base64'));
  return r;
}
