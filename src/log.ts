// podgate's pino loggers: JSON lines with credentials redacted, one `component` key that
// nested parts compose into a path (`provisioner/reconciler`), and the rule for logging a
// failure that a loop retries (one stack per streak, then one line per attempt).
import { pino, type Logger, type LoggerOptions } from 'pino'
import type { LogLevel } from './config.ts'

export type { Logger }

/** Paths that may carry credentials; pino replaces their values. */
export const REDACT_PATHS = [
  'req.headers.authorization', 'req.headers.cookie', 'req.headers["proxy-authorization"]',
  'headers.authorization', 'headers.cookie', 'token', 'secret',
]

/** The component path of a logger, inherited by its children (pino children are Object.create of their parent). */
const COMPONENT = Symbol('podgate.component')
type Tagged = Logger & { [COMPONENT]?: string }
const NO_COMPONENT = Object.freeze({})

export function createLogger (level: LogLevel, destination?: NodeJS.WritableStream): Logger {
  const options: LoggerOptions = {
    level,
    base: { service: 'podgate' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    // The component goes into each line from here rather than from child bindings, which pino
    // only appends: a child of a child would carry the key twice.
    mixin: (_object, _level, logger) => {
      const component = (logger as Tagged)[COMPONENT]
      return component === undefined ? NO_COMPONENT : { component }
    },
    mixinMergeStrategy: (object, mixed) => mixed === NO_COMPONENT ? object : Object.assign(mixed, object),
  }
  return destination === undefined ? pino(options) : pino(options, destination)
}

/**
 * A child logger for a part of podgate: its lines carry `component` once, the parent's
 * component and `name` joined by '/' (`provisioner/reconciler`). Extra bindings are added as usual.
 */
export function componentLogger (parent: Logger, name: string, bindings: Record<string, unknown> = {}): Logger {
  const child = parent.child(bindings) as Tagged
  const above = (parent as Tagged)[COMPONENT]
  child[COMPONENT] = above === undefined ? name : `${above}/${name}`
  return child
}

type FailureLevel = 'warn' | 'error'

export interface FailureStreaksOptions {
  /** The message of every failure line, e.g. 'watch failed; restarting the informer'. */
  readonly failed: string
  /** The message of the line that ends a streak, e.g. 'watching again'. */
  readonly recovered: string
  readonly level?: FailureLevel
  /** The one-line form of an error (default: its message). */
  readonly describe?: (err: unknown) => string
}

/**
 * How a loop that retries logs its failures, so an outage reads as a few lines: the first
 * failure of a streak with `err` (and its stack), each later one as one line with `attempt`
 * and `error` (the message), and the first success after them as one line with `attempts`.
 * Streaks are counted per key (a workload, a user, a worker; '' for a loop with one); while
 * one key is failing, another key's first failure is one line too: an API outage that fails
 * every workload shows one stack, not one per workload.
 */
export class FailureStreaks {
  readonly #logger: Logger
  readonly #options: FailureStreaksOptions
  readonly #attempts = new Map<string, number>()

  constructor (logger: Logger, options: FailureStreaksOptions) {
    this.#logger = logger
    this.#options = options
  }

  /** Failures so far in `key`'s streak (0 when it is not failing). */
  attempts (key = ''): number { return this.#attempts.get(key) ?? 0 }

  /**
   * Logs a failure of `key` and returns its attempt number (1 for the first of a streak).
   * An `err` that is not an Error (a worker's exit status, say) is logged as text each time.
   */
  failed (err: unknown, fields: Record<string, unknown> = {}, options: { key?: string, level?: FailureLevel } = {}): number {
    const key = options.key ?? ''
    const attempt = this.attempts(key) + 1
    const outageStarts = this.#attempts.size === 0
    this.#attempts.set(key, attempt)
    const level = options.level ?? this.#options.level ?? 'warn'
    const detail = outageStarts && err instanceof Error ? { err } : { error: this.#describe(err) }
    this.#logger[level]({ ...fields, attempt, ...detail }, this.#options.failed)
    return attempt
  }

  /** Ends `key`'s streak, logging how many failed attempts it took; nothing when it was not failing. */
  recovered (fields: Record<string, unknown> = {}, key = ''): number {
    const attempts = this.attempts(key)
    if (attempts === 0) return 0
    this.#attempts.delete(key)
    this.#logger.info({ ...fields, attempts }, this.#options.recovered)
    return attempts
  }

  /** Drops `key`'s streak without a line (the key is gone: a deleted workload, a removed worker). */
  forget (key = ''): void { this.#attempts.delete(key) }

  /** The keys in a streak now (a copy: forgetting while iterating is fine). */
  keys (): string[] { return [...this.#attempts.keys()] }

  #describe (err: unknown): string {
    if (this.#options.describe !== undefined) return this.#options.describe(err)
    return err instanceof Error ? err.message : String(err)
  }
}
