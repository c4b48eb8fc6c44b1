// PostgreSQL's dialect of the Replicator (src/replication/dialect.ts): PgApplier, PgLane, and the
// codecs of the lane's requests and results over the peer link (JSON; the client's credential
// sealed with the cluster secret, never in clear on the wire).
import { SqlError } from '../../backend/mysql/client.js';
import type { Credential } from '../../frontend/postgres/authenticate.js';
import type { CredentialSeal, Dialect } from '../dialect.js';
import { PgApplier, type PgApplierOptions } from './applier.js';
import { PgLane } from './lane.js';
import type { PgLaneKind, PgLaneRequest, PgLaneResult, PgLaneStatement } from './types.js';

export interface PgDialectOptions extends PgApplierOptions {
  /** idle lane connections kept per (role, database) */
  laneConnsMax?: number;
  /** optimistic transactions (PgLane's Spec) */
  optimistic?: boolean;
}

const KINDS: ReadonlySet<PgLaneKind> = new Set(['write', 'read', 'session', 'commit', 'rollback', 'alone']);

function encodeCredential(c: Credential): Buffer {
  const o = c.kind === 'scram' ? { kind: c.kind, clientKey: c.clientKey.toString('base64'), serverKey: c.serverKey.toString('base64') } : c;
  return Buffer.from(JSON.stringify(o), 'utf8');
}

function decodeCredential(b: Buffer): Credential {
  const o = JSON.parse(b.toString('utf8')) as { kind: string; clientKey?: string; serverKey?: string; hash?: string };
  if (o.kind === 'scram' && typeof o.clientKey === 'string' && typeof o.serverKey === 'string') {
    return { kind: 'scram', clientKey: Buffer.from(o.clientKey, 'base64'), serverKey: Buffer.from(o.serverKey, 'base64') };
  }
  if (o.kind === 'md5' && typeof o.hash === 'string') return { kind: 'md5', hash: o.hash };
  if (o.kind === 'trust') return { kind: 'trust' };
  throw new Error('bad credential');
}

interface WireStatement {
  k: PgLaneKind;
  q: string;
  /** COPY data, base64 */
  c?: string;
  x?: { types: number[]; formats: number[]; values: Array<string | null>; resultFormats: number[]; describe: boolean };
}

function isNumbers(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((n) => Number.isInteger(n));
}

function decodeStatement(v: unknown): PgLaneStatement {
  const s = v as WireStatement;
  if (typeof s !== 'object' || s === null || !KINDS.has(s.k) || typeof s.q !== 'string') throw new Error('bad statement');
  if (s.c !== undefined && typeof s.c !== 'string') throw new Error('bad copy data');
  const copy = s.c === undefined ? {} : { copy: Buffer.from(s.c, 'base64') };
  if (s.x === undefined) return { kind: s.k, sql: s.q, ...copy };
  const x = s.x;
  if (!isNumbers(x.types) || !isNumbers(x.formats) || !isNumbers(x.resultFormats) || typeof x.describe !== 'boolean' || !Array.isArray(x.values)) throw new Error('bad parameters');
  const values = x.values.map((b) => {
    if (b !== null && typeof b !== 'string') throw new Error('bad parameter value');
    return b === null ? null : Buffer.from(b, 'base64');
  });
  return { kind: s.k, sql: s.q, ...copy, x: { types: x.types, formats: x.formats, values, resultFormats: x.resultFormats, describe: x.describe } };
}

export function encodePgRequest(req: PgLaneRequest, seal: CredentialSeal): Buffer {
  const stmts: WireStatement[] = req.stmts.map((s) => ({
    k: s.kind,
    q: s.sql,
    ...(s.copy ? { c: s.copy.toString('base64') } : {}),
    ...(s.x ? { x: { ...s.x, values: s.x.values.map((v) => (v === null ? null : v.toString('base64'))) } } : {}),
  }));
  return Buffer.from(
    JSON.stringify({ session: req.session, role: req.role, database: req.database, cred: seal.seal(encodeCredential(req.credential)), settings: req.settings, mode: req.mode, begin: req.begin, ...(req.optimistic !== undefined ? { opt: req.optimistic } : {}), ...(req.txn !== undefined ? { txn: req.txn } : {}), stmts }),
    'utf8',
  );
}

export function decodePgRequest(payload: Buffer, seal: CredentialSeal): PgLaneRequest {
  const o = JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
  const str = (k: string) => {
    if (typeof o[k] !== 'string') throw new Error(`bad ${k}`);
    return o[k] as string;
  };
  const settings = o.settings as Record<string, string>;
  if (typeof settings !== 'object' || settings === null || !Object.values(settings).every((v) => typeof v === 'string')) throw new Error('bad settings');
  const mode = o.mode;
  if (mode !== 'auto' && mode !== 'txn') throw new Error('bad mode');
  if (o.begin !== undefined && typeof o.begin !== 'string') throw new Error('bad begin');
  if (o.opt !== undefined && typeof o.opt !== 'boolean') throw new Error('bad optimistic');
  if (o.txn !== undefined && typeof o.txn !== 'string') throw new Error('bad txn');
  if (!Array.isArray(o.stmts)) throw new Error('bad statements');
  return {
    session: str('session'),
    role: str('role'),
    database: str('database'),
    credential: decodeCredential(seal.open(str('cred'))),
    settings,
    mode,
    ...(o.begin !== undefined ? { begin: o.begin as string } : {}),
    ...(o.opt !== undefined ? { optimistic: o.opt as boolean } : {}),
    ...(o.txn !== undefined ? { txn: o.txn as string } : {}),
    stmts: o.stmts.map(decodeStatement),
  };
}

export function encodePgResult(r: PgLaneResult | SqlError): Buffer {
  if (r instanceof SqlError) return Buffer.from(JSON.stringify({ err: { errno: r.errno, sqlState: r.sqlState, message: r.message } }), 'utf8');
  return Buffer.from(JSON.stringify({ replies: r.replies.map((ms) => ms.map((m) => m.toString('base64'))), index: r.index, status: r.status, ...(r.txn !== undefined ? { txn: r.txn } : {}) }), 'utf8');
}

export function decodePgResult(payload: Buffer): PgLaneResult {
  const o = JSON.parse(payload.toString('utf8')) as { err?: { errno: number; sqlState: string; message: string }; replies?: string[][]; index?: number; status?: number; txn?: unknown };
  if (o.err) throw new SqlError(Number(o.err.errno), String(o.err.sqlState), String(o.err.message));
  if (!Array.isArray(o.replies) || typeof o.index !== 'number' || typeof o.status !== 'number') throw new Error('bad lane result');
  return { replies: o.replies.map((ms) => ms.map((m) => Buffer.from(m, 'base64'))), index: o.index, status: o.status, ...(typeof o.txn === 'string' ? { txn: o.txn } : {}) };
}

export function pgDialect(o: PgDialectOptions): Dialect<PgLaneRequest, PgLaneResult, PgApplier> {
  return {
    name: 'postgres',
    createApplier: (deps) => new PgApplier(deps, o),
    createLane: (deps, applier) => new PgLane(deps, applier, { target: o.target, connectTimeoutMs: o.connectTimeoutMs, connsMax: o.laneConnsMax, optimistic: o.optimistic ?? false }),
    sessionOf: (req) => req.session,
    encodeRequest: encodePgRequest,
    decodeRequest: decodePgRequest,
    encodeResult: encodePgResult,
    decodeResult: decodePgResult,
    // a request of reads only changed nothing; anything else may have run before the link failed
    mayHaveRun: (req) => req.mode === 'txn' || req.stmts.some((s) => s.kind !== 'read'),
  };
}
