// Activity for idle culling, and its one throttle. The gateway reports each user whose
// request or WebSocket reached their workload (a gateway worker's reports arrive through
// its primary). A user's first report in an interval goes to `Workloads.touch` at once, the
// rest of the interval's as one trailing write at the next flush: a busy user costs one map
// lookup per request and one status write per interval. Workloads write what they are given.
import { systemClock, type Clock, type TimerHandle } from '../clock.ts'
import type { ActivityListener } from '../gateway/gateway.ts'
import { FailureStreaks, type Logger } from '../log.ts'
import type { Workloads } from './workloads.ts'

export const DEFAULT_TOUCH_INTERVAL_MS = 30_000
/** Users tracked at once, by default: far above the workloads one namespace runs. */
export const DEFAULT_MAX_TRACKED_USERS = 100_000
/** Users silent for this many intervals are forgotten (their last activity is already written). */
const FORGET_AFTER_INTERVALS = 10

export interface ActivityRecorderOptions {
  readonly workloads: Pick<Workloads, 'touch'>
  readonly logger: Logger
  /** The idle timeout culling uses (0 = off): writes happen at least four times within it. */
  readonly idleTimeoutMs: number
  /** Overrides the write interval (default: 30 s or idleTimeoutMs / 4, whichever is smaller). */
  readonly touchIntervalMs?: number
  /**
   * The most users tracked at once. A new user past it makes the recorder start over: what is
   * pending is written now (it was due at the next flush) and every user is forgotten, so no
   * activity is lost; a forgotten user's next report is written at once, like a new user's.
   */
  readonly maxTrackedUsers?: number
  readonly clock?: Clock
}

interface UserActivity {
  requests: number
  /** Time of the latest request. */
  last: number
  /** Time of the latest activity written to the workload. */
  written: number
}

export class ActivityRecorder {
  /** The gateway's onActivity hook. */
  readonly record: ActivityListener
  readonly intervalMs: number
  readonly maxTrackedUsers: number
  readonly #workloads: Pick<Workloads, 'touch'>
  readonly #logger: Logger
  readonly #failures: FailureStreaks
  readonly #clock: Clock
  readonly #users = new Map<string, UserActivity>()
  readonly #timer: TimerHandle
  #capLogged = false
  #closed = false

  constructor (options: ActivityRecorderOptions) {
    if (options?.workloads === undefined) throw new TypeError('workloads: required')
    if (options.logger === undefined) throw new TypeError('logger: required')
    const idle = options.idleTimeoutMs
    if (typeof idle !== 'number' || !Number.isFinite(idle) || idle < 0) throw new TypeError(`idleTimeoutMs: expected a number ≥ 0, got ${String(idle)}`)
    const interval = options.touchIntervalMs ?? (idle > 0 ? Math.min(DEFAULT_TOUCH_INTERVAL_MS, idle / 4) : DEFAULT_TOUCH_INTERVAL_MS)
    if (typeof interval !== 'number' || !Number.isFinite(interval) || interval <= 0) throw new TypeError(`touchIntervalMs: expected a positive number, got ${String(interval)}`)
    const max = options.maxTrackedUsers ?? DEFAULT_MAX_TRACKED_USERS
    if (!Number.isInteger(max) || max < 1) throw new TypeError(`maxTrackedUsers: expected a whole number ≥ 1, got ${String(max)}`)
    this.intervalMs = interval
    this.maxTrackedUsers = max
    this.#workloads = options.workloads
    this.#logger = options.logger
    this.#failures = new FailureStreaks(options.logger, { failed: 'recording activity failed', recovered: 'recording activity again' })
    this.#clock = options.clock ?? systemClock
    // Trailing writes: the last request of a burst reaches the status within one interval.
    // Unref'd: the servers whose requests it records keep the process alive, it must not.
    this.#timer = this.#clock.setInterval(() => { this.flush() }, interval, { unref: true })

    this.record = (user) => {
      if (this.#closed) return
      const at = this.#clock.now()
      const activity = this.#users.get(user)
      if (activity === undefined) {
        if (this.#users.size >= max) this.#startOver()
        this.#users.set(user, { requests: 1, last: at, written: at })
        this.#write(user, at)
        return
      }
      activity.requests++
      activity.last = at
      if (at - activity.written >= interval) {
        activity.written = at
        this.#write(user, at)
      }
    }
  }

  /** Requests recorded for `user` since it was last forgotten. */
  requests (user: string): number {
    return this.#users.get(user)?.requests ?? 0
  }

  /** Users tracked now (at most maxTrackedUsers). */
  get tracked (): number {
    return this.#users.size
  }

  /** Writes activity not yet written and forgets users silent for a long time. */
  flush (): void {
    const now = this.#clock.now()
    this.#capLogged = false
    for (const [user, activity] of this.#users) {
      if (activity.last > activity.written) {
        activity.written = activity.last
        this.#write(user, activity.last)
      } else if (now - activity.last >= FORGET_AFTER_INTERVALS * this.intervalMs) {
        this.#forget(user)
      }
    }
  }

  /** Writes what is pending and stops the timer; later reports are ignored. Idempotent. */
  close (): void {
    if (this.#closed) return
    this.#closed = true
    this.#clock.clearInterval(this.#timer)
    this.flush()
  }

  /** At the cap: writes what is pending (due at the next flush anyway) and forgets everyone. */
  #startOver (): void {
    if (!this.#capLogged) {
      this.#capLogged = true
      this.#logger.warn({ tracked: this.#users.size, maxTrackedUsers: this.maxTrackedUsers }, 'too many active users to track; writing pending activity early and starting over')
    }
    for (const [user, activity] of this.#users) {
      if (activity.last > activity.written) this.#write(user, activity.last)
      this.#forget(user)
    }
  }

  #forget (user: string): void {
    this.#users.delete(user)
    this.#failures.forget(user)
  }

  #write (user: string, at: number): void {
    try {
      this.#workloads.touch(user, new Date(at))
      this.#failures.recovered({ user }, user)
    } catch (err) {
      this.#failures.failed(err, { user }, { key: user })
    }
  }
}
