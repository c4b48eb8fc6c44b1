// SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL uses it, and the md5 password scheme, from the
// verifier stored in pg_authid.rolpassword: Recall checks a client without knowing its password,
// recovers ClientKey (SCRAM) or holds the md5 hash, and with either logs in to a server itself.
// https://www.postgresql.org/docs/current/sasl-authentication.html
// Verifier: SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> (base64 fields).
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { PgProtocolError } from './errors.js';

export type StoredSecret =
  | { kind: 'scram'; iterations: number; salt: Buffer; storedKey: Buffer; serverKey: Buffer }
  | { kind: 'md5'; hash: string }; // hash: 32 hex digits of md5(password || username)

/** Parses rolpassword; null for NULL, empty or anything neither SCRAM nor md5 (never stored since PG 10). */
export function parseStoredSecret(rolpassword: string | null): StoredSecret | null {
  if (!rolpassword) return null;
  const m = /^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$/.exec(rolpassword);
  if (m) {
    const storedKey = Buffer.from(m[3]!, 'base64');
    const serverKey = Buffer.from(m[4]!, 'base64');
    const iterations = Number(m[1]);
    if (storedKey.length !== 32 || serverKey.length !== 32 || !(iterations > 0)) return null;
    return { kind: 'scram', iterations, salt: Buffer.from(m[2]!, 'base64'), storedKey, serverKey };
  }
  const h = /^md5([0-9a-f]{32})$/.exec(rolpassword);
  return h ? { kind: 'md5', hash: h[1]! } : null;
}

export function sha256(b: Buffer): Buffer {
  return createHash('sha256').update(b).digest();
}

export function hmacSha256(key: Buffer, data: string | Buffer): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

export function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

/** A nonce of printable characters without ',' (base64 of 18 random bytes, as postgres makes them). */
export function scramNonce(): string {
  return randomBytes(18).toString('base64');
}

function malformed(detail: string): PgProtocolError {
  return new PgProtocolError('malformed SCRAM message', '08P01', detail);
}

export interface ClientFirstMessage {
  /** The GS2 header as sent ("n,," or "y,,"): the client-final's c= must be its base64. */
  gs2Header: string;
  clientFirstBare: string;
  clientNonce: string;
}

/** client-first-message = gs2-header client-first-message-bare; no channel binding is offered, so 'p=' is refused. */
export function parseClientFirstMessage(data: string): ClientFirstMessage {
  const flag = data[0];
  if (flag === 'p') throw malformed('The client selected SCRAM-SHA-256-PLUS, but the server does not offer channel binding.');
  if ((flag !== 'n' && flag !== 'y') || data[1] !== ',') throw malformed('Unexpected channel-binding flag.');
  const authzEnd = data.indexOf(',', 2);
  if (authzEnd < 0) throw malformed('Comma expected.');
  if (authzEnd !== 2) throw malformed('client uses authorization identity, but it is not supported');
  const gs2Header = data.slice(0, authzEnd + 1);
  const clientFirstBare = data.slice(authzEnd + 1);
  const attrs = clientFirstBare.split(',');
  // postgres ignores the user name in n= (the startup packet's user is the one authenticated)
  if (!attrs[0]?.startsWith('n=')) throw malformed('Expected attribute "n".');
  const r = attrs[1];
  if (!r?.startsWith('r=') || r.length < 3) throw malformed('Expected attribute "r".');
  const clientNonce = r.slice(2);
  if (!/^[\x21-\x2b\x2d-\x7e]+$/.test(clientNonce)) throw malformed('Invalid nonce.');
  return { gs2Header, clientFirstBare, clientNonce };
}

export function serverFirstMessage(nonce: string, salt: Buffer, iterations: number): string {
  return `r=${nonce},s=${salt.toString('base64')},i=${iterations}`;
}

export interface ClientFinalMessage {
  channelBinding: string; // base64 of the GS2 header
  nonce: string;
  proof: Buffer;
  withoutProof: string;
}

