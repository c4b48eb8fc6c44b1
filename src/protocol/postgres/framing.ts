// Frontend message framing after start-up: which type bytes a client may send and how long each
// may be, with postgres' own limits (PQ_SMALL_MESSAGE_LIMIT for the small ones, the configurable
// large limit for Query, Parse, Bind, CopyData, FunctionCall).
// https://www.postgresql.org/docs/current/protocol-overview.html#PROTOCOL-MESSAGE-CONCEPTS
import {
  MSG_BIND,
  MSG_CLOSE,
  MSG_COPY_DATA,
  MSG_COPY_DONE,
  MSG_COPY_FAIL,
  MSG_DESCRIBE,
  MSG_EXECUTE,
  MSG_FLUSH,
  MSG_FUNCTION_CALL,
  MSG_PARSE,
  MSG_QUERY,
  MSG_SYNC,
  MSG_TERMINATE,
  SMALL_MESSAGE_BYTES_MAX,
} from './constants.js';

/** Per type byte: 0 not a frontend message, 1 small, 2 large. */
const SIZE_CLASS = new Uint8Array(256);
for (const t of [MSG_CLOSE, MSG_DESCRIBE, MSG_EXECUTE, MSG_FLUSH, MSG_SYNC, MSG_TERMINATE, MSG_COPY_DONE, MSG_COPY_FAIL]) SIZE_CLASS[t] = 1;
for (const t of [MSG_QUERY, MSG_PARSE, MSG_BIND, MSG_COPY_DATA, MSG_FUNCTION_CALL]) SIZE_CLASS[t] = 2;

/**
 * The largest length (Int32, counting itself) a frontend message of this type may carry after
 * start-up, or -1 when the type byte is not a frontend message.
 */
export function frontendMessageLengthMax(type: number, largeBytesMax: number): number {
  const c = SIZE_CLASS[type]!;
  return c === 0 ? -1 : c === 1 ? SMALL_MESSAGE_BYTES_MAX : largeBytesMax;
}

/** A printable name of a type byte for error messages (postgres prints the number). */
export function typeByteName(type: number): string {
  return type >= 0x20 && type < 0x7f ? `'${String.fromCharCode(type)}' (${type})` : String(type);
}
