// Codec tests against bytes captured from a real mariadbd talking to the real mariadb CLI and
// mysql2 (fixtures/mysql/capture.mjs), their decoded form (fixtures/mysql/decoded.json,
// regenerated with RECALL_REGEN_FIXTURES=1), framing at every split offset, and a fuzz of every
// decoder: bad bytes may only ever raise a ProtocolError.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { PacketFramer, encodePacket, type Packet } from '../../../src/protocol/mysql/packets.js';
import {
  decodeAuthSwitchRequest,
  decodeChangeUser,
  decodeHandshakeResponse41,
  decodeHandshakeV10,
  decodeSslRequest,
  encodeAuthSwitchRequest,
  encodeChangeUser,
  encodeHandshakeResponse41,
  encodeHandshakeV10,
  encodeSslRequest,
  isSslRequest,
} from '../../../src/protocol/mysql/handshake.js';
import { decodeEof, decodeErr, decodeOk, encodeEof, encodeErr, encodeOk } from '../../../src/protocol/mysql/generic.js';
import { ProtocolError } from '../../../src/protocol/mysql/errors.js';
import { PacketReader } from '../../../src/protocol/mysql/reader.js';
import { PacketWriter } from '../../../src/protocol/mysql/writer.js';
import {
  cachingSha2Digest,
  cachingSha2Token,
  decryptRsaPassword,
  generateRsaKeyPair,
  nativeToken,
  parseNativeHash,
  sha1,
  verifyCachingSha2Token,
  verifyNativeToken,
  xor,
} from '../../../src/protocol/mysql/auth.js';
import { CLIENT_PROTOCOL_41, CLIENT_SESSION_TRACK, COM_CHANGE_USER, MARIADB_CLIENT_EXTENDED_METADATA, PACKET_PAYLOAD_MAX } from '../../../src/protocol/mysql/constants.js';
import { publicEncrypt, constants as cryptoConstants } from 'node:crypto';

const fixturesDir = path.join(process.cwd(), 'fixtures', 'mysql');
interface Conversation {
  conversation: number;
  client: string[];
  server: string[];
}
const captured = JSON.parse(fs.readFileSync(path.join(fixturesDir, 'captured.json'), 'utf8')) as Conversation[];
const CAPS = 0xffffffff >>> 0; // decode generic packets as a 4.1 client with every feature

function payloadOf(hex: string): Buffer {
  return Buffer.from(hex, 'hex').subarray(4);
}

/** Decode every captured packet whose type is known from its position or first byte. */
function decodeAll(): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const c of captured) {
    const hs = decodeHandshakeV10(payloadOf(c.server[0]!));
    out[`c${c.conversation}.server.0.HandshakeV10`] = { ...hs, authPluginData: `<${hs.authPluginData.length} bytes>`, connectionId: '<id>' };
    const first = payloadOf(c.client[0]!);
    if (isSslRequest(first)) out[`c${c.conversation}.client.0.SSLRequest`] = decodeSslRequest(first);
    else {
      const r = decodeHandshakeResponse41(first);
      out[`c${c.conversation}.client.0.HandshakeResponse41`] = {
        ...r,
        authResponse: `<${r.authResponse.length} bytes>`,
        attributes: r.attributes.filter(([k]) => k.startsWith('_client') || k === 'program_name'),
      };
    }
    c.client.forEach((hex, i) => {
      const p = payloadOf(hex);
      if (i > 0 && p[0] === COM_CHANGE_USER) {
        const cu = decodeChangeUser(p, CAPS);
        out[`c${c.conversation}.client.${i}.COM_CHANGE_USER`] = { ...cu, authResponse: `<${cu.authResponse.length} bytes>`, attributes: cu.attributes.length };
      }
    });
    c.server.forEach((hex, i) => {
      const p = payloadOf(hex);
      if (p[0] === 0xff) out[`c${c.conversation}.server.${i}.ERR`] = decodeErr(p, CAPS);
      if (p[0] === 0xfe && i > 0 && p.length > 9) out[`c${c.conversation}.server.${i}.AuthSwitchRequest`] = { ...decodeAuthSwitchRequest(p), pluginData: '<scramble>' };
    });
  }
  return out;
}

