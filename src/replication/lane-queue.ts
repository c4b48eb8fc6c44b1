// What the two write lanes (lane.ts for MySQL, pg/lane.ts for PostgreSQL) share about their
// waiting requests: one step at a time, and waiters that give up after the lane timeout.

/** A request waiting for the lane. */
export interface LaneWaiter {
  deadline: number;
  reject(e: Error): void;
}

/** Rejects, with `error()`, every waiter whose deadline is at or before `now` (same clock as the deadlines). */
export function rejectExpired(queue: LaneWaiter[], now: number, error: () => Error): void {
  for (let i = queue.length - 1; i >= 0; i--) {
    const w = queue[i]!;
    if (w.deadline <= now) {
      queue.splice(i, 1);
      w.reject(error());
    }
  }
}

/** Runs one lane step at a time; `next` is called after each step to start the following one. */
export class LaneSteps {
  busy = false;

  constructor(
    private readonly log: { error(msg: string, meta: Record<string, unknown>): void },
    private readonly next: () => void,
  ) {}

  run(fn: () => Promise<void>): void {
    this.busy = true;
    fn()
      .catch((e: unknown) => this.log.error('write lane step failed', { error: (e as Error).message }))
      .finally(() => {
        this.busy = false;
        this.next();
      });
  }
}
