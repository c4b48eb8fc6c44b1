// MySQL client/server protocol constants.
// Capability flags: https://dev.mysql.com/doc/dev/mysql-server/latest/group__group__cs__capabilities__flags.html
// Commands:         https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_command_phase.html
// Status flags:     https://dev.mysql.com/doc/dev/mysql-server/latest/mysql__com_8h.html (SERVER_STATUS_flags_enum)
// Column types:     https://dev.mysql.com/doc/dev/mysql-server/latest/field__types_8h.html
// Error codes:      https://mariadb.com/kb/en/mariadb-error-codes/

/** Capability flags (lower 32 bits; MariaDB's extended capabilities are below). */
export const CLIENT_LONG_PASSWORD = 0x1;
export const CLIENT_FOUND_ROWS = 0x2;
export const CLIENT_LONG_FLAG = 0x4;
export const CLIENT_CONNECT_WITH_DB = 0x8;
export const CLIENT_NO_SCHEMA = 0x10;
export const CLIENT_COMPRESS = 0x20;
export const CLIENT_ODBC = 0x40;
export const CLIENT_LOCAL_FILES = 0x80;
export const CLIENT_IGNORE_SPACE = 0x100;
export const CLIENT_PROTOCOL_41 = 0x200;
export const CLIENT_INTERACTIVE = 0x400;
export const CLIENT_SSL = 0x800;
export const CLIENT_IGNORE_SIGPIPE = 0x1000;
export const CLIENT_TRANSACTIONS = 0x2000;
export const CLIENT_RESERVED = 0x4000;
export const CLIENT_SECURE_CONNECTION = 0x8000;
export const CLIENT_MULTI_STATEMENTS = 0x10000;
export const CLIENT_MULTI_RESULTS = 0x20000;
export const CLIENT_PS_MULTI_RESULTS = 0x40000;
export const CLIENT_PLUGIN_AUTH = 0x80000;
export const CLIENT_CONNECT_ATTRS = 0x100000;
export const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA = 0x200000;
export const CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS = 0x400000;
export const CLIENT_SESSION_TRACK = 0x800000;
export const CLIENT_DEPRECATE_EOF = 0x1000000;
/** MariaDB's name for bit 0: a server that leaves it unset is MariaDB and carries extended capabilities. */
export const CLIENT_MYSQL = CLIENT_LONG_PASSWORD;

/**
 * MariaDB extended capabilities (bits 32.. of the capability set, sent as their own int4 in the
 * handshake's filler and in HandshakeResponse41's filler when CLIENT_MYSQL is unset).
 * https://mariadb.com/kb/en/connection/#capabilities
 * Values here are the bits of that int4.
 */
export const MARIADB_CLIENT_PROGRESS = 1 << 0;
export const MARIADB_CLIENT_COM_MULTI = 1 << 1;
export const MARIADB_CLIENT_STMT_BULK_OPERATIONS = 1 << 2;
export const MARIADB_CLIENT_EXTENDED_METADATA = 1 << 3;
export const MARIADB_CLIENT_CACHE_METADATA = 1 << 4;
export const MARIADB_CLIENT_BULK_UNIT_RESULTS = 1 << 5;

/**
 * Extended capabilities the relay passes through unchanged (intersected with the backend's).
 * Only EXTENDED_METADATA: it adds bytes inside column definitions, which the relay counts but
 * never reads. The others change where responses end (see src/frontend/mysql/DESIGN.md).
 */
export const RECALL_MARIADB_CAPABILITIES = MARIADB_CLIENT_EXTENDED_METADATA;

/** What Recall is able to relay; intersected with the backend's capabilities at start. */
export const RECALL_CAPABILITIES =
  CLIENT_LONG_PASSWORD |
  CLIENT_FOUND_ROWS |
  CLIENT_LONG_FLAG |
  CLIENT_CONNECT_WITH_DB |
  CLIENT_NO_SCHEMA |
  CLIENT_ODBC |
  CLIENT_LOCAL_FILES |
  CLIENT_IGNORE_SPACE |
  CLIENT_PROTOCOL_41 |
  CLIENT_INTERACTIVE |
  CLIENT_IGNORE_SIGPIPE |
  CLIENT_TRANSACTIONS |
  CLIENT_SECURE_CONNECTION |
  CLIENT_MULTI_STATEMENTS |
  CLIENT_MULTI_RESULTS |
  CLIENT_PS_MULTI_RESULTS |
  CLIENT_PLUGIN_AUTH |
  CLIENT_CONNECT_ATTRS |
  CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA |
  CLIENT_SESSION_TRACK |
  CLIENT_DEPRECATE_EOF;

/** Command bytes (first payload byte of a command-phase packet). */
export const COM_SLEEP = 0x00;
export const COM_QUIT = 0x01;
export const COM_INIT_DB = 0x02;
export const COM_QUERY = 0x03;
export const COM_FIELD_LIST = 0x04;
export const COM_CREATE_DB = 0x05;
export const COM_DROP_DB = 0x06;
export const COM_REFRESH = 0x07;
export const COM_SHUTDOWN = 0x08;
export const COM_STATISTICS = 0x09;
export const COM_PROCESS_INFO = 0x0a;
export const COM_CONNECT = 0x0b;
export const COM_PROCESS_KILL = 0x0c;
export const COM_DEBUG = 0x0d;
export const COM_PING = 0x0e;
export const COM_TIME = 0x0f;
export const COM_DELAYED_INSERT = 0x10;
export const COM_CHANGE_USER = 0x11;
export const COM_BINLOG_DUMP = 0x12;
export const COM_TABLE_DUMP = 0x13;
export const COM_CONNECT_OUT = 0x14;
export const COM_REGISTER_SLAVE = 0x15;
export const COM_STMT_PREPARE = 0x16;
export const COM_STMT_EXECUTE = 0x17;
export const COM_STMT_SEND_LONG_DATA = 0x18;
export const COM_STMT_CLOSE = 0x19;
export const COM_STMT_RESET = 0x1a;
export const COM_SET_OPTION = 0x1b;
export const COM_STMT_FETCH = 0x1c;
export const COM_DAEMON = 0x1d;
export const COM_BINLOG_DUMP_GTID = 0x1e;
export const COM_RESET_CONNECTION = 0x1f;

