// Replacing the local server's data directory with a prepared snapshot, crash-safely. The
// prepared copy sits in a staging directory next to the datadir, so the swap is two renames:
//   datadir -> <datadir>.resync-old,  staging -> datadir
// A state file (<datadir>.resync-install.json) is written before the first rename and removed
// after the last step. A kill -9 between any two steps leaves the state file and some of the
// three directories; recoverInstall() (called at start-up, before the server starts, and by the
// next installSnapshot) completes the install from there, or undoes it when nothing had moved.
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Logger } from '../util/log.js';
import { SNAPSHOT_MARKER, type SnapshotMarker } from './snapshot-joiner.js';
import type { ServerControl } from './types.js';
import { MARIADB_KEEP_FILES } from './mariadb-backup.js';

/** The default keep files: MariaDB's (each BackupTool names its engine's). */
export const MANAGED_KEEP_FILES: readonly string[] = MARIADB_KEEP_FILES;

/** Where fetchSnapshot should unpack for installSnapshot to swap by rename. */
export function stagingDirFor(datadir: string): string {
  return `${resolve(datadir)}.resync-staging`;
}
function oldDirFor(datadir: string): string {
  return `${resolve(datadir)}.resync-old`;
}
function statePathFor(datadir: string): string {
  return `${resolve(datadir)}.resync-install.json`;
}

interface InstallState {
  /** 'swapped' once the snapshot is the datadir: from then on, recovery only cleans up. */
  phase: 'swapping' | 'swapped';
  datadir: string;
  staging: string;
  old: string;
  keepFiles: string[];
  startedAt: string;
}

export interface InstallSnapshotOptions {
  stagingDir: string;
  datadir: string;
  server: ServerControl;
  log: Logger;
  /** Non-database files carried over from the old datadir (default MANAGED_KEEP_FILES). */
  keepFiles?: readonly string[];
}

/**
 * Stops the server, swaps the prepared staging directory in as its datadir, starts it and
 * deletes the old directory. Returns the staging marker (the donor's index); the caller then
 * reads the authoritative applied index from the restored recall.applied row.
 */
export async function installSnapshot(o: InstallSnapshotOptions): Promise<SnapshotMarker> {
  const datadir = resolve(o.datadir);
  const staging = resolve(o.stagingDir);
  const log = o.log;
  // An earlier install that was interrupted is finished first (it may be this very staging dir).
  await recoverInstall(datadir, log, staging);
  const marker = readMarker(staging);
  if (dirname(staging) !== dirname(datadir) && statSync(dirname(staging)).dev !== statSync(dirname(datadir)).dev) {
    throw new Error(`staging directory ${staging} is not on the same file system as ${datadir}: the swap must be a rename`);
  }
  const state: InstallState = {
    phase: 'swapping',
    datadir,
    staging,
    old: oldDirFor(datadir),
    keepFiles: [...(o.keepFiles ?? MANAGED_KEEP_FILES)],
    startedAt: new Date().toISOString(),
  };
  if (existsSync(state.old)) throw new Error(`${state.old} exists from an earlier install that did not finish; run recoverInstall or remove it`);

  log.info('installing snapshot: stopping the local database', { datadir, donor: marker.donor, index: marker.index });
  await o.server.stop();
  writeState(datadir, state);
  swap(state, log);
  log.info('installing snapshot: starting the local database on the new data directory', { datadir });
  try {
    await o.server.start();
  } catch (e) {
    throw new Error(`the local database did not start on the installed snapshot (old data directory kept in ${state.old} until the next recoverInstall): ${(e as Error).message}`);
  }
  await finish(state, log);
  return marker;
}

export type RecoverOutcome = 'nothing' | 'completed' | 'rolled-back';

/**
 * Completes or undoes an install interrupted by a crash. Call at start-up before the local
 * server starts: a managed server started first would create an empty datadir where the
 * snapshot belongs. Also removes a staging directory left by a transfer that never finished.
 */
