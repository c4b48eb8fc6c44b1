// What every session of one frontend shares.
import type tls from 'node:tls';
import type { Accounts } from '../../backend/mysql/accounts.js';
import type { BackendTarget } from '../../backend/mysql/connection.js';
import type { RsaKeyPair } from '../../protocol/mysql/auth.js';
import type { Logger } from '../../util/log.js';
import type { Sha2CacheEntry } from './authenticate.js';

export interface FrontendContext {
  opts: {
    maxPacketBytes: number;
    connectTimeoutMs: number;
    netReadTimeoutMs: number;
    serverVersion?: string;
    tlsRequired?: boolean;
    defaultAuthPlugin?: string;
  };
  backendTarget: BackendTarget;
  accounts: Accounts;
  rsa: RsaKeyPair;
  sha2Cache: Map<string, Sha2CacheEntry>;
  secureContext: tls.SecureContext | null;
  log: Logger;
  /** Capabilities offered to clients, given the backend's. */
  serverCapabilities(backendCaps: number): number;
}
