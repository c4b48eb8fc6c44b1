// PostgreSQL protocol codecs: startup packets, error fields, authentication messages, SCRAM against
// the RFC 7677 example and a verifier made by a real postgres, md5; and the message channel fed
// the same bytes split at every offset.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  decodeStartupPacket,
  encodeCancelRequest,
  encodeGSSENCRequest,
  encodeNegotiateProtocolVersion,
  encodeSSLRequest,
  encodeStartupMessage,
} from '../../../src/protocol/postgres/startup.js';
import {
  decodeAuthentication,
  decodeBackendKeyData,
  decodeErrorFields,
  decodePasswordMessage,
  decodeSASLInitialResponse,
  decodeSASLResponse,
  encodeAuthenticationMD5Password,
  encodeAuthenticationSASL,
  encodeAuthenticationSASLContinue,
  encodeBackendKeyData,
  encodeErrorResponse,
  encodePasswordMessage,
  encodeReadyForQuery,
  encodeSASLInitialResponse,
  encodeSASLResponse,
} from '../../../src/protocol/postgres/messages.js';
import {
  md5Hex,
  md5Response,
  parseClientFinalMessage,
  parseClientFirstMessage,
  parseStoredSecret,
  recoverClientKey,
  ScramClient,
  scramKeysFromPassword,
  serverFinalMessage,
} from '../../../src/protocol/postgres/scram.js';
import { PgProtocolError } from '../../../src/protocol/postgres/errors.js';
import { frontendMessageLengthMax } from '../../../src/protocol/postgres/framing.js';
import { MessageChannel } from '../../../src/frontend/postgres/channel.js';

