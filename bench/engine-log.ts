// Durable log micro-benchmark: append batches of entries with one sync() each.
//   node dist/bench/engine-log.js
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DurableLog } from '../src/log/durable-log.js';
import { EntryType, type Entry } from '../src/consensus/types.js';

async function run(batch: number, bytes: number, totalEntries: number): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recall-logbench-'));
  const log = DurableLog.open(dir, { bootstrapConf: { voters: [1], learners: [] } });
  const data = new Uint8Array(bytes).fill(1);
  const t0 = performance.now();
  let index = 1;
  while (index <= totalEntries) {
    const es: Entry[] = [];
    for (let k = 0; k < batch; k++) es.push({ index: index++, term: 1, type: EntryType.Normal, data });
    log.append(es);
    log.setHardState({ term: 1, vote: 1, commit: index - 1 });
    await log.sync();
  }
  const s = (performance.now() - t0) / 1000;
  await log.close();
  fs.rmSync(dir, { recursive: true, force: true });
  return `batch ${String(batch).padStart(4)} x ${String(bytes).padStart(4)} B: ${Math.round(totalEntries / s)} entries/s, ${Math.round(totalEntries / batch / s)} syncs/s`;
}

for (const [batch, bytes, n] of [[1, 100, 5000], [16, 100, 50000], [256, 100, 200000], [16, 4096, 50000]] as const) console.log(await run(batch, bytes, n));
