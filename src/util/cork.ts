// Writes made in the same tick leave in one writev: the socket is corked at the first write of
// a tick and uncorked at the end of it (transport frames, pipelined SQL commands).
import type { Writable } from 'node:stream';

export class TickCork {
  private corked = false;
  // made once: hold() runs at every write, a closure per call would be garbage per write
  private readonly release = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  constructor(private readonly socket: Writable) {}

  /** Call before writing. */
  hold(): void {
    if (this.corked) return;
    this.corked = true;
    this.socket.cork();
    process.nextTick(this.release);
  }
}