describe('captured fixtures', () => {
  test('decode to the recorded decoded form', () => {
    const decoded = JSON.parse(JSON.stringify(decodeAll())) as Record<string, unknown>;
    const file = path.join(fixturesDir, 'decoded.json');
    if (process.env.RECALL_REGEN_FIXTURES) fs.writeFileSync(file, JSON.stringify(decoded, null, 1) + '\n');
    const expected = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    assert.deepEqual(decoded, expected);
  });

  test('what the fixtures say, checked by hand', () => {
    const hs = decodeHandshakeV10(payloadOf(captured[0]!.server[0]!));
    assert.equal(hs.protocolVersion, 10);
    assert.match(hs.serverVersion, /MariaDB/);
    assert.equal(hs.authPluginData.length, 20);
    assert.equal(hs.authPluginName, 'mysql_native_password');
    // MariaDB leaves CLIENT_MYSQL unset and advertises extended capabilities, among them extended metadata
    assert.equal(hs.capabilities & 1, 0);
    assert.ok((hs.mariadbCapabilities ?? 0) & MARIADB_CLIENT_EXTENDED_METADATA, `extended caps ${hs.mariadbCapabilities}`);
    const resp = decodeHandshakeResponse41(payloadOf(captured[1]!.client[0]!));
    assert.equal(resp.username, 'root');
    assert.equal(resp.database, 'fx');
    assert.ok(resp.attributes.some(([k, v]) => k === '_client_name' && v === 'Node-MySQL-2'));
    const errs = Object.entries(decodeAll()).filter(([k]) => k.endsWith('.ERR')).map(([, v]) => v as { errno: number; sqlState: string; message: string });
    assert.ok(errs.some((e) => e.errno === 1146 && e.sqlState === '42S02' && /fx.nope/.test(e.message)));
    assert.ok(errs.some((e) => e.errno === 1045 && e.sqlState === '28000'));
  });

  test('a real mysql2 COM_CHANGE_USER token verifies against the password, and a wrong one does not', () => {
    const conv = captured[1]!;
    const scramble = decodeHandshakeV10(payloadOf(conv.server[0]!)).authPluginData;
    const cuHex = conv.client.find((h) => payloadOf(h)[0] === COM_CHANGE_USER)!;
    const cu = decodeChangeUser(payloadOf(cuHex), CAPS);
    assert.equal(cu.username, 'fxu');
    const stage2 = sha1(sha1(Buffer.from('secret')));
    const stage1 = verifyNativeToken(cu.authResponse, scramble, stage2);
    assert.ok(stage1 instanceof Buffer);
    assert.deepEqual(stage1, sha1(Buffer.from('secret')));
    assert.equal(verifyNativeToken(cu.authResponse, scramble, sha1(sha1(Buffer.from('other')))), false);
    // the wrong-password login of conversation 2
    const bad = captured[2]!;
    const r = decodeHandshakeResponse41(payloadOf(bad.client[0]!));
    assert.equal(verifyNativeToken(r.authResponse, decodeHandshakeV10(payloadOf(bad.server[0]!)).authPluginData, stage2), false);
  });

  test('ERR packets re-encode to the same bytes', () => {
    for (const c of captured)
      for (const hex of c.server) {
        const p = payloadOf(hex);
        if (p[0] === 0xff) assert.deepEqual(encodeErr(decodeErr(p, CAPS)), p);
      }
  });

  test('every conversation frames identically when split at every offset', () => {
    for (const c of captured) {
      for (const side of [c.client, c.server]) {
        const stream = Buffer.from(side.join(''), 'hex');
        const whole = framerPackets([stream]);
        assert.equal(whole.length, side.length);
        for (let cut = 1; cut < stream.length; cut++) {
          const split = framerPackets([stream.subarray(0, cut), stream.subarray(cut)]);
          assert.deepEqual(split, whole, `split at ${cut}`);
        }
      }
    }
  });
});

function framerPackets(chunks: Buffer[]): Packet[] {
  const f = new PacketFramer();
  const out: Packet[] = [];
  for (const ch of chunks) {
    f.push(ch);
    for (let p = f.next(); p; p = f.next()) out.push(p);
  }
  assert.equal(f.pendingBytes(), 0);
  return out;
}