export async function recoverInstall(datadirArg: string, log?: Logger, stagingDirArg?: string): Promise<RecoverOutcome> {
  const datadir = resolve(datadirArg);
  const statePath = statePathFor(datadir);
  let state: InstallState;
  try {
    state = JSON.parse(readFileSync(statePath, 'utf8')) as InstallState;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`cannot read ${statePath}: ${(e as Error).message}; remove it after checking ${datadir}`);
    const staging = resolve(stagingDirArg ?? stagingDirFor(datadir));
    if (existsSync(staging) && !existsSync(join(staging, SNAPSHOT_MARKER))) {
      log?.info('removing an unfinished snapshot staging directory', { staging });
      await rm(staging, { recursive: true, force: true });
    }
    return 'nothing';
  }
  const has = { data: existsSync(datadir), staging: existsSync(state.staging), old: existsSync(state.old) };
  log?.warn('an interrupted snapshot install was found; recovering', { datadir, phase: state.phase, ...has });
  if (state.phase === 'swapped' && has.data) {
    await finish(state, log);
    return 'completed';
  }
  if (has.data && has.staging && !has.old) {
    // Nothing moved yet: forget the install; the staging copy stays for the next attempt.
    removeState(datadir);
    return 'rolled-back';
  }
  if (has.data && has.staging && has.old) {
    // Both the snapshot and an old copy are there, and something new is in the datadir: a
    // server was started on an empty datadir before this recovery ran. Guessing could lose data.
    throw new Error(
      `interrupted snapshot install: ${datadir}, ${state.staging} and ${state.old} all exist; ` +
        `move ${datadir} away, then restart (the install then completes from ${state.staging})`,
    );
  }
  if (!has.data && !has.staging && has.old) {
    renameSync(state.old, datadir);
    fsyncDir(dirname(datadir));
    removeState(datadir);
    return 'rolled-back';
  }
  if (!has.data && !has.staging && !has.old) throw new Error(`interrupted snapshot install: no data directory left at ${datadir}, nor ${state.staging}, nor ${state.old}`);
  if (state.phase !== 'swapped') {
    if (!has.data) swap(state, log); // the old datadir was moved aside (or never existed)
  }
  await finish(state, log);
  return 'completed';
}

/** Moves datadir aside, carries the keep files over and renames staging into place. Idempotent. */
function swap(s: InstallState, log: Logger | undefined): void {
  const parent = dirname(s.datadir);
  if (existsSync(s.datadir)) {
    renameSync(s.datadir, s.old);
    fsyncDir(parent);
  }
  if (existsSync(s.old)) {
    for (const f of s.keepFiles) {
      if (basename(f) !== f) continue; // names only, never paths out of the directory
      const from = join(s.old, f);
      if (!existsSync(from)) continue;
      rmSync(join(s.staging, f), { force: true });
      renameSync(from, join(s.staging, f));
    }
    fsyncDir(s.staging);
  }
  renameSync(s.staging, s.datadir);
  fsyncDir(parent);
  s.phase = 'swapped';
  writeState(s.datadir, s);
  log?.info('snapshot data directory in place', { datadir: s.datadir });
}

async function finish(s: InstallState, log: Logger | undefined): Promise<void> {
  await rm(s.old, { recursive: true, force: true });
  // The staging marker has served (readMarker); a physical copy of this datadir (pg_basebackup
  // takes every file) must not carry it into another joiner's staging, where it would make a
  // half-unpacked copy look prepared to recoverInstall.
  rmSync(join(s.datadir, SNAPSHOT_MARKER), { force: true });
  removeState(s.datadir);
  log?.info('snapshot install complete', { datadir: s.datadir });
}

function readMarker(staging: string): SnapshotMarker {
  try {
    return JSON.parse(readFileSync(join(staging, SNAPSHOT_MARKER), 'utf8')) as SnapshotMarker;
  } catch (e) {
    throw new Error(`${staging} holds no prepared snapshot (${SNAPSHOT_MARKER}: ${(e as Error).message}); run fetchSnapshot first`);
  }
}

function writeState(datadir: string, s: InstallState): void {
  const p = statePathFor(datadir);
  const tmp = `${p}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeFileSync(fd, JSON.stringify(s) + '\n');
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, p);
  fsyncDir(dirname(p));
}

function removeState(datadir: string): void {
  rmSync(statePathFor(datadir), { force: true });
  fsyncDir(dirname(datadir));
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** The steps of installSnapshot one by one, for tests that stop between them (as a crash would). */
export const installSteps = {
  writeState: (o: { datadir: string; stagingDir: string; keepFiles?: readonly string[] }) =>
    writeState(resolve(o.datadir), {
      phase: 'swapping',
      datadir: resolve(o.datadir),
      staging: resolve(o.stagingDir),
      old: oldDirFor(o.datadir),
      keepFiles: [...(o.keepFiles ?? MANAGED_KEEP_FILES)],
      startedAt: new Date().toISOString(),
    }),
  moveDatadirAside: (datadir: string) => {
    renameSync(resolve(datadir), oldDirFor(datadir));
    fsyncDir(dirname(resolve(datadir)));
  },
  /** The whole swap, as recorded in the state file, without the clean-up that follows it. */
  swap: (datadir: string) => swap(JSON.parse(readFileSync(statePathFor(datadir), 'utf8')) as InstallState, undefined),
  oldDirFor,
  statePathFor,
};
