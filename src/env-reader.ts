// How PODGATE_* variables are read: strings, lists, integers, booleans, durations, labels,
// worker counts, enumerations. Each bad value is a ConfigError naming the variable.
import { availableParallelism } from 'node:os'
import { ConfigError } from './errors.ts'

/** The most gateway workers PODGATE_WORKERS may ask for. */
export const MAX_WORKERS = 256

export type Env = Readonly<Record<string, string | undefined>>

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/** Parses "250ms", "5s", "10m", "1h", or a bare number of seconds, into milliseconds. */
export function parseDuration (text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim())
  if (match === null) return undefined
  const value = Number(match[1]) * (UNITS[match[2] ?? 's'] ?? 1000)
  return Number.isFinite(value) ? Math.round(value) : undefined
}

/** Reads PODGATE_* variables by type; each bad value throws a ConfigError naming the variable. */
export class EnvReader {
  readonly #env: Env
  constructor (env: Env) { this.#env = env }

  #raw (name: string): string | undefined {
    const value = this.#env[name]
    return value === undefined || value.trim() === '' ? undefined : value
  }

  /** Whether `name` is set to something other than blanks. */
  has (name: string): boolean {
    return this.#raw(name) !== undefined
  }

  optional (name: string, pattern: RegExp, expected?: string): string | undefined {
    const value = this.#raw(name)
    if (value !== undefined && !pattern.test(value)) {
      throw new ConfigError(name, `invalid value${expected ? `: expected ${expected}` : ` ${JSON.stringify(value.slice(0, 64))}`}`)
    }
    return value
  }

  string (name: string, fallback: string, pattern: RegExp): string {
    return this.optional(name, pattern) ?? fallback
  }

  list (name: string): string[] | undefined {
    const value = this.#raw(name)
    if (value === undefined) return undefined
    const items = value.split(',').map((item) => item.trim()).filter((item) => item !== '')
    if (items.length === 0) throw new ConfigError(name, 'empty list')
    return items
  }

  integer (name: string, fallback: number, min: number, max: number): number {
    const value = this.#raw(name)
    if (value === undefined) return fallback
    const n = Number(value)
    if (!/^\d+$/.test(value.trim()) || n < min || n > max) throw new ConfigError(name, `expected an integer from ${min} to ${max}, got ${JSON.stringify(value)}`)
    return n
  }

  boolean (name: string, fallback: boolean): boolean {
    const value = this.#raw(name)?.trim().toLowerCase()
    if (value === undefined) return fallback
    if (['1', 'true', 'yes', 'on'].includes(value)) return true
    if (['0', 'false', 'no', 'off'].includes(value)) return false
    throw new ConfigError(name, `expected true or false, got ${JSON.stringify(value)}`)
  }

  duration (name: string, fallback: number): number {
    const value = this.#raw(name)
    if (value === undefined) return fallback
    const ms = parseDuration(value)
    if (ms === undefined) throw new ConfigError(name, `expected a duration such as 500ms, 30s, 10m or 1h, got ${JSON.stringify(value)}`)
    return ms
  }

  /** `key=value,key=value` label pairs (Kubernetes label syntax). */
  labels (name: string, fallback: Record<string, string>): Record<string, string> {
    const items = this.list(name)
    if (items === undefined) return fallback
    const labels: Record<string, string> = {}
    for (const item of items) {
      const match = /^((?:[a-z0-9.-]{1,253}\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)=([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/.exec(item)
      if (match === null) throw new ConfigError(name, `expected key=value label pairs separated by commas, got ${JSON.stringify(item)}`)
      labels[match[1] as string] = match[3] ?? ''
    }
    return labels
  }

  /** `auto` (the default): one per CPU this process may use — affinity and cgroup quota — else 1 to 256. */
  workers (name: string): number {
    const value = this.#raw(name)?.trim().toLowerCase()
    if (value === undefined || value === 'auto') return availableParallelism()
    const n = Number(value)
    if (!/^\d+$/.test(value) || n < 1 || n > MAX_WORKERS) throw new ConfigError(name, `expected auto or an integer from 1 to ${MAX_WORKERS}, got ${JSON.stringify(value)}`)
    return n
  }

  oneOf<T extends string> (name: string, values: readonly T[], fallback: T): T {
    const value = this.#raw(name)
    if (value === undefined) return fallback
    if (!(values as readonly string[]).includes(value)) throw new ConfigError(name, `expected one of ${values.join(', ')}, got ${JSON.stringify(value)}`)
    return value as T
  }
}
