// Structured logging for every Recall component (winston).
// Quiet by default (info and above), verbose with --debug; readable in a terminal,
// one JSON object per line with --log-format json. Components take a child logger
// with their own fields (component, nodeId, term, index) so every line carries them.
import winston from 'winston';

export type LogFormat = 'text' | 'json';
export type Logger = winston.Logger;

// Under the test runner (RECALL_TEST=1) only warnings and errors show until a command
// configures logging, so test output stays readable; RECALL_TEST_VERBOSE=1 shows all.
const defaultLevel = process.env.RECALL_TEST === '1' && !process.env.RECALL_TEST_VERBOSE ? 'warn' : 'info';
let root: winston.Logger = makeLogger(defaultLevel, process.stderr.isTTY ? 'text' : 'json');

function makeLogger(level: string, format: LogFormat): winston.Logger {
  const base = [winston.format.timestamp(), winston.format.errors({ stack: true })];
  const fmt =
    format === 'json'
      ? winston.format.combine(...base, winston.format.json())
      : winston.format.combine(
          ...base,
          winston.format.printf((info) => {
            const { timestamp, level: lvl, message, component, ...rest } = info as Record<string, unknown>;
            const extra = Object.entries(rest)
              .filter(([k]) => typeof k === 'string' && !k.startsWith('Symbol('))
              .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
              .join(' ');
            return `${timestamp} ${String(lvl).padEnd(5)} ${component ? `[${component}] ` : ''}${message}${extra ? ' ' + extra : ''}`;
          }),
        );
  // Logs go to stderr so that commands that print results (status, demo) keep stdout clean.
  return winston.createLogger({
    level,
    format: fmt,
    transports: [new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'debug', 'verbose', 'silly'] })],
  });
}

/** Reconfigure the process-wide logger (called once by the CLI after parsing flags). */
export function configureLogging(opts: { debug?: boolean; format?: LogFormat; silent?: boolean; quiet?: boolean }): void {
  // quiet: warnings and errors only (the demo prints its own progress on stdout).
  const level = opts.debug ? 'debug' : opts.quiet ? 'warn' : 'info';
  const next = makeLogger(level, opts.format ?? (process.stderr.isTTY ? 'text' : 'json'));
  next.silent = !!opts.silent;
  root = next;
}

/** A logger for one component; extra fields are attached to every line. */
export function logger(component: string, fields: Record<string, unknown> = {}): Logger {
  // Resolved lazily so that configureLogging after import still takes effect; the child is
  // made once per configuration, not on every call (debug calls sit on hot paths).
  let base: winston.Logger | undefined;
  let child: winston.Logger | undefined;
  const current = (): winston.Logger => {
    if (base !== root || !child) {
      base = root;
      child = root.child({ component, ...fields });
    }
    return child;
  };
  return new Proxy({} as winston.Logger, {
    get(_t, prop) {
      const c = current();
      const v = (c as unknown as Record<string | symbol, unknown>)[prop];
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(c) : v;
    },
  });
}
