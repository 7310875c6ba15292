// Median and spread of repeated runs.

export interface Summary {
  readonly median: number
  readonly min: number
  readonly max: number
  /** (max - min) / median, in percent: how far apart the runs were. */
  readonly spreadPct: number
}

export function summarize (values: readonly number[]): Summary {
  const finite = values.filter(Number.isFinite)
  if (finite.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN, spreadPct: Number.NaN }
  const sorted = [...finite].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  const median = sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
  const min = sorted[0]!
  const max = sorted[sorted.length - 1]!
  return { median, min, max, spreadPct: median === 0 ? 0 : (max - min) / median * 100 }
}