/** Status flags carried in OK and EOF packets. */
export const SERVER_STATUS_IN_TRANS = 0x1;
export const SERVER_STATUS_AUTOCOMMIT = 0x2;
export const SERVER_MORE_RESULTS_EXISTS = 0x8;
export const SERVER_STATUS_NO_GOOD_INDEX_USED = 0x10;
export const SERVER_STATUS_NO_INDEX_USED = 0x20;
export const SERVER_STATUS_CURSOR_EXISTS = 0x40;
export const SERVER_STATUS_LAST_ROW_SENT = 0x80;
export const SERVER_STATUS_DB_DROPPED = 0x100;
export const SERVER_STATUS_NO_BACKSLASH_ESCAPES = 0x200;
export const SERVER_STATUS_METADATA_CHANGED = 0x400;
export const SERVER_QUERY_WAS_SLOW = 0x800;
export const SERVER_PS_OUT_PARAMS = 0x1000;
export const SERVER_STATUS_IN_TRANS_READONLY = 0x2000;
export const SERVER_SESSION_STATE_CHANGED = 0x4000;

/** First payload byte of generic response packets. */
export const OK_HEADER = 0x00;
export const EOF_HEADER = 0xfe;
export const ERR_HEADER = 0xff;
export const LOCAL_INFILE_HEADER = 0xfb;
/** AuthMoreData (0x01) and AuthSwitchRequest (0xFE) in the connection phase. */
export const AUTH_MORE_DATA_HEADER = 0x01;
export const AUTH_SWITCH_HEADER = 0xfe;
/** caching_sha2_password AuthMoreData statuses and client requests. */
export const CACHING_SHA2_FAST_AUTH_SUCCESS = 0x03;
export const CACHING_SHA2_PERFORM_FULL_AUTHENTICATION = 0x04;
export const CACHING_SHA2_REQUEST_PUBLIC_KEY = 0x02;

/** Column types (binary protocol). */
export const MYSQL_TYPE_DECIMAL = 0x00;
export const MYSQL_TYPE_TINY = 0x01;
export const MYSQL_TYPE_SHORT = 0x02;
export const MYSQL_TYPE_LONG = 0x03;
export const MYSQL_TYPE_FLOAT = 0x04;
export const MYSQL_TYPE_DOUBLE = 0x05;
export const MYSQL_TYPE_NULL = 0x06;
export const MYSQL_TYPE_TIMESTAMP = 0x07;
export const MYSQL_TYPE_LONGLONG = 0x08;
export const MYSQL_TYPE_INT24 = 0x09;
export const MYSQL_TYPE_DATE = 0x0a;
export const MYSQL_TYPE_TIME = 0x0b;
export const MYSQL_TYPE_DATETIME = 0x0c;
export const MYSQL_TYPE_YEAR = 0x0d;
export const MYSQL_TYPE_NEWDATE = 0x0e;
export const MYSQL_TYPE_VARCHAR = 0x0f;
export const MYSQL_TYPE_BIT = 0x10;
export const MYSQL_TYPE_JSON = 0xf5;
export const MYSQL_TYPE_NEWDECIMAL = 0xf6;
export const MYSQL_TYPE_ENUM = 0xf7;
export const MYSQL_TYPE_SET = 0xf8;
export const MYSQL_TYPE_TINY_BLOB = 0xf9;
export const MYSQL_TYPE_MEDIUM_BLOB = 0xfa;
export const MYSQL_TYPE_LONG_BLOB = 0xfb;
export const MYSQL_TYPE_BLOB = 0xfc;
export const MYSQL_TYPE_VAR_STRING = 0xfd;
export const MYSQL_TYPE_STRING = 0xfe;
export const MYSQL_TYPE_GEOMETRY = 0xff;

/** Error numbers Recall sends itself, with their SQLSTATE. */
export const ER_CON_COUNT_ERROR = 1040; // 08004 Too many connections
export const ER_HANDSHAKE_ERROR = 1043; // 08S01 Bad handshake
export const ER_ACCESS_DENIED_ERROR = 1045; // 28000
export const ER_UNKNOWN_COM_ERROR = 1047; // 08S01
export const ER_SERVER_SHUTDOWN = 1053; // 08S01
export const ER_NET_PACKET_TOO_LARGE = 1153; // 08S01
export const ER_NET_READ_ERROR = 1158; // 08S01
export const ER_NET_PACKETS_OUT_OF_ORDER = 1156; // 08S01
export const ER_NET_READ_INTERRUPTED = 1159; // 08S01
export const CR_SERVER_LOST = 2013; // HY000

/** Payload length of a packet that continues in the next one (16 MiB - 1). */
export const PACKET_PAYLOAD_MAX = 0xffffff;

export const AUTH_NATIVE = 'mysql_native_password';
export const AUTH_CACHING_SHA2 = 'caching_sha2_password';
export const AUTH_CLEAR = 'mysql_clear_password';

/** utf8mb4_general_ci: the charset id Recall announces in its handshake. */
export const CHARSET_UTF8MB4_GENERAL_CI = 45;
