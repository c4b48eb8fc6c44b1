// Docker HEALTHCHECK: healthy when the admin HTTP /ready answers 200. Uses node's fetch,
// so the image needs no curl. Follows RECALL_LISTEN_ADMIN when it is overridden.
const listen = process.env.RECALL_LISTEN_ADMIN || '127.0.0.1:8700';
const m = /^(?:\[(.+)\]|(.+)):(\d+)$/.exec(listen);
if (!m || listen === 'off') {
  console.error(`healthcheck: RECALL_LISTEN_ADMIN=${listen} is not host:port`);
  process.exit(1);
}
let host = m[1] ?? m[2];
// A wildcard listener is reached over loopback from inside the container.
if (host === '0.0.0.0' || host === '::') host = '127.0.0.1';
const url = `http://${host.includes(':') ? `[${host}]` : host}:${m[3]}/ready`;
try {
  const r = await fetch(url, { signal: AbortSignal.timeout(4000) });
  if (r.status !== 200) console.error(`healthcheck: ${url} -> ${r.status} ${await r.text()}`);
  process.exit(r.status === 200 ? 0 : 1);
} catch (err) {
  console.error(`healthcheck: ${url}: ${err.cause?.code ?? err.message}`);
  process.exit(1);
}
