// Turning a statement's recorded context into the commands that recreate it on another
// session (lane connection or applier), sending only what differs from what that session has.
import type { SqlClient } from '../backend/mysql/client.js';
import type { ResponseAssembler } from '../protocol/mysql/response.js';
import { COM_INIT_DB } from '../protocol/mysql/constants.js';
import type { StatementItem, SysContext } from './entry.js';

/** The query that reads a session's SysContext (one row, columns in SysContext order). */
export const READ_CONTEXT_SQL =
  'SELECT DATABASE(), @@sql_mode, @@time_zone, @@character_set_client, @@collation_connection, @@character_set_results, ' +
  '@@foreign_key_checks, @@unique_checks, @@auto_increment_increment, @@auto_increment_offset, @@tx_isolation, @@autocommit';

export function contextFromRow(row: Array<string | null>): { ctx: SysContext; isolation: string; autocommit: boolean } {
  const s = (i: number) => row[i] ?? '';
  return {
    ctx: {
      db: row[0] ?? null,
      sqlMode: s(1),
      timeZone: s(2),
      charsetClient: s(3),
      collationConnection: s(4),
      charsetResults: row[5] ?? null,
      fkChecks: s(6),
      uniqueChecks: s(7),
      aiIncrement: s(8),
      aiOffset: s(9),
    },
    isolation: s(10),
    autocommit: s(11) === '1',
  };
}

const SAFE_VALUE = /^[A-Za-z0-9_,:+\-./ ]*$/;

function quoted(v: string): string {
  // Values of these variables never hold quotes; anything odd travels as hex so no escaping
  // rule (NO_BACKSLASH_ESCAPES) can change its meaning.
  return SAFE_VALUE.test(v) ? `'${v}'` : `X'${Buffer.from(v, 'utf8').toString('hex')}'`;
}

function ident(v: string): string {
  return '`' + v.replace(/`/g, '``') + '`';
}

/** SET SESSION for the variables of `want` that differ from `have` (all when have is null); '' when none. */
export function sessionSet(want: SysContext, have: SysContext | null): string {
  const parts: string[] = [];
  const add = (name: string, w: string, h: string | undefined, form: 'str' | 'ident' | 'num') => {
    if (h === w) return;
    const v = form === 'ident' ? ident(w) : form === 'num' && /^\d+$/.test(w) ? w : quoted(w);
    parts.push(`${name}=${v}`);
  };
  add('sql_mode', want.sqlMode, have?.sqlMode, 'str');
  add('time_zone', want.timeZone, have?.timeZone, 'str');
  add('character_set_client', want.charsetClient, have?.charsetClient, 'ident');
  add('collation_connection', want.collationConnection, have?.collationConnection, 'ident');
  if (!have || have.charsetResults !== want.charsetResults) {
    parts.push(`character_set_results=${want.charsetResults === null ? 'NULL' : ident(want.charsetResults)}`);
  }
  add('foreign_key_checks', want.fkChecks, have?.fkChecks, 'num');
  add('unique_checks', want.uniqueChecks, have?.uniqueChecks, 'num');
  add('auto_increment_increment', want.aiIncrement, have?.aiIncrement, 'num');
  add('auto_increment_offset', want.aiOffset, have?.aiOffset, 'num');
  return parts.length ? 'SET SESSION ' + parts.join(', ') : '';
}

/** The per-statement SET: clock (unless the session already has it), random seeds, insert id,
 * last insert id, user variables; '' when nothing needs setting. */
export function statementSet(item: StatementItem, insertId: number | null, sessionTs: string | null = null): string {
  const parts: string[] = [];
  if (item.ts !== sessionTs) parts.push(`timestamp=${item.ts}`);
  if (item.seeds) parts.push(`rand_seed1=${item.seeds[0]}`, `rand_seed2=${item.seeds[1]}`);
  if (insertId !== null && insertId > 0) parts.push(`insert_id=${insertId}`);
  if (item.lid !== undefined) parts.push(`last_insert_id=${item.lid}`);
  for (const v of item.vars ?? []) parts.push(v);
  return parts.length ? 'SET ' + parts.join(', ') : '';
}

/** A session on which Recall replays statements, remembering the context it last set. */
export class ContextTracker {
  ctx: SysContext | null = null;
  /** the session's fixed clock (SET timestamp) as last set */
  ts: string | null = null;

  /** Send (pipelined, not awaited) what makes `client` match `want`; returns the responses to check. */
  apply(client: SqlClient, want: SysContext): Array<Promise<ResponseAssembler>> {
    const out: Array<Promise<ResponseAssembler>> = [];
    if (want.db !== null && want.db !== (this.ctx?.db ?? null)) {
      const name = Buffer.from(want.db, 'utf8');
      const payload = Buffer.allocUnsafe(name.length + 1);
      payload[0] = COM_INIT_DB;
      name.copy(payload, 1);
      out.push(client.command(payload));
    }
    const set = sessionSet(want, this.ctx);
    if (set) out.push(client.query(set));
    this.ctx = want;
    return out;
  }

  reset(): void {
    this.ctx = null;
    this.ts = null;
  }
}

/** Leader's clock for a statement, with microseconds, strictly increasing. */
export class StatementClock {
  private lastUs = 0;
  next(): string {
    const us = Math.max(Math.floor((performance.timeOrigin + performance.now()) * 1000), this.lastUs + 1);
    this.lastUs = us;
    return `${Math.floor(us / 1e6)}.${String(us % 1e6).padStart(6, '0')}`;
  }
}

export function randomSeeds(): [number, number] {
  return [1 + Math.floor(Math.random() * 0x3ffffffe), 1 + Math.floor(Math.random() * 0x3ffffffe)];
}
