// Hook mode (the original module's StartServer/StopServer): the operator's own commands
// start and stop the local database. They come from the configuration only, never from
// a client, and run through /bin/sh so they may be pipelines or use sudo/systemctl.
import { spawn } from 'node:child_process';
import { logger } from '../util/log.js';

const log = logger('hooks');

/** Runs one hook command; resolves with its output, rejects when it fails or times out. */
export function runHook(name: string, command: string, timeoutMs = 300000): Promise<string> {
  return new Promise((resolve, reject) => {
    log.info(`running ${name}`, { command });
    const child = spawn('/bin/sh', ['-c', command], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const keep = (b: Buffer) => {
      // Keep the tail only: a chatty command must not grow memory without bound.
      out = (out + b.toString()).slice(-16384);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`${name} (${command}) could not run: ${err.message}`));
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) {
        log.debug(`${name} done`, { output: out.trim() });
        resolve(out);
      } else {
        reject(new Error(`${name} (${command}) failed with ${signal ? `signal ${signal}` : `exit code ${code}`}: ${out.trim().slice(-2000)}`));
      }
    });
  });
}

/** Retries `check` every intervalMs until it resolves or timeoutMs passes; rejects with the last error. */
export async function waitFor(check: () => Promise<void>, timeoutMs: number, intervalMs = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await check();
      return;
    } catch (err) {
      if (Date.now() >= deadline) throw err;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
