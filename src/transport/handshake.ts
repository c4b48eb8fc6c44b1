// Peer authentication: both sides send Hello {clusterId, nodeId, nonce}; each then
// proves knowledge of the shared cluster secret with an HMAC-SHA256 over both ids
// and both nonces, in a direction-specific order so that a proof cannot be
// reflected back or replayed on another connection.
import crypto from 'node:crypto';

export const NONCE_BYTES = 32;
export const MAC_BYTES = 32;

export interface Hello {
  readonly clusterId: string;
  readonly nodeId: number;
  readonly nonce: Buffer;
}

export function newNonce(): Buffer {
  return crypto.randomBytes(NONCE_BYTES);
}

export function encodeHello(h: Hello): Buffer {
  const cid = Buffer.from(h.clusterId, 'utf8');
  if (cid.length > 255) throw new Error('cluster id longer than 255 bytes');
  const b = Buffer.allocUnsafe(1 + cid.length + 4 + NONCE_BYTES);
  b[0] = cid.length;
  cid.copy(b, 1);
  b.writeUInt32BE(h.nodeId, 1 + cid.length);
  h.nonce.copy(b, 5 + cid.length);
  return b;
}

/** Decode a Hello from an untrusted peer; undefined if malformed. */
export function decodeHello(b: Buffer): Hello | undefined {
  if (b.length < 1) return undefined;
  const n = b[0]!;
  if (b.length !== 1 + n + 4 + NONCE_BYTES) return undefined;
  return {
    clusterId: b.subarray(1, 1 + n).toString('utf8'),
    nodeId: b.readUInt32BE(1 + n),
    nonce: Buffer.from(b.subarray(5 + n)),
  };
}

/** The proof that `prover` (who sent proverNonce) knows the secret, for `verifier`. */
export function authMac(secret: Uint8Array, clusterId: string, prover: Hello, verifier: Hello): Buffer {
  const h = crypto.createHmac('sha256', secret);
  h.update('recall-peer-auth-v1\0');
  h.update(clusterId);
  h.update('\0');
  const ids = Buffer.allocUnsafe(8);
  ids.writeUInt32BE(prover.nodeId, 0);
  ids.writeUInt32BE(verifier.nodeId, 4);
  h.update(ids);
  h.update(verifier.nonce); // the challenge we answer
  h.update(prover.nonce);
  return h.digest();
}

export function macEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}
