// sysbench against several MySQL ports at once. sysbench's MySQL driver takes
// `--mysql-port=P1,P2,P3` and hands the ports out to its connections in turn (drv_mysql.c
// advances ports_pos under a mutex on every connect), so 8 threads over 3 ports are 3 + 3 + 2
// connections, each a different client of a different replica.
import { spawn } from 'node:child_process';
import { parseSysbench, sysbenchArgs, type SysbenchResult, type SysbenchRun } from './sysbench.js';

export interface MultiPortRun extends Omit<SysbenchRun, 'target'> {
  target: Omit<SysbenchRun['target'], 'port'>;
  ports: number[];
}

export function multiPortArgs(r: MultiPortRun): string[] {
  if (r.ports.length === 0) throw new Error('multiPortArgs: no ports');
  const args = sysbenchArgs({ ...r, target: { ...r.target, port: r.ports[0]! } });
  return args.map((a) => (a.startsWith('--mysql-port=') ? `--mysql-port=${r.ports.join(',')}` : a));
}

/** Runs sysbench and resolves with its parsed report (rejects when it exits non-zero). */
export function runSysbenchPorts(r: MultiPortRun): Promise<SysbenchResult> {
  const args = multiPortArgs(r);
  return new Promise((resolve, reject) => {
    const child = spawn('sysbench', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`sysbench ${args.join(' ')} exited with ${code}:\n${out.slice(-3000)}`));
      resolve(parseSysbench(out));
    });
  });
}
