// Applies committed PostgreSQL entries to the local postgres in log order, exactly once
// (DESIGN.md "Exactly-once apply"), comparing every statement's outcome with the leader's.
//
// Where the applied index lives: a postgres connection belongs to one database, and the index
// must commit in the same transaction as the entry, so every database that receives writes has
// its own `recall.applied` row, updated with each entry applied there. Entries apply strictly in
// order, so after a crash the highest index found in any database is the last one applied (all
// before it committed earlier). Entries without a database (no-ops, membership) advance nothing
// on disk; replaying them is harmless. Statements that cannot run in a transaction block record
// their index in the bookkeeping database (`postgres`), which is never dropped.
import { inflateRawSync } from 'node:zlib';
import type { Entry } from '../../consensus/types.js';
import type { ApplierBaseDeps } from '../dialect.js';
import { ApplierCore } from '../applier-core.js';
import type { Credential } from '../../frontend/postgres/authenticate.js';
import type { BackendTarget } from '../../frontend/postgres/backend-login.js';
import { MSG_COMMAND_COMPLETE, MSG_EMPTY_QUERY_RESPONSE, MSG_ERROR_RESPONSE } from '../../protocol/postgres/constants.js';
import { encodeQuery } from '../../protocol/postgres/messages.js';
import { PgConn, PgConnError, commandTag, encodeExtended, errorOf, ident, literal, replyError, replyRows, type PgReply } from './conn.js';
import { decodePgEntry, describeOutcome, pgEntryChecksum, sameOutcome, type PgEntry, type PgItem, type PgOutcome } from './entry.js';

const ENTRY_NORMAL = 0;

export interface PgApplierOptions {
  target: BackendTarget;
  /** Recall's superuser on the local postgres; credential null where the server trusts it (managed postgres) */
  admin: { user: string; credential: Credential | null };
  connectTimeoutMs: number;
  /** database for Recall's own bookkeeping of statements without a transaction (default postgres) */
  bookkeepingDatabase?: string;
}

export type { ApplierExpectation as PgExpectation } from '../applier-core.js';

export const SCHEMA_SQL = [
  'CREATE SCHEMA IF NOT EXISTS recall',
  'CREATE TABLE IF NOT EXISTS recall.applied (id int PRIMARY KEY, idx bigint NOT NULL, term bigint NOT NULL, checksum bigint NOT NULL)',
  'INSERT INTO recall.applied VALUES (1, 0, 0, 0) ON CONFLICT DO NOTHING',
  // the write lane records the index inside the client's own transaction, as the client's role
  'GRANT USAGE ON SCHEMA recall TO PUBLIC',
  'GRANT SELECT, UPDATE ON recall.applied TO PUBLIC',
];

export function appliedUpdate(index: number, term: number, checksum: number): string {
  return `UPDATE recall.applied SET idx = ${index}, term = ${term}, checksum = ${checksum} WHERE id = 1`;
}

/**
 * The log is the durable record: a transaction that carries an entry may lose its fsync, because
 * recall.applied is lost with it and the entry is applied again from the log after a crash. One
 * fsync (the log's) per write instead of two.
 */
export const NO_FSYNC = 'SET LOCAL synchronous_commit = off';

/** The statement that sets the entry's role (null: the connection's own) and settings for the
 * rest of the transaction (local) or the session. */
export function contextSql(role: string | null, set: Record<string, string>, local: boolean): string {
  const parts = local ? [NO_FSYNC] : [];
  if (local && role !== null) parts.push(`SET LOCAL SESSION AUTHORIZATION ${ident(role)}`);
  const calls = Object.entries(set).map(([k, v]) => `set_config(${literal(k)}, ${literal(v)}, ${local})`);
  if (calls.length) parts.push(`SELECT ${calls.join(', ')}`);
  return parts.join('; ');
}

/** 'ntb' outcomes kept for comparison (one is normally dropped within a round trip). */
const ALONE_OUTCOMES_MAX = 64;

/** What a reply says about a statement: its error, or its (last) command tag. */
export function outcomeOf(r: PgReply): PgOutcome {
  let tag: string | undefined;
  for (const m of r.messages) {
    if (m[0] === MSG_ERROR_RESPONSE) return { e: errorOf(m).code };
    if (m[0] === MSG_COMMAND_COMPLETE) tag = commandTag(m);
    if (m[0] === MSG_EMPTY_QUERY_RESPONSE) tag = '';
  }
  return tag === undefined ? {} : { tag };
}

