// Per-user limits in this process: a token bucket (refilled continuously) and a cap on
// in-flight requests plus open WebSockets, by default the same for everyone, or those of the
// user's workload profile. Buckets of idle users are forgotten: a full bucket is the same as
// none, so one unref'd sweep drops them while any bucket exists.
import { systemClock, type Clock, type TimerHandle } from '../clock.ts'
import { RateLimitedError } from '../errors.ts'
import type { RateLimitConfig, UserLimits } from './rate-limit-config.ts'

/** One set of limits, with its refusals built once and reused. */
class LimitPolicy {
  /** Tokens per millisecond; 0: no rate limit. */
  readonly perMs: number
  readonly burst: number
  readonly maxConcurrent: number
  /** Time for an empty bucket to fill: the oldest a bucket can be and still differ from none. */
  readonly refillMs: number
  readonly overConcurrency: RateLimitedError
  // By Retry-After seconds (at most one per second of the refill time): a flood of 429s then
  // costs no stack capture per request.
  readonly #overRate = new Map<number, RateLimitedError>()

  constructor (limits: UserLimits) {
    this.perMs = (limits.perSecond ?? 0) / 1000
    this.burst = limits.burst
    this.maxConcurrent = limits.maxConcurrent
    this.refillMs = this.perMs > 0 ? Math.ceil(this.burst / this.perMs) : 0
    this.overConcurrency = new RateLimitedError('concurrency', `too many requests in flight for this user (at most ${limits.maxConcurrent} at once, WebSockets included)`, 1)
  }

  overRate (seconds: number): RateLimitedError {
    let refusal = this.#overRate.get(seconds)
    if (refusal === undefined) {
      refusal = new RateLimitedError('rate', `too many requests for this user (${formatRate(this.perMs * 1000)}, bursts of ${this.burst})`, seconds)
      this.#overRate.set(seconds, refusal)
    }
    return refusal
  }

  /** The bucket's tokens at `now`, refilled since it was last brought up to date. */
  tokens (bucket: Bucket, now: number): number {
    return Math.min(this.burst, bucket.tokens + (now - bucket.at) * this.perMs)
  }
}

interface Bucket {
  tokens: number
  /** When `tokens` was last brought up to date (clock ms). */
  at: number
  /** The limits it fills by: a user whose profile changes keeps the bucket under the new ones. */
  policy: LimitPolicy
}

/** Undefined when every limit is off: the request path then does no work at all. */
export function createRateLimiter (config: RateLimitConfig | undefined, clock: Clock = systemClock): UserRateLimiter | undefined {
  return config === undefined ? undefined : new UserRateLimiter(config, clock)
}

export class UserRateLimiter {
  readonly #clock: Clock
  readonly #default: LimitPolicy
  readonly #byProfile: ReadonlyMap<string, LimitPolicy>
  /** Some policy caps concurrency: every user's requests in flight are counted, whatever their profile is now. */
  readonly #counts: boolean
  readonly #sweepMs: number
  readonly #buckets = new Map<string, Bucket>()
  readonly #inFlight = new Map<string, number>()
  #sweep: TimerHandle | undefined

  constructor (config: RateLimitConfig, clock: Clock = systemClock) {
    this.#clock = clock
    this.#default = new LimitPolicy(config)
    this.#byProfile = new Map(Object.entries(config.profiles ?? {}).map(([name, limits]) => [name, new LimitPolicy(limits)]))
    const policies = [this.#default, ...this.#byProfile.values()]
    this.#counts = policies.some((policy) => policy.maxConcurrent > 0)
    // The shortest refill time: every bucket is dropped within one sweep of being full again.
    const refills = policies.map((policy) => policy.refillMs).filter((ms) => ms > 0)
    this.#sweepMs = refills.length === 0 ? 0 : Math.min(3_600_000, Math.max(1000, Math.min(...refills)))
  }

  /** Users with a bucket that is not full (tests and the metrics reader look). */
  get buckets (): number { return this.#buckets.size }
  /** Users with at least one request or WebSocket in flight. */
  get activeUsers (): number { return this.#inFlight.size }

  /**
   * Takes one token and one concurrency slot for `user`, under the limits of `profile` (the
   * user's workload profile; the default limits when it is undefined or sets none), or says why
   * not. When admitted (undefined), the caller calls release(user) exactly once, when the
   * request or socket ends.
   */
  admit (user: string, profile?: string): RateLimitedError | undefined {
    const policy = profile === undefined ? this.#default : this.#byProfile.get(profile) ?? this.#default
    const inFlight = this.#counts ? this.#inFlight.get(user) ?? 0 : 0
    if (policy.maxConcurrent > 0 && inFlight >= policy.maxConcurrent) return policy.overConcurrency
    if (policy.perMs > 0) {
      const refused = this.#take(user, policy)
      if (refused !== undefined) return refused
    }
    if (this.#counts) this.#inFlight.set(user, inFlight + 1)
    return undefined
  }

  release (user: string): void {
    if (!this.#counts) return
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

  #take (user: string, policy: LimitPolicy): RateLimitedError | undefined {
    const now = this.#clock.now()
    const bucket = this.#buckets.get(user)
    if (bucket === undefined) {
      this.#buckets.set(user, { tokens: policy.burst - 1, at: now, policy })
      this.#sweep ??= this.#clock.setInterval(() => { this.#dropFull() }, this.#sweepMs, { unref: true })
      return undefined
    }
    // A new profile: what the bucket held so far, refilled by the old limits, at most the new burst.
    const tokens = bucket.policy === policy ? policy.tokens(bucket, now) : Math.min(policy.burst, bucket.policy.tokens(bucket, now))
    bucket.policy = policy
    bucket.at = now
    if (tokens >= 1) {
      bucket.tokens = tokens - 1
      return undefined
    }
    bucket.tokens = tokens
    return policy.overRate(Math.max(1, Math.ceil((1 - tokens) / policy.perMs / 1000)))
  }

  /** Forgets every bucket that has filled up again; stops when none is left. */
  #dropFull (): void {
    const now = this.#clock.now()
    for (const [user, bucket] of this.#buckets) {
      if (bucket.policy.tokens(bucket, now) >= bucket.policy.burst) this.#buckets.delete(user)
    }
    if (this.#buckets.size === 0) this.close()
  }
}

function formatRate (perSecond: number): string {
  return perSecond >= 1 ? `${Math.round(perSecond * 100) / 100}/s` : `${Math.round(perSecond * 6000) / 100}/m`
}
