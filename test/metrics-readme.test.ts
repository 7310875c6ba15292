// The README's metric tables are the contract: a running `podgate serve` (gateway, admin port
// and the Kubernetes provisioner, on the fake API server) exposes exactly the metrics they
// list, with their types, and before any request every series of every label value they name,
// the request path's and spawn on demand's at zero.
import { readFile } from 'node:fs/promises'
import t from 'tap'
import { startKubeServe } from './support/kube-serve.ts'
import { samplesOf, type Exposition } from './support/metrics.ts'

const README = await readFile(new URL('../README.md', import.meta.url), 'utf8')

interface Row {
  readonly name: string
  readonly type: string
  /** The labels whose values the row enumerates (`label` = `a`, `b`); other labels it only names. */
  readonly labels: ReadonlyMap<string, readonly string[]>
  /** Which table: 0 requests, 1 spawn on demand, 2 Kubernetes. */
  readonly table: number
}

/** The rows of the tables under "### Metrics", in order. */
function metricTables (readme: string): Row[] {
  const section = /^### Metrics\n([\s\S]*?)(?=^#{2,3} )/m.exec(readme)?.[1]
  if (section === undefined) throw new Error('README has no "### Metrics" section')
  const rows: Row[] = []
  let table = -1
  for (const line of section.split('\n')) {
    if (line.startsWith('| Metric |')) table++
    const cells = /^\| `(podgate_[a-z0-9_]+)` \| (\w+) \|([^|]*)\|/.exec(line)
    if (cells === null) continue
    const labels = new Map<string, string[]>()
    for (const part of cells[3]!.split(';')) {
      const enumerated = /^\s*`(\w+)` = (.*)$/.exec(part)
      if (enumerated !== null) labels.set(enumerated[1]!, [...enumerated[2]!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!))
    }
    rows.push({ name: cells[1]!, type: cells[2]!, labels, table })
  }
  return rows
}

/** Every combination of the enumerated label values. */
function combinations (labels: ReadonlyMap<string, readonly string[]>): Array<Record<string, string>> {
  let result: Array<Record<string, string>> = [{}]
  for (const [label, values] of labels) result = result.flatMap((partial) => values.map((value) => ({ ...partial, [label]: value })))
  return result
}

const PROCESS_METRICS = /^podgate_(?:process|nodejs)_/

function families (exposition: Exposition): Map<string, string> {
  return new Map([...exposition.types].filter(([name]) => !PROCESS_METRICS.test(name)))
}

const rows = metricTables(README)

void t.test('the README check reads the tables it means', (t) => {
  const parsed = metricTables('### Metrics\n\n| Metric | Type | Labels | What |\n|---|---|---|---|\n| `podgate_a_total` | counter | `x` = `1`, `2`; `y` = `p` | a |\n' +
    '| `podgate_b` | gauge | | b |\n\n| Metric | Type | Labels | What |\n|---|---|---|---|\n| `podgate_c_total` | counter | `kind`, `verb` | c |\n\n## Next\n| `podgate_d` | gauge | | not in the section |\n')
  t.same(parsed.map((r) => [r.name, r.type, r.table, [...r.labels]]), [
    ['podgate_a_total', 'counter', 0, [['x', ['1', '2']], ['y', ['p']]]],
    ['podgate_b', 'gauge', 0, []],
    ['podgate_c_total', 'counter', 1, []],
  ])
  t.same(combinations(parsed[0]!.labels), [{ x: '1', y: 'p' }, { x: '2', y: 'p' }])
  t.ok(rows.length >= 30, `the README lists ${rows.length} metrics`)
  t.same(rows.filter((r, i) => rows.findIndex((o) => o.name === r.name) !== i).map((r) => r.name), [], 'none listed twice')
  t.end()
})

void t.test('a running podgate exposes exactly the README\'s metrics, before any request', async (t) => {
  const podgate = await startKubeServe(t)
  const exposition = await podgate.scrape()
  const exposed = families(exposition)

  t.same([...exposed.keys()].filter((name) => !rows.some((r) => r.name === name)).sort(), [], 'every exposed metric is in the README')
  t.same(rows.filter((r) => !exposed.has(r.name)).map((r) => r.name), [], 'every README metric is exposed')
  t.same(rows.filter((r) => exposed.has(r.name) && exposed.get(r.name) !== r.type).map((r) => `${r.name}: README ${r.type}, exposed ${exposed.get(r.name)}`), [], 'with the type the README gives')
  t.ok([...exposition.types.keys()].some((name) => PROCESS_METRICS.test(name)), 'and the Node.js process metrics')

  const missing: string[] = []
  const nonZero: string[] = []
  for (const row of rows) {
    // A histogram's series are its buckets, sum and count: the count stands for the label set.
    const sample = row.type === 'histogram' ? `${row.name}_count` : row.name
    for (const labels of combinations(row.labels)) {
      const found = samplesOf(exposition, sample, labels)
      const id = `${sample}${JSON.stringify(labels)}`
      if (found.length === 0) missing.push(id)
      // The request path and spawn on demand move only with traffic; the Kubernetes table has lists, bookmarks and the Lease.
      if (row.table < 2 && row.type !== 'gauge' && found.some((s) => s.value !== 0)) nonZero.push(id)
    }
  }
  t.same(missing, [], 'every series the README enumerates exists before the first event')
  t.same(nonZero, [], 'counters and histograms of requests and spawns start at zero')
})

void t.test('every podgate_ name the README mentions anywhere is one podgate exposes', async (t) => {
  const podgate = await startKubeServe(t)
  const exposed = new Set((await podgate.scrape()).types.keys())
  const mentioned = new Set([...README.matchAll(/`(podgate_[a-z0-9_]*[a-z0-9])(?:\{[^`]*\})?`/g)].map((m) => m[1]!))
  t.same([...mentioned].filter((name) => !exposed.has(name)).sort(), [], 'no stale metric name in the README')
})
