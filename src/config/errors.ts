// Configuration errors: every message names the key, says what is wrong and shows a valid
// example, so that a user can fix the file, flag or variable without reading the code.

export class ConfigError extends Error {
  constructor(
    readonly key: string,
    readonly problem: string,
    readonly example?: string,
    readonly source?: string,
  ) {
    super(
      `config error: ${key}: ${problem}${example !== undefined ? ` (example: ${example})` : ''}${source ? ` [from ${source}]` : ''}`,
    );
    this.name = 'ConfigError';
  }
}

/** Edit distance, for "did you mean" hints on misspelt keys. */
export function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j]!;
      prev[j] = Math.min(up + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length]!;
}

/** The closest candidate when it is close enough to be a plausible typo. */
export function didYouMean(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}
