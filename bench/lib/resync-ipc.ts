// What the resync bench and its donor process (resync-donor.ts) say to each other over IPC.
import { join } from 'node:path';

export interface DonorInit {
  /** The mariadbd data directory (the snapshot donor's datadir, the rsync donor's syncPath). */
  datadir: string;
  /** Recall's own data directory of this replica (the snapshot spool lives under it). */
  recallDir: string;
  socketPath: string;
  syncCmd: string;
  joinerPort: number;
  secret: string;
  extraArgs: string[];
}

export type DonorReply =
  | { type: 'ready'; port: number; pid: number | undefined }
  | { type: 'done'; op: string; pid: number | undefined; error?: string }
  /** A log line of the donor's resync services (Date.now() when it was written). */
  | { type: 'log'; message: string; fields: Record<string, unknown>; at: number };
export type DonorCommand = { type: 'stop' } | { type: 'start' } | { type: 'exit' };

export const DONOR_ID = 1;
export const JOINER_ID = 2;

/** Where the donor's files go under the bench's temp dir. */
export function donorPaths(root: string): { datadir: string; recallDir: string; socketPath: string } {
  return { datadir: join(root, 'donor', 'data'), recallDir: join(root, 'donor', 'recall'), socketPath: join(root, 'donor', 'mysqld.sock') };
}
