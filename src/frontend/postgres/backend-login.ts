// Recall's own login to the local postgres as the client's role, with what authentication left
// in the session (ClientKey or the md5 hash): a StartupMessage with the client's parameters, the
// server's authentication request answered, then everything up to the first ReadyForQuery kept
// for the client (AuthenticationOk, ParameterStatus, BackendKeyData, NoticeResponse).
// https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP
import net from 'node:net';
import {
  AUTH_MD5_PASSWORD,
  AUTH_OK,
  AUTH_SASL,
  AUTH_SASL_CONTINUE,
  AUTH_SASL_FINAL,
  MSG_AUTHENTICATION,
  MSG_BACKEND_KEY_DATA,
  MSG_ERROR_RESPONSE,
  MSG_READY_FOR_QUERY,
  SCRAM_SHA_256,
  SQLSTATE_INVALID_AUTHORIZATION,
} from '../../protocol/postgres/constants.js';
import {
  decodeAuthentication,
  decodeBackendKeyData,
  encodePasswordMessage,
  encodeSASLInitialResponse,
  encodeSASLResponse,
  type PgError,
} from '../../protocol/postgres/messages.js';
import { encodeCancelRequest, encodeStartupMessage } from '../../protocol/postgres/startup.js';
import { md5Response, ScramClient } from '../../protocol/postgres/scram.js';
import { MessageChannel } from './channel.js';
import type { Credential } from './authenticate.js';

/** Where client sessions log in: the unix socket in `socketDir` when given, else TCP host:port. */
export interface BackendTarget {
  host: string;
  port: number;
  socketDir?: string;
}

/** Messages of the login are small; a bigger one from the server is broken input. */
const LOGIN_MESSAGE_BYTES_MAX = 1024 * 1024;

export interface BackendSession {
  socket: net.Socket;
  processId: number;
  secretKey: number;
  /** From AuthenticationOk through ReadyForQuery, as the server sent them; BackendKeyData at `keyDataIndex`. */
  greeting: Buffer[];
  keyDataIndex: number;
  /** Bytes after the ReadyForQuery (none in practice). */
  leftover: Buffer;
}

export type LoginResult =
  | { ok: true; session: BackendSession }
  /** `message` is the server's own ErrorResponse (relayed as it is), or Recall's error. */
  | { ok: false; message: Buffer | null; error: PgError | null };

export function connectBackend(t: BackendTarget, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = t.socketDir ? net.connect({ path: `${t.socketDir}/.s.PGSQL.${t.port}` }) : net.connect({ host: t.host, port: t.port });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer from ${describeTarget(t)} within ${timeoutMs} ms`));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.off('error', reject);
      s.setNoDelay(true);
      resolve(s);
    });
    s.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

export function describeTarget(t: BackendTarget): string {
  return t.socketDir ? `${t.socketDir}/.s.PGSQL.${t.port}` : `${t.host}:${t.port}`;
}

function refused(message: string): LoginResult {
  return { ok: false, message: null, error: { severity: 'FATAL', code: SQLSTATE_INVALID_AUTHORIZATION, message } };
}

export async function loginBackend(
  target: BackendTarget,
  parameters: Map<string, string>,
  credential: Credential,
  timeoutMs: number,
): Promise<LoginResult> {
  const socket = await connectBackend(target, timeoutMs);
  socket.on('error', () => undefined);
  const ch = new MessageChannel(socket);
  const timer = setTimeout(() => socket.destroy(), timeoutMs);
  try {
    ch.write(encodeStartupMessage(parameters));
    let scram: ScramClient | null = null;
    for (;;) {
      const m = await ch.readMessage(LOGIN_MESSAGE_BYTES_MAX);
      if (m[0] === MSG_ERROR_RESPONSE) {
        socket.destroy();
        return { ok: false, message: m, error: null };
      }
      if (m[0] !== MSG_AUTHENTICATION) throw new Error(`unexpected message type ${m[0]} from the server during login`);
      const a = decodeAuthentication(m);
      if (a.code === AUTH_OK) {
        const rest = await readGreeting(ch, m);
        if ('refusal' in rest) {
          socket.destroy();
          return { ok: false, message: rest.refusal, error: null };
        }
        return { ok: true, session: { socket, ...rest } };
      }
      if (a.code === AUTH_SASL && 'mechanisms' in a) {
        if (credential.kind !== 'scram' || !a.mechanisms.includes(SCRAM_SHA_256)) {
          socket.destroy();
          return refused(`Recall cannot log in to the local database as this role with SASL (${a.mechanisms.join(', ')}) from a ${credential.kind} login; use the same method for both`);
        }
        scram = new ScramClient(credential.clientKey);
        ch.write(encodeSASLInitialResponse(SCRAM_SHA_256, scram.clientFirstMessage()));
      } else if (a.code === AUTH_SASL_CONTINUE && 'data' in a && scram) {
        ch.write(encodeSASLResponse(scram.clientFinalMessage(a.data)));
      } else if (a.code === AUTH_SASL_FINAL && 'data' in a && scram) {
        // the server proved it knows ServerKey; a mismatch means its verifier changed meanwhile
        if (!scram.checkServerFinal(a.data, null)) throw new Error('the server sent an invalid SCRAM server-final-message');
      } else if (a.code === AUTH_MD5_PASSWORD && 'salt' in a) {
        if (credential.kind !== 'md5') {
          socket.destroy();
          return refused(`Recall cannot answer the local database's md5 request for a role verified with ${credential.kind}`);
        }
        ch.write(encodePasswordMessage(md5Response(credential.hash, a.salt)));
      } else {
        socket.destroy();
        return refused(
          `the local database asked Recall for authentication type ${a.code}, which it cannot answer without the password; its pg_hba.conf must use scram-sha-256, md5 or trust for Recall's connections`,
        );
      }
    }
  } catch (e) {
    socket.destroy();
    throw e;
  } finally {
    clearTimeout(timer);
    ch.detach();
  }
}

/** The rest of the login, or the server's ErrorResponse when it refused the session after authentication
 * (database does not exist, role may not log in, too many clients). */
async function readGreeting(ch: MessageChannel, ok: Buffer): Promise<Omit<BackendSession, 'socket'> | { refusal: Buffer }> {
  const greeting: Buffer[] = [ok];
  let processId = 0;
  let secretKey = 0;
  let keyDataIndex = -1;
  for (;;) {
    const m = await ch.readMessage(LOGIN_MESSAGE_BYTES_MAX);
    if (m[0] === MSG_BACKEND_KEY_DATA) {
      ({ processId, secretKey } = decodeBackendKeyData(m));
      keyDataIndex = greeting.length;
    }
    greeting.push(m);
    if (m[0] === MSG_ERROR_RESPONSE) return { refusal: m };
    if (m[0] === MSG_READY_FOR_QUERY) return { greeting, processId, secretKey, keyDataIndex, leftover: ch.detach() };
  }
}

/** Sends the server a CancelRequest for one of its backends (fire and forget, as libpq does). */
export async function cancelBackend(target: BackendTarget, processId: number, secretKey: number, timeoutMs: number): Promise<void> {
  const s = await connectBackend(target, timeoutMs);
  s.on('error', () => undefined);
  await new Promise<void>((resolve) => {
    s.end(encodeCancelRequest(processId, secretKey));
    // the server closes without answering once it has handled it
    const timer = setTimeout(() => {
      s.destroy();
      resolve();
    }, timeoutMs);
    s.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
    s.resume();
  });
}

