// One prom-client registry per process, every metric prefixed podgate_. Label values come
// from closed sets only: never a user id, a path or an address.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type MetricObjectWithValues, type MetricValue, type MetricValueWithName } from 'prom-client'
import type { EndpointSource } from './discovery/source.ts'
import { AUTH_FAILURE_REASONS, RATE_LIMITS, UPSTREAM_ERROR_KINDS, type AuthFailureReason, type RateLimitKind, type UpstreamErrorKind } from './errors.ts'
import { WORKLOAD_PHASES, type Workload } from './workloads/workloads.ts'

export type StatusClass = '1xx' | '2xx' | '3xx' | '4xx' | '5xx'

/** How spawn on demand started a workload: created it, or woke it from suspension. */
export const SPAWN_ACTIONS = ['create', 'wake'] as const
export type SpawnAction = typeof SPAWN_ACTIONS[number]
/**
 * How a spawn ended other than ready: `api` and `invalid_user` never started (the create or
 * wake call failed, or no workload can be made for the user id); `failed`, `deleted` and
 * `timeout` ended a started one (phase Failed, deleted, no endpoint within PODGATE_START_TIMEOUT).
 */
export const SPAWN_FAILURES = ['api', 'invalid_user', 'failed', 'deleted', 'timeout'] as const
export type SpawnFailure = typeof SPAWN_FAILURES[number]

export class Metrics {
  readonly registry = new Registry()
  /** Requests answered, by status class and who answered, and their durations by class (podgate_requests_total, podgate_request_duration_seconds). */
  readonly requests = new RequestStats(this.registry)
  readonly upstreamErrors = new Counter({ name: 'podgate_upstream_errors_total', help: 'Failed upstream exchanges, by kind', labelNames: ['kind'] as const, registers: [this.registry] })
  readonly upstreamRetries = new Counter({ name: 'podgate_upstream_retries_total', help: 'Idempotent requests retried on another endpoint after a connect failure', registers: [this.registry] })
  readonly openConnections = new Gauge({ name: 'podgate_open_connections', help: 'Client connections open on the gateway port', registers: [this.registry] })
  readonly openWebSockets = new Gauge({ name: 'podgate_open_websockets', help: 'WebSocket connections being proxied', registers: [this.registry] })
  readonly tokenCache = new ClosedLabelCounter(this.registry, 'podgate_token_cache_total', 'Verified-token cache lookups, by result', 'result', ['hit', 'miss'] as const)
  readonly authFailures = new Counter({ name: 'podgate_auth_failures_total', help: 'Refused tokens, by reason', labelNames: ['reason'] as const, registers: [this.registry] })
  /** Calls to PODGATE_AUTH_URL: allowed (2xx with a usable user id), refused (401/403), error (anything else, no answer included). */
  readonly authUrlRequests = new ClosedLabelCounter(this.registry, 'podgate_auth_url_requests_total', 'Calls to the auth service (PODGATE_AUTH_URL), by result', 'result', ['allowed', 'refused', 'error'] as const)
  readonly authUrlDuration = new Histogram({
    name: 'podgate_auth_url_request_duration_seconds',
    help: 'Time from asking the auth service (PODGATE_AUTH_URL) to its whole answer, or to giving up',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  })
  /** Credentials the auth service would be asked about: hit when a remembered verdict answered, miss when it was asked (or a call in flight joined). */
  readonly authUrlCache = new ClosedLabelCounter(this.registry, 'podgate_auth_url_cache_total', 'Lookups of auth-service verdicts (PODGATE_AUTH_URL), by result', 'result', ['hit', 'miss'] as const)
  readonly jwksFetches = new Counter({ name: 'podgate_jwks_fetches_total', help: 'JWKS documents fetched, by result', labelNames: ['result'] as const, registers: [this.registry] })
  // Every gateway worker holds the same routing view: scrapes that merge workers take one copy.
  readonly endpoints = new Gauge({ name: 'podgate_endpoints', help: 'Ready endpoints known to the routing snapshot', aggregator: 'max', registers: [this.registry] })
  readonly users = new Gauge({ name: 'podgate_routable_users', help: 'Users with at least one ready endpoint', aggregator: 'max', registers: [this.registry] })
  readonly sourceSynced = new Gauge({ name: 'podgate_endpoint_source_synced', help: '1 once the endpoint source has synced', aggregator: 'min', registers: [this.registry] })
  readonly draining = new Gauge({ name: 'podgate_draining', help: '1 while the process drains before exit', aggregator: 'max', registers: [this.registry] })
  readonly workers = new Gauge({ name: 'podgate_workers', help: 'Gateway worker processes serving the port (PODGATE_WORKERS > 1)', registers: [this.registry] })
  readonly workerRestarts = new Counter({ name: 'podgate_worker_restarts_total', help: 'Gateway workers restarted after exiting unexpectedly', registers: [this.registry] })
  readonly rateLimited = new Counter({ name: 'podgate_rate_limited_total', help: 'Requests and upgrades refused with 429 by a per-user limit, by limit', labelNames: ['limit'] as const, registers: [this.registry] })
  // Spawn on demand runs where the provisioner hooks run (the primary, with workers): the workers' zeros add nothing.
  readonly spawns = new ClosedLabelCounter(this.registry, 'podgate_spawns_total', 'Workloads spawn on demand created or woke for a waiting request, by action', 'action', SPAWN_ACTIONS)
  readonly spawnFailures = new ClosedLabelCounter(this.registry, 'podgate_spawn_failures_total', 'Spawns that did not end with a ready endpoint, by reason', 'reason', SPAWN_FAILURES)
  readonly spawnDuration = new Histogram({
    name: 'podgate_spawn_duration_seconds',
    help: 'Time from creating or waking a workload for a request to its first ready endpoint',
    buckets: [0.5, 1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300],
    registers: [this.registry],
  })
  readonly startingPages = new Counter({ name: 'podgate_starting_pages_total', help: 'Browsers answered with the "starting" page after PODGATE_BROWSER_GRACE', registers: [this.registry] })
  readonly startTimeouts = new Counter({ name: 'podgate_start_timeouts_total', help: 'API clients answered 503 after waiting PODGATE_START_TIMEOUT for a starting workload', registers: [this.registry] })

