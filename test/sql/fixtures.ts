// Reading the table-driven fixtures in fixtures/sql/.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const fixtureDir = join(process.cwd(), 'fixtures/sql');

export function readFixture(name: string): string {
  return readFileSync(join(fixtureDir, name), 'utf8');
}

export interface TsvRow {
  line: number;
  cols: string[];
}

/** Tab-separated rows; '#' lines and blank lines skipped; '⏎' in a cell stands for a newline. */
export function readTsv(name: string, columns: number): TsvRow[] {
  const rows: TsvRow[] = [];
  readFixture(name).split('\n').forEach((text, idx) => {
    if (text.trim() === '' || text.startsWith('#')) return;
    const cols = text.split('\t');
    if (cols.length !== columns) throw new Error(`${name}:${idx + 1}: expected ${columns} columns, got ${cols.length}`);
    rows.push({ line: idx + 1, cols: cols.map((c) => c.replaceAll('⏎', '\n')) });
  });
  return rows;
}

/** 'a=1;b=x,y' -> Map; '-' -> empty. */
export function parseExtras(s: string): Map<string, string> {
  const m = new Map<string, string>();
  if (s === '-' || s === '') return m;
  for (const part of s.split(';')) {
    const eq = part.indexOf('=');
    m.set(eq < 0 ? part : part.slice(0, eq), eq < 0 ? '' : part.slice(eq + 1));
  }
  return m;
}

export const list = (s: string | undefined): string[] => (s === undefined || s === '' ? [] : s.split(','));