describe('framing', () => {
  test('payloads of 16 MiB and more are split into 0xFFFFFF packets and joined back', () => {
    for (const size of [0, 1, PACKET_PAYLOAD_MAX - 1, PACKET_PAYLOAD_MAX, PACKET_PAYLOAD_MAX + 1, 2 * PACKET_PAYLOAD_MAX + 5]) {
      const payload = Buffer.alloc(size, 0x61);
      if (size > 0) payload[size - 1] = 0x7a;
      const framed = encodePacket(payload, 3);
      const packets = Math.floor(size / PACKET_PAYLOAD_MAX) + 1;
      assert.equal(framed.length, size + 4 * packets);
      // sequence ids run on from 3
      assert.equal(framed[3], 3);
      const f = new PacketFramer(64 * 1024 * 1024);
      // deliver in awkward pieces
      for (let off = 0; off < framed.length; off += 7_000_001) f.push(framed.subarray(off, off + 7_000_001));
      const p = f.next()!;
      assert.equal(p.seq, 3);
      assert.equal(p.lastSeq, 3 + packets - 1);
      assert.ok(p.payload.equals(payload));
      assert.equal(f.next(), null);
    }
  });

  test('an oversized or out-of-order continuation is a typed protocol error', () => {
    const f = new PacketFramer(100);
    f.push(Buffer.from([200, 0, 0, 0]));
    assert.throws(() => f.next(), (e: unknown) => e instanceof ProtocolError && e.errno === 1153);
    const g = new PacketFramer();
    const big = encodePacket(Buffer.alloc(PACKET_PAYLOAD_MAX + 1), 0);
    big[4 + PACKET_PAYLOAD_MAX + 3] = 9; // second packet's sequence id
    g.push(big);
    assert.throws(() => g.next(), (e: unknown) => e instanceof ProtocolError && e.errno === 1156);
  });
});

describe('generic packets and handshake round trips', () => {
  test('OK / ERR / EOF', () => {
    const caps = CLIENT_PROTOCOL_41 | CLIENT_SESSION_TRACK;
    const ok = { header: 0, affectedRows: 70000, lastInsertId: 2 ** 40, statusFlags: 0x4002, warnings: 3, info: 'Rows matched: 1', sessionStateChanges: Buffer.from([1, 2, 3]) };
    assert.deepEqual(decodeOk(encodeOk(ok, caps), caps), ok);
    const err = { errno: 1062, sqlState: '23000', message: "Duplicate entry '1' for key 'PRIMARY'" };
    assert.deepEqual(decodeErr(encodeErr(err), CLIENT_PROTOCOL_41), err);
    assert.deepEqual(decodeEof(encodeEof({ warnings: 1, statusFlags: 8 }, caps), caps), { warnings: 1, statusFlags: 8 });
  });

  test('HandshakeV10, HandshakeResponse41, SSLRequest, AuthSwitchRequest, COM_CHANGE_USER', () => {
    const hs = {
      protocolVersion: 10, serverVersion: '5.5.5-10.11.19-MariaDB', connectionId: 42, authPluginData: Buffer.from('abcdefghijklmnopqrst'),
      capabilities: 0x81fff7fe, charset: 45, statusFlags: 2, authPluginName: 'mysql_native_password', mariadbCapabilities: 0x1d,
    };
    assert.deepEqual(decodeHandshakeV10(encodeHandshakeV10(hs)), hs);
    // with CLIENT_MYSQL (bit 0) set, the 4 bytes are filler: nothing extended is sent or read
    assert.equal(decodeHandshakeV10(encodeHandshakeV10({ ...hs, capabilities: hs.capabilities | 1 })).mariadbCapabilities, 0);
    const resp = {
      capabilities: 0x01bfa68c, maxPacketSize: 1 << 24, charset: 224, mariadbCapabilities: 8, username: 'app', authResponse: Buffer.alloc(20, 7), database: 'db',
      authPluginName: 'caching_sha2_password', attributes: [['_client_name', 'x'], ['k', 'v'.repeat(300)]] as Array<[string, string]>,
    };
    const respBytes = encodeHandshakeResponse41(resp);
    assert.deepEqual(decodeHandshakeResponse41(respBytes), resp);
    assert.equal(respBytes.readUInt32LE(28), 8, 'MariaDB extended capabilities at offset 28 of HandshakeResponse41');
    assert.equal(decodeHandshakeResponse41(encodeHandshakeResponse41({ ...resp, capabilities: resp.capabilities | 1 })).mariadbCapabilities, 0);
    const ssl = encodeSslRequest({ capabilities: resp.capabilities, maxPacketSize: 1 << 24, charset: 45, mariadbCapabilities: 8 });
    assert.ok(isSslRequest(ssl));
    assert.equal(decodeSslRequest(ssl).charset, 45);
    assert.equal(decodeSslRequest(ssl).mariadbCapabilities, 8);
    const sw = { pluginName: 'mysql_native_password', pluginData: Buffer.from('01234567890123456789') };
    assert.deepEqual(decodeAuthSwitchRequest(encodeAuthSwitchRequest(sw)), sw);
    const cu = { username: 'u', authResponse: Buffer.alloc(20, 1), database: 'd', charset: 45, authPluginName: 'mysql_native_password', attributes: [['a', 'b']] as Array<[string, string]> };
    assert.deepEqual(decodeChangeUser(encodeChangeUser(cu, resp.capabilities), resp.capabilities), cu);
  });

  test('reader and writer agree on every wire type', () => {
    fc.assert(
      fc.property(fc.nat(), fc.maxSafeNat(), fc.string(), fc.uint8Array({ maxLength: 300 }), (a, big, s, bytes) => {
        const w = new PacketWriter(4).int1(a).int2(a).int3(a).int4(a).int6(a % 2 ** 48).int8(BigInt(big)).lenencInt(big).lenencString(s).nullTerminated(s.replace(/\0/g, '')).lenencBytes(Buffer.from(bytes)).lenencInt(null);
        const r = new PacketReader(w.payload());
        assert.equal(r.int1(), a & 0xff);
        assert.equal(r.int2(), a & 0xffff);
        assert.equal(r.int3(), a & 0xffffff);
        assert.equal(r.int4(), a >>> 0);
        assert.equal(r.int6(), a % 2 ** 48);
        assert.equal(r.int8(), BigInt(big));
        assert.equal(r.lenencInt(), big);
        assert.equal(r.lenencString(), s);
        assert.equal(r.nullTerminatedString(), s.replace(/\0/g, ''));
        assert.deepEqual(r.lenencBytes(), Buffer.from(bytes));
        assert.equal(r.lenencInt(), null);
        assert.ok(r.atEnd());
      }),
    );
  });
});

