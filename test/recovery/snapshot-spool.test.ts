// The donor's spool: bytes read back equal the bytes the backup wrote, across chunk boundaries,
// after acknowledgements, and after it spilled to a file mid-stream.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { Spool } from '../../src/recovery/snapshot-spool.js';
import { tempDir } from '../harness/tmp.js';

describe('snapshot spool', () => {
  const dir = tempDir('recall-spool-test-');
  after(() => dir.remove());

  async function readBack(spool: Spool, offset: number, n: number): Promise<Buffer> {
    await spool.waitFor(offset + n, 5000);
    const b = Buffer.alloc(n);
    await spool.read(offset, b);
    return b;
  }

  test('in memory: reads across chunks, acknowledged bytes are dropped, waitFor wakes on new bytes', async () => {
    const src = randomBytes(300_000);
    const input = new PassThrough();
    const spool = new Spool(join(dir.path, 'a.xb'), 1 << 20);
    const done = spool.consume(input);
    input.write(src.subarray(0, 1000));
    const pending = readBack(spool, 500, 2000); // needs bytes not yet written
    input.write(src.subarray(1000, 70_000));
    assert.deepEqual(await pending, src.subarray(500, 2500));
    spool.ack(60_000); // inside the second chunk: it stays
    assert.deepEqual(await readBack(spool, 59_999, 10), src.subarray(59_999, 60_009));
    spool.ack(70_000); // its end: dropped
    await assert.rejects(readBack(spool, 69_999, 10), /acknowledged/);
    input.end(src.subarray(70_000));
    assert.equal(await done, src.length);
    assert.deepEqual(await readBack(spool, 70_000, 230_000), src.subarray(70_000));
    assert.equal(spool.inFile, false);
    await assert.rejects(spool.read(299_000, Buffer.alloc(2000)), /beyond/);
    await spool.close();
  });

  test('spills to a file once unacknowledged bytes pass the memory limit; reads stay correct', async () => {
    const src = randomBytes(3 << 20);
    const input = new PassThrough();
    const path = join(dir.path, 'b.xb');
    const spool = new Spool(path, 256 << 10);
    const done = spool.consume(input);
    let pos = 0;
    const got: Buffer[] = [];
    let read = 0;
    while (pos < src.length) {
      const n = Math.min(src.length - pos, 10_000 + Math.floor(Math.random() * 100_000));
      input.write(src.subarray(pos, pos + n));
      pos += n;
      // The reader lags far behind the writer.
      if (pos > (1 << 20) && read < pos - (1 << 20)) {
        const len = 50_000;
        got.push(await readBack(spool, read, len));
        read += len;
        spool.ack(read);
      }
    }
    input.end();
    assert.equal(await done, src.length);
    assert.equal(spool.inFile, true);
    assert.ok(existsSync(path));
    got.push(await readBack(spool, read, src.length - read));
    assert.deepEqual(Buffer.concat(got), src);
    await spool.close();
  });
});
