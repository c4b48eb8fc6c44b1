// Remembers whether any test of a file failed, so that its after() prints the nodes' logs only
// then (a passing run stays quiet).
export interface FailureGuard {
  /** Wraps a test body: a throw marks the file failed and is passed on. */
  guard(fn: () => Promise<void>): () => Promise<void>;
  readonly failed: boolean;
}

export function failureGuard(): FailureGuard {
  let failed = false;
  return {
    guard: (fn) => async () => {
      try {
        await fn();
      } catch (e) {
        failed = true;
        throw e;
      }
    },
    get failed() {
      return failed;
    },
  };
}
