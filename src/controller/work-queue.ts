// A per-key work queue like client-go's: deduplicated keys, one run per key at a time, per-key backoff on failure.
import { systemClock, type Clock, type TimerHandle } from '../clock.ts'
import { backoffDelay, type Backoff } from '../kube/informer.ts'

export const DEFAULT_CONCURRENCY = 8
export const DEFAULT_RETRY_BACKOFF: Backoff = Object.freeze({ initialMs: 250, maxMs: 60_000 })

export interface WorkQueueOptions {
  process: (key: string) => Promise<void>
  concurrency?: number
  backoff?: Backoff
  /** Delay before retrying after `err` on attempt `attempt` (0-based); the backoff when undefined. */
  retryDelay?: (err: unknown, attempt: number) => number | undefined
  onError?: (key: string, err: unknown, attempt: number, delayMs: number) => void
  /** A key that had failed `attempts` times was processed. */
  onRecovered?: (key: string, attempts: number) => void
  random?: () => number
  clock?: Clock
}

/**
 * Keys waiting to be processed, like client-go's workqueue: a key added while queued is queued
 * once; a key added while being processed is processed again afterwards, never concurrently;
 * a failed key comes back after a per-key exponential backoff.
 */
export class WorkQueue {
  readonly #process: (key: string) => Promise<void>
  readonly #concurrency: number
  readonly #backoff: Backoff
  readonly #retryDelay: (err: unknown, attempt: number) => number | undefined
  readonly #onError: (key: string, err: unknown, attempt: number, delayMs: number) => void
  readonly #onRecovered: (key: string, attempts: number) => void
  readonly #random: () => number
  readonly #clock: Clock
  /** Insertion-ordered: the oldest key is processed first. */
  readonly #queued = new Set<string>()
  readonly #processing = new Set<string>()
  readonly #again = new Set<string>()
  readonly #failures = new Map<string, number>()
  readonly #retries = new Map<string, TimerHandle>()
  readonly #running = new Set<Promise<void>>()
  #idleWaiters: Array<() => void> = []
  #started = false
  #closed = false

  constructor (options: WorkQueueOptions) {
    this.#process = options.process
    this.#concurrency = options.concurrency ?? DEFAULT_CONCURRENCY
    if (!Number.isInteger(this.#concurrency) || this.#concurrency < 1) throw new TypeError(`WorkQueue: concurrency must be a positive integer, got ${String(options.concurrency)}`)
    this.#backoff = options.backoff ?? DEFAULT_RETRY_BACKOFF
    this.#retryDelay = options.retryDelay ?? (() => undefined)
    this.#onError = options.onError ?? (() => {})
    this.#onRecovered = options.onRecovered ?? (() => {})
    this.#random = options.random ?? Math.random
    this.#clock = options.clock ?? systemClock
  }

  /** Keys waiting (not counting those being processed). */
  get depth (): number { return this.#queued.size }
  get active (): number { return this.#processing.size }
  /** Keys waiting for a retry after a failure. */
  get retrying (): number { return this.#retries.size }

  add (key: string): void {
    if (this.#closed) return
    if (this.#processing.has(key)) {
      this.#again.add(key)
      return
    }
    this.#queued.add(key)
    this.#pump()
  }

  /** Starts processing; keys added before are kept and processed now. */
  start (): void {
    if (this.#started || this.#closed) return
    this.#started = true
    this.#pump()
  }

  /** Resolves once nothing is queued or being processed (retries may still be scheduled). */
  whenIdle (): Promise<void> {
    if ((this.#queued.size === 0 || !this.#started) && this.#processing.size === 0) return Promise.resolve()
    return new Promise((resolve) => { this.#idleWaiters.push(resolve) })
  }

  /** Stops taking keys, cancels retries and waits for the keys being processed. */
  async close (): Promise<void> {
    this.#closed = true
    this.#queued.clear()
    this.#again.clear()
    for (const handle of this.#retries.values()) this.#clock.clearTimeout(handle)
    this.#retries.clear()
    await Promise.allSettled([...this.#running])
    this.#notifyIdle()
  }

  #pump (): void {
    if (!this.#started) return
    while (!this.#closed && this.#processing.size < this.#concurrency && this.#queued.size > 0) {
      const key = this.#queued.values().next().value as string
      this.#queued.delete(key)
      this.#processing.add(key)
      const run = this.#run(key)
      this.#running.add(run)
      void run.finally(() => this.#running.delete(run))
    }
  }

  async #run (key: string): Promise<void> {
    try {
      await this.#process(key)
      const failures = this.#failures.get(key)
      this.#failures.delete(key)
      if (failures !== undefined && !this.#closed) this.#onRecovered(key, failures)
      const retry = this.#retries.get(key)
      if (retry !== undefined) {
        this.#clock.clearTimeout(retry)
        this.#retries.delete(key)
      }
    } catch (err) {
      const attempt = this.#failures.get(key) ?? 0
      this.#failures.set(key, attempt + 1)
      const delay = this.#retryDelay(err, attempt) ?? backoffDelay(attempt, this.#backoff, this.#random)
      // The retry sees the latest state anyway: events that came in meanwhile wait for it.
      this.#again.delete(key)
      if (!this.#closed) this.#onError(key, err, attempt, delay)
      if (!this.#closed) {
        const previous = this.#retries.get(key)
        if (previous !== undefined) this.#clock.clearTimeout(previous)
        this.#retries.set(key, this.#clock.setTimeout(() => {
          this.#retries.delete(key)
          this.add(key)
        }, delay))
      }
    } finally {
      this.#processing.delete(key)
      if (this.#again.delete(key) && !this.#closed) this.#queued.add(key)
      this.#pump()
      if (this.#queued.size === 0 && this.#processing.size === 0) this.#notifyIdle()
    }
  }

  #notifyIdle (): void {
    const waiters = this.#idleWaiters
    this.#idleWaiters = []
    for (const resolve of waiters) resolve()
  }
}
