// The simplest possible relay: a Node process that pipes bytes between client and server with no
// protocol awareness. It measures the floor cost of one extra TCP hop through a Node event loop on
// this machine, so Recall's relay can be judged against it rather than against zero.
import { fork, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

if (process.argv[2] === 'child') {
  const backend = process.argv[3]!;
  const server = net.createServer((c) => {
    const u = net.connect(backend);
    c.setNoDelay(true);
    c.pipe(u).pipe(c);
    const end = (): void => {
      c.destroy();
      u.destroy();
    };
    c.on('error', end).on('close', end);
    u.on('error', end).on('close', end);
  });
  server.listen(0, '127.0.0.1', () => process.send?.((server.address() as net.AddressInfo).port));
}

/** Starts the pipe relay in its own process, in front of a unix socket. */
export function startPipeRelay(socketPath: string): Promise<{ port: number; child: ChildProcess; stop(): void }> {
  const child = fork(fileURLToPath(import.meta.url), ['child', socketPath], { stdio: 'inherit' });
  return new Promise((resolve, reject) => {
    child.once('message', (port) => resolve({ port: Number(port), child, stop: () => child.kill('SIGTERM') }));
    child.once('exit', (code) => reject(new Error(`pipe relay exited with ${code}`)));
  });
}
