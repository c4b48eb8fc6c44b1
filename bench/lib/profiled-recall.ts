// `recall serve` under `node --cpu-prof` (NODE_OPTIONS refuses --cpu-prof, so the harness's
// startRecall cannot do it): writes a .cpuprofile into `profDir` when it exits on SIGTERM.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { freePort } from '../../test/harness/ports.js';
import { repoRoot, waitExit } from '../../test/harness/recall.js';
import { tempDir } from '../../test/harness/tmp.js';

export async function startProfiledRecall(dsn: string, profDir: string, extraArgs: string[] = []) {
  const data = tempDir('recall-bench-');
  const mysqlPort = await freePort();
  const adminPort = await freePort();
  const child = spawn(
    process.execPath,
    [`--cpu-prof`, `--cpu-prof-dir=${profDir}`, join(repoRoot(), 'bin', 'recall'), 'serve', '--data-dir', data.path,
      '--listen-mysql', `127.0.0.1:${mysqlPort}`, '--listen-admin', `127.0.0.1:${adminPort}`, '--listen-peer', 'off',
      '--listen-postgres', 'off', '--log-format', 'json', '--no-managed', '--dsn', dsn, ...extraArgs],
    { cwd: repoRoot(), stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const stop = async (): Promise<void> => {
    if (child.exitCode === null) child.kill('SIGTERM');
    await waitExit(child, 30000);
    data.remove();
  };
  for (let i = 0; ; i++) {
    try {
      const r = await fetch(`http://127.0.0.1:${adminPort}/ready`, { signal: AbortSignal.timeout(2000) });
      if (r.status === 200) break;
    } catch {
      /* not yet */
    }
    if (i > 400 || child.exitCode !== null) {
      await stop();
      throw new Error('profiled recall did not become ready');
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  return { mysqlPort, adminPort, process: child, stop };
}
