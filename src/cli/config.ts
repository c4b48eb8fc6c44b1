// `recall config`: the effective configuration after flags, environment, file and defaults
// (secrets masked), or with --reference the table of every key, flag and variable.
import YAML from 'yaml';
import { configReference } from '../config/flags.js';
import { loadConfigOrExit } from './serve.js';

export function configCommand(flags: Record<string, unknown>): number {
  if (flags.reference) {
    process.stdout.write(configReference() + '\n');
    return 0;
  }
  const cfg = loadConfigOrExit(flags);
  const shown = { ...cfg, clusterSecret: cfg.clusterSecret ? '***' : undefined };
  process.stdout.write(YAML.stringify(JSON.parse(JSON.stringify(shown))));
  return 0;
}
