// The applier (DESIGN.md "Exactly-once apply"): applies committed entries to the local database
// in log order, each in one transaction together with recall.applied, so a crash at any point
// resumes at the right entry. It reads entries from the durable log itself, so a database that
// went away and came back is caught up from whatever it last committed. Every statement's
// outcome is compared with the leader's; a difference stops applying and marks the replica
// diverged. Entries this node's own write lane executed are committed by the lane: the applier
// waits for it and only applies them itself when the lane gave up.
import { SqlClient, SqlError } from '../backend/mysql/client.js';
import type { BackendTarget } from '../backend/mysql/connection.js';
import { CLIENT_FOUND_ROWS, CLIENT_MULTI_RESULTS, CLIENT_PS_MULTI_RESULTS, CLIENT_PROTOCOL_41, CLIENT_TRANSACTIONS, CLIENT_LOCAL_FILES, CLIENT_LONG_FLAG, CLIENT_DEPRECATE_EOF } from '../protocol/mysql/constants.js';
import type { ResponseAssembler } from '../protocol/mysql/response.js';
import type { Entry } from '../consensus/types.js';
import type { ApplierBaseDeps } from './dialect.js';
import { ApplierCore } from './applier-core.js';
import { ContextTracker, statementSet } from './context.js';
import { decodeEntry, describeOutcome, entryChecksum, sameOutcome, type SqlEntry, type StatementItem, type SysContext } from './entry.js';
import { appliedUpdate, outcomeOf, sqlHex, stmtKey } from './lane.js';

const ENTRY_NORMAL = 0;

export interface ApplierDeps extends ApplierBaseDeps {
  target: BackendTarget;
  admin: { user: string; stage1: Buffer | null };
  payloadBytesMax: number;
  connectTimeoutMs: number;
}

interface ApplyConn {
  client: SqlClient;
  ctx: ContextTracker;
  stmts: Map<string, number>;
}

class ContextError extends Error {}

import { NO_EFFECT_ERRORS as PRIVILEGE_ERRORS } from './entry.js';

const ROLLBACK_ITEM: StatementItem = { sql: 'ROLLBACK', c: 0, ts: '0', out: {} };

export class Applier extends ApplierCore {
  private readonly conns = new Map<number, ApplyConn>();

  constructor(protected override readonly d: ApplierDeps) {
    super(d);
  }

  protected dropConnections(): void {
    for (const c of this.conns.values()) c.client.close();
    this.conns.clear();
  }

  /** Create Recall's bookkeeping schema if needed and read the applied index. */
  async open(): Promise<void> {
    const c = await this.conn(0);
    await c.client.run('CREATE DATABASE IF NOT EXISTS recall');
    await c.client.run(
      'CREATE TABLE IF NOT EXISTS recall.applied (id TINYINT UNSIGNED PRIMARY KEY, idx BIGINT UNSIGNED NOT NULL, term BIGINT UNSIGNED NOT NULL, checksum INT UNSIGNED NOT NULL) ENGINE=InnoDB',
    );
    await c.client.run('INSERT IGNORE INTO recall.applied VALUES (1, 0, 0, 0)');
    await c.client.run(
      'CREATE TABLE IF NOT EXISTS recall.ddl (idx BIGINT UNSIGNED PRIMARY KEY, state VARCHAR(16) NOT NULL, errno INT NOT NULL DEFAULT 0, stmt LONGBLOB) ENGINE=InnoDB',
    );
    // The write lane records the applied index inside the client's own transaction, as the client's account.
    const g = await c.client.query('GRANT SELECT, UPDATE ON recall.applied TO PUBLIC');
    if (g.err) this.d.log.warn('could not grant UPDATE on recall.applied to PUBLIC; writes by accounts without it will fail on the leader', { error: g.err.message });
    const mode = SqlClient.rows(await c.client.run('SELECT @@innodb_autoinc_lock_mode'))[0]?.[0];
    if (mode !== '0') {
      this.d.log.warn('innodb_autoinc_lock_mode is not 0: INSERT ... SELECT into AUTO_INCREMENT tables can leave replicas with different counters; start the server with --innodb-autoinc-lock-mode=0', { mode });
    }
    await this.readApplied();
  }

