// The roles' stored password verifiers, read from pg_authid over Recall's own admin connection
// (the server's superuser on its private socket), one indexed lookup per login as postgres itself
// does, so new roles and changed passwords work at once. Nothing is cached or written anywhere.
import pg from 'pg';
import { parseStoredSecret, type StoredSecret } from '../../protocol/postgres/scram.js';

export interface RoleSecret {
  /** null: the role has no usable password (NULL, or neither SCRAM nor md5). */
  secret: StoredSecret | null;
  /** rolvaliduntil has passed. */
  expired: boolean;
}

export interface AdminConnection {
  host: string; // a socket directory or a TCP host
  port: number;
  user: string;
  password?: string;
  database?: string;
}

/** What the frontend needs from the role store (narrow, so a test or a leader-side store can stand in). */
export interface RoleStore {
  lookup(role: string): Promise<RoleSecret | null>;
  close(): Promise<void>;
}

export class Roles implements RoleStore {
  private client: pg.Client | null = null;
  private connecting: Promise<pg.Client> | null = null;

  constructor(private readonly admin: AdminConnection) {}

  private connect(): Promise<pg.Client> {
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= (async () => {
      const c = new pg.Client({
        host: this.admin.host,
        port: this.admin.port,
        user: this.admin.user,
        password: this.admin.password,
        database: this.admin.database ?? 'postgres',
        application_name: 'recall-admin',
        connectionTimeoutMillis: 10_000,
      });
      // a restart of the server ends this connection: the next lookup opens a new one
      c.on('error', () => this.drop(c));
      c.on('end', () => this.drop(c));
      try {
        await c.connect();
      } catch (e) {
        this.connecting = null;
        throw e;
      }
      this.client = c;
      this.connecting = null;
      return c;
    })();
    return this.connecting;
  }

  private drop(c: pg.Client): void {
    if (this.client === c) this.client = null;
    c.end().catch(() => undefined);
  }

  /** The role's verifier, or null when no such role exists. */
  async lookup(role: string): Promise<RoleSecret | null> {
    const c = await this.connect();
    const r = await c.query<{ rolpassword: string | null; expired: boolean }>(
      'SELECT rolpassword, coalesce(rolvaliduntil < now(), false) AS expired FROM pg_catalog.pg_authid WHERE rolname = $1',
      [role],
    );
    const row = r.rows[0];
    if (!row) return null;
    return { secret: parseStoredSecret(row.rolpassword), expired: row.expired };
  }

  async close(): Promise<void> {
    const c = this.client ?? (this.connecting ? await this.connecting.catch(() => null) : null);
    this.client = null;
    await c?.end().catch(() => undefined);
  }
}
