// Local database URIs: mysql://user:pass@host:port/db, mysql://root@localhost/?socket=/path,
// postgres://user:pass@host:port/db (also postgresql://, mariadb://).

export interface Dsn {
  engine: 'mysql' | 'postgres';
  host?: string;
  port?: number;
  socketPath?: string;
  user: string;
  password: string;
  database?: string;
}

/** Parses a DSN; throws an Error whose message says what is wrong (the caller names the key). */
export function parseDsn(text: string): Dsn {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new Error(`"${text}" is not a URI`);
  }
  const scheme = u.protocol.replace(/:$/, '');
  const engine = scheme === 'mysql' || scheme === 'mariadb' ? 'mysql' : scheme === 'postgres' || scheme === 'postgresql' ? 'postgres' : undefined;
  if (!engine) throw new Error(`"${text}" has scheme "${scheme}", expected mysql:// or postgres://`);
  const socketPath = u.searchParams.get('socket') ?? u.searchParams.get('host') ?? undefined;
  const host = u.hostname ? u.hostname.replace(/^\[|\]$/g, '') : undefined;
  if (!host && !socketPath) throw new Error(`"${text}" names neither a host nor a ?socket=`);
  let port: number | undefined;
  if (u.port) {
    port = Number(u.port);
    if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new Error(`"${text}" has an invalid port`);
  }
  const database = decodeURIComponent(u.pathname.replace(/^\//, '')) || undefined;
  return {
    engine,
    host,
    port,
    socketPath: socketPath || undefined,
    user: decodeURIComponent(u.username) || (engine === 'mysql' ? 'root' : 'postgres'),
    password: decodeURIComponent(u.password),
    database,
  };
}

/** A DSN for a local server reached over a unix socket. */
export function socketDsn(engine: 'mysql' | 'postgres', socketPath: string, user = 'root'): string {
  return `${engine}://${encodeURIComponent(user)}@localhost/?socket=${encodeURIComponent(socketPath)}`;
}