  protected async readApplied(): Promise<void> {
    const c = await this.conn(0);
    const rows = SqlClient.rows(await c.client.run('SELECT idx FROM recall.applied WHERE id = 1'));
    this.applied = Number(rows[0]?.[0] ?? 0);
    const started = SqlClient.rows(await c.client.run("SELECT idx FROM recall.ddl WHERE state = 'started' ORDER BY idx LIMIT 1"));
    if (started.length > 0 && !this.diverged) {
      this.diverge(Number(started[0]![0]), `a DDL statement (log index ${started[0]![0]}) was interrupted by a crash; whether it took effect is unknown, so this replica needs a resync`);
    }
  }

  /** Recall's own statements in one transaction on the admin connection. */
  async bookkeep(sqls: string[]): Promise<void> {
    const c = await this.conn(0);
    const rs = [c.client.query('BEGIN'), ...sqls.map((s) => c.client.query(s)), c.client.query('COMMIT')];
    for (const r of await Promise.all(rs)) if (r.err) throw new SqlError(r.err.errno, r.err.sqlState, r.err.message);
  }

  /** A read as the admin account (Recall's own lookups on the leader). */
  async adminRows(sql: string): Promise<Array<Array<string | null>>> {
    const c = await this.conn(0);
    return SqlClient.rows(await c.client.run(sql));
  }

  protected async applyOne(e: Entry): Promise<void> {
    if (e.type !== ENTRY_NORMAL || e.data.length === 0) return this.advance(e.index);
    let entry: SqlEntry;
    try {
      entry = decodeEntry(e.data);
    } catch (err) {
      return this.diverge(e.index, `entry ${e.index} cannot be decoded: ${(err as Error).message}`);
    }
    // the lane rolled back but the entry is committed: apply it like any other
    if (entry.o.n === this.d.nodeId && (await this.committedByLane(entry.o.s))) return;
    switch (entry.t) {
      case 'w':
        return this.applyWrite(e, entry);
      case 'ddl':
        return this.applyStatements(e, [`INSERT INTO recall.ddl (idx, state, stmt) VALUES (${e.index}, 'pending', ${sqlHex(entry.item.sql)})`]);
      case 'ddlx':
        return this.applyDdl(e, entry);
    }
  }

  private async applyStatements(e: Entry, sqls: string[]): Promise<void> {
    const c = await this.conn(0);
    const rs = [c.client.query('BEGIN'), ...sqls.map((s) => c.client.query(s)), c.client.query(appliedUpdate(e.index, e.term, entryChecksum(e.data))), c.client.query('COMMIT')];
    for (const r of await Promise.all(rs)) if (r.err) throw new SqlError(r.err.errno, r.err.sqlState, r.err.message);
    this.advance(e.index);
  }