export function itemMessages(item: PgItem): Buffer[] {
  // The leader failed for its own reasons (a timeout, a lock): fail here the same way, without
  // running it, so the transaction goes on exactly as it did there (aborted, or a ROLLBACK TO).
  if (item.out.nd) return [encodeQuery(`DO $recall$BEGIN RAISE EXCEPTION 'failed on the leader' USING ERRCODE = ${literal(item.out.e ?? 'XX000')}; END$recall$`)];
  if (!item.x) return [encodeQuery(item.q)];
  const values = item.x.values.map((v) => (v === null ? null : Buffer.from(v, 'base64')));
  return encodeExtended(item.q, { types: item.x.types, formats: item.x.formats, values }, [], false);
}

const NO_CREDENTIAL: Credential = { kind: 'trust' };

export class PgApplier extends ApplierCore {
  private readonly conns = new Map<string, PgConn>();
  private readonly schemaReady = new Set<string>();
  /** the lane's admin connections for reading sequences (not the loop's: it may be mid-entry) */
  private readonly side = new Map<string, PgConn>();
  /** this replica's outcome of the 'ntb' entries it ran, by index, until the leader's ('ntbo') arrives */
  private readonly aloneOutcomes = new Map<number, { out: PgOutcome; q: string }>();

  constructor(
    d: ApplierBaseDeps,
    private readonly o: PgApplierOptions,
  ) {
    // the lane commits without an fsync (synchronous_commit off): a crash can lose its entry
    super(d, true);
  }

  get bookkeepingDatabase(): string {
    return this.o.bookkeepingDatabase ?? 'postgres';
  }

  async open(): Promise<void> {
    await this.conn(this.bookkeepingDatabase);
    await this.readApplied();
  }

  /** The highest applied index of any database (see the top of this file). */
  protected async readApplied(): Promise<void> {
    const main = await this.conn(this.bookkeepingDatabase);
    const dbs = replyRows(await main.run('SELECT datname FROM pg_catalog.pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1')).map((r) => r[0]!);
    let max = 0;
    for (const db of dbs) {
      const c = await this.conn(db);
      const has = replyRows(await c.run("SELECT to_regclass('recall.applied') IS NOT NULL"))[0]?.[0] === 't';
      if (!has) continue;
      const rows = replyRows(await c.run('SELECT idx FROM recall.applied WHERE id = 1'));
      max = Math.max(max, Number(rows[0]?.[0] ?? 0));
    }
    this.applied = max;
  }

  /** Make sure `db` has Recall's schema (the lane calls this before its first write there). */
  async ensureSchema(db: string, fromLoop = false): Promise<void> {
    if (this.schemaReady.has(db)) return;
    // the lane's calls get a connection of their own: the loop's may be inside an entry's transaction
    const c = fromLoop ? await this.conn(db) : await this.login(db);
    try {
      for (const s of SCHEMA_SQL) {
        const r = await c.query(s);
        const e = replyError(r);
        // two sessions creating the schema at once: the loser's unique violation is harmless
        if (e && e.code !== '23505' && e.code !== '42P06' && e.code !== '42P07') throw new PgConnError(`${e.code} ${e.message}`);
      }
    } finally {
      if (!fromLoop) c.close();
    }
    this.schemaReady.add(db);
  }

  /** Every sequence of `db` as [regclass text, value, is_called] (the lane's before/after picture). */
  async sequences(db: string): Promise<Map<string, [string, boolean]>> {
    let c = this.side.get(db);
    if (!c || c.broken) {
      c = await this.login(db);
      this.side.set(db, c);
    }
    const r = await c.run("SELECT format('%I.%I', schemaname, sequencename), COALESCE(last_value, start_value)::text, last_value IS NOT NULL FROM pg_catalog.pg_sequences");
    return new Map(replyRows(r).map(([n, v, called]) => [n!, [v!, called === 't']]));
  }

  /** A query of the lane's on the admin side connection of `db` (the lane's lock watch). */
  async sideQuery(db: string, sql: string): Promise<PgReply> {
    let c = this.side.get(db);
    if (!c || c.broken) {
      c = await this.login(db);
      this.side.set(db, c);
    }
    return c.run(sql);
  }

