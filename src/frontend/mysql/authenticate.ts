// Verifying a client against the database's stored account hashes, as ProxySQL does, so that
// Recall can log in to the backend as that account with stage1 = SHA1(password).
// mysql_native_password:  verify the token, recover stage1.
// caching_sha2_password:  fast path from a cache of SHA256(SHA256(pw)); else full authentication
//                         (plaintext over TLS, RSA-OAEP without), checked against the native hash.
// https://dev.mysql.com/doc/dev/mysql-server/latest/page_caching_sha2_authentication_exchanges.html
import {
  AUTH_CACHING_SHA2,
  AUTH_NATIVE,
  CACHING_SHA2_FAST_AUTH_SUCCESS,
  CACHING_SHA2_PERFORM_FULL_AUTHENTICATION,
  CACHING_SHA2_REQUEST_PUBLIC_KEY,
  ER_ACCESS_DENIED_ERROR,
} from '../../protocol/mysql/constants.js';
import { encodeAuthMoreData, encodeAuthSwitchRequest } from '../../protocol/mysql/handshake.js';
import {
  cachingSha2Digest,
  decryptRsaPassword,
  parseNativeHash,
  sha1,
  stripNul,
  verifyCachingSha2Token,
  verifyNativeToken,
  type RsaKeyPair,
} from '../../protocol/mysql/auth.js';
import type { Account, Accounts } from '../../backend/mysql/accounts.js';
import type { PacketChannel } from '../../backend/mysql/channel.js';
import { timingSafeEqual } from 'node:crypto';

/** Per-account secrets learned from a successful full authentication (in memory only). */
export interface Sha2CacheEntry {
  authString: string;
  digest: Buffer; // SHA256(SHA256(pw))
  stage1: Buffer | null;
}

export interface AuthContext {
  channel: PacketChannel;
  scramble: Buffer;
  isTls: boolean;
  rsa: RsaKeyPair;
  accounts: Accounts;
  sha2Cache: Map<string, Sha2CacheEntry>;
  /** Host shown in "Access denied for user 'u'@'host'". */
  clientHost: string;
  /** Plugin named with `scramble` (handshake or last auth switch): a token for another plugin was not computed for us. */
  scramblePlugin: string;
}

export type AuthOutcome =
  | { ok: true; stage1: Buffer | null; nextSeq: number; account: Account }
  | { ok: false; errno: number; sqlState: string; message: string; nextSeq: number };

function denied(user: string, ctx: AuthContext, usingPassword: boolean, nextSeq: number, why?: string): AuthOutcome {
  const base = `Access denied for user '${user}'@'${ctx.clientHost}' (using password: ${usingPassword ? 'YES' : 'NO'})`;
  return { ok: false, errno: ER_ACCESS_DENIED_ERROR, sqlState: '28000', message: why ? `${base}: ${why}` : base, nextSeq };
}

function accountKey(a: Account): string {
  return `${a.user}@${a.host}`;
}

/**
 * Authenticate `user`, who answered our scramble with `token` for `plugin`; `seq` is the sequence id
 * of the next packet Recall sends. Further exchanges (auth switch, full auth) happen on ctx.channel.
 */
export async function authenticateClient(
  ctx: AuthContext,
  user: string,
  plugin: string | null,
  token: Buffer,
  seq: number,
): Promise<AuthOutcome> {
  let account = await ctx.accounts.lookup(user);
  if (!account) return denied(user, ctx, token.length > 0, seq);
  if (account.plugin !== AUTH_NATIVE) {
    return denied(user, ctx, token.length > 0, seq, `the account uses the ${account.plugin} plugin, which Recall cannot proxy`);
  }
  const effectivePlugin = plugin === null || plugin === '' ? AUTH_NATIVE : plugin;
  if (effectivePlugin !== AUTH_NATIVE && effectivePlugin !== AUTH_CACHING_SHA2) {
    // e.g. mysql_clear_password or sha256_password: ask for mysql_native_password instead
    return switchPlugin(ctx, user, AUTH_NATIVE, seq);
  }
  // libmariadb and libmysqlclient give the scramble only to the plugin the server named: a client
  // whose own plugin differs (`--default-auth=caching_sha2_password` against a handshake naming
  // mysql_native_password) sends an empty token and waits for an AuthSwitchRequest, as MySQL 8
  // and MariaDB send. The switch keeps the scramble; after it the plugins agree, so at most one.
  // (An empty token for the plugin that was named means an empty password, as in MariaDB.)
  if (effectivePlugin !== ctx.scramblePlugin) return switchPlugin(ctx, user, effectivePlugin, seq);
  if (effectivePlugin === AUTH_NATIVE) {
    for (let attempt = 0; attempt < 2; attempt++) {
      const stage2 = storedStage2(account);
      if (stage2 === undefined) return denied(user, ctx, token.length > 0, seq, 'the stored password hash is not readable');
      const r = verifyNativeToken(token, ctx.scramble, stage2);
      if (r !== false) return { ok: true, stage1: r, nextSeq: seq, account };
      // maybe the password changed since we read it: re-read once (rate limited)
      const fresh = await ctx.accounts.lookup(user, true);
      if (!fresh || fresh.authString === account.authString) break;
      account = fresh;
    }
    return denied(user, ctx, token.length > 0, seq);
  }
  return cachingSha2(ctx, account, user, token, seq);
}

