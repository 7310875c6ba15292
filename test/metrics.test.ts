import t from 'tap'
import { AUTH_FAILURE_REASONS, UPSTREAM_ERROR_KINDS } from '../src/errors.ts'
import { Metrics, SPAWN_ACTIONS, SPAWN_FAILURES } from '../src/metrics.ts'
import type { Workload, WorkloadPhase } from '../src/workloads/workloads.ts'

void t.test('request stats scrape as a counter by class and source and a cumulative histogram by class', async (t) => {
  const metrics = new Metrics({ defaultMetrics: false })
  metrics.requests.record(200, 0.0007, true)
  metrics.requests.record(204, 0.02, true)
  metrics.requests.record(404, 2, false)
  metrics.requests.record(404, 0.001, true)
  metrics.requests.record(503, 100, false)
  const text = await metrics.registry.metrics()
  t.match(text, '# TYPE podgate_requests_total counter')
  t.match(text, 'podgate_requests_total{class="2xx",source="pod"} 2\n')
  t.match(text, 'podgate_requests_total{class="2xx",source="podgate"} 0\n')
  t.match(text, 'podgate_requests_total{class="4xx",source="podgate"} 1\n', 'podgate\'s own 404')
  t.match(text, 'podgate_requests_total{class="4xx",source="pod"} 1\n', 'the pod\'s 404')
  t.match(text, 'podgate_requests_total{class="5xx",source="podgate"} 1\n')
  t.match(text, 'podgate_requests_total{class="1xx",source="pod"} 0\n', 'classes never seen are there at zero')
  t.match(text, '# TYPE podgate_request_duration_seconds histogram')
  t.notMatch(text, /podgate_request_duration_seconds_\w+\{[^}]*source=/, 'the histogram is by class only')
  t.match(text, 'podgate_request_duration_seconds_bucket{le="0.0005",class="2xx"} 0\n')
  t.match(text, 'podgate_request_duration_seconds_bucket{le="0.001",class="2xx"} 1\n')
  t.match(text, 'podgate_request_duration_seconds_bucket{le="0.025",class="2xx"} 2\n', 'buckets are cumulative')
  t.match(text, 'podgate_request_duration_seconds_bucket{le="1",class="4xx"} 1\n')
  t.match(text, 'podgate_request_duration_seconds_bucket{le="2.5",class="4xx"} 2\n', 'both sources in one histogram')
  t.match(text, 'podgate_request_duration_seconds_count{class="4xx"} 2\n')
  t.match(text, 'podgate_request_duration_seconds_bucket{le="30",class="5xx"} 0\n')
  t.match(text, 'podgate_request_duration_seconds_bucket{le="+Inf",class="5xx"} 1\n', 'beyond the last bucket only +Inf counts it')
  t.match(text, 'podgate_request_duration_seconds_sum{class="2xx"} 0.0207\n')
  t.match(text, 'podgate_request_duration_seconds_count{class="5xx"} 1\n')
  t.match(text, 'podgate_request_duration_seconds_count{class="1xx"} 0\n')
  t.match(text, 'podgate_request_duration_seconds_bucket{le="+Inf",class="3xx"} 0\n')
})

void t.test('every closed-label series is exported at zero before anything happens', async (t) => {
  const text = await new Metrics({ defaultMetrics: false }).registry.metrics()
  const series = (name: string, label: string, values: readonly string[]): string[] => values.map((value) => `${name}{${label}="${value}"} 0\n`)
  for (const line of [
    ...series('podgate_auth_failures_total', 'reason', AUTH_FAILURE_REASONS),
    ...series('podgate_upstream_errors_total', 'kind', UPSTREAM_ERROR_KINDS),
    ...series('podgate_jwks_fetches_total', 'result', ['ok', 'error']),
    ...series('podgate_token_cache_total', 'result', ['hit', 'miss']),
    ...series('podgate_auth_url_requests_total', 'result', ['allowed', 'refused', 'error']),
    ...series('podgate_auth_url_cache_total', 'result', ['hit', 'miss']),
    ...series('podgate_rate_limited_total', 'limit', ['rate', 'concurrency']),
    ...series('podgate_spawns_total', 'action', SPAWN_ACTIONS),
    ...series('podgate_spawn_failures_total', 'reason', SPAWN_FAILURES),
    'podgate_starting_pages_total 0\n',
    'podgate_start_timeouts_total 0\n',
    'podgate_spawn_duration_seconds_count 0\n',
  ]) t.match(text, line)
})

void t.test('podgate_workloads counts phases from what it is given at each scrape, every phase present', async (t) => {
  const metrics = new Metrics({ defaultMetrics: false })
  const workload = (user: string, phase: WorkloadPhase): Workload => ({ user, profile: 'default', suspended: false, status: { phase, readyReplicas: 0 } })
  let leading = false
  const all = [workload('a', 'Ready'), workload('b', 'Ready'), workload('c', 'Failed'), workload('d', 'Starting')]
  metrics.publishWorkloads(() => leading ? all : [])
  const follower = await metrics.registry.metrics()
  for (const phase of ['Pending', 'Starting', 'Ready', 'Suspended', 'Failed']) t.match(follower, `podgate_workloads{phase="${phase}"} 0\n`, `${phase}: 0 while not leading`)
  leading = true
  const leader = await metrics.registry.metrics()
  t.match(leader, 'podgate_workloads{phase="Ready"} 2\n')
  t.match(leader, 'podgate_workloads{phase="Failed"} 1\n')
  t.match(leader, 'podgate_workloads{phase="Starting"} 1\n')
  t.match(leader, 'podgate_workloads{phase="Pending"} 0\n')
  leading = false
  t.match(await metrics.registry.metrics(), 'podgate_workloads{phase="Ready"} 0\n', 'a replica that stops leading publishes zeros, not its last count')
})