  /** The lane's statement without a transaction block committed at `index`: record it before it runs. */
  async recordAlone(index: number, term: number, checksum: number): Promise<void> {
    await this.ensureSchema(this.bookkeepingDatabase);
    // a connection of its own: the loop's may be in the middle of something
    const c = await this.login(this.bookkeepingDatabase);
    try {
      for (const s of ['BEGIN', appliedUpdate(index, term, checksum), 'COMMIT']) await c.run(s);
    } finally {
      c.close();
    }
  }

  protected dropConnections(): void {
    for (const c of this.conns.values()) c.close();
    this.conns.clear();
    for (const c of this.side.values()) c.close();
    this.side.clear();
    this.schemaReady.clear();
  }

  protected async applyOne(e: Entry): Promise<void> {
    if (e.type !== ENTRY_NORMAL || e.data.length === 0) return this.advance(e.index);
    let entry: PgEntry;
    try {
      entry = decodePgEntry(e.data);
    } catch (err) {
      return this.diverge(e.index, `entry ${e.index} cannot be decoded: ${(err as Error).message}`);
    }
    // the lane gave up but the entry is committed: apply it like any other
    if (entry.o.n === this.d.nodeId && (await this.committedByLane(entry.o.s))) return;
    if (entry.t === 'w') return this.applyWrite(e, entry);
    if (entry.t === 'ntbo') return this.compareAlone(e, entry);
    return this.applyAlone(e, entry);
  }

  private async connFor(e: Entry, db: string): Promise<PgConn | null> {
    try {
      await this.ensureSchema(db, true);
      return await this.conn(db);
    } catch (err) {
      if (err instanceof PgConnError && /\b3D000\b/.test(err.message)) {
        this.diverge(e.index, `entry ${e.index} writes to database ${db}, which does not exist here`);
        return null;
      }
      throw err;
    }
  }

  private async applyWrite(e: Entry, entry: Extract<PgEntry, { t: 'w' }>): Promise<void> {
    const c = await this.connFor(e, entry.db);
    if (!c) return;
    let copies: Array<Buffer | undefined>;
    try {
      copies = entry.items.map((i) => (i.copy === undefined || i.out.nd ? undefined : inflateRawSync(Buffer.from(i.copy, 'base64'))));
    } catch (err) {
      return this.diverge(e.index, `entry ${e.index} holds COPY data that cannot be inflated: ${(err as Error).message}`);
    }
    const replies: Array<[PgItem, Promise<PgReply>]> = [];
    const fire = (msgs: Buffer[], copy?: Buffer) => {
      const p = c.request(msgs, copy);
      p.catch(() => undefined); // a lost connection fails them all; the first one awaited reports it
      return p;
    };
    const begin = fire([encodeQuery('BEGIN')]);
    if (entry.seq?.length) {
      const sets = entry.seq.map(([name, value, called]) => `pg_catalog.setval(${literal(name)}, ${literal(value)}::bigint, ${called})`);
      replies.push([{ q: 'setval', out: {} }, fire([encodeQuery(`SELECT ${sets.join(', ')}`)])]);
    }
    const ctx = fire([encodeQuery(contextSql(entry.role, entry.set, true))]);
    for (const [n, item] of entry.items.entries()) {
      replies.push([item, fire(itemMessages(item), copies[n])]);
    }
    for (const r of [await begin, await ctx]) {
      const err = replyError(r);
      if (err) {
        await c.query('ROLLBACK');
        return this.diverge(e.index, `entry ${e.index}: the role ${entry.role} or the settings cannot be set here: ${err.code} ${err.message}`);
      }
    }
    for (const [n, [item, p]] of replies.entries()) {
      const r = await p;
      const got = outcomeOf(r);
      if (item.q === 'setval' && !item.x && got.tag !== undefined) continue;
      if (!sameOutcome(item.out, got)) {
        for (const [, rest] of replies.slice(n + 1)) await rest.catch(() => undefined);
        await c.query('ROLLBACK');
        const err = replyError(r);
        return this.diverge(
          e.index,
          `statement ${n + 1} of entry ${e.index} gave ${describeOutcome(got)}${err ? ` (${err.message})` : ''} here but ${describeOutcome(item.out)} on the leader (node ${entry.o.n}): ${item.q.slice(0, 200)}`,
        );
      }
    }
    const tail = entry.rollback
      ? // rolled back on the leader too: its sequences moved, its rows did not
        ['ROLLBACK', 'BEGIN', NO_FSYNC]
      : ['SET LOCAL ROLE NONE', 'SET LOCAL SESSION AUTHORIZATION DEFAULT'];
    const rs = await Promise.all([...tail, appliedUpdate(e.index, e.term, pgEntryChecksum(e.data)), 'COMMIT'].map((s) => c.query(s)));
    for (const r of rs) {
      const err = replyError(r);
      if (err) throw new PgConnError(`committing entry ${e.index}: ${err.code} ${err.message}`);
    }
    this.advance(e.index);
  }