  private async applyWrite(e: Entry, entry: Extract<SqlEntry, { t: 'w' }>): Promise<void> {
    const c = await this.conn(entry.fr);
    const begin = c.client.query('BEGIN');
    const results: Array<[StatementItem, Promise<ResponseAssembler>]> = [];
    for (const item of entry.items) {
      // A statement refused for lack of privileges never ran on the leader; any other failure is
      // replayed (it may have used AUTO_INCREMENT values there) and must fail the same way here.
      if (item.out.e && PRIVILEGE_ERRORS.has(item.out.e)) continue;
      // commands go out in entry order: a prepare is awaited before anything after it is sent
      const ctx = entry.ctxs[item.c]!;
      const { refused, pre } = await this.prepared(c, item, ctx);
      const p = refused ? Promise.resolve(refused) : this.sendPrepared(c, item, ctx, pre);
      p.catch(() => undefined); // a lost connection fails them all; the first one awaited reports it
      results.push([item, p]);
    }
    if (entry.rollback) results.push([ROLLBACK_ITEM, c.client.query('ROLLBACK')]);
    const b = await begin;
    if (b.err) throw new SqlError(b.err.errno, b.err.sqlState, b.err.message);
    for (const [n, [item, p]] of results.entries()) {
      let r: ResponseAssembler;
      try {
        r = await p;
      } catch (err) {
        if (!(err instanceof ContextError)) throw err;
        for (const [, rest] of results.slice(n + 1)) await rest.catch(() => undefined);
        await c.client.query('ROLLBACK');
        return this.diverge(e.index, `statement ${n + 1} of entry ${e.index}: ${err.message}: ${item.sql.slice(0, 200)}`);
      }
      const got = outcomeOf(r);
      if (!sameOutcome(item.out, got)) {
        // drain what is still in flight before rolling back
        for (const [, rest] of results.slice(n + 1)) await rest.catch(() => undefined);
        await c.client.query('ROLLBACK');
        const detail = r.err ? `: ${r.err.message}` : '';
        return this.diverge(
          e.index,
          `statement ${n + 1} of entry ${e.index} gave ${describeOutcome(got)}${detail} here but ${describeOutcome(item.out)} on the leader (node ${entry.o.n}): ${item.sql.slice(0, 200)}`,
        );
      }
    }
    // a rolled-back transaction is replayed (for its AUTO_INCREMENT use) and rolled back again
    if (entry.rollback) await c.client.query('BEGIN');
    const u = c.client.query(appliedUpdate(e.index, e.term, entryChecksum(e.data)));
    const f = c.client.query('COMMIT');
    const ur = await u;
    const fr = await f;
    if (ur.err) throw new SqlError(ur.err.errno, ur.err.sqlState, ur.err.message);
    if (fr.err) throw new SqlError(fr.err.errno, fr.err.sqlState, fr.err.message);
    this.advance(e.index);
  }

  private async applyDdl(e: Entry, x: Extract<SqlEntry, { t: 'ddlx' }>): Promise<void> {
    const c0 = await this.conn(0);
    const rows = SqlClient.rows(await c0.client.run(`SELECT state, errno FROM recall.ddl WHERE idx = ${x.at}`));
    const state = rows[0]?.[0];
    if (state === 'done' || state === 'skipped') {
      // this node executed it as leader before: its own outcome must be the one the log settled on
      const localErr = Number(rows[0]![1] ?? 0);
      if (state === 'done' && localErr !== (x.out.e ?? 0)) {
        return this.diverge(e.index, `DDL at index ${x.at} ended with error ${localErr} here but the cluster recorded ${describeOutcome(x.out)}`);
      }
      return this.applyStatements(e, []);
    }
    if (state !== 'pending') {
      return this.diverge(e.index, `DDL completion for index ${x.at} found no pending intent here (state ${state ?? 'none'})`);
    }
    if (x.out.e) return this.applyStatements(e, [`UPDATE recall.ddl SET state = 'skipped', errno = ${x.out.e} WHERE idx = ${x.at}`]);
    const [intent] = this.d.entries(x.at, x.at + 1);
    if (!intent) return this.diverge(e.index, `the DDL intent at index ${x.at} is no longer in the log`);
    const d = decodeEntry(intent.data);
    if (d.t !== 'ddl') return this.diverge(e.index, `index ${x.at} is not a DDL intent`);
    await c0.client.run(`UPDATE recall.ddl SET state = 'started' WHERE idx = ${x.at}`);
    const c = await this.conn(d.fr);
    let r: ResponseAssembler;
    try {
      r = await this.send(c, d.item, d.ctxs[d.item.c]!);
    } catch (err) {
      if (err instanceof ContextError) return this.diverge(e.index, `DDL at index ${x.at}: ${err.message}`);
      throw err;
    }
    const got = outcomeOf(r);
    if (got.e) {
      return this.diverge(e.index, `DDL at index ${x.at} failed here (${r.err?.message}) but succeeded on the leader: ${d.item.sql.slice(0, 200)}`);
    }
    return this.applyStatements(e, [`UPDATE recall.ddl SET state = 'done', errno = 0 WHERE idx = ${x.at}`]);
  }

