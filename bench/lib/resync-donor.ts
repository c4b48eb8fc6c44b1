// The donor replica of the resync bench, in a process of its own as it would be in a cluster (one
// event loop per side): a managed mariadbd, a peer Transport, and both resync methods' donor
// services registered on it as `recall serve` registers its configured one (snapshotMethod,
// rsyncMethod). The parent (bench/resync.ts) drives it over IPC: stop/start the server for the
// plain rsync, exit. It stops its server when the parent goes away.
import { Writable } from 'node:stream';
import winston from 'winston';
import { Transport } from '../../src/transport/transport.js';
import { configureLogging, logger } from '../../src/util/log.js';
import { ManagedMariaDB } from '../../src/supervisor/mariadb.js';
import { snapshotMethod } from '../../src/recovery/snapshot-method.js';
import { rsyncMethod } from '../../src/recovery/rsync-joiner.js';
import { BenchApplier } from './resync-data.js';
import { DONOR_ID, JOINER_ID, type DonorCommand, type DonorInit, type DonorReply } from './resync-ipc.js';

async function main(init: DonorInit): Promise<void> {
  configureLogging({ silent: !process.env.DEBUG_LOG, debug: !!process.env.DEBUG_LOG });
  const log = process.env.DEBUG_LOG ? logger('resync-bench-donor', { nodeId: DONOR_ID }) : forwardingLogger();
  const db = new ManagedMariaDB({ dataDir: init.datadir, socketPath: init.socketPath, port: 0, extraArgs: init.extraArgs, flushLogAtTrxCommit: 2, autoRestart: false, stopTimeoutMs: 60_000 });
  const server = { stop: () => db.stop(), start: () => db.start() };
  let transport: Transport | undefined;
  const closers: (() => void)[] = [];
  const shutdown = async (code: number) => {
    for (const c of closers) c();
    await db.stop().catch(() => undefined);
    const t0 = Date.now();
    // A peer that keeps its connection open would hold close() (the listener waits for it).
    await Promise.race([transport?.close().catch(() => undefined), new Promise((r) => setTimeout(r, 2000).unref())]);
    if (process.env.DEBUG_LOG) console.error(`donor: transport closed in ${Date.now() - t0} ms`);
    process.exit(code);
  };
  process.once('disconnect', () => void shutdown(0));
  try {
    await db.start();
    transport = await Transport.start({ id: DONOR_ID, clusterId: 'resync-bench', secret: init.secret, listen: '127.0.0.1:0', peers: new Map() });
    transport.addPeer(JOINER_ID, `127.0.0.1:${init.joinerPort}`);
    const applier = new BenchApplier(() => db.socketPath);
    const deps = { transport, applier, log };
    closers.push(
      snapshotMethod({ datadir: init.datadir, dataDir: init.recallDir, target: { socketPath: init.socketPath, user: 'root', password: '' }, server, rateBytes: 0 })(deps).close,
      rsyncMethod({ syncPath: init.datadir, syncCmd: init.syncCmd, server, donorHost: () => '127.0.0.1', protect: [init.recallDir] })(deps).close,
    );
  } catch (e) {
    console.error(`resync bench donor: ${(e as Error).stack ?? e}`);
    await shutdown(1);
    return;
  }
  process.on('message', (m: DonorCommand) => {
    if (m.type === 'exit') {
      void shutdown(0);
      return;
    }
    const op = m.type === 'stop' ? server.stop() : server.start();
    op.then(
      () => process.send!({ type: 'done', op: m.type, pid: db.pid } satisfies DonorReply),
      (e: Error) => process.send!({ type: 'done', op: m.type, pid: db.pid, error: e.message } satisfies DonorReply),
    );
  });
  process.send!({ type: 'ready', port: transport.port, pid: db.pid } satisfies DonorReply);
}

process.once('message', (m: DonorInit) => void main(m));

/**
 * The donor methods' log lines go to the parent, which takes the backup's own duration from them
 * ('snapshot backup done'): the donor's side of the time, which the joiner cannot see.
 */
function forwardingLogger(): winston.Logger {
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line) continue;
        try {
          const { message, ...fields } = JSON.parse(line) as { message: string } & Record<string, unknown>;
          process.send?.({ type: 'log', message, fields, at: Date.now() } satisfies DonorReply);
        } catch {
          /* not one of ours */
        }
      }
      done();
    },
  });
  return winston.createLogger({ level: 'info', format: winston.format.json(), transports: [new winston.transports.Stream({ stream })] });
}
