// Verifying a client against its role's stored verifier, as PgBouncer does with auth_query:
// SCRAM-SHA-256 yields ClientKey, md5 needs only the stored hash; either is then enough for Recall
// to log in to a server as the same role (backend-login.ts). Unknown roles, roles without a
// password and expired ones go through the same exchange with a mock verifier and get the same
// error, as in postgres, so the answer does not reveal which roles exist.
// https://www.postgresql.org/docs/current/sasl-authentication.html
import { createHmac, randomBytes } from 'node:crypto';
import { MSG_PASSWORD, SCRAM_SHA_256, SQLSTATE_INVALID_PASSWORD } from '../../protocol/postgres/constants.js';
import { PgProtocolError } from '../../protocol/postgres/errors.js';
import {
  decodePasswordMessage,
  decodeSASLInitialResponse,
  decodeSASLResponse,
  encodeAuthenticationMD5Password,
  encodeAuthenticationSASL,
  encodeAuthenticationSASLContinue,
  encodeAuthenticationSASLFinal,
  type PgError,
} from '../../protocol/postgres/messages.js';
import {
  md5Response,
  parseClientFinalMessage,
  parseClientFirstMessage,
  recoverClientKey,
  scramNonce,
  serverFinalMessage,
  serverFirstMessage,
  timingSafeStringEqual,
  type StoredSecret,
} from '../../protocol/postgres/scram.js';
import type { MessageChannel } from './channel.js';
import type { RoleStore } from './roles.js';

/** As pg_hba methods: md5 also accepts SCRAM (roles whose verifier is SCRAM get SCRAM), scram-sha-256 only SCRAM. */
export type AuthMethod = 'scram-sha-256' | 'md5' | 'trust';

/** What Recall holds after a client authenticated: enough to log in as that role, never the password. */
export type Credential =
  | { kind: 'scram'; clientKey: Buffer; serverKey: Buffer }
  | { kind: 'md5'; hash: string }
  | { kind: 'trust' };

export type AuthOutcome = { ok: true; credential: Credential } | { ok: false; error: PgError };

/** postgres' PG_MAX_AUTH_TOKEN_LENGTH. */
const AUTH_TOKEN_BYTES_MAX = 65535;
const MOCK_ITERATIONS = 4096;

export function passwordFailed(user: string): PgError {
  return { severity: 'FATAL', code: SQLSTATE_INVALID_PASSWORD, message: `password authentication failed for user "${user}"` };
}

export async function authenticateClient(
  ch: MessageChannel,
  user: string,
  method: AuthMethod,
  roles: RoleStore,
  mockKey: Buffer,
): Promise<AuthOutcome> {
  if (method === 'trust') return { ok: true, credential: { kind: 'trust' } };
  const role = await roles.lookup(user);
  const secret = role && !role.expired ? role.secret : null;
  if (method === 'md5' && secret?.kind === 'md5') return md5Exchange(ch, user, secret.hash);
  // postgres (password_encryption = scram-sha-256) answers a role without a usable verifier with mock SCRAM
  return scramExchange(ch, user, secret?.kind === 'scram' ? secret : null, mockKey);
}

async function md5Exchange(ch: MessageChannel, user: string, hash: string): Promise<AuthOutcome> {
  const salt = randomBytes(4);
  ch.write(encodeAuthenticationMD5Password(salt));
  const answer = decodePasswordMessage(await ch.readMessage(AUTH_TOKEN_BYTES_MAX, MSG_PASSWORD));
  if (!timingSafeStringEqual(answer, md5Response(hash, salt))) return { ok: false, error: passwordFailed(user) };
  return { ok: true, credential: { kind: 'md5', hash } };
}

/** A verifier that looks real and never matches: salt derived from the role name so repeated tries see the same one. */
function mockSecret(user: string, mockKey: Buffer): Extract<StoredSecret, { kind: 'scram' }> {
  const h = createHmac('sha256', mockKey).update(user).digest();
  return { kind: 'scram', iterations: MOCK_ITERATIONS, salt: h.subarray(0, 16), storedKey: randomBytes(32), serverKey: randomBytes(32) };
}

async function scramExchange(
  ch: MessageChannel,
  user: string,
  real: Extract<StoredSecret, { kind: 'scram' }> | null,
  mockKey: Buffer,
): Promise<AuthOutcome> {
  const secret = real ?? mockSecret(user, mockKey);
  ch.write(encodeAuthenticationSASL([SCRAM_SHA_256]));
  const initial = decodeSASLInitialResponse(await ch.readMessage(AUTH_TOKEN_BYTES_MAX, MSG_PASSWORD));
  if (initial.mechanism !== SCRAM_SHA_256) throw new PgProtocolError('client selected an invalid SASL authentication mechanism');
  if (initial.data === null) throw new PgProtocolError('malformed SCRAM message', '08P01', 'The message is empty.');
  const first = parseClientFirstMessage(initial.data);
  const nonce = first.clientNonce + scramNonce();
  const serverFirst = serverFirstMessage(nonce, secret.salt, secret.iterations);
  ch.write(encodeAuthenticationSASLContinue(serverFirst));
  const final = parseClientFinalMessage(decodeSASLResponse(await ch.readMessage(AUTH_TOKEN_BYTES_MAX, MSG_PASSWORD)));
  if (final.channelBinding !== Buffer.from(first.gs2Header).toString('base64')) {
    throw new PgProtocolError('SCRAM channel binding check failed');
  }
  if (!timingSafeStringEqual(final.nonce, nonce)) throw new PgProtocolError('malformed SCRAM message', '08P01', 'Nonce does not match.');
  const authMessage = `${first.clientFirstBare},${serverFirst},${final.withoutProof}`;
  const clientKey = recoverClientKey(secret.storedKey, authMessage, final.proof);
  if (!real || !clientKey) return { ok: false, error: passwordFailed(user) };
  ch.write(encodeAuthenticationSASLFinal(serverFinalMessage(secret.serverKey, authMessage)));
  return { ok: true, credential: { kind: 'scram', clientKey, serverKey: secret.serverKey } };
}