  /**
   * Set the statement's database and session variables, then prepare its text on this connection
   * (once per database): a prepared statement resolves its tables in the current database, and
   * a prepare between SET insert_id and the execute would consume it. `refused` is the ERR.
   */
  private async prepared(c: ApplyConn, item: StatementItem, ctx: SysContext): Promise<{ refused: ResponseAssembler | null; pre: Array<Promise<ResponseAssembler>> }> {
    const pre = c.ctx.apply(c.client, ctx);
    if (!item.params) return { refused: null, pre };
    const key = stmtKey(ctx.db, item.sql);
    if (c.stmts.has(key)) return { refused: null, pre };
    const pr = await c.client.prepare(Buffer.from(item.sql, 'latin1'));
    if (pr.err || !pr.prepared) return { refused: pr, pre };
    c.stmts.set(key, pr.prepared.stmtId);
    return { refused: null, pre };
  }

  private async send(c: ApplyConn, item: StatementItem, ctx: SysContext): Promise<ResponseAssembler> {
    const { refused, pre } = await this.prepared(c, item, ctx);
    if (refused) return refused;
    return this.sendPrepared(c, item, ctx, pre);
  }

  /** Send the per-statement SET and the statement now (pipelined, in call order). */
  private sendPrepared(c: ApplyConn, item: StatementItem, ctx: SysContext, pre: Array<Promise<ResponseAssembler>>): Promise<ResponseAssembler> {
    const sql = Buffer.from(item.sql, 'latin1');
    const id = item.params ? c.stmts.get(stmtKey(ctx.db, item.sql)) : undefined;
    const set = statementSet(item, item.pin ? (item.out.i ?? null) : null, c.ctx.ts);
    c.ctx.ts = item.ts;
    if (set) pre.push(c.client.query(set));
    // A context that could not be set here would replay the statement differently: that is divergence.
    const preFailed = Promise.all(pre).then((rs) => rs.find((r) => r.err)?.err ?? null);
    preFailed.catch(() => undefined);
    const check = async (r: ResponseAssembler): Promise<ResponseAssembler> => {
      const e = await preFailed;
      if (e) {
        c.ctx.reset();
        throw new ContextError(`setting the context of the statement failed here: ${e.errno} ${e.message}`);
      }
      return r;
    };
    const infile = item.infile ? Buffer.from(item.infile, 'base64') : undefined;
    if (id === undefined) return c.client.query(sql, { infile }).then(check);
    return c.client.execute(id, Buffer.from(item.params!, 'base64')).then(check);
  }

  private async conn(fr: 0 | 1): Promise<ApplyConn> {
    const have = this.conns.get(fr);
    if (have && !have.client.broken) return have;
    const client = await SqlClient.connect(
      this.d.target,
      {
        capabilities:
          CLIENT_PROTOCOL_41 | CLIENT_TRANSACTIONS | CLIENT_MULTI_RESULTS | CLIENT_PS_MULTI_RESULTS | CLIENT_LOCAL_FILES | CLIENT_LONG_FLAG |
          CLIENT_DEPRECATE_EOF | (fr ? CLIENT_FOUND_ROWS : 0),
        maxPacketSize: this.d.payloadBytesMax,
        charset: 45, // utf8mb4_general_ci
        username: this.d.admin.user,
        stage1: this.d.admin.stage1,
        database: null,
        attributes: [['_recall', 'applier']],
      },
      this.d.payloadBytesMax,
      this.d.connectTimeoutMs,
    );
    const c: ApplyConn = { client, ctx: new ContextTracker(), stmts: new Map() };
    this.conns.set(fr, c);
    return c;
  }
}
