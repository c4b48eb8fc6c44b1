// The donor's files in or out of the page cache before a measurement, so that every method starts
// alike. 'cold' evicts only the donor's own files (posix_fadvise DONTNEED through dd), never the
// whole machine's cache: others work here too. InnoDB writes with O_DIRECT, so on a real donor
// most of its data is not in the page cache; 'warm' shows the methods' own cost without the disk.
import { execFile } from 'node:child_process';

export type CacheState = 'cold' | 'warm';

export function sh(script: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) =>
    execFile('/bin/sh', ['-c', script, 'sh', ...args], { maxBuffer: 16 << 20 }, (e, _o, err) => (e ? reject(new Error(`${script}: ${e.message}\n${err.slice(-2000)}`)) : resolve())),
  );
}

/** Writes out dirty pages (so none of an earlier step's writing lands in a measurement), then sets the cache state of dir's files. */
export async function setCache(dir: string, state: CacheState): Promise<void> {
  await sh('sync', []);
  if (state === 'warm') await sh('find "$1" -type f -exec cat {} + >/dev/null', [dir]);
  else await sh('find "$1" -type f -exec dd if={} iflag=nocache count=0 status=none \\;', [dir]);
}
