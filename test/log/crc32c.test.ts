import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crc32c } from '../../src/log/crc32c.js';

// Test vectors from RFC 3720, appendix B.4, and the common "123456789" check value.
test('crc32c matches RFC 3720 vectors', () => {
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c);
  assert.equal(crc32c(new TextEncoder().encode('123456789')), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(0)), 0);
});

test('crc32c is incremental and independent of split point', () => {
  const buf = Uint8Array.from({ length: 1000 }, (_, i) => (i * 31 + 7) & 0xff);
  const whole = crc32c(buf);
  for (let cut = 0; cut <= buf.length; cut += 37) {
    assert.equal(crc32c(buf, crc32c(buf, 0, 0, cut), cut, buf.length), whole);
  }
  const flipped = buf.slice();
  flipped[500] ^= 1;
  assert.notEqual(crc32c(flipped), whole);
});
