// One prom-client registry per process, every metric prefixed podgate_. Label values come
// from closed sets only: never a user id, a path or an address.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type MetricObjectWithValues, type MetricValue, type MetricValueWithName } from 'prom-client'
import type { EndpointSource } from './discovery/source.ts'
import { RATE_LIMITS, type AuthFailureReason, type RateLimitKind, type UpstreamErrorKind } from './errors.ts'

export type StatusClass = '1xx' | '2xx' | '3xx' | '4xx' | '5xx'

export class Metrics {
  readonly registry = new Registry()
  /** Requests answered and their durations, by status class (podgate_requests_total, podgate_request_duration_seconds). */
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

  constructor (options: { defaultMetrics?: boolean } = {}) {
    for (const limit of RATE_LIMITS) this.rateLimited.inc({ limit }, 0)
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

  authFailure (reason: AuthFailureReason): void { this.authFailures.inc({ reason }) }
  upstreamError (kind: UpstreamErrorKind): void { this.upstreamErrors.inc({ kind }) }
  rateLimit (limit: RateLimitKind): void { this.rateLimited.inc({ limit }) }
}

const STATUS_CLASSES: readonly StatusClass[] = ['1xx', '2xx', '3xx', '4xx', '5xx']
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] as const

/**
 * The per-request counter and histogram, kept in plain arrays: prom-client validates and
 * hashes labels on every observe, several times what the hot path can spend. The registry
 * reads these arrays only when /metrics is scraped.
 */
export class RequestStats {
  readonly #counts = new Float64Array(STATUS_CLASSES.length)
  readonly #sums = new Float64Array(STATUS_CLASSES.length)
  /** Non-cumulative: index i counts durations in (bucket i-1, bucket i]; the last slot is +Inf. */
  readonly #buckets = STATUS_CLASSES.map(() => new Float64Array(DURATION_BUCKETS.length + 1))

  constructor (registry: Registry) {
    registry.registerMetric(collectedMetric('podgate_requests_total', 'Requests answered, by status class', 'counter', () => this.#counterValues()))
    registry.registerMetric(collectedMetric('podgate_request_duration_seconds', 'Time from request to response finished or aborted, by status class', 'histogram', () => this.#histogramValues()))
  }

  /** Records one request: `status` its HTTP status, `seconds` its duration. */
  record (status: number, seconds: number): void {
    const c = status < 200 ? 0 : status < 300 ? 1 : status < 400 ? 2 : status < 500 ? 3 : 4
    this.#counts[c]!++
    this.#sums[c]! += seconds
    let b = 0
    while (b < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[b]!) b++
    this.#buckets[c]![b]!++
  }

  #counterValues (): MetricValue<'class'>[] {
    return STATUS_CLASSES.flatMap((c, i) => this.#counts[i]! > 0 ? [{ labels: { class: c }, value: this.#counts[i]! }] : [])
  }

  #histogramValues (): Array<MetricValueWithName<string>> {
    const values: Array<MetricValueWithName<string>> = []
    STATUS_CLASSES.forEach((c, i) => {
      if (this.#counts[i] === 0) return
      let cumulative = 0
      DURATION_BUCKETS.forEach((le, b) => {
        cumulative += this.#buckets[i]![b]!
        values.push({ metricName: 'podgate_request_duration_seconds_bucket', labels: { le, class: c }, value: cumulative })
      })
      values.push({ metricName: 'podgate_request_duration_seconds_bucket', labels: { le: '+Inf', class: c }, value: this.#counts[i]! })
      values.push({ metricName: 'podgate_request_duration_seconds_sum', labels: { class: c }, value: this.#sums[i]! })
      values.push({ metricName: 'podgate_request_duration_seconds_count', labels: { class: c }, value: this.#counts[i]! })
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
    registry.registerMetric(collectedMetric(name, help, 'counter', () =>
      values.flatMap((value, i) => this.#counts[i]! > 0 ? [{ labels: { [label]: value }, value: this.#counts[i]! }] : [])))
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
