// The `recall` command line (yargs): serve, status, join, remove, members, demo, version.
// bin/recall imports the compiled form of this file (dist/src/cli/main.js).
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { withConfigOptions } from '../config/flags.js';
import type { LogFormat } from '../util/log.js';
import { serveCommand } from './serve.js';
import { statusCommand } from './status.js';
import { demoCommand } from './demo.js';
import { recallVersion } from './version.js';
import { configCommand } from './config.js';
import { joinCommand, membersCommand, removeCommand } from './members.js';

function logFormatOf(v: unknown): LogFormat | undefined {
  return v === 'json' || v === 'text' ? v : undefined;
}

/** Options shared by join, remove and members. */
function withMembersOptions<T>(y: Argv<T>) {
  return y
    .option('admin', { type: 'string', default: '127.0.0.1:8700', describe: "admin HTTP address (host:port) of any member; it forwards to the leader" })
    .option('cluster-secret', { type: 'string', describe: 'cluster secret, sent as X-Recall-Secret (env RECALL_CLUSTER_SECRET)' })
    .option('json', { type: 'boolean', default: false, describe: 'print the raw JSON' })
    .strict();
}

export async function main(argv: string[]): Promise<void> {
  await yargs(argv)
    .scriptName('recall')
    .usage('$0 <command> [options]')
    .option('debug', { type: 'boolean', describe: 'verbose logging (env RECALL_DEBUG)' })
    .option('log-format', { type: 'string', describe: 'text or one JSON object per line (env RECALL_LOG_FORMAT)' })
    .command(
      'serve',
      'run one replica (managed database, client listeners, admin HTTP)',
      (y) => withConfigOptions(y).strict(),
      async (args) => {
        await serveCommand(args as Record<string, unknown>);
      },
    )
    .command(
      'status',
      'show each replica\'s role, term, leader, commit/applied index, lag (admin HTTP /status)',
      (y) =>
        y
          .option('admin', {
            type: 'string',
            array: true,
            default: ['127.0.0.1:8700'],
            describe: 'admin HTTP address (host:port) of a replica; repeat for each, or give one and the others are found from its peers',
          })
          .option('json', { type: 'boolean', default: false, describe: 'print the raw JSON' }),
      async (args) => {
        process.exitCode = await statusCommand({ admin: args.admin, json: args.json });
      },
    )
    .command(
      'join',
      'add a replica to the running cluster (it must already run recall serve --join); it becomes a voter once caught up',
      (y) =>
        withMembersOptions(y)
          .option('node-id', { type: 'number', demandOption: true, describe: "the new replica's node id (its position in its --replicas list)" })
          .option('peer', { type: 'string', demandOption: true, describe: "the new replica's peer address (host:port) as the other replicas reach it" })
          .option('voter', { type: 'boolean', default: true, describe: 'promote to voter once caught up (--no-voter: stay a learner)' })
          .option('replace', { type: 'number', describe: 'then remove this (dead) node id' })
          .option('timeout', { type: 'number', default: 1800, describe: 'seconds the new replica may take to receive the database and catch up' }),
      async (args) => {
        process.exitCode = await joinCommand({
          admin: args.admin,
          secret: args['cluster-secret'] ?? process.env.RECALL_CLUSTER_SECRET,
          json: args.json,
          nodeId: args['node-id'],
          peer: args.peer,
          voter: args.voter,
          replace: args.replace,
          timeoutS: args.timeout,
        });
      },
    )
    .command(
      'remove',
      'remove a replica (voter or learner) from the cluster; removing the leader makes it step down',
      (y) => withMembersOptions(y).option('node-id', { type: 'number', demandOption: true, describe: 'node id to remove' }),
      async (args) => {
        process.exitCode = await removeCommand({ admin: args.admin, secret: args['cluster-secret'] ?? process.env.RECALL_CLUSTER_SECRET, json: args.json, nodeId: args['node-id'] });
      },
    )
    .command(
      'members',
      'list the members (voters, learners, addresses, replication match, leader)',
      (y) => withMembersOptions(y),
      async (args) => {
        process.exitCode = await membersCommand({ admin: args.admin, json: args.json });
      },
    )
    .command(
      'demo',
      'a local cluster on this machine; Ctrl-C stops it',
      (y) =>
        y
          .option('dir', { type: 'string', default: './recall-demo', describe: 'directory for data, logs and the TLS certificate' })
          .option('replicas', { type: 'number', default: 3, describe: "number of replicas (odd, 1 to 7), each a recall serve process with its own MariaDB" })
          .option('engine', { type: 'string', default: 'mysql', describe: 'mysql or postgres' })
          .option('port-base', { type: 'number', default: 8500, describe: 'MySQL port of replica 1; the other ports shift with it' }),
      async (args) => {
        const code = await demoCommand({
          dir: args.dir,
          replicas: args.replicas,
          engine: args.engine,
          portBase: args['port-base'],
          debug: args.debug,
          logFormat: logFormatOf(args['log-format']),
        });
        process.exit(code);
      },
    )
    .command(
      'config',
      'print the effective configuration (flags > RECALL_* env > file > defaults)',
      (y) => withConfigOptions(y).option('reference', { type: 'boolean', describe: 'print the table of every key instead' }).strict(),
      (args) => {
        process.exitCode = configCommand(args as Record<string, unknown>);
      },
    )
    .command('version', 'print the version', {}, () => {
      process.stdout.write(`recall ${recallVersion()}\n`);
    })
    .demandCommand(1, 'name a command: serve, status, join, remove, members, demo, config or version')
    .strict()
    .help()
    .version(false)
    .fail((msg, err) => {
      if (err) throw err;
      process.stderr.write(`recall: ${msg}\n(run recall --help for the commands and options)\n`);
      process.exit(2);
    })
    .parseAsync();
}

await main(hideBin(process.argv));
