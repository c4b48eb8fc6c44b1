// Authentication math for the plugins Recall verifies itself.
// mysql_native_password: https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_authentication_methods_native_password_authentication.html
// caching_sha2_password: https://dev.mysql.com/doc/dev/mysql-server/latest/page_caching_sha2_authentication_exchanges.html
import { createHash, generateKeyPairSync, privateDecrypt, randomBytes, constants as cryptoConstants, timingSafeEqual } from 'node:crypto';

export function sha1(...parts: Buffer[]): Buffer {
  const h = createHash('sha1');
  for (const p of parts) h.update(p);
  return h.digest();
}

export function sha256(...parts: Buffer[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

export function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i % b.length]!;
  return out;
}

/** A 20-byte scramble of printable bytes without NUL or '$' (clients treat the scramble as a C string). */
export function newScramble(): Buffer {
  const b = randomBytes(20);
  for (let i = 0; i < b.length; i++) {
    let v = (b[i]! % 94) + 33; // '!'..'~'
    if (v === 0x24) v = 0x25;
    b[i] = v;
  }
  return b;
}

/** Stored native hash text ("*" + 40 hex) to SHA1(SHA1(password)); null for the empty password; throws on junk. */
export function parseNativeHash(stored: string): Buffer | null {
  if (stored === '') return null;
  if (!/^\*[0-9A-Fa-f]{40}$/.test(stored)) throw new Error('not a mysql_native_password hash');
  return Buffer.from(stored.slice(1), 'hex');
}

/** Client token for mysql_native_password: SHA1(pw) XOR SHA1(scramble + SHA1(SHA1(pw))), computed from stage1 = SHA1(pw). */
export function nativeTokenFromStage1(stage1: Buffer | null, scramble: Buffer): Buffer {
  if (stage1 === null) return Buffer.alloc(0);
  return xor(stage1, sha1(scramble.subarray(0, 20), sha1(stage1)));
}

export function nativeToken(password: string, scramble: Buffer): Buffer {
  return password === '' ? Buffer.alloc(0) : nativeTokenFromStage1(sha1(Buffer.from(password, 'utf8')), scramble);
}

/**
 * Verify a native token against the stored SHA1(SHA1(pw)); returns stage1 = SHA1(pw) on success
 * (what Recall needs to log in to the backend), `null` for a matching empty password, false on mismatch.
 */
export function verifyNativeToken(token: Buffer, scramble: Buffer, stage2: Buffer | null): Buffer | null | false {
  if (stage2 === null) return token.length === 0 ? null : false;
  if (token.length !== 20) return false;
  const stage1 = xor(token, sha1(scramble.subarray(0, 20), stage2));
  return timingSafeEqual(sha1(stage1), stage2) ? stage1 : false;
}

/** caching_sha2_password client scramble: SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + scramble). */
export function cachingSha2Token(password: string, scramble: Buffer): Buffer {
  if (password === '') return Buffer.alloc(0);
  const h1 = sha256(Buffer.from(password, 'utf8'));
  return xor(h1, sha256(sha256(h1), scramble.subarray(0, 20)));
}

/** Fast path: verify a caching_sha2 token against a cached SHA256(SHA256(pw)). */
export function verifyCachingSha2Token(token: Buffer, scramble: Buffer, h2: Buffer): boolean {
  if (token.length !== 32) return false;
  const h1 = xor(token, sha256(h2, scramble.subarray(0, 20)));
  return timingSafeEqual(sha256(h1), h2);
}

export function cachingSha2Digest(password: Buffer): Buffer {
  return sha256(sha256(password));
}

export interface RsaKeyPair {
  publicKey: string;
  privateKey: string;
}

export function generateRsaKeyPair(): RsaKeyPair {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return { publicKey, privateKey };
}

/** Decrypt the RSA-OAEP (SHA-1) password a client sends without TLS: (password + NUL) XOR scramble. */
export function decryptRsaPassword(encrypted: Buffer, scramble: Buffer, privateKey: string): Buffer {
  const plain = privateDecrypt({ key: privateKey, padding: cryptoConstants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, encrypted);
  const pw = xor(plain, scramble.subarray(0, 20));
  return stripNul(pw);
}

/** The plaintext password a client sends over TLS, NUL-terminated. */
export function stripNul(b: Buffer): Buffer {
  const end = b.indexOf(0);
  return end < 0 ? b : b.subarray(0, end);
}
