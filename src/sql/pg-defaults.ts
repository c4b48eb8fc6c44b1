// Column defaults that read the clock or a random source: a replica that lets postgres fill them
// in gets its own value. The caller reads a written table's columns from the catalog (once, and
// again after DDL on it) with PG_COLUMNS_SQL, turns the rows into PgTableDefaults with
// volatileDefaults(), and hands them to rewritePgWrite, which writes the omitted columns into the
// statement as literals fixed by the leader.
import { parsePg, type PgRawStatement, type TextOffsets } from './pg-parse.js';
import { funcName, walk, type Fields } from './pg-tree.js';
import { FRESH_FUNCTIONS, NEVER_FUNCTIONS, TIME_FUNCTIONS, TIME_KEYWORDS } from './pg-volatile.js';

/** Every column of the table `$1` (a name as to_regclass reads it: PgStatement.tables), in order,
 * with its default expression (generated columns have none: postgres computes them). */
export const PG_COLUMNS_SQL = `SELECT a.attname::text AS name,
  CASE WHEN a.attgenerated = '' THEN pg_catalog.pg_get_expr(d.adbin, d.adrelid) END AS default_expr
FROM pg_catalog.pg_attribute a
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`;

export interface PgColumnRow {
  name: string;
  default_expr: string | null;
}

export interface PgVolatileDefault {
  /** the default expression as pg_get_expr prints it */
  expr: string;
  /** a fresh value per evaluation (random(), gen_random_uuid()): per-row contexts refuse it */
  fresh: boolean;
  /** a function that cannot be made deterministic: inserts relying on the default are refused */
  never?: string;
  /** `SELECT <expr>` parsed, for rewriting the expression into a literal */
  parsed: { text: string; statement: PgRawStatement; offsets: TextOffsets };
}

export interface PgTableDefaults {
  /** every column, in table order (positional VALUES fill them in this order) */
  columns: string[];
  /** the columns whose default calls a time, random or uuid function */
  volatile: ReadonlyMap<string, PgVolatileDefault>;
}

/** The table's columns and those whose DEFAULT calls a function a replica cannot reproduce. */
export function volatileDefaults(rows: readonly PgColumnRow[]): PgTableDefaults {
  const volatile = new Map<string, PgVolatileDefault>();
  for (const r of rows) {
    if (!r.default_expr) continue;
    const text = `SELECT ${r.default_expr}`;
    const p = parsePg(text);
    if (!p.ok || p.statements.length !== 1) throw new Error(`pg_get_expr gave a default that does not parse: ${r.default_expr}`);
    let rewritable = false;
    let fresh = false;
    let never: string | undefined;
    walk(p.statements[0]!.node, (t, f) => {
      if (t === 'SQLValueFunction' && TIME_KEYWORDS.has(String(f.op))) rewritable = true;
      if (t !== 'FuncCall') return;
      const { schema, name } = funcName(f as Fields);
      if (schema && schema !== 'pg_catalog') return;
      if (TIME_FUNCTIONS.has(name)) rewritable = true;
      if (FRESH_FUNCTIONS.has(name)) rewritable = fresh = true;
      if (NEVER_FUNCTIONS.has(name)) never ??= name;
    });
    if (rewritable || never) {
      const d: PgVolatileDefault = { expr: r.default_expr, fresh, parsed: { text, statement: p.statements[0]!, offsets: p.offsets } };
      if (never) d.never = never;
      volatile.set(r.name, d);
    }
  }
  return { columns: rows.map((r) => r.name), volatile };
}
