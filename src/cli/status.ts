// `recall status`: asks a replica's admin HTTP for /status and prints it.
import { parseHostPort } from '../util/ports.js';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export async function statusCommand(args: { admin: string; json?: boolean; timeoutMs?: number }): Promise<number> {
  const hp = parseHostPort(args.admin);
  if (!hp) {
    process.stderr.write(`status: --admin "${args.admin}" is not host:port (example: 127.0.0.1:8700)\n`);
    return 2;
  }
  const url = `http://${hp.host.includes(':') ? `[${hp.host}]` : hp.host}:${hp.port}/status`;
  let body: Json;
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(args.timeoutMs ?? 5000) });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    body = (await r.json()) as Json;
  } catch (err) {
    const c = (err as { cause?: { code?: string; message?: string; errors?: Array<{ code?: string }> } }).cause;
    const cause = c?.code ?? c?.errors?.[0]?.code ?? c?.message;
    process.stderr.write(`status: cannot reach ${url}: ${cause ?? (err as Error).message} (is recall serve running with --listen-admin ${args.admin}?)\n`);
    return 1;
  }
  process.stdout.write(args.json ? JSON.stringify(body, null, 2) + '\n' : formatStatus(body));
  return 0;
}

/** Aligned "key: value" lines; nested objects as "a.b: value". */
export function formatStatus(body: Json): string {
  const lines: [string, string][] = [];
  const walk = (prefix: string, v: Json) => {
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      const entries = Object.entries(v);
      if (entries.length === 0) lines.push([prefix, '-']);
      for (const [k, sub] of entries) walk(prefix ? `${prefix}.${k}` : k, sub);
    } else {
      lines.push([prefix, Array.isArray(v) ? v.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))).join(', ') : String(v)]);
    }
  };
  walk('', body);
  const width = Math.max(...lines.map(([k]) => k.length));
  return lines.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n') + '\n';
}