  constructor (options: { defaultMetrics?: boolean } = {}) {
    // Every closed-label series exists from the start: a rate() needs the zero before the first event.
    for (const limit of RATE_LIMITS) this.rateLimited.inc({ limit }, 0)
    for (const reason of AUTH_FAILURE_REASONS) this.authFailures.inc({ reason }, 0)
    for (const kind of UPSTREAM_ERROR_KINDS) this.upstreamErrors.inc({ kind }, 0)
    for (const result of JWKS_FETCH_RESULTS) this.jwksFetches.inc({ result }, 0)
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'podgate_' })
  }

  /** Keeps the routing gauges in step with an endpoint source; returns the unsubscribe function. */
  follow (source: EndpointSource): () => void {
    const track = (): void => {
      this.endpoints.set(source.endpointCount)
      this.users.set(source.routableUsers)
    }
    track()
    source.synced.then(() => { this.sourceSynced.set(1) }, () => {})
    return source.onChange(track)
  }

  /**
   * Publishes podgate_workloads{phase} from `current` at each scrape. The provisioner passes
   * the leader's view and nothing elsewhere: each replica's cache sees every workload, so only
   * the leader counts them, and a sum over replicas is the cluster's count.
   */
  publishWorkloads (current: () => Iterable<Workload>): void {
    new Gauge({
      name: 'podgate_workloads',
      help: 'UserWorkloads by status.phase, published by the provisioner leader (0 on other replicas)',
      labelNames: ['phase'] as const,
      // Only the process running the provisioner registers it; gateway workers have no copy to merge.
      aggregator: 'sum',
      registers: [this.registry],
      collect () {
        const counts = new Map<string, number>()
        for (const workload of current()) counts.set(workload.status.phase, (counts.get(workload.status.phase) ?? 0) + 1)
        for (const phase of WORKLOAD_PHASES) this.set({ phase }, counts.get(phase) ?? 0)
      },
    })
  }

  authFailure (reason: AuthFailureReason): void { this.authFailures.inc({ reason }) }
  upstreamError (kind: UpstreamErrorKind): void { this.upstreamErrors.inc({ kind }) }
  rateLimit (limit: RateLimitKind): void { this.rateLimited.inc({ limit }) }
}

const JWKS_FETCH_RESULTS = ['ok', 'error'] as const
const STATUS_CLASSES: readonly StatusClass[] = ['1xx', '2xx', '3xx', '4xx', '5xx']
/** Who answered a request: podgate itself (its errors, pages, redirects, 429s) or the user's pod. Index 1 is the pod. */
const SOURCES = ['podgate', 'pod'] as const
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] as const