export function parseClientFinalMessage(data: string): ClientFinalMessage {
  const attrs = data.split(',');
  const c = attrs[0];
  if (!c?.startsWith('c=')) throw malformed('Expected attribute "c".');
  const r = attrs[1];
  if (!r?.startsWith('r=')) throw malformed('Expected attribute "r".');
  const p = attrs[attrs.length - 1];
  if (attrs.length < 3 || !p?.startsWith('p=')) throw malformed('Expected attribute "p".');
  const proof = Buffer.from(p.slice(2), 'base64');
  if (proof.length !== 32) throw malformed('Malformed proof in client-final-message.');
  return { channelBinding: c.slice(2), nonce: r.slice(2), proof, withoutProof: data.slice(0, data.length - p.length - 1) };
}

/** ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage), accepted when H(ClientKey) = StoredKey; else null. */
export function recoverClientKey(storedKey: Buffer, authMessage: string, proof: Buffer): Buffer | null {
  const clientKey = xor(proof, hmacSha256(storedKey, authMessage));
  return timingSafeEqual(sha256(clientKey), storedKey) ? clientKey : null;
}

export function serverFinalMessage(serverKey: Buffer, authMessage: string): string {
  return `v=${hmacSha256(serverKey, authMessage).toString('base64')}`;
}

/** The SaltedPassword-derived keys of a password (for tests and for making verifiers). */
export function scramKeysFromPassword(password: string, salt: Buffer, iterations: number): { clientKey: Buffer; storedKey: Buffer; serverKey: Buffer } {
  // Hi() of RFC 5802 is PBKDF2 with HMAC-SHA-256 and a 32-byte output
  const salted = pbkdf2Sync(password, salt, iterations, 32, 'sha256');
  const clientKey = hmacSha256(salted, 'Client Key');
  return { clientKey, storedKey: sha256(clientKey), serverKey: hmacSha256(salted, 'Server Key') };
}

/**
 * The client side of SCRAM-SHA-256 when only ClientKey is known (Recall logging in to the local
 * server as the client's role): ClientProof = ClientKey XOR HMAC(H(ClientKey), AuthMessage).
 */
export class ScramClient {
  readonly clientFirstBare: string;
  private authMessage = '';

  constructor(
    private readonly clientKey: Buffer,
    private readonly nonce = scramNonce(),
  ) {
    this.clientFirstBare = `n=,r=${nonce}`;
  }

  clientFirstMessage(): string {
    return `n,,${this.clientFirstBare}`;
  }

  clientFinalMessage(serverFirst: string): string {
    const attrs = serverFirst.split(',');
    const r = attrs.find((a) => a.startsWith('r='))?.slice(2);
    if (!r || !r.startsWith(this.nonce) || r.length === this.nonce.length) throw malformed('invalid server nonce');
    const withoutProof = `c=biws,r=${r}`;
    this.authMessage = `${this.clientFirstBare},${serverFirst},${withoutProof}`;
    const proof = xor(this.clientKey, hmacSha256(sha256(this.clientKey), this.authMessage));
    return `${withoutProof},p=${proof.toString('base64')}`;
  }

  /** The server's signature checked against the ServerKey Recall read (null: not checked). */
  checkServerFinal(serverFinal: string, serverKey: Buffer | null): boolean {
    if (serverFinal.startsWith('e=')) return false;
    if (!serverKey) return serverFinal.startsWith('v=');
    return serverFinal === serverFinalMessage(serverKey, this.authMessage);
  }
}

export function md5Hex(s: string | Buffer): string {
  return createHash('md5').update(s).digest('hex');
}

/** What a client sends for md5: "md5" + md5(md5(password || user) || salt), from the stored hash. */
export function md5Response(storedHash: string, salt: Buffer): string {
  return 'md5' + md5Hex(Buffer.concat([Buffer.from(storedHash), salt]));
}

export function timingSafeStringEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
