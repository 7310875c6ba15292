// Reads Prometheus text exposition the way a scraper does: families with their TYPE, and
// samples with their labels, so tests ask for values by name and labels instead of matching
// lines.

export interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

export interface Exposition {
  /** Family name → counter, gauge, histogram, summary or untyped. */
  readonly types: ReadonlyMap<string, string>
  readonly samples: readonly Sample[]
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g

export function parseExposition (text: string): Exposition {
  const types = new Map<string, string>()
  const samples: Sample[] = []
  for (const line of text.split('\n')) {
    if (line === '') continue
    const type = /^# TYPE (\S+) (\S+)$/.exec(line)
    if (type !== null) {
      types.set(type[1]!, type[2]!)
      continue
    }
    if (line.startsWith('#')) continue
    const match = SAMPLE.exec(line)
    if (match === null) throw new Error(`not a sample line: ${line}`)
    const labels: Record<string, string> = {}
    for (const [, name, value] of (match[2] ?? '').matchAll(LABEL)) labels[name!] = value!.replace(/\\(.)/g, (_, c: string) => c === 'n' ? '\n' : c)
    samples.push({ name: match[1]!, labels, value: Number(match[3]) })
  }
  return { types, samples }
}

/** The samples named `name` whose labels include `labels`. */
export function samplesOf (exposition: Exposition, name: string, labels: Readonly<Record<string, string>> = {}): Sample[] {
  return exposition.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
}

/** The sum of those samples' values: a label left out is summed over, as sum() in PromQL does. */
export function valueOf (exposition: Exposition, name: string, labels: Readonly<Record<string, string>> = {}): number {
  return samplesOf(exposition, name, labels).reduce((sum, s) => sum + s.value, 0)
}

/**
 * The names a PromQL selector can use: a histogram's `_bucket`, `_sum` and `_count` (never its
 * family name, which selects nothing), a summary's family name, `_sum` and `_count`, and every
 * other family by its own name.
 */
export function selectableNames (exposition: Exposition): Set<string> {
  const names = new Set<string>()
  for (const [family, type] of exposition.types) {
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(family + suffix)
    else if (type === 'summary') for (const suffix of ['', '_sum', '_count']) names.add(family + suffix)
    else names.add(family)
  }
  return names
}
