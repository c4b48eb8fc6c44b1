// A broken invariant of the core is a bug: it throws and the process should stop.
export class AssertionError extends Error {
  constructor(message: string) {
    super(`consensus invariant broken: ${message}`);
    this.name = 'AssertionError';
  }
}

export function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new AssertionError(message);
}
