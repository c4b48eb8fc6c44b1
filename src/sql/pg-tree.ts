// Small helpers over libpg-query's parse tree (the protobuf JSON form of postgres' raw parse
// nodes). A node is `{ TypeName: { ...fields } }`; fields that the grammar always fills with
// one node type (a statement's `relation`, a SELECT's `withClause`) hold the fields inline.
// Default values (false, 0, empty lists) are omitted, so every field read is optional.
import type { Node, RangeVar, FuncCall } from 'libpg-query';

export type Fields = Record<string, unknown>;

/** The type name of a wrapped node and its fields. */
export function unwrap(node: unknown): [string, Fields] | undefined {
  if (!node || typeof node !== 'object' || Array.isArray(node)) return undefined;
  const keys = Object.keys(node);
  if (keys.length !== 1) return undefined;
  const k = keys[0]!;
  const v = (node as Fields)[k];
  if (k.charCodeAt(0) < 65 || k.charCodeAt(0) > 90 || !v || typeof v !== 'object' || Array.isArray(v)) return undefined;
  return [k, v as Fields];
}

export function nodeType(node: Node): string {
  return Object.keys(node)[0] ?? '';
}

/**
 * Depth-first visit of every wrapped node under `value` (the value itself included).
 * `fn` returns false to skip a node's children.
 */
export function walk(value: unknown, fn: (type: string, fields: Fields) => boolean | void): void {
  if (!value || typeof value !== 'object') return;
  if (Array.isArray(value)) {
    for (const v of value) walk(v, fn);
    return;
  }
  const w = unwrap(value);
  if (w) {
    if (fn(w[0], w[1]) === false) return;
    walkFields(w[1], fn);
    return;
  }
  walkFields(value as Fields, fn);
}

function walkFields(fields: Fields, fn: (type: string, fields: Fields) => boolean | void): void {
  for (const k in fields) {
    const v = fields[k];
    if (v && typeof v === 'object') walk(v, fn);
  }
}

/** Whether any node under `value` satisfies `pred`. */
export function some(value: unknown, pred: (type: string, fields: Fields) => boolean): boolean {
  let found = false;
  walk(value, (t, f) => {
    if (found) return false;
    if (pred(t, f)) found = true;
    return !found;
  });
  return found;
}

/** `schema.table` as written (catalog too when given), in the form to_regclass() reads: names
 * as postgres folded them, double-quoted where they need it. */
export function rangeVarName(rv: RangeVar | Fields | undefined): string | undefined {
  if (!rv) return undefined;
  const r = rv as RangeVar;
  if (!r.relname) return undefined;
  return [r.catalogname, r.schemaname, r.relname].filter((p): p is string => !!p).map(quoteIdent).join('.');
}

/** An identifier as postgres' quote_ident writes it (keywords aside: they are quoted by nobody here). */
export function quoteIdent(name: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

/** The String values of a name list (funcname, names of a TypeName, ...). */
export function nameList(list: unknown): string[] {
  if (!Array.isArray(list)) return [];
  const out: string[] = [];
  for (const item of list) {
    const u = unwrap(item);
    if (u && u[0] === 'String') out.push(String(u[1].sval ?? ''));
  }
  return out;
}

/** A function call's name: the last part, and the schema when it is qualified. */
export function funcName(fc: FuncCall | Fields): { schema?: string; name: string } {
  const parts = nameList((fc as FuncCall).funcname);
  const name = parts.at(-1) ?? '';
  return parts.length > 1 ? { schema: parts.at(-2)!, name } : { name };
}

/** The value of a DefElem list option (`options: [{DefElem: {defname, arg}}]`): true when present
 * without an argument, the argument's boolean reading otherwise, undefined when absent. */
export function defOption(options: unknown, name: string): boolean | undefined {
  if (!Array.isArray(options)) return undefined;
  for (const o of options) {
    const u = unwrap(o);
    if (!u || u[0] !== 'DefElem' || u[1].defname !== name) continue;
    const arg = unwrap(u[1].arg);
    if (!arg) return true;
    if (arg[0] === 'Boolean') return !!arg[1].boolval;
    if (arg[0] === 'String') return !['off', 'false', 'no', '0'].includes(String(arg[1].sval).toLowerCase());
    if (arg[0] === 'Integer') return !!arg[1].ival;
    if (arg[0] === 'A_Const') {
      const c = arg[1];
      if (c.boolval) return !!(c.boolval as Fields).boolval;
      if (c.ival) return !!(c.ival as Fields).ival;
      if (c.sval) return !['off', 'false', 'no', '0'].includes(String((c.sval as Fields).sval).toLowerCase());
    }
    return true;
  }
  return undefined;
}

/** The constant of a DefElem option as text (`transaction_isolation` → 'serializable'). */
export function defOptionText(options: unknown, name: string): string | undefined {
  if (!Array.isArray(options)) return undefined;
  for (const o of options) {
    const u = unwrap(o);
    if (!u || u[0] !== 'DefElem' || u[1].defname !== name) continue;
    const arg = unwrap(u[1].arg);
    if (!arg) return undefined;
    if (arg[0] === 'A_Const') return constText(arg[1]);
    if (arg[0] === 'String') return String(arg[1].sval ?? '');
  }
  return undefined;
}

/** An A_Const's value as text (ints, floats, strings, booleans); undefined for NULL. */
export function constText(c: Fields): string | undefined {
  if (c.isnull) return undefined;
  if (c.ival) return String((c.ival as Fields).ival ?? 0);
  if (c.fval) return String((c.fval as Fields).fval ?? '');
  if (c.sval) return String((c.sval as Fields).sval ?? '');
  if (c.boolval) return (c.boolval as Fields).boolval ? 'true' : 'false';
  if (c.bsval) return String((c.bsval as Fields).bsval ?? '');
  return undefined;
}
