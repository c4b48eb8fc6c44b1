// yargs options for every configuration key, and a Markdown reference of all keys,
// both generated from the key table so that the flags, variables and docs never disagree.
import type { Argv } from 'yargs';
import { envName, flagName, keySpecs } from './keys.js';
import { configDefaults } from './load.js';

/** Adds --config and one option per key. Values stay text: the loader validates them. */
export function withConfigOptions<T>(y: Argv<T>): Argv<T> {
  let out = y.option('config', { type: 'string', describe: 'YAML or JSON config file (env RECALL_CONFIG)', group: 'Configuration:' });
  for (const spec of keySpecs) {
    out = out.option(flagName(spec), {
      type: spec.kind === 'bool' ? 'boolean' : 'string',
      describe: `${spec.describe} (env ${envName(spec)})`,
      group: 'Configuration:',
      // No yargs defaults: "not given" must stay distinguishable from a value, for precedence.
    });
  }
  return out;
}

function defaultText(path: string): string {
  const d = configDefaults as unknown as Record<string, unknown>;
  const listen = configDefaults.listen as Record<string, string>;
  if (path.startsWith('listen.')) return listen[path.slice(7)]!;
  if (path === 'managed.port') return '0';
  if (path === 'managedEnabled' || path === 'managed.enabled') return 'true when no dsn and no hook commands';
  if (path === 'maxPacketBytes') return '64MiB';
  if (path === 'replicas') return '[listen.peer]';
  if (path === 'logFormat') return 'text on a terminal, else json';
  if (path === 'debug') return 'false';
  const v = d[path];
  return v === undefined ? '' : String(v);
}

/** A Markdown table of every key: file key, flag, environment variable, default, meaning. */
export function configReference(): string {
  const rows = keySpecs.map((s) => {
    const fileKey = s.alias ? `\`${s.path}\` (or \`${s.alias}\`)` : `\`${s.path}\``;
    return `| ${fileKey} | \`--${flagName(s)}\` | \`${envName(s)}\` | ${defaultText(s.path) ? `\`${defaultText(s.path)}\`` : ''} | ${s.describe} |`;
  });
  return ['| file key | flag | environment | default | meaning |', '|---|---|---|---|---|', ...rows].join('\n');
}
