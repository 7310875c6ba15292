// Reading vegeta's per-request results (`vegeta encode --to json`: one JSON object a line).
// The percentiles come from our own histogram, because vegeta's report stops at p99.
import { LatencyHistogram } from './histogram.ts'

export interface VegetaResult {
  /** Place in the attack's schedule: request `seq` was due `seq / rate` seconds after the first. */
  readonly seq: number
  /** HTTP status; 0 when no response came (connection refused, timeout). */
  readonly code: number
  /** When the request was sent: whole seconds since the epoch, and nanoseconds within that second. */
  readonly sentS: number
  readonly sentNs: number
  /** From sending the request to reading the whole response (or failing), in nanoseconds. */
  readonly latencyNs: number
  readonly error: string
}

/** What one open-loop run measured, over the requests after the warm-up unless a field says otherwise. */
export interface OpenLoopRun {
  readonly offeredRps: number
  readonly durationS: number
  /** Requests sent after the warm-up. */
  readonly sent: number
  /** 2xx responses among them. */
  readonly ok: number
  /** Requests sent, the warm-up's included: every request the proxy served while its CPU was read around the run. */
  readonly sentWithWarmup: number
  /** Seconds from the first request sent (warm-up included) to the last answer read: how long the proxy had requests to serve. */
  readonly spanS: number
  readonly achievedRps: number
  /** Latency percentiles over every request sent, failed ones included (a failure's latency is how long it took to fail). */
  readonly p50Ms: number
  readonly p99Ms: number
  readonly p999Ms: number
  /** How late vegeta sent its requests against the constant schedule (p99): large means it could not hold the rate. */
  readonly sendLagP99Ms: number
  readonly statusCodes: Readonly<Record<string, number>>
  /** The first error vegeta reported, if any. */
  readonly firstError?: string
}

const TIMESTAMP = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/

export function parseResultLine (line: string): VegetaResult {
  let value: unknown
  try {
    value = JSON.parse(line)
  } catch {
    throw new Error(`vegeta result is not JSON: ${line.slice(0, 120)}`)
  }
  const record = value as Record<string, unknown> | null
  const { seq, code, latency, timestamp, error } = record ?? {}
  if (typeof seq !== 'number' || typeof code !== 'number' || typeof latency !== 'number' || typeof timestamp !== 'string') {
    throw new Error(`vegeta result lacks seq, code, latency or timestamp: ${line.slice(0, 120)}`)
  }
  const match = TIMESTAMP.exec(timestamp)
  const whole = match === null ? Number.NaN : Date.parse(`${match[1]!}${match[3]!}`)
  if (match === null || !Number.isFinite(whole)) throw new Error(`vegeta result has an unreadable timestamp: ${timestamp}`)
  return { seq, code, sentS: whole / 1000, sentNs: Number((match[2] ?? '').padEnd(9, '0')), latencyNs: latency, error: typeof error === 'string' ? error : '' }
}

/**
 * Adds up the results of one attack at `rate` requests per second. Requests due in the first
 * `warmupS` seconds (new connections, a cold start) are not counted, except in `sentWithWarmup`
 * and `spanS`, which measure the whole attack.
 */
export class OpenLoopTally {
  readonly #rate: number
  readonly #firstCounted: number
  readonly #latency = new LatencyHistogram()
  /** Send time minus due time, in ns from an arbitrary origin; the smallest is the schedule's start. */
  readonly #offsetsNs: number[] = []
  readonly #statusCodes: Record<string, number> = {}
  #baseS: number | undefined
  /** Earliest send and latest answer, in ns from `#baseS`. */
  #firstSentNs = Infinity
  #lastAnsweredNs = -Infinity
  #sentWithWarmup = 0
  #ok = 0
  #firstError: string | undefined

  constructor (options: { readonly rate: number, readonly warmupS: number }) {
    if (!(options.rate > 0) || !(options.warmupS >= 0)) throw new Error(`open-loop tally: rate must be > 0 and warmupS >= 0, got ${options.rate} and ${options.warmupS}`)
    this.#rate = options.rate
    this.#firstCounted = Math.round(options.rate * options.warmupS)
  }

  add (result: VegetaResult): void {
    this.#baseS ??= result.sentS
    const sentNs = (result.sentS - this.#baseS) * 1e9 + result.sentNs
    this.#firstSentNs = Math.min(this.#firstSentNs, sentNs)
    this.#lastAnsweredNs = Math.max(this.#lastAnsweredNs, sentNs + result.latencyNs)
    this.#sentWithWarmup += 1
    if (result.seq < this.#firstCounted) return
    this.#latency.record(result.latencyNs / 1e6)
    this.#offsetsNs.push(sentNs - result.seq * 1e9 / this.#rate)
    const status = String(result.code)
    this.#statusCodes[status] = (this.#statusCodes[status] ?? 0) + 1
    if (result.code >= 200 && result.code < 300) this.#ok += 1
    if (result.error !== '') this.#firstError ??= result.error
  }

  summary (durationS: number): OpenLoopRun {
    const lag = new LatencyHistogram()
    let origin = Infinity
    for (const offset of this.#offsetsNs) origin = Math.min(origin, offset)
    for (const offset of this.#offsetsNs) lag.record((offset - origin) / 1e6)
    return {
      offeredRps: this.#rate,
      durationS,
      sent: this.#latency.count,
      ok: this.#ok,
      sentWithWarmup: this.#sentWithWarmup,
      spanS: this.#sentWithWarmup === 0 ? 0 : (this.#lastAnsweredNs - this.#firstSentNs) / 1e9,
      achievedRps: this.#ok / durationS,
      p50Ms: this.#latency.percentileMs(50),
      p99Ms: this.#latency.percentileMs(99),
      p999Ms: this.#latency.percentileMs(99.9),
      sendLagP99Ms: lag.percentileMs(99),
      statusCodes: { ...this.#statusCodes },
      ...(this.#firstError === undefined ? {} : { firstError: this.#firstError }),
    }
  }
}
