// The SQL every client test runs on both sides: a table with every MariaDB column type, rows with
// extremes, middle values and NULLs, a stored procedure with several result sets, and the
// statements that must fail with a known error number.

export const typesTable = `CREATE TABLE types (
  id INT PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
  mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
  dc DECIMAL(30,10), f FLOAT, d DOUBLE, b BIT(17),
  dt DATE, tm TIME(6), dtt DATETIME(6), ts TIMESTAMP(6) NULL DEFAULT NULL, y YEAR,
  c CHAR(10), vc VARCHAR(100), bn BINARY(4), vb VARBINARY(20),
  tb TINYBLOB, bl BLOB, mb MEDIUMBLOB, lb LONGBLOB, tt TINYTEXT, tx TEXT, mt MEDIUMTEXT, lt LONGTEXT,
  e ENUM('a','b','c'), s SET('x','y','z'), j JSON, g GEOMETRY, p POINT, ip INET6, u UUID
) DEFAULT CHARSET=utf8mb4`;

export const typesRows = [
  `INSERT INTO types VALUES (1, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295,
    -9223372036854775808, 18446744073709551615, -12345678901234567890.0123456789, -3.4e38, 1.7976931348623157e308,
    b'10101010101010101', '1000-01-01', '-838:59:59.000000', '1000-01-01 00:00:00.000000',
    '1970-01-01 00:00:01.000000', 1901, 'abc', 'héllo wörld 😀👍🏽', x'00ff0102', x'deadbeef00',
    x'00', x'0102', x'', x'ff', 'tiny', 'text ✓', 'medium', 'long 😀', 'a', 'x,z', '{"k": [1, 2.5, "s", null]}',
    ST_GeomFromText('LINESTRING(0 0,1 1,2 2)'), POINT(1.5, -2.25), '2001:db8::1', '123e4567-e89b-12d3-a456-426614174000')`,
  `INSERT INTO types VALUES (2, 127, 0, 32767, 0, 8388607, 0, 2147483647, 0,
    9223372036854775807, 0, 99999999999999999999.9999999999, 1.5, -0.1, b'0', '9999-12-31', '838:59:59.999999',
    '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999', 2155, '', '', x'00000000', x'',
    '', '', '', '', '', '', '', '', 'c', '', '[]', POINT(0, 0), POINT(3, 4), '::', '00000000-0000-0000-0000-000000000000')`,
  `INSERT INTO types (id) VALUES (3)`,
  `INSERT INTO types VALUES (4, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 0, 0, b'1', '2024-02-29', '12:34:56.789012',
    '2024-02-29 12:34:56.789012', '2024-02-29 12:34:56.789012', 2024, 'O''Brien', 'tab\\tnew\\nline\\\\', x'61626364',
    x'5c27', x'0a0d', REPEAT(x'ab', 60000), REPEAT(x'cd', 200000), REPEAT(x'ef', 300000), REPEAT('z', 100),
    REPEAT('é', 1000), REPEAT('m', 70000), REPEAT('L', 300000), 'b', 'x,y,z', '{"a": {"b": true}}', NULL, NULL, '::ffff:1.2.3.4',
    'ffffffff-ffff-ffff-ffff-ffffffffffff')`,
];

export const typesSelect = 'SELECT * FROM types ORDER BY id';

export const procedure = `CREATE PROCEDURE multi(IN n INT)
BEGIN
  SELECT n AS first, 'one' AS label;
  SELECT id, vc FROM types WHERE id <= n ORDER BY id;
  SELECT COUNT(*) AS cnt FROM types;
END`;

/** Statements that must fail, with the error number MariaDB gives. */
export const failing: { sql: string; errno: number }[] = [
  { sql: 'SELEC 1', errno: 1064 },
  { sql: 'SELECT * FROM no_such_table', errno: 1146 },
  { sql: 'INSERT INTO types (id) VALUES (1)', errno: 1062 },
  { sql: 'SELECT no_such_column FROM types', errno: 1054 },
];

/** Sets up the read-only account used by the privilege tests (idempotent). */
export function readerGrants(db: string, user: string, password: string): string {
  return `CREATE USER IF NOT EXISTS '${user}'@'%' IDENTIFIED BY '${password}';
CREATE USER IF NOT EXISTS '${user}'@'localhost' IDENTIFIED BY '${password}';
GRANT SELECT ON ${db}.* TO '${user}'@'%';
GRANT SELECT ON ${db}.* TO '${user}'@'localhost';`;
}
