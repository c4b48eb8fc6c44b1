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

/** For hot paths: the caller tests the condition, so no message is built while it holds. */
export function fail(message: string): never {
  throw new AssertionError(message);
}
