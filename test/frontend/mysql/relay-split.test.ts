// The relay's response scanner fed the real server bytes of captured conversations
// (fixtures/mysql/captured.json), split at every offset and at random 3-way cuts: each time it
// must end with no command pending, i.e. it found the end of every response. Real sockets carry
// the relayed bytes (their far ends just drain them).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import fc from 'fast-check';
import { Relay, type RelayHooks } from '../../../src/frontend/mysql/relay.js';
import { decodeHandshakeResponse41 } from '../../../src/protocol/mysql/handshake.js';

interface Conversation {
  client: string[];
  server: string[];
}
const captured = JSON.parse(fs.readFileSync(path.join(process.cwd(), 'fixtures', 'mysql', 'captured.json'), 'utf8')) as Conversation[];

// Per conversation: the relayed commands and the server packets answering them (after the login,
// before a command Recall would intercept).
const cases = [
  { name: 'mariadb CLI: result set with EOFs, then an error', conv: captured[0]!, commands: [1, 3], responses: [2, 11] },
  { name: 'mysql2: multi results, prepare, binary result set', conv: captured[1]!, commands: [1, 4], responses: [2, 22] },
];

let server: net.Server;
const sockets: net.Socket[] = [];

/** A connected pair of real sockets: [ours, far end that drains]. */
async function socketPair(): Promise<net.Socket> {
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const a = net.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port });
  const b = await accepted;
  b.resume();
  b.on('error', () => undefined);
  a.on('error', () => undefined);
  sockets.push(a, b);
  return a;
}

before(async () => {
  server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
});

after(async () => {
  for (const s of sockets) s.destroy();
  await new Promise<void>((r) => server.close(() => r()));
});

const hooks: RelayHooks = {
  intercept: () => assert.fail('nothing here should be intercepted'),
  fatal: (e) => assert.fail(`unexpected fatal ${e.message}`),
  clientGone: () => undefined,
  backendGone: () => undefined,
};

interface RelayInternals {
  fromClient(b: Buffer): void;
  fromBackend(b: Buffer): void;
}

for (const c of cases) {
  test(`${c.name}: every response end found, whatever the split`, async () => {
    const caps = decodeHandshakeResponse41(Buffer.from(c.conv.client[0]!, 'hex').subarray(4)).capabilities;
    const commands = Buffer.from(c.conv.client.slice(c.commands[0], c.commands[1]).join(''), 'hex');
    const responses = Buffer.from(c.conv.server.slice(c.responses[0], c.responses[1]).join(''), 'hex');
    const client = await socketPair();
    const backend = await socketPair();
    const run = (pieces: Buffer[]): number => {
      const relay = new Relay(client, backend, caps, 1 << 26, 30_000, hooks);
      const inner = relay as unknown as RelayInternals;
      inner.fromClient(commands);
      assert.equal(relay.pendingCount(), c.commands[1] - c.commands[0]);
      for (const p of pieces) inner.fromBackend(p);
      return relay.pendingCount();
    };
    assert.equal(run([responses]), 0);
    for (let cut = 1; cut < responses.length; cut++) {
      assert.equal(run([responses.subarray(0, cut), responses.subarray(cut)]), 0, `split at ${cut}`);
    }
    fc.assert(
      fc.property(fc.nat(responses.length), fc.nat(responses.length), (x, y) => {
        const [a, b] = x < y ? [x, y] : [y, x];
        return run([responses.subarray(0, a), responses.subarray(a, b), responses.subarray(b)]) === 0;
      }),
      { numRuns: 300 },
    );
    // and one byte short never looks finished
    assert.equal(run([responses.subarray(0, responses.length - 1)]), 1);
  });
}
