// Preloaded into a proxy by `bench/profile.ts --loop` (NODE_OPTIONS=--import): how late the
// event loop ran (perf_hooks.monitorEventLoopDelay at its finest resolution, 1 ms: a timer due
// every millisecond; the histogram holds the time between ticks, so the millisecond is taken off
// to leave how late each fired) and what garbage collection took (PerformanceObserver
// `gc` entries, by kind). The first SIGUSR2 starts the window (everything before it is dropped),
// the second ends it (an idle loop after the load would add on-time ticks); on exit the process
// writes `<pid>.loop.json` into LOOP_PROBE_DIR. Nothing of podgate's is imported.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { constants, monitorEventLoopDelay, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks'

/** What one process wrote: delays in ms, GC by kind as a count and the pauses' total in ms. */
export interface LoopProbeResult {
  readonly pid: number
  readonly windowMs: number
  readonly delayMs: { readonly p50: number, readonly p90: number, readonly p99: number, readonly max: number }
  readonly gc: Record<GcKind, { count: number, totalMs: number, maxMs: number }>
}

/** Scavenges (young generation) and mark-compacts (whole heap); incremental and weak-callback entries are not pauses of their own. */
type GcKind = 'scavenge' | 'markCompact'

const RESOLUTION_MS = 1

const dir = process.env.LOOP_PROBE_DIR
if (dir !== undefined) {
  const delay = monitorEventLoopDelay({ resolution: RESOLUTION_MS })
  let state: 'before' | 'during' | 'after' = 'before'
  const emptyGc = (): LoopProbeResult['gc'] => ({ scavenge: { count: 0, totalMs: 0, maxMs: 0 }, markCompact: { count: 0, totalMs: 0, maxMs: 0 } })
  let gc = emptyGc()
  let since = 0
  let until = 0
  const kindOf = (entry: PerformanceEntry): GcKind | undefined => {
    const kind = (entry as PerformanceEntry & { readonly detail?: { readonly kind?: number } }).detail?.kind
    return kind === constants.NODE_PERFORMANCE_GC_MINOR ? 'scavenge' : kind === constants.NODE_PERFORMANCE_GC_MAJOR ? 'markCompact' : undefined
  }
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const kind = kindOf(entry)
      if (kind === undefined || entry.startTime < since || (until !== 0 && entry.startTime > until)) continue
      const slot = gc[kind]
      slot.count++
      slot.totalMs += entry.duration
      slot.maxMs = Math.max(slot.maxMs, entry.duration)
    }
  })
  observer.observe({ entryTypes: ['gc'] })
  process.on('SIGUSR2', () => {
    if (state === 'before') {
      state = 'during'
      gc = emptyGc()
      since = performance.now()
      delay.enable()
    } else if (state === 'during') {
      state = 'after'
      until = performance.now()
      delay.disable()
    }
  })
  process.once('exit', () => {
    /** The time between ticks, less the tick interval itself: how late the tick fired. */
    const ms = (ns: number): number => Math.max(0, ns / 1e6 - RESOLUTION_MS)
    const result: LoopProbeResult = {
      pid: process.pid,
      windowMs: (until === 0 ? performance.now() : until) - since,
      delayMs: { p50: ms(delay.percentile(50)), p90: ms(delay.percentile(90)), p99: ms(delay.percentile(99)), max: ms(delay.max) },
      gc,
    }
    writeFileSync(join(dir, `${process.pid}.loop.json`), JSON.stringify(result))
  })
}
