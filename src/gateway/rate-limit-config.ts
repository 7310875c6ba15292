// PODGATE_RATE_LIMIT, PODGATE_RATE_BURST and PODGATE_MAX_CONCURRENT_PER_USER → one
// RateLimitConfig, or undefined when every per-user limit is off (the default).
import { ConfigError } from '../errors.ts'
import type { EnvReader } from '../env-reader.ts'

export interface RateLimitConfig {
  /** Tokens added to each user's bucket per second; undefined: no request rate limit. */
  readonly perSecond: number | undefined
  /** Bucket size: requests a user may send at once after being quiet. */
  readonly burst: number
  /** In-flight requests plus open WebSockets per user; 0: no cap. */
  readonly maxConcurrent: number
}

const RATE = /^\s*(\d+(?:\.\d+)?)\s*\/\s*(s|m|h)\s*$/
const SECONDS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600 }

export function readRateLimit (read: EnvReader): RateLimitConfig | undefined {
  const perSecond = readRate(read)
  if (perSecond === undefined && read.has('PODGATE_RATE_BURST')) {
    throw new ConfigError('PODGATE_RATE_BURST', 'has no effect without PODGATE_RATE_LIMIT')
  }
  const burst = read.integer('PODGATE_RATE_BURST', Math.max(1, Math.ceil(perSecond ?? 1)), 1, 1_000_000)
  const maxConcurrent = read.integer('PODGATE_MAX_CONCURRENT_PER_USER', 0, 0, 1_000_000)
  if (perSecond === undefined && maxConcurrent === 0) return undefined
  return { perSecond, burst, maxConcurrent }
}

function readRate (read: EnvReader): number | undefined {
  const text = read.optional('PODGATE_RATE_LIMIT', /^.+$/)
  if (text === undefined) return undefined
  const match = RATE.exec(text)
  const count = Number(match?.[1])
  if (match === null || !(count > 0) || !Number.isFinite(count)) {
    throw new ConfigError('PODGATE_RATE_LIMIT', `expected a positive number of requests per s, m or h, such as 50/s or 600/m, got ${JSON.stringify(text.slice(0, 64))}`)
  }
  return count / SECONDS[match[2]!]!
}
