// A tiny first-keyword classifier, for metrics only. The real statement classifier (src/sql)
// replaces it for routing; this one reads a few bytes of the packet in place, no decoding.

export type StatementKind = 'read' | 'write' | 'ddl' | 'transaction' | 'session' | 'other';

const KINDS: Record<string, StatementKind> = {
  select: 'read',
  show: 'read',
  describe: 'read',
  desc: 'read',
  explain: 'read',
  with: 'read',
  table: 'read',
  values: 'read',
  help: 'read',
  insert: 'write',
  update: 'write',
  delete: 'write',
  replace: 'write',
  load: 'write',
  call: 'write',
  do: 'write',
  merge: 'write',
  create: 'ddl',
  alter: 'ddl',
  drop: 'ddl',
  truncate: 'ddl',
  rename: 'ddl',
  grant: 'ddl',
  revoke: 'ddl',
  analyze: 'ddl',
  optimize: 'ddl',
  repair: 'ddl',
  begin: 'transaction',
  start: 'transaction',
  commit: 'transaction',
  rollback: 'transaction',
  savepoint: 'transaction',
  release: 'transaction',
  xa: 'transaction',
  lock: 'transaction',
  unlock: 'transaction',
  set: 'session',
  use: 'session',
  reset: 'session',
  flush: 'session',
  kill: 'session',
  prepare: 'session',
  execute: 'session',
  deallocate: 'session',
};

const WORD_BYTES_MAX = 12;

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d || c === 0x28; // '(' for "(SELECT ...)"
}

/** Classify the statement text in buf[start, end) by its first keyword (after spaces and comments). */
export function classifyStatement(buf: Buffer, start: number, end: number): StatementKind {
  let i = start;
  for (;;) {
    while (i < end && isSpace(buf[i]!)) i++;
    if (i + 1 < end && buf[i] === 0x2f && buf[i + 1] === 0x2a) {
      // /* comment */ (also /*! versioned */: treated as a comment, good enough for metrics)
      const close = buf.indexOf('*/', i + 2, 'latin1');
      if (close < 0 || close >= end) return 'other';
      i = close + 2;
      continue;
    }
    if (i < end && (buf[i] === 0x23 || (buf[i] === 0x2d && buf[i + 1] === 0x2d))) {
      const nl = buf.indexOf(0x0a, i);
      if (nl < 0 || nl >= end) return 'other';
      i = nl + 1;
      continue;
    }
    break;
  }
  let j = i;
  while (j < end && j - i <= WORD_BYTES_MAX) {
    const c = buf[j]! | 0x20;
    if (c < 0x61 || c > 0x7a) break;
    j++;
  }
  if (j === i || j - i > WORD_BYTES_MAX) return 'other';
  return KINDS[buf.toString('latin1', i, j).toLowerCase()] ?? 'other';
}
