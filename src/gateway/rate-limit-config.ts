// PODGATE_RATE_LIMIT, PODGATE_RATE_BURST and PODGATE_MAX_CONCURRENT_PER_USER → one
// RateLimitConfig, or undefined when every per-user limit is off (the default); the shape of a
// profile's own limits, and the rate syntax both share.
import { ConfigError } from '../errors.ts'
import type { EnvReader } from '../env-reader.ts'

/** The limits one user is held to. */
export interface UserLimits {
  /** Tokens added to the user's bucket per second; undefined: no request rate limit. */
  readonly perSecond: number | undefined
  /** Bucket size: requests a user may send at once after being quiet. */
  readonly burst: number
  /** In-flight requests plus open WebSockets per user; 0: no cap. */
  readonly maxConcurrent: number
}

export interface RateLimitConfig extends UserLimits {
  /** Users whose workload has one of these profiles get its limits instead of the ones above. */
  readonly profiles?: Readonly<Record<string, UserLimits>> | undefined
}

/** What a profile sets (PODGATE_PROFILES); a limit it leaves out stays the global one. */
export interface ProfileLimits {
  /** Its own bucket (rateLimit, rateBurst); null: no rate limit for this profile. */
  readonly rate?: { readonly perSecond: number, readonly burst: number } | null
  /** maxConcurrentPerUser; 0: no cap for this profile. */
  readonly maxConcurrent?: number
}

export const MAX_BURST = 1_000_000
export const MAX_CONCURRENT = 1_000_000
export const RATE_EXAMPLES = 'a positive number of requests per s, m or h, such as 50/s or 600/m'

const RATE = /^\s*(\d+(?:\.\d+)?)\s*\/\s*(s|m|h)\s*$/
const SECONDS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600 }

/** `50/s`, `600/m` or `100/h` in requests per second; undefined when `text` is none of those. */
export function parseRate (text: string): number | undefined {
  const match = RATE.exec(text)
  const count = Number(match?.[1])
  if (match === null || !(count > 0) || !Number.isFinite(count)) return undefined
  return count / SECONDS[match[2]!]!
}

/** A bucket holds one second's worth of requests unless told otherwise, and at least one. */
export function defaultBurst (perSecond: number | undefined): number {
  return Math.max(1, Math.ceil(perSecond ?? 1))
}

export function readRateLimit (read: EnvReader): RateLimitConfig | undefined {
  const perSecond = readRate(read)
  if (perSecond === undefined && read.has('PODGATE_RATE_BURST')) {
    throw new ConfigError('PODGATE_RATE_BURST', 'has no effect without PODGATE_RATE_LIMIT')
  }
  const burst = read.integer('PODGATE_RATE_BURST', defaultBurst(perSecond), 1, MAX_BURST)
  const maxConcurrent = read.integer('PODGATE_MAX_CONCURRENT_PER_USER', 0, 0, MAX_CONCURRENT)
  if (perSecond === undefined && maxConcurrent === 0) return undefined
  return { perSecond, burst, maxConcurrent }
}

function readRate (read: EnvReader): number | undefined {
  const text = read.optional('PODGATE_RATE_LIMIT', /^.+$/)
  if (text === undefined) return undefined
  const perSecond = parseRate(text)
  if (perSecond === undefined) throw new ConfigError('PODGATE_RATE_LIMIT', `expected ${RATE_EXAMPLES}, got ${JSON.stringify(text.slice(0, 64))}`)
  return perSecond
}