  /** A statement that cannot run in a transaction block: the index commits first, then it runs alone. */
  private async applyAlone(e: Entry, entry: Extract<PgEntry, { t: 'ntb' }>): Promise<void> {
    const main = await this.conn(this.bookkeepingDatabase);
    await this.ensureSchema(this.bookkeepingDatabase, true);
    for (const s of ['BEGIN', appliedUpdate(e.index, e.term, pgEntryChecksum(e.data)), 'COMMIT']) await main.run(s);
    // Reported applied only once the statement ran: a client told "done" (CREATE DATABASE) must
    // find its effect here (found by H8's cluster test: 3D000 right after CREATE DATABASE).
    const c = await this.connFor(e, entry.db);
    if (!c) return this.advance(e.index);
    await c.run(`SET SESSION AUTHORIZATION ${ident(entry.role)}`);
    try {
      if (Object.keys(entry.set).length) await c.run(contextSql(null, entry.set, false));
      // the leader runs it after this commit too, so its outcome comes later, in an entry of its
      // own ('ntbo'): keep ours until then
      const r = await c.request(itemMessages(entry.item));
      const err = replyError(r);
      if (err) this.d.log.info('a statement run outside a transaction failed here', { index: e.index, code: err.code, error: err.message, sql: entry.item.q.slice(0, 200) });
      this.aloneOutcomes.set(e.index, { out: outcomeOf(r), q: entry.item.q });
      // the leader's outcome normally follows at once; one that never comes (the leader crashed
      // after running it) leaves nothing to compare with
      for (const k of this.aloneOutcomes.keys()) {
        if (this.aloneOutcomes.size <= ALONE_OUTCOMES_MAX) break;
        this.aloneOutcomes.delete(k);
      }
    } finally {
      // the next entry on this connection starts from the superuser's own session
      c.close();
      this.conns.delete(entry.db);
      this.schemaReady.delete(entry.db);
      this.advance(e.index);
    }
  }

  /** The leader's outcome of an 'ntb' entry: compared with ours, as for the items of a 'w' entry. */
  private compareAlone(e: Entry, entry: Extract<PgEntry, { t: 'ntbo' }>): void {
    const mine = this.aloneOutcomes.get(entry.of);
    this.aloneOutcomes.delete(entry.of);
    // not run by this applier: the leader's lane ran it here, or it ran before a restart (the
    // outcome is kept in memory only) or before the snapshot this replica was copied from
    if (!mine) return this.advance(e.index);
    if (!sameOutcome(entry.out, mine.out)) {
      return this.diverge(
        e.index,
        `the statement of entry ${entry.of} gave ${describeOutcome(mine.out)} here but ${describeOutcome(entry.out)} on the leader (node ${entry.o.n}): ${mine.q.slice(0, 200)}`,
      );
    }
    this.advance(e.index);
  }

  private async conn(db: string): Promise<PgConn> {
    const have = this.conns.get(db);
    if (have && !have.broken) return have;
    const c = await this.login(db);
    this.conns.set(db, c);
    return c;
  }

  private login(db: string): Promise<PgConn> {
    const params = new Map([
      ['user', this.o.admin.user],
      ['database', db],
      ['application_name', 'recall-applier'],
      ['client_encoding', 'UTF8'],
    ]);
    return PgConn.login(this.o.target, params, this.o.admin.credential ?? NO_CREDENTIAL, this.o.connectTimeoutMs);
  }
}
