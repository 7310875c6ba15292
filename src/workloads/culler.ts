// Idle culling: suspends every running (Ready or Failed) workload whose last activity (or,
// before any, its creation) is older than the idle timeout. Activity is read from the
// workloads' status, so requests served by any replica count. Runs where the provisioner
// leads (in local mode, always).
import { systemClock, type Clock, type TimerHandle } from '../clock.ts'
import { FailureStreaks, type Logger } from '../log.ts'
import type { Workload, Workloads } from './workloads.ts'

export const MAX_CULL_INTERVAL_MS = 60_000
export const MIN_CULL_INTERVAL_MS = 1_000

export interface CullerOptions {
  readonly workloads: Workloads
  readonly idleTimeoutMs: number
  readonly logger: Logger
  /** Time between sweeps (default: idleTimeoutMs / 4, kept within 1 s … 60 s). */
  readonly intervalMs?: number
  readonly clock?: Clock
}

export class Culler {
  readonly idleTimeoutMs: number
  readonly intervalMs: number
  readonly #workloads: Workloads
  readonly #logger: Logger
  readonly #sweepFailures: FailureStreaks
  readonly #suspendFailures: FailureStreaks
  readonly #clock: Clock
  /** When the culler first saw a workload that reports neither activity nor creation time. */
  readonly #firstSeen = new Map<string, number>()
  #timer: TimerHandle | undefined
  #running = false
  #sweeping: Promise<string[]> | undefined

  constructor (options: CullerOptions) {
    if (options?.workloads === undefined) throw new TypeError('workloads: required')
    if (options.logger === undefined) throw new TypeError('logger: required')
    const idle = options.idleTimeoutMs
    if (typeof idle !== 'number' || !Number.isFinite(idle) || idle <= 0) throw new TypeError(`idleTimeoutMs: expected a positive number, got ${String(idle)}`)
    const interval = options.intervalMs ?? Math.min(MAX_CULL_INTERVAL_MS, Math.max(MIN_CULL_INTERVAL_MS, idle / 4))
    if (typeof interval !== 'number' || !Number.isFinite(interval) || interval <= 0) throw new TypeError(`intervalMs: expected a positive number, got ${String(interval)}`)
    this.idleTimeoutMs = idle
    this.intervalMs = interval
    this.#workloads = options.workloads
    this.#logger = options.logger
    this.#sweepFailures = new FailureStreaks(this.#logger, { failed: 'idle sweep failed; trying again next interval', recovered: 'idle sweep succeeded again' })
    this.#suspendFailures = new FailureStreaks(this.#logger, { failed: 'suspending an idle workload failed', recovered: 'suspended an idle workload' })
    this.#clock = options.clock ?? systemClock
  }

  get running (): boolean { return this.#running }

  /** Sweeps every interval until stop(); a no-op when already running. */
  start (): void {
    if (this.#running) return
    this.#running = true
    this.#next()
  }

  /** Stops sweeping and resolves once a sweep in progress has finished. */
  async stop (): Promise<void> {
    this.#running = false
    this.#clock.clearTimeout(this.#timer)
    this.#timer = undefined
    await this.#sweeping?.catch(() => {})
  }

  /** One pass: suspends the idle workloads and resolves with their users. Never overlaps another pass. */
  sweep (): Promise<string[]> {
    this.#sweeping ??= this.#sweepOnce().finally(() => { this.#sweeping = undefined })
    return this.#sweeping
  }

  #next (): void {
    // Unref'd: sweeping is background work; it never keeps the process alive by itself.
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined
      this.sweep().then(() => { this.#sweepFailures.recovered() }, (err: unknown) => {
        this.#sweepFailures.failed(err)
      }).finally(() => {
        if (this.#running) this.#next()
      })
    }, this.intervalMs, { unref: true })
  }

  async #sweepOnce (): Promise<string[]> {
    const workloads = await this.#workloads.list()
    const now = this.#clock.now()
    const present = new Set<string>()
    const tried = new Set<string>()
    const suspended: string[] = []
    for (const workload of workloads) {
      present.add(workload.user)
      // A start in progress is not idleness: an image pull may take longer than the timeout.
      if (workload.suspended || workload.status.phase === 'Pending' || workload.status.phase === 'Starting') continue
      const idleMs = now - this.#lastActive(workload, now)
      if (idleMs < this.idleTimeoutMs) continue
      tried.add(workload.user)
      try {
        // The workload listed, in its own namespace: a refused duplicate claim is never taken for the served one.
        await this.#workloads.setSuspended(workload.user, true, workload.namespace)
        suspended.push(workload.user)
        // One line either way; after failed attempts it says how many.
        if (this.#suspendFailures.recovered({ user: workload.user, idleMs }, workload.user) === 0) {
          this.#logger.info({ user: workload.user, idleMs }, 'suspended an idle workload')
        }
      } catch (err) {
        this.#suspendFailures.failed(err, { user: workload.user }, { key: workload.user })
      }
    }
    for (const user of this.#firstSeen.keys()) if (!present.has(user)) this.#firstSeen.delete(user)
    // A streak is consecutive sweeps failing to suspend one user; one not tried this time ends quietly.
    for (const user of this.#suspendFailures.keys()) if (!tried.has(user)) this.#suspendFailures.forget(user)
    return suspended
  }

  #lastActive (workload: Workload, now: number): number {
    const activity = timestamp(workload.status.lastActivity) ?? timestamp(workload.createdAt)
    if (activity !== undefined) return activity
    let seen = this.#firstSeen.get(workload.user)
    if (seen === undefined) {
      seen = now
      this.#firstSeen.set(workload.user, seen)
    }
    return seen
  }
}

function timestamp (text: string | undefined): number | undefined {
  if (text === undefined) return undefined
  const ms = Date.parse(text)
  return Number.isNaN(ms) ? undefined : ms
}
