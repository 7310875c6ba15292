// The limits a gateway process holds users to: PODGATE_RATE_LIMIT and its siblings, with the
// overrides of each profile in PODGATE_PROFILES that sets some. Every gateway process reads the
// file, a routing-only one (PODGATE_PROVISIONER=false) and each worker included; without it,
// every user gets the global limits.
import type { Config } from '../config.ts'
import type { ProfileLimits, RateLimitConfig, UserLimits } from './rate-limit-config.ts'

const NO_LIMITS: UserLimits = { perSecond: undefined, burst: 1, maxConcurrent: 0 }

/** Reads PODGATE_PROFILES (when set) for its limits. Throws the ConfigError of a bad file. */
export async function gatewayLimits (config: Pick<Config, 'gateway' | 'profilesFile'>): Promise<RateLimitConfig | undefined> {
  if (config.profilesFile === undefined) return config.gateway.rateLimit
  // Loaded only here: a gateway without profiles never parses YAML.
  const { loadProfiles } = await import('../controller/profiles.ts')
  const profiles = loadProfiles(config.profilesFile)
  return withProfileLimits(config.gateway.rateLimit, profiles.names.map((name) => profiles.get(name)).filter((p) => p !== undefined))
}

/**
 * `global` (from the environment) for users whose profile sets no limit, and for each profile
 * that sets some, the global ones with its own in their place. Undefined when nothing is limited.
 */
export function withProfileLimits (global: RateLimitConfig | undefined, profiles: Iterable<{ readonly name: string, readonly limits?: ProfileLimits | undefined }>): RateLimitConfig | undefined {
  const base = global ?? NO_LIMITS
  const byProfile: Record<string, UserLimits> = {}
  for (const { name, limits } of profiles) {
    if (limits === undefined) continue
    const rate = limits.rate === undefined ? base : limits.rate ?? NO_LIMITS
    byProfile[name] = { perSecond: rate.perSecond, burst: rate.burst, maxConcurrent: limits.maxConcurrent ?? base.maxConcurrent }
  }
  if (Object.keys(byProfile).length === 0) return global
  return { perSecond: base.perSecond, burst: base.burst, maxConcurrent: base.maxConcurrent, profiles: byProfile }
}
