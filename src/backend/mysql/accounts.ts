// Reads the local database's accounts (user, host, plugin, stored hash) over an admin
// connection, the way ProxySQL does, so Recall can verify clients itself. All accounts are
// read at start; an unknown user or a failed verification re-reads that user's rows only (one
// indexed query, no waiting), so new users and changed passwords are picked up without a
// restart and a wrong password is refused as fast as by MariaDB itself.
import mysql from 'mysql2/promise';
import type { BackendTarget } from './connection.js';

export interface Account {
  user: string;
  host: string;
  /** Plugin Recall would verify with ('mysql_native_password' when stored empty). */
  plugin: string;
  /** Stored authentication string (native: '*' + 40 hex, or '' for no password). */
  authString: string;
}

export interface AccountsOptions extends BackendTarget {
  adminUser: string;
  adminPassword: string;
  /** Host names the backend sees for Recall's own connections (for account matching). */
  localHosts: string[];
}

interface GlobalPrivAlt {
  plugin?: string;
  authentication_string?: string;
}

/** Turn one mysql.global_priv JSON into the alternative Recall can verify, if any. */
export function accountFromGlobalPriv(user: string, host: string, privJson: string | object): Account {
  let priv: GlobalPrivAlt & { auth_or?: GlobalPrivAlt[] } = {};
  try {
    // mysql2 may hand JSON columns over already parsed
    priv = (typeof privJson === 'string' ? JSON.parse(privJson) : privJson) as typeof priv;
    if (priv === null || typeof priv !== 'object') throw new Error('not an object');
  } catch {
    return { user, host, plugin: 'unreadable', authString: '' };
  }
  // MariaDB keeps alternatives in auth_or ("IDENTIFIED VIA a OR b"); the top level is the last one.
  const alts: GlobalPrivAlt[] = [...(priv.auth_or ?? []).filter((a) => a && a.plugin), priv];
  const usable = alts.find(
    (a) => (!a.plugin || a.plugin === 'mysql_native_password') && a.authentication_string !== 'invalid',
  );
  if (usable) return { user, host, plugin: 'mysql_native_password', authString: usable.authentication_string ?? '' };
  return { user, host, plugin: priv.plugin ?? 'unknown', authString: priv.authentication_string ?? '' };
}

/** MySQL/MariaDB host pattern (% and _ wildcards) match. */
export function hostMatches(pattern: string, host: string): boolean {
  if (pattern === '' || pattern === '%') return true;
  const re = new RegExp(
    '^' +
      pattern
        .split('')
        .map((c) => (c === '%' ? '.*' : c === '_' ? '.' : c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
        .join('') +
      '$',
    'i',
  );
  return re.test(host);
}

/** Sort key: exact hosts first, then wildcard patterns with a longer literal prefix, then '%'. */
function hostSpecificity(pattern: string): number {
  const w = pattern.search(/[%_]/);
  if (pattern === '' || pattern === '%') return 0;
  if (w < 0) return 100000;
  return w + 1;
}

/** Pick the account the backend will use for `user` arriving from one of `hosts`, as MariaDB's ordering does. */
export function matchAccount(accounts: Account[], user: string, hosts: string[]): Account | null {
  const candidates = accounts.filter((a) => (a.user === user || a.user === '') && hosts.some((h) => hostMatches(a.host, h)));
  candidates.sort((a, b) => hostSpecificity(b.host) - hostSpecificity(a.host) || (b.user === '' ? 0 : 1) - (a.user === '' ? 0 : 1));
  return candidates[0] ?? null;
}

export class Accounts {
  private list: Account[] = [];
  private pool: mysql.Pool;
  private refreshing: Promise<void> | null = null;
  /** Per-user re-reads in flight, so a burst of failures for one user costs one query. */
  private readonly userReads = new Map<string, Promise<void>>();

  constructor(private readonly opts: AccountsOptions) {
    this.pool = mysql.createPool({
      ...(opts.socketPath ? { socketPath: opts.socketPath } : { host: opts.host ?? '127.0.0.1', port: opts.port ?? 3306 }),
      user: opts.adminUser,
      password: opts.adminPassword,
      connectionLimit: 1,
      maxIdle: 1,
      idleTimeout: 60000,
    });
  }

  /** Re-read all accounts now (coalesced with a refresh already running). */
  refresh(): Promise<void> {
    if (!this.refreshing) this.refreshing = this.load(null).finally(() => (this.refreshing = null));
    return this.refreshing;
  }

  /** Re-read the rows of `user` and of the anonymous user (which may shadow it). */
  private refreshUser(user: string): Promise<void> {
    let p = this.userReads.get(user);
    if (!p) {
      p = this.load([user, '']).finally(() => this.userReads.delete(user));
      this.userReads.set(user, p);
    }
    return p;
  }

  /** Read accounts: all of them (`users` null) or only those users' rows, replacing what we had. */
  private async load(users: string[] | null): Promise<void> {
    const where = users ? ' WHERE User IN (?)' : '';
    let read: Account[];
    try {
      const [rows] = await this.pool.query(`SELECT User AS user, Host AS host, Priv AS priv FROM mysql.global_priv${where}`, [users]);
      read = (rows as Array<{ user: string; host: string; priv: string | object }>).map((r) =>
        accountFromGlobalPriv(String(r.user), String(r.host), r.priv),
      );
    } catch (e) {
      // MySQL 8 has no global_priv: its mysql.user carries plugin and authentication_string.
      if ((e as { errno?: number }).errno !== 1146) throw e;
      const [rows] = await this.pool.query(
        `SELECT User AS user, Host AS host, plugin, authentication_string AS auth FROM mysql.user${where}`,
        [users],
      );
      read = (rows as Array<{ user: string; host: string; plugin: string; auth: string | null }>).map((r) => ({
        user: String(r.user),
        host: String(r.host),
        plugin: r.plugin || 'mysql_native_password',
        authString: r.auth === null ? '' : String(r.auth),
      }));
    }
    this.list = users ? [...this.list.filter((a) => !users.includes(a.user)), ...read] : read;
  }

  /**
   * Account for a user. An unknown user (maybe a new one) or `stale` (a failed verification: maybe
   * a changed password) re-reads that user's rows first; the client never waits for a timer.
   */
  async lookup(user: string, stale = false): Promise<Account | null> {
    let a = matchAccount(this.list, user, this.opts.localHosts);
    if (a === null || stale) {
      await this.refreshUser(user);
      a = matchAccount(this.list, user, this.opts.localHosts);
    }
    return a;
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
