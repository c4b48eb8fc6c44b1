// The one error type the MySQL codecs throw: bad bytes from outside are not bugs,
// so callers catch ProtocolError and answer with an error packet instead of crashing.

export class ProtocolError extends Error {
  /** MySQL error number and SQLSTATE the frontend sends when this reaches a client. */
  constructor(
    message: string,
    readonly errno = 1043,
    readonly sqlState = '08S01',
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}
