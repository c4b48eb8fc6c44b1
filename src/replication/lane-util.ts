// Small pure helpers of the write lane and the applier: statement texts Recall sends, outcome of a
// response, keys, comparisons, and what an error means for the client.
import { randomBytes } from 'node:crypto';
import { SqlError } from '../backend/mysql/client.js';
import type { ResponseAssembler } from '../protocol/mysql/response.js';
import { NotLeaderError, ProposalDroppedError } from '../engine/errors.js';
import type { Outcome, SysContext } from './entry.js';
import type { LaneRequest } from './lane-types.js';
import { RecallErrors } from './errors.js';

/** What a failed proposal means for the client: never appended (retry safely), or unknown. */
export function proposalFailure(e: unknown): SqlError {
  if (e instanceof NotLeaderError || e instanceof ProposalDroppedError) return RecallErrors.notApplied(`not the leader any more (${e.message})`);
  return RecallErrors.outcomeUnknown(e instanceof Error ? e.message : String(e));
}

export function appliedUpdate(index: number, term: number, checksum: number): string {
  return `UPDATE recall.applied SET idx = ${index}, term = ${term}, checksum = ${checksum} WHERE id = 1`;
}

export function outcomeOf(r: ResponseAssembler): Outcome {
  if (r.err) return { e: r.err.errno };
  const out: Outcome = {};
  if (r.ok) {
    if (r.ok.affectedRows) out.a = r.ok.affectedRows;
    if (r.ok.lastInsertId) out.i = r.ok.lastInsertId;
    if (r.ok.warnings) out.w = r.ok.warnings;
  }
  if (r.hadRows) out.r = 1;
  return out;
}

export function sqlHex(latin1: string): string {
  const b = Buffer.from(latin1, 'latin1');
  return b.length ? `X'${b.toString('hex')}'` : "''";
}

/** A request whose context needs nothing that could fail: the connection's session variables, no user variables. */
export function plain(req: LaneRequest, have: SysContext | null): boolean {
  return have !== null && sameCtx(req.sys, have) && !(req.vars && req.vars.length) && !req.infile;
}

/** Prepared statements are cached per database: unqualified names resolve in the current one. */
export function stmtKey(db: string | null, sql: Buffer | string): string {
  return `${db ?? ''}\u0000${typeof sql === 'string' ? sql : sql.toString('latin1')}`;
}

export function connKey(req: LaneRequest): string {
  return `${req.account.user}\u0000${req.caps}\u0000${req.mcaps}\u0000${req.charset}`;
}

export function sameCtx(a: SysContext, b: SysContext): boolean {
  return (
    a.db === b.db && a.sqlMode === b.sqlMode && a.timeZone === b.timeZone && a.charsetClient === b.charsetClient &&
    a.collationConnection === b.collationConnection && a.charsetResults === b.charsetResults && a.fkChecks === b.fkChecks &&
    a.uniqueChecks === b.uniqueChecks && a.aiIncrement === b.aiIncrement && a.aiOffset === b.aiOffset
  );
}

export function asSqlError(e: unknown): SqlError {
  if (e instanceof SqlError) return e;
  if (e instanceof NotLeaderError) return RecallErrors.notApplied(e.message);
  return RecallErrors.notApplied((e as Error).message);
}

/**
 * A new name for the transactions a leader's lane opens from now on (its "epoch"): the node id and
 * random bits, new at every start and every loss of leadership. A client session in a lane
 * transaction sends it back with the transaction's next statements; a lane with another epoch
 * (another leader, or this one after it lost leadership) never held that transaction, and
 * refuses them: run there as a new transaction, the rest of it, or its COMMIT alone, would be
 * acknowledged without the statements the old leader rolled back.
 */
export function laneEpoch(nodeId: number): string {
  return `${nodeId}.${randomBytes(6).toString('hex')}`;
}

/** Why a statement of a lane transaction opened under another epoch is refused. */
export const LOST_TXN = 'the transaction was open on a leader that has since lost its leadership, and was rolled back there';
