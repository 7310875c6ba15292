// One prom-client registry per process, every metric prefixed podgate_. Label values come
// from closed sets only: never a user id, a path or an address.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { AuthFailureReason, UpstreamErrorKind } from './errors.ts'

export type StatusClass = '1xx' | '2xx' | '3xx' | '4xx' | '5xx'

export class Metrics {
  readonly registry = new Registry()
  readonly requests = new Counter({ name: 'podgate_requests_total', help: 'Requests answered, by status class', labelNames: ['class'] as const, registers: [this.registry] })
  readonly requestDuration = new Histogram({
    name: 'podgate_request_duration_seconds',
    help: 'Time from request to response headers sent, by status class',
    labelNames: ['class'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  })
  readonly upstreamErrors = new Counter({ name: 'podgate_upstream_errors_total', help: 'Failed upstream exchanges, by kind', labelNames: ['kind'] as const, registers: [this.registry] })
  readonly upstreamRetries = new Counter({ name: 'podgate_upstream_retries_total', help: 'Idempotent requests retried on another endpoint after a connect failure', registers: [this.registry] })
  readonly openConnections = new Gauge({ name: 'podgate_open_connections', help: 'Client connections open on the gateway port', registers: [this.registry] })
  readonly openWebSockets = new Gauge({ name: 'podgate_open_websockets', help: 'WebSocket connections being proxied', registers: [this.registry] })
  readonly tokenCache = new Counter({ name: 'podgate_token_cache_total', help: 'Verified-token cache lookups, by result', labelNames: ['result'] as const, registers: [this.registry] })
  readonly authFailures = new Counter({ name: 'podgate_auth_failures_total', help: 'Refused tokens, by reason', labelNames: ['reason'] as const, registers: [this.registry] })
  readonly jwksFetches = new Counter({ name: 'podgate_jwks_fetches_total', help: 'JWKS documents fetched, by result', labelNames: ['result'] as const, registers: [this.registry] })
  readonly endpoints = new Gauge({ name: 'podgate_endpoints', help: 'Ready endpoints known to the routing snapshot', registers: [this.registry] })
  readonly users = new Gauge({ name: 'podgate_routable_users', help: 'Users with at least one ready endpoint', registers: [this.registry] })
  readonly sourceSynced = new Gauge({ name: 'podgate_endpoint_source_synced', help: '1 once the endpoint source has synced', registers: [this.registry] })
  readonly draining = new Gauge({ name: 'podgate_draining', help: '1 while the process drains before exit', registers: [this.registry] })

  constructor (options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'podgate_' })
  }

  authFailure (reason: AuthFailureReason): void { this.authFailures.inc({ reason }) }
  upstreamError (kind: UpstreamErrorKind): void { this.upstreamErrors.inc({ kind }) }
}

export function statusClass (status: number): StatusClass {
  if (status < 200) return '1xx'
  if (status < 300) return '2xx'
  if (status < 400) return '3xx'
  if (status < 500) return '4xx'
  return '5xx'
}
