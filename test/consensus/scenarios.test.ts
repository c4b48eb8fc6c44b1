// Runs the scenario scripts in test/consensus/scenarios/*.txt (etcd datadriven style):
//   command args
//   ----
//   expected output
//   (blank line)
// RECALL_REWRITE=1 rewrites the expected output from the actual one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Harness } from './harness.js';

const dir = path.join(process.cwd(), 'test', 'consensus', 'scenarios');
const rewrite = process.env.RECALL_REWRITE === '1';

interface Block {
  readonly pre: string[]; // comments and blank lines before the command
  readonly line: number;
  readonly command: string;
  readonly expected: string;
}

function parse(text: string): { blocks: Block[]; tail: string[] } {
  const lines = text.split('\n');
  const blocks: Block[] = [];
  let pre: string[] = [];
  let i = 0;
  while (i < lines.length) {
    const l = lines[i]!;
    if (l.trim() === '' || l.startsWith('#')) {
      pre.push(l);
      i++;
      continue;
    }
    const command = l;
    const line = i + 1;
    i++;
    if (lines[i] !== '----') throw new Error(`line ${line}: expected ---- after the command`);
    i++;
    const out: string[] = [];
    while (i < lines.length && lines[i] !== '') out.push(lines[i++]!);
    blocks.push({ pre, line, command, expected: out.join('\n') });
    pre = [];
  }
  return { blocks, tail: pre };
}

for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.txt')).sort()) {
  test(`scenario ${file}`, () => {
    const full = path.join(dir, file);
    const { blocks, tail } = parse(fs.readFileSync(full, 'utf8'));
    const h = new Harness();
    const rewritten: string[] = [];
    for (const b of blocks) {
      const [cmd, ...args] = b.command.trim().split(/\s+/);
      let actual: string;
      try {
        actual = h.run(cmd!, args);
      } catch (e) {
        actual = `error: ${(e as Error).message}`;
      }
      rewritten.push(...b.pre, b.command, '----', ...(actual === '' ? ['ok'] : [actual]));
      const want = actual === '' ? 'ok' : actual;
      if (!rewrite) assert.equal(want, b.expected, `${file}:${b.line}: ${b.command}`);
    }
    if (rewrite) fs.writeFileSync(full, [...rewritten, ...tail].join('\n').replace(/\n*$/, '\n'));
  });
}