/**
 * The per-request counter and histogram, kept in plain arrays: prom-client validates and
 * hashes labels on every observe, several times what the hot path can spend. The registry
 * reads these arrays only when /metrics is scraped. The counter is by class and source; the
 * histogram by class only, since podgate's own answers are fast by construction and a
 * latency panel asks how long clients waited, whoever answered.
 */
export class RequestStats {
  /** By class and source: index class * 2 + (answered by the pod ? 1 : 0). */
  readonly #counts = new Float64Array(STATUS_CLASSES.length * SOURCES.length)
  readonly #sums = new Float64Array(STATUS_CLASSES.length)
  /** Non-cumulative: index i counts durations in (bucket i-1, bucket i]; the last slot is +Inf. */
  readonly #buckets = STATUS_CLASSES.map(() => new Float64Array(DURATION_BUCKETS.length + 1))

  constructor (registry: Registry) {
    registry.registerMetric(collectedMetric('podgate_requests_total', 'Requests answered, by status class and source (podgate itself or the user\'s pod)', 'counter', () => this.#counterValues()))
    registry.registerMetric(collectedMetric('podgate_request_duration_seconds', 'Time from request to response finished or aborted, by status class', 'histogram', () => this.#histogramValues()))
  }

  /** Records one request: `status` its HTTP status, `seconds` its duration, `byPod` whether the pod's status line reached the client. */
  record (status: number, seconds: number, byPod: boolean): void {
    const c = status < 200 ? 0 : status < 300 ? 1 : status < 400 ? 2 : status < 500 ? 3 : 4
    this.#counts[c * 2 + (byPod ? 1 : 0)]!++
    this.#sums[c]! += seconds
    let b = 0
    while (b < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[b]!) b++
    this.#buckets[c]![b]!++
  }

  #classCount (c: number): number {
    return this.#counts[c * 2]! + this.#counts[c * 2 + 1]!
  }

  #counterValues (): MetricValue<'class' | 'source'>[] {
    return STATUS_CLASSES.flatMap((c, i) => SOURCES.map((source, s) => ({ labels: { class: c, source }, value: this.#counts[i * 2 + s]! })))
  }

  #histogramValues (): Array<MetricValueWithName<string>> {
    const values: Array<MetricValueWithName<string>> = []
    STATUS_CLASSES.forEach((c, i) => {
      let cumulative = 0
      DURATION_BUCKETS.forEach((le, b) => {
        cumulative += this.#buckets[i]![b]!
        values.push({ metricName: 'podgate_request_duration_seconds_bucket', labels: { le, class: c }, value: cumulative })
      })
      values.push({ metricName: 'podgate_request_duration_seconds_bucket', labels: { le: '+Inf', class: c }, value: this.#classCount(i) })
      values.push({ metricName: 'podgate_request_duration_seconds_sum', labels: { class: c }, value: this.#sums[i]! })
      values.push({ metricName: 'podgate_request_duration_seconds_count', labels: { class: c }, value: this.#classCount(i) })
    })
    return values
  }
}

/** A counter whose one label takes values from a closed set, counted in a plain array (per request, like RequestStats). */
export class ClosedLabelCounter<V extends string> {
  readonly #values: readonly V[]
  readonly #counts: Float64Array

  constructor (registry: Registry, name: string, help: string, label: string, values: readonly V[]) {
    this.#values = values
    this.#counts = new Float64Array(values.length)
    registry.registerMetric(collectedMetric(name, help, 'counter', () => values.map((value, i) => ({ labels: { [label]: value }, value: this.#counts[i]! }))))
  }

  inc (value: V): void {
    this.#counts[this.#values.indexOf(value)]!++
  }
}

// What Registry reads of a metric: its description and, at scrape time, get().
function collectedMetric (name: string, help: string, type: 'counter' | 'histogram', values: () => MetricValue<string>[]): Parameters<Registry['registerMetric']>[0] {
  const get = (): Promise<MetricObjectWithValues<MetricValue<string>>> =>
    Promise.resolve({ name, help, type, aggregator: 'sum', values: values() } as unknown as MetricObjectWithValues<MetricValue<string>>)
  return { name, help, type, aggregator: 'sum', get, reset: () => {} } as unknown as Parameters<Registry['registerMetric']>[0]
}
