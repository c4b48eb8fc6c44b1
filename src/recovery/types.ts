// What a full resync needs from the rest of the replica, declared narrowly (STYLE.md, rqlite):
// the resync methods (built-in snapshot transfer, hook-mode rsync) are written against these
// interfaces and wired to the applier, the local database and the peer transport by the
// replicator.
import type { Transport } from '../transport/transport.js';
import type { Logger } from '../util/log.js';

/** Peer channels of the resync protocols (the Raft transport's user channels start at 16). */
export const CHANNEL_SNAPSHOT = 19;
export const CHANNEL_RSYNC = 20;

/** The donor's applier, paused while a consistent copy of its database is taken. */
export interface ApplierPause {
  /**
   * Stop applying once at least `minIndex` is applied and return the index the database now
   * holds (no entry is applied until resume()). Rejects after timeoutMs if it does not get there.
   */
  pause(minIndex: number, timeoutMs: number): Promise<number>;
  resume(): void;
}

/** The local database server, stopped and started around replacing its files. */
export interface ServerControl {
  stop(): Promise<void>;
  start(): Promise<void>;
}

/** How the local database is reached as its administrative account. */
export interface AdminTarget {
  host?: string;
  port?: number;
  socketPath?: string;
  user: string;
  password: string;
}

export interface ResyncProgress {
  method: 'snapshot' | 'rsync';
  /** e.g. 'waiting-for-donor', 'transfer', 'prepare', 'install', 'final-pass', 'done' */
  phase: string;
  donor: number;
  bytes: number;
  /** known once the donor has finished its copy (snapshot) or rsync reported it */
  totalBytes?: number;
  bytesPerSec: number;
  etaSec?: number;
}

export interface ResyncContext {
  transport: Transport;
  log: Logger;
  onProgress?: (p: ResyncProgress) => void;
  signal?: AbortSignal;
}