describe('startup packets', () => {
  test('StartupMessage round trip with parameters', () => {
    const b = encodeStartupMessage([['user', 'alice'], ['database', 'app'], ['application_name', 'psql'], ['options', '-c search_path=x']]);
    assert.equal(b.readInt32BE(0), b.length);
    assert.equal(b.readInt32BE(4), 196608);
    const p = decodeStartupPacket(b);
    assert.equal(p.kind, 'StartupMessage');
    if (p.kind !== 'StartupMessage') return;
    assert.equal(p.major, 3);
    assert.equal(p.minor, 0);
    assert.deepEqual([...p.parameters], [['user', 'alice'], ['database', 'app'], ['application_name', 'psql'], ['options', '-c search_path=x']]);
    const v32 = decodeStartupPacket(encodeStartupMessage([['user', 'a']], 3, 2));
    assert.deepEqual(v32.kind === 'StartupMessage' && [v32.major, v32.minor], [3, 2]);
  });

  test('SSLRequest, GSSENCRequest and CancelRequest', () => {
    assert.deepEqual(decodeStartupPacket(encodeSSLRequest()), { kind: 'SSLRequest' });
    assert.deepEqual([...encodeSSLRequest()], [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
    assert.deepEqual(decodeStartupPacket(encodeGSSENCRequest()), { kind: 'GSSENCRequest' });
    assert.deepEqual(decodeStartupPacket(encodeCancelRequest(1234, -5)), { kind: 'CancelRequest', processId: 1234, secretKey: -5 });
  });

  test('malformed startup packets are protocol errors, with postgres wording', () => {
    const b = encodeStartupMessage([['user', 'alice']]);
    const noTerminator = Buffer.from(b.subarray(0, b.length - 1));
    noTerminator.writeInt32BE(noTerminator.length, 0);
    assert.throws(() => decodeStartupPacket(noTerminator), /invalid startup packet layout: expected terminator as last byte/);
    const dangling = encodeStartupMessage([]);
    const bad = Buffer.concat([dangling.subarray(0, 8), Buffer.from('user\0\0')]);
    bad.writeInt32BE(bad.length, 0);
    assert.throws(() => decodeStartupPacket(bad), PgProtocolError);
    const shortCancel = Buffer.from([0, 0, 0, 12, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1]);
    assert.throws(() => decodeStartupPacket(shortCancel), /invalid length of startup packet/);
  });

  test('NegotiateProtocolVersion', () => {
    const b = encodeNegotiateProtocolVersion(0, ['_pq_.x']);
    assert.equal(b[0], 'v'.charCodeAt(0));
    assert.equal(b.readInt32BE(1), b.length - 1);
    assert.equal(b.readInt32BE(5), 0);
    assert.equal(b.readInt32BE(9), 1);
    assert.equal(b.toString('utf8', 13), '_pq_.x\0');
  });
});

describe('messages', () => {
  test('ErrorResponse fields', () => {
    const b = encodeErrorResponse({ severity: 'FATAL', code: '28P01', message: 'password authentication failed for user "a"', detail: 'd', hint: 'h' });
    assert.equal(b[0], 'E'.charCodeAt(0));
    assert.equal(b.readInt32BE(1), b.length - 1);
    assert.deepEqual(
      Object.fromEntries(decodeErrorFields(b)),
      { S: 'FATAL', V: 'FATAL', C: '28P01', M: 'password authentication failed for user "a"', D: 'd', H: 'h' },
    );
  });

  test('ReadyForQuery and BackendKeyData', () => {
    assert.deepEqual([...encodeReadyForQuery(0x49)], [0x5a, 0, 0, 0, 5, 0x49]);
    assert.deepEqual(decodeBackendKeyData(encodeBackendKeyData(77, -1)), { processId: 77, secretKey: -1 });
  });

  test('authentication messages both ways', () => {
    assert.deepEqual(decodeAuthentication(encodeAuthenticationSASL(['SCRAM-SHA-256'])), { code: 10, mechanisms: ['SCRAM-SHA-256'] });
    assert.deepEqual(decodeAuthentication(encodeAuthenticationSASLContinue('r=x,s=y,i=1')), { code: 11, data: 'r=x,s=y,i=1' });
    const salt = Buffer.from([1, 2, 3, 4]);
    assert.deepEqual(decodeAuthentication(encodeAuthenticationMD5Password(salt)), { code: 5, salt });
    assert.equal(decodePasswordMessage(encodePasswordMessage('md5abc')), 'md5abc');
    assert.deepEqual(decodeSASLInitialResponse(encodeSASLInitialResponse('SCRAM-SHA-256', 'n,,n=,r=abc')), { mechanism: 'SCRAM-SHA-256', data: 'n,,n=,r=abc' });
    assert.equal(decodeSASLResponse(encodeSASLResponse('c=biws,r=x,p=y')), 'c=biws,r=x,p=y');
  });

  test('frontend message limits: unknown types, small and large classes', () => {
    assert.equal(frontendMessageLengthMax('Z'.charCodeAt(0), 1 << 30), -1);
    assert.equal(frontendMessageLengthMax('S'.charCodeAt(0), 1 << 30), 10000);
    assert.equal(frontendMessageLengthMax('Q'.charCodeAt(0), 1 << 20), 1 << 20);
  });
});

describe('SCRAM-SHA-256', () => {
  // RFC 7677 section 3
  const password = 'pencil';
  const salt = Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64');
  const clientFirst = 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO';
  const serverFirst = 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096';
  const clientFinal = 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=';
  const serverFinal = 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=';

  test('the server side recovers ClientKey from the RFC 7677 exchange and signs as the RFC does', () => {
    const keys = scramKeysFromPassword(password, salt, 4096);
    const first = parseClientFirstMessage(clientFirst);
    assert.equal(first.clientNonce, 'rOprNGfwEbeRWgbNEkqO');
    assert.equal(first.gs2Header, 'n,,');
    const final = parseClientFinalMessage(clientFinal);
    const authMessage = `${first.clientFirstBare},${serverFirst},${final.withoutProof}`;
    const clientKey = recoverClientKey(keys.storedKey, authMessage, final.proof);
    assert.deepEqual(clientKey, keys.clientKey);
    assert.equal(serverFinalMessage(keys.serverKey, authMessage), serverFinal);
    const wrong = Buffer.from(final.proof);
    wrong[0]! ^= 1;
    assert.equal(recoverClientKey(keys.storedKey, authMessage, wrong), null);
  });

  test('the client side computes the RFC proof from ClientKey alone', () => {
    const keys = scramKeysFromPassword(password, salt, 4096);
    const c = new ScramClient(keys.clientKey, 'rOprNGfwEbeRWgbNEkqO');
    // postgres ignores n=; Recall sends it empty as libpq does, so the AuthMessage differs from the RFC's
    assert.equal(c.clientFirstMessage(), 'n,,n=,r=rOprNGfwEbeRWgbNEkqO');
    const final = c.clientFinalMessage(serverFirst);
    const parsed = parseClientFinalMessage(final);
    const authMessage = `n=,r=rOprNGfwEbeRWgbNEkqO,${serverFirst},${parsed.withoutProof}`;
    assert.deepEqual(recoverClientKey(keys.storedKey, authMessage, parsed.proof), keys.clientKey);
    assert.ok(c.checkServerFinal(serverFinalMessage(keys.serverKey, authMessage), keys.serverKey));
    assert.ok(!c.checkServerFinal('e=invalid-proof', keys.serverKey));
    assert.throws(() => c.clientFinalMessage('r=someoneelse,s=AA==,i=1'), (e: PgProtocolError) => e.detail === 'invalid server nonce');
  });

  test('stored verifiers', () => {
    const keys = scramKeysFromPassword(password, salt, 4096);
    const v = `SCRAM-SHA-256$4096:${salt.toString('base64')}$${keys.storedKey.toString('base64')}:${keys.serverKey.toString('base64')}`;
    assert.deepEqual(parseStoredSecret(v), { kind: 'scram', iterations: 4096, salt, storedKey: keys.storedKey, serverKey: keys.serverKey });
    assert.deepEqual(parseStoredSecret('md5' + md5Hex('secretbob')), { kind: 'md5', hash: md5Hex('secretbob') });
    assert.equal(parseStoredSecret(null), null);
    assert.equal(parseStoredSecret('plaintext'), null);
  });

  test('client messages postgres refuses', () => {
    assert.throws(() => parseClientFirstMessage('p=tls-server-end-point,,n=,r=x'), /malformed SCRAM message/);
    assert.throws(() => parseClientFirstMessage('n,a=admin,n=,r=x'), /malformed SCRAM message/);
    assert.throws(() => parseClientFirstMessage('n,,r=x'), /malformed SCRAM message/);
    assert.deepEqual(parseClientFirstMessage('y,,n=*,r=abc').gs2Header, 'y,,');
    assert.throws(() => parseClientFinalMessage('c=biws,r=abc'), /malformed SCRAM message/);
    assert.throws(() => parseClientFinalMessage('c=biws,r=abc,p=AAAA'), /malformed SCRAM message/);
  });

  test('md5: the client answer computed from the stored hash', () => {
    const stored = md5Hex('bob-pw' + 'bob');
    const salt4 = Buffer.from([9, 8, 7, 6]);
    // what libpq computes from the password
    const fromPassword = 'md5' + md5Hex(Buffer.concat([Buffer.from(md5Hex('bob-pw' + 'bob')), salt4]));
    assert.equal(md5Response(stored, salt4), fromPassword);
  });
});

describe('MessageChannel: whole messages whatever the TCP split', () => {
  test('every split offset gives the same messages and leftover', async () => {
    const startup = encodeStartupMessage([['user', 'alice'], ['database', 'app']]);
    const pw = encodeSASLInitialResponse('SCRAM-SHA-256', 'n,,n=,r=abcdef');
    const tail = Buffer.from('Q\0\0\0\x0dSELECT 1\0');
    const all = Buffer.concat([startup, pw, tail]);
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      for (let cut = 0; cut <= all.length; cut++) {
        const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
        const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
        const sock = await accepted;
        // the server side's 'data' events are delivered here exactly as split (no TCP coalescing involved)
        sock.pause();
        const ch = new MessageChannel(sock);
        const reads = (async () => [await ch.readStartup(), await ch.readMessage(65535, 0x70)])();
        sock.emit('data', all.subarray(0, cut));
        await new Promise((r) => setImmediate(r));
        sock.emit('data', all.subarray(cut));
        const [s, p] = await reads;
        assert.deepEqual(s, startup, `cut ${cut}`);
        assert.deepEqual(p, pw, `cut ${cut}`);
        assert.deepEqual(ch.detach(), tail, `cut ${cut}`);
        client.destroy();
        sock.destroy();
      }
    } finally {
      server.close();
    }
  });

  test('oversized and undersized lengths are refused from the header alone', async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
      const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
      const sock = await accepted;
      sock.pause();
      const ch = new MessageChannel(sock);
      const big = ch.readStartup();
      sock.emit('data', Buffer.from([0, 1, 0, 0]));
      await assert.rejects(big, /invalid length of startup packet/);
      const ch2 = new MessageChannel(sock);
      const small = ch2.readMessage(100);
      sock.emit('data', Buffer.from([0x70, 0, 0, 0, 2]));
      await assert.rejects(small, /invalid message length/);
      client.destroy();
      sock.destroy();
    } finally {
      server.close();
    }
  });
});