describe('authentication math', () => {
  test('native hash as MariaDB stores it (PASSWORD("secret"))', () => {
    const stage2 = parseNativeHash('*14E65567ABDB5135D0CFD9A70B3032C179A49EE7')!;
    assert.deepEqual(stage2, sha1(sha1(Buffer.from('secret'))));
    assert.equal(parseNativeHash(''), null);
    assert.throws(() => parseNativeHash('invalid'));
    const scramble = Buffer.from('ABCDEFGHIJKLMNOPQRST');
    assert.deepEqual(verifyNativeToken(nativeToken('secret', scramble), scramble, stage2), sha1(Buffer.from('secret')));
    assert.equal(verifyNativeToken(nativeToken('Secret', scramble), scramble, stage2), false);
    assert.equal(verifyNativeToken(Buffer.alloc(0), scramble, null), null);
    assert.equal(verifyNativeToken(Buffer.alloc(0), scramble, stage2), false);
  });

  test('caching_sha2_password fast path and RSA full path', () => {
    const scramble = Buffer.from('ABCDEFGHIJKLMNOPQRST');
    const digest = cachingSha2Digest(Buffer.from('pw'));
    assert.ok(verifyCachingSha2Token(cachingSha2Token('pw', scramble), scramble, digest));
    assert.ok(!verifyCachingSha2Token(cachingSha2Token('pX', scramble), scramble, digest));
    const keys = generateRsaKeyPair();
    const enc = publicEncrypt({ key: keys.publicKey, padding: cryptoConstants.RSA_PKCS1_OAEP_PADDING }, xor(Buffer.from('pw\0'), scramble));
    assert.equal(decryptRsaPassword(enc, scramble, keys.privateKey).toString(), 'pw');
  });
});

describe('fuzz: decoders only ever throw ProtocolError', () => {
  const decoders: Array<[string, (b: Buffer) => unknown]> = [
    ['HandshakeV10', decodeHandshakeV10],
    ['HandshakeResponse41', decodeHandshakeResponse41],
    ['SSLRequest', decodeSslRequest],
    ['AuthSwitchRequest', decodeAuthSwitchRequest],
    ['COM_CHANGE_USER', (b) => decodeChangeUser(b, CAPS)],
    ['OK', (b) => decodeOk(b, CAPS)],
    ['ERR', (b) => decodeErr(b, CAPS)],
    ['EOF', (b) => decodeEof(b, CAPS)],
    ['framer', (b) => { const f = new PacketFramer(1 << 20); f.push(b); while (f.next()); }],
  ];
  const seeds = captured.flatMap((c) => [...c.client, ...c.server]).map((h) => Buffer.from(h, 'hex'));
  const mutated = fc
    .tuple(fc.constantFrom(...seeds), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }), fc.nat(), fc.boolean())
    .map(([seed, edits, cut, withHeader]) => {
      const b = Buffer.from(withHeader ? seed : seed.subarray(4));
      for (const [pos, v] of edits) if (b.length) b[pos % b.length] = v;
      return b.subarray(0, b.length ? cut % (b.length + 1) : 0);
    });
  const input = fc.oneof(mutated, fc.uint8Array({ maxLength: 200 }).map((u) => Buffer.from(u)));
  for (const [name, decode] of decoders) {
    test(name, () => {
      fc.assert(
        fc.property(input, (b) => {
          try {
            decode(b);
          } catch (e) {
            if (!(e instanceof ProtocolError)) throw e;
          }
        }),
        { numRuns: 3000 },
      );
    });
  }
});
