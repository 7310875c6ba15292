// A Clock whose time moves only when the test says so: `await clock.advance(ms)` runs every
// timer that falls due on the way, in order, and lets promise callbacks settle after each, so a
// test shows that nothing happened in an hour without waiting one.
import type { Clock, TimerHandle, TimerOptions } from '../../src/clock.ts'

export const MANUAL_CLOCK_START = Date.parse('2030-01-01T00:00:00Z')

/** A timer advance() has not run yet, as timers() reports it. */
export interface PendingTimer {
  /** Milliseconds from now until it is due. */
  readonly delayMs: number
  readonly unref: boolean
  /** The period of an interval; undefined for a timeout. */
  readonly everyMs: number | undefined
}

interface Timer {
  readonly handle: TimerHandle
  at: number
  /** Scheduling order: timers due at the same time run in the order they were scheduled. */
  seq: number
  readonly callback: () => void
  readonly everyMs: number | undefined
  readonly unref: boolean
}

/** A runaway guard: a timer that keeps scheduling itself at no delay would never let advance() end. */
const MAX_TIMERS_PER_ADVANCE = 100_000

/** Lets every queued promise callback run (and what those queue), without moving time. */
export function settle (): Promise<void> {
  return new Promise((resolve) => { setImmediate(resolve) })
}

export class ManualClock implements Clock {
  readonly #timers = new Map<TimerHandle, Timer>()
  #now: number
  #seq = 0

  constructor (start = MANUAL_CLOCK_START) {
    this.#now = start
  }

  now (): number { return this.#now }

  setTimeout (callback: () => void, ms: number, options?: TimerOptions): TimerHandle {
    return this.#add(callback, ms, undefined, options)
  }

  clearTimeout (handle: TimerHandle | undefined): void {
    if (handle !== undefined) this.#timers.delete(handle)
  }

  setInterval (callback: () => void, ms: number, options?: TimerOptions): TimerHandle {
    return this.#add(callback, ms, delayOf(ms), options)
  }

  clearInterval (handle: TimerHandle | undefined): void {
    this.clearTimeout(handle)
  }

  /** The timers waiting to run, soonest first. */
  timers (): PendingTimer[] {
    return this.#ordered().map((timer) => ({ delayMs: timer.at - this.#now, unref: timer.unref, everyMs: timer.everyMs }))
  }

  /** advance() to the epoch milliseconds `at`, which must not be in the past. */
  advanceTo (at: number): Promise<void> {
    return this.advance(at - this.#now)
  }

  /**
   * Moves time forward by `ms`, running each timer due by then at its own time, soonest first
   * (timers that timers schedule included), with promise callbacks settled before and after each.
   */
  async advance (ms: number): Promise<void> {
    if (!Number.isFinite(ms) || ms < 0) throw new TypeError(`advance: expected a number of milliseconds ≥ 0, got ${String(ms)}`)
    const target = this.#now + ms
    await settle()
    for (let ran = 0; ; ran++) {
      const next = this.#ordered()[0]
      if (next === undefined || next.at > target) break
      if (ran === MAX_TIMERS_PER_ADVANCE) throw new Error(`advance: ran ${ran} timers without reaching the target time; a timer keeps rescheduling itself`)
      this.#now = next.at
      if (next.everyMs === undefined) {
        this.#timers.delete(next.handle)
      } else {
        next.at += next.everyMs
        next.seq = ++this.#seq
      }
      next.callback()
      await settle()
    }
    this.#now = target
    await settle()
  }

  #add (callback: () => void, ms: number, everyMs: number | undefined, options: TimerOptions | undefined): TimerHandle {
    const handle = {}
    this.#timers.set(handle, { handle, at: this.#now + delayOf(ms), seq: ++this.#seq, callback, everyMs, unref: options?.unref === true })
    return handle
  }

  #ordered (): Timer[] {
    return [...this.#timers.values()].sort((a, b) => a.at - b.at || a.seq - b.seq)
  }
}

/** Node's rule: a delay below 1 ms (or not a number) is 1 ms. */
function delayOf (ms: number): number {
  return ms >= 1 && Number.isFinite(ms) ? ms : 1
}
