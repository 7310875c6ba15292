// The chart's Grafana dashboard: off by default; on, one ConfigMap labelled for the Grafana
// sidecar (label, value and namespace configurable) whose JSON parses, covers the panels an
// operator needs, and asks only for series a running podgate exposes.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { startKubeServe } from '../support/kube-serve.ts'
import { selectableNames } from '../support/metrics.ts'
import { all, CHART_DIR, Helm, installHelm, NAMESPACE, type Manifest } from './chart.ts'

interface Target { readonly expr: string }
interface Panel { readonly type: string, readonly title: string, readonly targets?: readonly Target[], readonly datasource?: { readonly uid: string } }
interface Dashboard {
  readonly uid: string
  readonly title: string
  readonly panels: readonly Panel[]
  readonly templating: { readonly list: ReadonlyArray<{ readonly name: string, readonly type: string, readonly query?: unknown }> }
}

const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'group_left', 'group_right', 'inf', 'nan'])

/**
 * The metric names a PromQL expression selects: strings, label matchers, ranges and grouping
 * clauses removed, then every identifier that is neither a function call nor a keyword.
 */
export function metricNames (expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
  const names = [...bare.matchAll(/(?<![\w$.])([a-zA-Z_:][\w:]*)(?![\w:]|\s*\()/g)].map((m) => m[1]!)
  return [...new Set(names.filter((name) => !KEYWORDS.has(name.toLowerCase())))]
}

/** The expressions of every panel, and the metric of every label_values() variable. */
function queries (dashboard: Dashboard): Array<{ where: string, names: string[] }> {
  const panels = dashboard.panels.flatMap((panel) => (panel.targets ?? []).map((target) => ({ where: `${panel.title}: ${target.expr}`, names: metricNames(target.expr) })))
  const variables = dashboard.templating.list.flatMap((variable) => {
    const match = /label_values\(\s*([\w:]+)/.exec(JSON.stringify(variable.query ?? ''))
    return match === null ? [] : [{ where: `variable ${variable.name}`, names: [match[1]!] }]
  })
  return [...panels, ...variables]
}

function dashboardsOf (manifests: readonly Manifest[]): Array<Manifest & { data: Record<string, string> }> {
  return all(manifests, 'ConfigMap').filter((m) => m.metadata.name.endsWith('-dashboard')) as Array<Manifest & { data: Record<string, string> }>
}

let helm: Helm

t.before(async () => {
  helm = await Helm.create(t, await installHelm(t))
})

void t.test('the PromQL reader finds metric names and nothing else', (t) => {
  t.same(metricNames('histogram_quantile(0.99, sum by (le, class) (rate(podgate_x_bucket{a="b", c=~"d|e"}[$__rate_interval])))'), ['podgate_x_bucket'])
  t.same(metricNames('sum by (source) (rate(podgate_a_total{namespace=~"$namespace"}[5m])) / ignoring(source) group_left sum(rate(podgate_b_total[1h] offset 1d)) > bool 0'), ['podgate_a_total', 'podgate_b_total'])
  t.same(metricNames('max(podgate_g) or vector(0)'), ['podgate_g'])
  t.end()
})

void t.test('off by default: no dashboard ConfigMap', async (t) => {
  t.same(dashboardsOf(await helm.render({})), [])
  t.same(dashboardsOf(await helm.render({ dashboard: { enabled: false, label: 'other' } })), [])
})

void t.test('on: one ConfigMap for the Grafana sidecar, label, value and namespace configurable', async (t) => {
  const lint = await helm.lint({ dashboard: { enabled: true } })
  t.equal(lint.code, 0, `helm lint --strict passes:\n${lint.stdout}${lint.stderr}`)
  const [dashboard] = dashboardsOf(await helm.render({ dashboard: { enabled: true } }))
  t.equal(dashboard?.metadata.namespace, NAMESPACE, 'in the release namespace by default')
  t.equal(dashboard?.metadata.labels?.grafana_dashboard, '1', 'the sidecar\'s default label')
  t.same(Object.keys(dashboard?.data ?? {}), ['podgate.json'])

  const [custom] = dashboardsOf(await helm.render({ dashboard: { enabled: true, label: 'example.com/dashboard', labelValue: 'podgate', namespace: 'monitoring', annotations: { grafana_folder: 'Platform' } } }))
  t.equal(custom?.metadata.namespace, 'monitoring')
  t.equal(custom?.metadata.labels?.['example.com/dashboard'], 'podgate')
  t.equal(custom?.metadata.labels?.grafana_dashboard, undefined)
  t.same(custom?.metadata.annotations, { grafana_folder: 'Platform' })

  const refused = await helm.template({ dashboard: { enabled: true, label: 'not a label' } })
  t.not(refused.code, 0, 'a label name Kubernetes would refuse is refused by the schema')
  t.match(refused.stderr, /dashboard\.label|dashboard/)
})

void t.test('the dashboard JSON parses, has the panels, and every series it asks for is one a running podgate exposes', async (t) => {
  const [configMap] = dashboardsOf(await helm.render({ dashboard: { enabled: true } }))
  const text = configMap?.data['podgate.json'] ?? ''
  t.equal(text, (await readFile(join(CHART_DIR, 'dashboards', 'podgate.json'), 'utf8')).trimEnd(), 'the file, unchanged by the template')
  const dashboard = JSON.parse(text) as Dashboard
  t.equal(dashboard.uid, 'podgate')
  const datasource = dashboard.templating.list.find((v) => v.type === 'datasource')
  t.ok(datasource !== undefined, 'the Prometheus data source is a variable')
  const graphs = dashboard.panels.filter((p) => p.type !== 'row')
  t.same(graphs.filter((p) => p.datasource?.uid !== `\${${datasource?.name ?? ''}}`).map((p) => p.title), [], 'every panel queries that variable')

  const used = new Set(queries(dashboard).flatMap((q) => q.names))
  for (const [topic, metric] of [
    ['traffic and errors by source', 'podgate_requests_total'],
    ['latency', 'podgate_request_duration_seconds_bucket'],
    ['auth failures by reason', 'podgate_auth_failures_total'],
    ['spawns', 'podgate_spawns_total'],
    ['spawn failures', 'podgate_spawn_failures_total'],
    ['time to ready', 'podgate_spawn_duration_seconds_bucket'],
    ['starting pages', 'podgate_starting_pages_total'],
    ['start timeouts', 'podgate_start_timeouts_total'],
    ['workloads by phase', 'podgate_workloads'],
    ['informer restarts', 'podgate_endpointslice_informer_restarts_total'],
    ['informer silence', 'podgate_endpointslice_seconds_since_last_event'],
    ['informer relists', 'podgate_endpointslice_lists_total'],
    ['rate-limited requests', 'podgate_rate_limited_total'],
    ['ejected endpoints', 'podgate_endpoints_ejected'],
    ['ejections', 'podgate_endpoint_ejections_total'],
  ] as const) t.ok(used.has(metric), `${topic}: ${metric}`)
  t.ok(graphs.some((p) => p.targets?.some((q) => /source/.test(q.expr))), 'errors are split by source')

  const podgate = await startKubeServe(t)
  const selectable = selectableNames(await podgate.scrape())
  t.same(selectableNames({ types: new Map([['h', 'histogram']]), samples: [] }), new Set(['h_bucket', 'h_sum', 'h_count']), 'a histogram is selected by its suffixed names only')
  const unknown = queries(dashboard).flatMap((q) => q.names.filter((name) => !selectable.has(name)).map((name) => `${name} (${q.where})`))
  t.same(unknown, [], 'every metric name in every query is exposed by podgate serve')
})
