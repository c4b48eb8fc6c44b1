// What every session of one frontend shares.
import type tls from 'node:tls';
import type { Accounts } from '../../backend/mysql/accounts.js';
import type { BackendTarget } from '../../backend/mysql/connection.js';
import type { RsaKeyPair } from '../../protocol/mysql/auth.js';
import type { Logger } from '../../util/log.js';
import type { Sha2CacheEntry } from './authenticate.js';
import type { WriteService } from './router.js';

export interface FrontendContext {
  opts: {
    maxPacketBytes: number;
    connectTimeoutMs: number;
    netReadTimeoutMs: number;
    serverVersion?: string;
    tlsRequired?: boolean;
    defaultAuthPlugin?: string;
    consistency?: 'local' | 'session' | 'linearizable';
  };
  backendTarget: BackendTarget;
  accounts: Accounts;
  rsa: RsaKeyPair;
  sha2Cache: Map<string, Sha2CacheEntry>;
  secureContext: tls.SecureContext | null;
  log: Logger;
  /** Replication: where writes go. Null: every command is relayed to the local database. */
  writes: WriteService | null;
  /** Prefix of session keys (unique per process) */
  sessionPrefix: string;
  /** Capabilities offered to clients, given the backend's. */
  serverCapabilities(backendCaps: number): number;
}