/** AuthSwitchRequest(plugin, same scramble), then authenticate the token the client answers with. */
async function switchPlugin(ctx: AuthContext, user: string, pluginName: string, seq: number): Promise<AuthOutcome> {
  ctx.channel.write(encodeAuthSwitchRequest({ pluginName, pluginData: ctx.scramble }), seq);
  const p = await ctx.channel.readSeq(seq + 1);
  return authenticateClient({ ...ctx, scramblePlugin: pluginName }, user, pluginName, p.payload, p.lastSeq + 1);
}

/** SHA1(SHA1(pw)) from the stored hash; null = empty password; undefined = unreadable. */
function storedStage2(a: Account): Buffer | null | undefined {
  try {
    return parseNativeHash(a.authString);
  } catch {
    return undefined;
  }
}

async function cachingSha2(ctx: AuthContext, initial: Account, user: string, token: Buffer, seq: number): Promise<AuthOutcome> {
  let account = initial;
  const stage2 = storedStage2(account);
  if (stage2 === undefined) return denied(user, ctx, token.length > 0, seq, 'the stored password hash is not readable');
  // An empty token means an empty password: no exchange, straight to OK.
  if (token.length === 0) return stage2 === null ? { ok: true, stage1: null, nextSeq: seq, account } : denied(user, ctx, false, seq);
  const key = accountKey(initial);
  const cached = ctx.sha2Cache.get(key);
  if (cached && cached.authString !== account.authString) ctx.sha2Cache.delete(key);
  else if (cached && verifyCachingSha2Token(token, ctx.scramble, cached.digest)) {
    ctx.channel.write(encodeAuthMoreData(Buffer.from([CACHING_SHA2_FAST_AUTH_SUCCESS])), seq);
    return { ok: true, stage1: cached.stage1, nextSeq: seq + 1, account };
  }
  // Full authentication: the client must reveal the password (over TLS, or RSA-encrypted).
  ctx.channel.write(encodeAuthMoreData(Buffer.from([CACHING_SHA2_PERFORM_FULL_AUTHENTICATION])), seq);
  let p = await ctx.channel.readSeq(seq + 1);
  seq += 2;
  let password: Buffer;
  if (ctx.isTls) {
    password = stripNul(p.payload);
  } else {
    if (p.payload.length === 1 && p.payload[0] === CACHING_SHA2_REQUEST_PUBLIC_KEY) {
      ctx.channel.write(encodeAuthMoreData(Buffer.from(ctx.rsa.publicKey, 'utf8')), seq);
      p = await ctx.channel.readSeq(seq + 1);
      seq += 2;
    }
    try {
      password = decryptRsaPassword(p.payload, ctx.scramble, ctx.rsa.privateKey);
    } catch {
      return denied(user, ctx, true, seq, 'the RSA-encrypted password could not be decrypted');
    }
  }
  const stage1 = password.length === 0 ? null : sha1(password);
  const matches = (s2: Buffer | null | undefined): boolean =>
    s2 === null ? stage1 === null : s2 !== undefined && stage1 !== null && timingSafeEqual(sha1(stage1), s2);
  if (!matches(stage2)) {
    // maybe the password changed since we read it: re-read this user once, as for native
    const fresh = await ctx.accounts.lookup(user, true);
    if (!fresh || fresh.authString === account.authString || fresh.plugin !== AUTH_NATIVE || !matches(storedStage2(fresh))) {
      return denied(user, ctx, true, seq);
    }
    account = fresh;
  }
  ctx.sha2Cache.set(accountKey(account), { authString: account.authString, digest: cachingSha2Digest(password), stage1 });
  return { ok: true, stage1, nextSeq: seq, account };
}
