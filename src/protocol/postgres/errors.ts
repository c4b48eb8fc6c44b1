// Bad input from a peer during the protocol exchange: carries the SQLSTATE the client is told.
import { SQLSTATE_PROTOCOL_VIOLATION } from './constants.js';

export class PgProtocolError extends Error {
  constructor(
    message: string,
    readonly code: string = SQLSTATE_PROTOCOL_VIOLATION,
    readonly detail?: string,
  ) {
    super(message);
    this.name = 'PgProtocolError';
  }
}
