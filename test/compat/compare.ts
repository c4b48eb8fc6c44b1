// Helpers to compare what a client saw on the two sides: values made canonical (Buffers, Dates,
// bigints as tagged strings), field metadata reduced to what the wire carries, and the database
// name replaced so the two sides' schemas compare equal.
import net from 'node:net';
import { normalizeDb, type Target } from './env.js';

export function canon(v: unknown): unknown {
  if (Buffer.isBuffer(v)) return `hex:${v.toString('hex')}`;
  if (v instanceof Date) return `date:${Number.isNaN(v.getTime()) ? 'invalid' : v.toISOString()}`;
  if (typeof v === 'bigint') return `bigint:${v}`;
  if (Array.isArray(v)) return v.map(canon);
  if (v !== null && typeof v === 'object') {
    const o: Record<string, unknown> = {};
    for (const k of Object.keys(v)) o[k] = canon((v as Record<string, unknown>)[k]);
    return o;
  }
  return v;
}

interface FieldLike {
  name: string;
  orgName?: string;
  table?: string;
  orgTable?: string;
  db?: string;
  schema?: string;
  columnType?: number;
  type?: number;
  flags?: number;
  characterSet?: number;
  columnLength?: number;
  decimals?: number;
}

export function fieldMeta(fields: unknown): unknown {
  if (!Array.isArray(fields)) return fields;
  return fields.map((f: FieldLike | FieldLike[] | undefined) =>
    f === undefined || f === null
      ? null
      : Array.isArray(f)
      ? fieldMeta(f)
      : {
          name: f.name, orgName: f.orgName, table: f.table, orgTable: f.orgTable, db: f.db ?? f.schema,
          type: f.columnType ?? f.type, flags: f.flags, charset: f.characterSet, length: f.columnLength,
          decimals: f.decimals,
        },
  );
}

/** A canonical JSON text of a result, with the side's database name replaced. */
export function show(t: Target, v: unknown): string {
  return normalizeDb(JSON.stringify(canon(v)), t);
}

/**
 * A transparent TCP relay that rewrites the auth plugin name in the server's first packet
 * (the handshake), so that a client which follows the server's choice — mysql2, PyMySQL — starts
 * with `to` instead. Both names are 21 bytes, so the packet length does not change.
 */
export async function pluginRewriter(
  port: number,
  from: string,
  to: string,
): Promise<{ port: number; close(): Promise<void> }> {
  if (from.length !== to.length) throw new Error('plugin names must have the same length');
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1');
    sockets.add(client).add(upstream);
    let first: Buffer | null = Buffer.alloc(0);
    upstream.on('data', (d: Buffer) => {
      if (first === null) return void client.write(d);
      first = Buffer.concat([first, d]);
      if (first.length < 4 || first.length < 4 + first.readUIntLE(0, 3)) return;
      const at = first.indexOf(Buffer.from(`${from}\0`));
      if (at >= 0) Buffer.from(to).copy(first, at);
      client.write(first);
      first = null;
    });
    client.on('data', (d) => upstream.write(d));
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address() as net.AddressInfo;
  return {
    port: addr.port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Paths (up to `max`) where two JSON values differ, each with both values, short. */
export function differences(a: unknown, b: unknown, max = 12, path = '$', out: string[] = []): string[] {
  if (out.length >= max) return out;
  const short = (v: unknown): string => {
    const t = JSON.stringify(v) ?? String(v);
    return t.length > 160 ? `${t.slice(0, 160)}…(${t.length} chars)` : t;
  };
  if (a !== null && b !== null && typeof a === 'object' && typeof b === 'object' && Array.isArray(a) === Array.isArray(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of keys) {
      differences((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], max, `${path}.${k}`, out);
    }
    return out;
  }
  if (JSON.stringify(a) !== JSON.stringify(b)) out.push(`${path}: direct ${short(a)} | recall ${short(b)}`);
  return out;
}

/** Asserts two canonical JSON texts are equal; on failure lists where they differ. */
export function assertSame(recall: string, direct: string, what: string): void {
  if (recall === direct) return;
  let diffs: string[];
  try {
    diffs = differences(JSON.parse(direct), JSON.parse(recall));
  } catch {
    let i = 0;
    while (i < recall.length && recall[i] === direct[i]) i++;
    diffs = [`at character ${i}: direct …${direct.slice(i, i + 200)} | recall …${recall.slice(i, i + 200)}`];
  }
  throw new Error(`${what}: through Recall differs from direct:\n  ${diffs.join('\n  ')}`);
}
