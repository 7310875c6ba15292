// The one clock: what time it is and when to run something later. Every module that reads the
// time or schedules a timer takes a `clock` (defaulting to systemClock), so tests pass a
// ManualClock (test/support/manual-clock.ts) and move time instead of waiting for it.

/** What setTimeout/setInterval return: opaque, handed back only to the clock that made it. */
export type TimerHandle = object

// unref is an option of the call, not a method of the handle: the handle stays opaque, and
// the caller that knows whether a timer may hold the process open (a request's wait, a
// background sweep: no; a timer its owner's close() cancels: yes) says so where it schedules.
export interface TimerOptions {
  /** The timer alone does not keep the process alive (default false, as with Node's timers). */
  readonly unref?: boolean
}

export interface Clock {
  /** Milliseconds since the epoch, like Date.now(). */
  now (): number
  setTimeout (callback: () => void, ms: number, options?: TimerOptions): TimerHandle
  /** Cancels a timer; undefined and an already fired or cancelled timer are ignored. */
  clearTimeout (handle: TimerHandle | undefined): void
  setInterval (callback: () => void, ms: number, options?: TimerOptions): TimerHandle
  clearInterval (handle: TimerHandle | undefined): void
}

/** Node's own timers and wall clock. */
export const systemClock: Clock = Object.freeze({
  now: () => Date.now(),
  setTimeout: (callback: () => void, ms: number, options?: TimerOptions): TimerHandle => {
    const timer = setTimeout(callback, ms)
    return options?.unref === true ? timer.unref() : timer
  },
  clearTimeout: (handle: TimerHandle | undefined): void => { clearTimeout(handle as NodeJS.Timeout | undefined) },
  setInterval: (callback: () => void, ms: number, options?: TimerOptions): TimerHandle => {
    const timer = setInterval(callback, ms)
    return options?.unref === true ? timer.unref() : timer
  },
  clearInterval: (handle: TimerHandle | undefined): void => { clearInterval(handle as NodeJS.Timeout | undefined) },
})
