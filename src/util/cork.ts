// Writes made in the same tick leave in one writev: the socket is corked at the first write of
// a tick and uncorked at the end of it (transport frames, pipelined SQL commands).
import type { Writable } from 'node:stream';

export class TickCork {
  private corked = false;

  constructor(private readonly socket: Writable) {}

  /** Call before writing. */
  hold(): void {
    if (this.corked) return;
    this.corked = true;
    this.socket.cork();
    process.nextTick(() => {
      this.corked = false;
      this.socket.uncork();
    });
  }
}
