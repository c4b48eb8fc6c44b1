// Small files replaced atomically: write a temp file, fsync it, rename it over the
// old one, fsync the directory (so the rename itself survives a crash). Each file
// carries a magic, a length and a CRC32C so that a half-written file is detected
// rather than believed.
import fs from 'node:fs';
import path from 'node:path';
import { crc32c } from './crc32c.js';

const MAGIC = 0x52434c46; // 'RCLF'
const HEADER_BYTES = 12;

export async function fsyncDir(dir: string): Promise<void> {
  const fd = await fs.promises.open(dir, 'r');
  try {
    await fd.sync();
  } finally {
    await fd.close();
  }
}

export function fsyncDirSync(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function frame(body: Uint8Array): Buffer {
  const buf = Buffer.allocUnsafe(HEADER_BYTES + body.length);
  buf.writeUInt32LE(MAGIC, 0);
  buf.writeUInt32LE(body.length, 4);
  buf.writeUInt32LE(crc32c(body), 8);
  buf.set(body, HEADER_BYTES);
  return buf;
}

export async function writeAtomic(file: string, body: Uint8Array): Promise<void> {
  const tmp = `${file}.tmp`;
  const fh = await fs.promises.open(tmp, 'w');
  try {
    await fh.writeFile(frame(body));
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fs.promises.rename(tmp, file);
  await fsyncDir(path.dirname(file));
}

export function writeAtomicSync(file: string, body: Uint8Array): void {
  const tmp = `${file}.tmp`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, frame(body));
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  fsyncDirSync(path.dirname(file));
}

/** The body of an atomically written file, undefined if absent; throws if damaged. */
export function readAtomicSync(file: string): Buffer | undefined {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  // Because of the rename protocol a damaged file here is real corruption, not a torn write.
  if (buf.length < HEADER_BYTES || buf.readUInt32LE(0) !== MAGIC) {
    throw new Error(`${file}: not a Recall state file (bad magic or too short, ${buf.length} bytes)`);
  }
  const n = buf.readUInt32LE(4);
  if (HEADER_BYTES + n !== buf.length) throw new Error(`${file}: length ${n} does not match file size ${buf.length}`);
  const body = buf.subarray(HEADER_BYTES);
  if (crc32c(body) !== buf.readUInt32LE(8)) throw new Error(`${file}: checksum mismatch`);
  return body;
}
