// One autocannon run, in its own (pinned) process. Usage: node http-load.ts '<HttpLoadSpec JSON>'
// Prints one JSON line (HttpLoadResult). Latency comes from our own histogram (see histogram.ts).
import autocannon from 'autocannon'
import { LatencyHistogram } from '../histogram.ts'
import { parseSpec } from './spec.ts'

export interface HttpLoadSpec {
  readonly url: string
  readonly connections: number
  readonly durationS: number
  /** Requests cycle through these header sets (e.g. tokens of several users). */
  readonly headerSets: ReadonlyArray<Record<string, string>>
}

export interface HttpLoadResult {
  readonly requests: number
  readonly ok: number
  readonly durationS: number
  readonly rps: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly meanMs: number
  readonly non2xx: number
  readonly errors: number
  readonly timeouts: number
  readonly statusCodes: Record<string, number>
}

const spec = parseSpec<HttpLoadSpec>(process.argv[2], ['url', 'connections', 'durationS', 'headerSets'])
const histogram = new LatencyHistogram()
const url = new URL(spec.url)

const instance = autocannon({
  url: url.origin,
  connections: spec.connections,
  duration: spec.durationS,
  timeout: 10,
  requests: (spec.headerSets.length === 0 ? [{}] : spec.headerSets).map((headers) => ({ method: 'GET', path: url.pathname + url.search, headers })),
}, (error, result) => {
  if (error !== null) {
    process.stderr.write(`autocannon: ${error.message}\n`)
    process.exitCode = 1
    return
  }
  const statusCodes = Object.fromEntries(Object.entries(result.statusCodeStats).map(([code, { count }]) => [code, count]))
  const output: HttpLoadResult = {
    requests: result.requests.total,
    ok: histogram.count,
    durationS: result.duration,
    rps: histogram.count / result.duration,
    p50Ms: histogram.percentileMs(50),
    p99Ms: histogram.percentileMs(99),
    meanMs: histogram.meanMs,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodes,
  }
  process.stdout.write(JSON.stringify(output) + '\n')
})

instance.on('response', (_client, statusCode, _bytes, responseTimeMs) => {
  if (statusCode >= 200 && statusCode < 300) histogram.record(responseTimeMs)
})
