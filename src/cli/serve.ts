// `recall serve`: one replica. Loads the configuration (exit 2 when invalid), starts the
// local database, admin HTTP and client listeners, logs one `ready` line, and on SIGTERM
// or SIGINT closes the listeners, stops the managed database and exits 0.
import { configureLogging, logger } from '../util/log.js';
import { ConfigError } from '../config/errors.js';
import { loadConfig, type RecallConfig } from '../config/load.js';
import { startNode, type RunningNode } from './node.js';

/** Loads the configuration or exits 2 with the message that names the key. */
export function loadConfigOrExit(flags: Record<string, unknown>): RecallConfig {
  try {
    return loadConfig({ flags, env: process.env });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(err.message + '\n');
      process.exit(2);
    }
    throw err;
  }
}

const secondSignalAfterMs = 1000;

/** Resolves on the first SIGTERM/SIGINT; a second one exits at once (status 1). */
export function shutdownSignal(onSecond?: () => void): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let firstAt = 0;
    const handler = (sig: NodeJS.Signals) => {
      // A Ctrl-C under npm or tsx arrives twice at once (terminal and the wrapper relaying
      // it); only a signal well after the first one means "stop now".
      if (firstAt && Date.now() - firstAt > secondSignalAfterMs) {
        onSecond?.();
        process.exit(1);
      }
      if (firstAt) return;
      firstAt = Date.now();
      resolve(sig);
    };
    process.on('SIGTERM', handler);
    process.on('SIGINT', handler);
  });
}

export async function serveCommand(flags: Record<string, unknown>): Promise<void> {
  const cfg = loadConfigOrExit(flags);
  configureLogging({ debug: cfg.debug, format: cfg.logFormat });
  const log = logger('serve', { nodeId: cfg.nodeId });
  const signal = shutdownSignal(() => log.warn('second signal: exiting without a clean shutdown'));
  let stopping = false;
  void signal.then((sig) => {
    stopping = true;
    log.info('shutting down', { signal: sig });
  });

  // A promise rejected with nobody listening (a connection lost in the middle of pipelined
  // work) must not end a replica that serves every other session: log it loudly instead.
  process.on('unhandledRejection', (reason) => {
    log.error('unhandled rejection (a bug: please report)', { error: reason instanceof Error ? reason.stack : String(reason) });
  });

  log.debug('configuration', { ...cfg, clusterSecret: cfg.clusterSecret ? '***' : undefined });
  let node: RunningNode;
  try {
    node = await startNode(cfg);
  } catch (err) {
    log.error('start-up failed', { err: (err as Error).message });
    process.exit(1);
  }
  if (!stopping) {
    log.info('ready', {
      mysql: node.mysqlPort ? `${cfg.listen.mysql.replace(/:\d+$/, '')}:${node.mysqlPort}` : 'off',
      postgres: node.postgresPort ? `${cfg.listen.postgres.replace(/:\d+$/, '')}:${node.postgresPort}` : 'off',
      admin: node.adminPort ? `${cfg.listen.admin.replace(/:\d+$/, '')}:${node.adminPort}` : 'off',
      database: node.managed ? `managed 127.0.0.1:${node.managed.port}` : 'external',
      dataDir: cfg.dataDir,
    });
  }
  await signal;
  await node.stop();
  log.info('stopped');
  process.exit(0);
}
