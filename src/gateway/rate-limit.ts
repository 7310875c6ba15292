// Per-user limits in this process: a token bucket (refilled continuously) and a cap on
// in-flight requests plus open WebSockets. Buckets of idle users are forgotten: a full
// bucket is the same as none, so one unref'd sweep drops them while any bucket exists.
import { systemClock, type Clock, type TimerHandle } from '../clock.ts'
import { RateLimitedError } from '../errors.ts'
import type { RateLimitConfig } from './rate-limit-config.ts'

interface Bucket {
  tokens: number
  /** When `tokens` was last brought up to date (clock ms). */
  at: number
}

/** Undefined when every limit is off: the request path then does no work at all. */
export function createRateLimiter (config: RateLimitConfig | undefined, clock: Clock = systemClock): UserRateLimiter | undefined {
  return config === undefined ? undefined : new UserRateLimiter(config, clock)
}

export class UserRateLimiter {
  readonly #clock: Clock
  /** Tokens per millisecond; 0: no rate limit. */
  readonly #perMs: number
  readonly #burst: number
  readonly #maxConcurrent: number
  readonly #sweepMs: number
  readonly #buckets = new Map<string, Bucket>()
  readonly #inFlight = new Map<string, number>()
  // Refusals are built once and reused (by Retry-After seconds: at most one per second of the
  // refill time): a flood of 429s then costs no stack capture per request.
  readonly #overConcurrency: RateLimitedError
  readonly #overRate = new Map<number, RateLimitedError>()
  #sweep: TimerHandle | undefined

  constructor (config: RateLimitConfig, clock: Clock = systemClock) {
    this.#clock = clock
    this.#perMs = (config.perSecond ?? 0) / 1000
    this.#burst = config.burst
    this.#maxConcurrent = config.maxConcurrent
    this.#overConcurrency = new RateLimitedError('concurrency', `too many requests in flight for this user (at most ${config.maxConcurrent} at once, WebSockets included)`, 1)
    // Time for an empty bucket to fill: the oldest a bucket can be and still differ from none.
    this.#sweepMs = this.#perMs > 0 ? Math.min(3_600_000, Math.max(1000, Math.ceil(this.#burst / this.#perMs))) : 0
  }

  /** Users with a bucket that is not full (tests and the metrics reader look). */
  get buckets (): number { return this.#buckets.size }
  /** Users with at least one request or WebSocket in flight. */
  get activeUsers (): number { return this.#inFlight.size }

  /**
   * Takes one token and one concurrency slot for `user`, or says why not. When admitted
   * (undefined), the caller calls release(user) exactly once, when the request or socket ends.
   */
  admit (user: string): RateLimitedError | undefined {
    const max = this.#maxConcurrent
    const inFlight = this.#inFlight.get(user) ?? 0
    if (max > 0 && inFlight >= max) return this.#overConcurrency
    if (this.#perMs > 0) {
      const refused = this.#take(user)
      if (refused !== undefined) return refused
    }
    if (max > 0) this.#inFlight.set(user, inFlight + 1)
    return undefined
  }

  release (user: string): void {
    if (this.#maxConcurrent === 0) return
    const inFlight = this.#inFlight.get(user)
    if (inFlight === undefined) return
    if (inFlight <= 1) this.#inFlight.delete(user)
    else this.#inFlight.set(user, inFlight - 1)
  }

  /** Stops the sweep (the process is closing). */
  close (): void {
    this.#clock.clearInterval(this.#sweep)
    this.#sweep = undefined
  }

  #take (user: string): RateLimitedError | undefined {
    const now = this.#clock.now()
    const bucket = this.#buckets.get(user)
    if (bucket === undefined) {
      this.#buckets.set(user, { tokens: this.#burst - 1, at: now })
      this.#sweep ??= this.#clock.setInterval(() => { this.#dropFull() }, this.#sweepMs, { unref: true })
      return undefined
    }
    const tokens = Math.min(this.#burst, bucket.tokens + (now - bucket.at) * this.#perMs)
    bucket.at = now
    if (tokens >= 1) {
      bucket.tokens = tokens - 1
      return undefined
    }
    bucket.tokens = tokens
    const seconds = Math.max(1, Math.ceil((1 - tokens) / this.#perMs / 1000))
    let refusal = this.#overRate.get(seconds)
    if (refusal === undefined) {
      refusal = new RateLimitedError('rate', `too many requests for this user (${formatRate(this.#perMs * 1000)}, bursts of ${this.#burst})`, seconds)
      this.#overRate.set(seconds, refusal)
    }
    return refusal
  }

  /** Forgets every bucket that has filled up again; stops when none is left. */
  #dropFull (): void {
    const now = this.#clock.now()
    for (const [user, bucket] of this.#buckets) {
      if (bucket.tokens + (now - bucket.at) * this.#perMs >= this.#burst) this.#buckets.delete(user)
    }
    if (this.#buckets.size === 0) this.close()
  }
}

function formatRate (perSecond: number): string {
  return perSecond >= 1 ? `${Math.round(perSecond * 100) / 100}/s` : `${Math.round(perSecond * 6000) / 100}/m`
}
