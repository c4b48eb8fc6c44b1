#!/usr/bin/env node
// A standalone replication node for cluster tests and the benchmark: one RaftNode
// with its own data directory, driven over a line-based TCP control port.
//   node dist/src/engine/cli.js --id 1 --peers 1=127.0.0.1:7001,2=...,3=... \
//        --data /tmp/n1 --control 127.0.0.1:0 [--cluster c] [--tick-ms 10] [--record]
// Prints "ready <controlPort>" on stdout once listening. Control commands, one per
// line, each with a caller-chosen id echoed in the answer (so requests pipeline):
//   propose <id> <text>          -> ok <id> <index> <term> | err <id> <ErrorName> <leader> <message>
//   status <id>                  -> status <id> <json>
//   applied <id> <fromIndex>     -> applied <id> <json [[index, term, text], ...]>   (needs --record)
//   read <id>                    -> read <id> <index> | err ...
//   bench <id> <proposers> <bytes> <ms> -> bench <id> <json {count, ms, p50Ms, p99Ms, errors}>
//   transfer <id>                -> transfer <id> <true|false>
//   add-learner <id> <node> <host:port> | promote <id> <node> | remove <id> <node>
//                                -> ok <id> <index> <term> | err ...   (membership, on the leader)
// --join starts a node that joins an existing cluster (--peers: its members and itself);
// the leader then adds it with add-learner. The snapshot a learner receives is the
// recorded applied list (--record) or empty; the log is compacted only for that.
import net from 'node:net';
import readline from 'node:readline';
import { EntryType, type Entry } from '../consensus/types.js';
import { configureLogging } from '../util/log.js';
import { parseHostPort } from '../transport/transport.js';
import { RaftNode } from './node.js';

function arg(name: string, def?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1]!;
  if (def === undefined) throw new Error(`missing --${name}`);
  return def;
}
const flag = (name: string): boolean => process.argv.includes(`--${name}`);

function parsePeers(s: string): Map<number, string> {
  const m = new Map<number, string>();
  for (const part of s.split(',')) {
    const [id, addr] = part.split('=');
    m.set(Number(id), addr!);
  }
  return m;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function runBench(node: RaftNode, proposers: number, bytes: number, ms: number): Promise<object> {
  const lat: number[] = [];
  let errors = 0;
  let lastError = '';
  const payload = new Uint8Array(bytes).fill(0x61);
  const end = performance.now() + ms;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: proposers }, async () => {
      while (performance.now() < end) {
        const t0 = performance.now();
        try {
          await node.propose(payload);
          lat.push(performance.now() - t0);
        } catch (e) {
          errors++;
          lastError = (e as Error).message;
          await new Promise((r) => setTimeout(r, 5));
        }
      }
    }),
  );
  const elapsed = performance.now() - start;
  lat.sort((a, b) => a - b);
  return { count: lat.length, ms: Math.round(elapsed), p50Ms: percentile(lat, 50), p99Ms: percentile(lat, 99), errors, lastError };
}

async function main(): Promise<void> {
  configureLogging({ debug: flag('debug'), format: 'json', silent: flag('quiet') });
  const id = Number(arg('id'));
  const record = flag('record');
  const applied: [number, number, string][] = [];
  const peers = parsePeers(arg('peers'));
  const node = await RaftNode.open({
    join: flag('join'),
    addressOf: (peer) => peers.get(peer),
    compactEntriesMin: Number.MAX_SAFE_INTEGER,
    snapshotProvider: (index) => Buffer.from(JSON.stringify(record ? applied.filter((a) => a[0] <= index) : [])),
    snapshotInstaller: (s) => {
      applied.length = 0;
      if (record) applied.push(...(JSON.parse(Buffer.from(s.data).toString('utf8') || '[]') as [number, number, string][]));
    },
    id,
    peers,
    dataDir: arg('data'),
    clusterId: arg('cluster', 'recall-test'),
    secret: process.env.RECALL_SECRET ?? arg('secret', 'test-secret'),
    tickMs: Number(arg('tick-ms', '10')),
    inflightMessagesMax: process.argv.includes('--inflight-max') ? Number(arg('inflight-max')) : undefined,
  });
  if (record && node.storage.snapshot().meta.index > 0) {
    applied.push(...(JSON.parse(Buffer.from(node.storage.snapshot().data).toString('utf8') || '[]') as [number, number, string][]));
  }
  node.onCommitted((entries: Entry[]) => {
    if (!record) return;
    for (const e of entries) if (e.type === EntryType.Normal) applied.push([e.index, e.term, Buffer.from(e.data).toString('utf8')]);
  });

  const server = net.createServer((sock) => {
    sock.setNoDelay(true);
    sock.on('error', () => {});
    const out = (line: string): void => {
      if (!sock.destroyed) sock.write(line + '\n');
    };
    const rl = readline.createInterface({ input: sock });
    rl.on('line', (line) => {
      const [cmd, rid = '0', ...rest] = line.split(' ');
      const fail = (e: unknown): void => {
        const err = e as Error & { leader?: number };
        out(`err ${rid} ${err.name} ${err.leader ?? 0} ${err.message.replace(/\n/g, ' ')}`);
      };
      switch (cmd) {
        case 'propose':
          node.propose(Buffer.from(rest.join(' '), 'utf8')).then((r) => out(`ok ${rid} ${r.index} ${r.term}`), fail);
          break;
        case 'status':
          out(`status ${rid} ${JSON.stringify(node.status())}`);
          break;
        case 'applied': {
          const from = Number(rest[0] ?? 0);
          out(`applied ${rid} ${JSON.stringify(applied.filter((a) => a[0] >= from))}`);
          break;
        }
        case 'read':
          node.readIndex().then((i) => out(`read ${rid} ${i}`), fail);
          break;
        case 'bench':
          runBench(node, Number(rest[0]), Number(rest[1]), Number(rest[2])).then((r) => out(`bench ${rid} ${JSON.stringify(r)}`), fail);
          break;
        case 'add-learner':
          node.addLearner(Number(rest[0]), rest[1] ?? '').then((r) => out(`ok ${rid} ${r.index} ${r.term}`), fail);
          break;
        case 'promote':
          node.promote(Number(rest[0])).then((r) => out(`ok ${rid} ${r.index} ${r.term}`), fail);
          break;
        case 'remove':
          node.removeNode(Number(rest[0])).then((r) => out(`ok ${rid} ${r.index} ${r.term}`), fail);
          break;
        case 'transfer':
          node.transferLeadership().then((ok) => out(`transfer ${rid} ${ok}`), fail);
          break;
        default:
          out(`err ${rid} BadCommand 0 unknown command ${JSON.stringify(cmd)}`);
      }
    });
  });
  const ctl = parseHostPort(arg('control', '127.0.0.1:0'));
  await new Promise<void>((r) => server.listen(ctl.port, ctl.host, () => r()));
  process.stdout.write(`ready ${(server.address() as net.AddressInfo).port}\n`);

  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    server.close();
    await node.close({ graceful: true });
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
}

main().catch((e) => {
  process.stderr.write(`engine node failed: ${(e as Error).stack}\n`);
  process.exit(1);
});
