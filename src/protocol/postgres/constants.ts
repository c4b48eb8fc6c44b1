// PostgreSQL frontend/backend protocol v3 constants: message type bytes, authentication request
// codes, the special startup codes and the SQLSTATEs Recall itself sends.
// https://www.postgresql.org/docs/current/protocol-message-formats.html

/** Protocol 3.0 as sent in a StartupMessage (major << 16 | minor). */
export const PROTOCOL_3_0 = 196608;
export const PROTOCOL_MAJOR_SUPPORTED = 3;
export const PROTOCOL_MINOR_LATEST = 0;
/** Request codes sent in place of a protocol version (major 1234). */
export const CANCEL_REQUEST_CODE = 80877102;
export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;

/** postgres' MAX_STARTUP_PACKET_LENGTH. */
export const STARTUP_PACKET_BYTES_MAX = 10000;
/** postgres' PQ_SMALL_MESSAGE_LIMIT: frontend messages that are never large (Sync, Execute, ...). */
export const SMALL_MESSAGE_BYTES_MAX = 10000;
/** postgres' PQ_LARGE_MESSAGE_LIMIT (1 GiB - 1): Query, Parse, Bind, CopyData, FunctionCall. */
export const LARGE_MESSAGE_BYTES_MAX = 0x3fffffff;

// Frontend (client -> server) message types
export const MSG_BIND = 0x42; // 'B'
export const MSG_CLOSE = 0x43; // 'C'
export const MSG_COPY_DATA = 0x64; // 'd'
export const MSG_COPY_DONE = 0x63; // 'c'
export const MSG_COPY_FAIL = 0x66; // 'f'
export const MSG_DESCRIBE = 0x44; // 'D'
export const MSG_EXECUTE = 0x45; // 'E'
export const MSG_FLUSH = 0x48; // 'H'
export const MSG_FUNCTION_CALL = 0x46; // 'F'
export const MSG_PARSE = 0x50; // 'P'
export const MSG_PASSWORD = 0x70; // 'p' (PasswordMessage, SASLInitialResponse, SASLResponse)
export const MSG_QUERY = 0x51; // 'Q'
export const MSG_SYNC = 0x53; // 'S'
export const MSG_TERMINATE = 0x58; // 'X'

// Backend (server -> client) message types
export const MSG_AUTHENTICATION = 0x52; // 'R'
export const MSG_BACKEND_KEY_DATA = 0x4b; // 'K'
export const MSG_BIND_COMPLETE = 0x32; // '2'
export const MSG_CLOSE_COMPLETE = 0x33; // '3'
export const MSG_COMMAND_COMPLETE = 0x43; // 'C'
export const MSG_COPY_IN_RESPONSE = 0x47; // 'G'
export const MSG_COPY_OUT_RESPONSE = 0x48; // 'H'
export const MSG_COPY_BOTH_RESPONSE = 0x57; // 'W'
export const MSG_DATA_ROW = 0x44; // 'D'
export const MSG_EMPTY_QUERY_RESPONSE = 0x49; // 'I'
export const MSG_ERROR_RESPONSE = 0x45; // 'E'
export const MSG_NEGOTIATE_PROTOCOL_VERSION = 0x76; // 'v'
export const MSG_NO_DATA = 0x6e; // 'n'
export const MSG_NOTICE_RESPONSE = 0x4e; // 'N'
export const MSG_NOTIFICATION_RESPONSE = 0x41; // 'A'
export const MSG_PARAMETER_DESCRIPTION = 0x74; // 't'
export const MSG_PARAMETER_STATUS = 0x53; // 'S'
export const MSG_PARSE_COMPLETE = 0x31; // '1'
export const MSG_PORTAL_SUSPENDED = 0x73; // 's'
export const MSG_READY_FOR_QUERY = 0x5a; // 'Z'
export const MSG_ROW_DESCRIPTION = 0x54; // 'T'

// Authentication request codes (the int32 after 'R')
export const AUTH_OK = 0;
export const AUTH_CLEARTEXT_PASSWORD = 3;
export const AUTH_MD5_PASSWORD = 5;
export const AUTH_SASL = 10;
export const AUTH_SASL_CONTINUE = 11;
export const AUTH_SASL_FINAL = 12;

// ReadyForQuery transaction status
export const TX_IDLE = 0x49; // 'I'
export const TX_IN_TRANSACTION = 0x54; // 'T'
export const TX_FAILED = 0x45; // 'E'

export const SCRAM_SHA_256 = 'SCRAM-SHA-256';

// SQLSTATEs Recall sends itself (https://www.postgresql.org/docs/current/errcodes-appendix.html)
export const SQLSTATE_PROTOCOL_VIOLATION = '08P01';
export const SQLSTATE_CONNECTION_FAILURE = '08006';
export const SQLSTATE_CANNOT_CONNECT_NOW = '57P03';
export const SQLSTATE_FEATURE_NOT_SUPPORTED = '0A000';
export const SQLSTATE_INVALID_AUTHORIZATION = '28000';
export const SQLSTATE_INVALID_PASSWORD = '28P01';
export const SQLSTATE_TOO_MANY_CONNECTIONS = '53300';
export const SQLSTATE_QUERY_CANCELED = '57014';
export const SQLSTATE_ADMIN_SHUTDOWN = '57P01';
