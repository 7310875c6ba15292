// The open-loop measure: latency at constant offered rates, shares of nginx + Lua's saturation
// rate measured earlier in the same run, taken with vegeta (load/openloop-load.ts). Unlike the
// closed loop of N connections, the sending never waits for answers, so queueing in the
// proxy shows in the percentiles instead of slowing the load down.
import type { OpenLoopSpec } from './load/openloop-load.ts'
import { runLoad } from './load/run-load.ts'
import type { PathContext, RunningPath } from './paths/types.ts'
import type { BenchSettings } from './settings.ts'
import { summarize } from './stats.ts'
import type { Summary } from './stats.ts'
import type { OpenLoopRun } from './vegeta-results.ts'

/** The path whose saturation rate (median req/s of its throughput runs) the open-loop rates are shares of. */
export const OPEN_LOOP_REFERENCE = 'nginx-lua-cached'
/**
 * A run whose requests went out later than this (p99) against the schedule did not hold the
 * rate. Go's timers wait in whole milliseconds on Linux (epoll), so vegeta sends up to ~1 ms
 * late, in small bursts, even when it keeps up.
 */
export const MAX_SEND_LAG_MS = 2
/** Share of requests that may fail before a rate counts as more than the path could take. */
export const MAX_FAILED_SHARE = 0.001
/** Share of the scheduled requests that must have been sent for the rate to count as held. */
export const MIN_SENT_SHARE = 0.99

/** What the offered rates are shares of: the reference path's req/s in this run, or the fixed fallback. */
export interface OpenLoopBasis {
  readonly rps: number
  /** The reference path's id, or 'fixed' when it was not measured in this run. */
  readonly source: string
}

export interface OpenLoopRate {
  readonly share: number
  readonly offeredRps: number
  readonly runs: readonly OpenLoopRun[]
  readonly achievedRps: Summary
  readonly p50Ms: Summary
  readonly p99Ms: Summary
  readonly p999Ms: Summary
  /** The worst run's send lag p99. */
  readonly sendLagP99Ms: number
  readonly sent: number
  /** Requests without a 2xx answer, over every run at this rate. */
  readonly failed: number
  /** Largest proxy RSS seen after a run at this rate. */
  readonly rssKb: number | null
  /**
   * Whether the path took the rate: vegeta kept its schedule and almost every request got a
   * 2xx. When not, the percentiles are a lower bound (requests never sent cannot be slow).
   */
  readonly held: boolean
}

export interface OpenLoopResult {
  readonly basis: OpenLoopBasis
  readonly durationS: number
  readonly rates: readonly OpenLoopRate[]
}

/** One run's numbers, with the proxy's RSS read right after it. */
export interface OpenLoopSample {
  readonly share: number
  readonly run: OpenLoopRun
  readonly rssKb: number | null
}

export function openLoopBasis (referenceRps: number | undefined, settings: Pick<BenchSettings, 'openLoopFallbackRps'>): OpenLoopBasis {
  return referenceRps !== undefined && Number.isFinite(referenceRps) && referenceRps > 0
    ? { rps: referenceRps, source: OPEN_LOOP_REFERENCE }
    : { rps: settings.openLoopFallbackRps, source: 'fixed' }
}

/** The offered rates in requests per second, one per share, at least 1. */
export function offeredRates (basis: OpenLoopBasis, shares: readonly number[]): Array<{ share: number, rps: number }> {
  return shares.map((share) => ({ share, rps: Math.max(1, Math.round(basis.rps * share)) }))
}

export async function openLoopRun (running: RunningPath, rps: number, vegeta: string, settings: BenchSettings, context: PathContext): Promise<OpenLoopRun> {
  const spec: OpenLoopSpec = {
    vegeta,
    url: `${running.baseUrl}/fixed`,
    rate: rps,
    durationS: settings.openLoopDurationS,
    warmupS: settings.openLoopWarmupS,
    headerSets: running.headerSets,
  }
  return await runLoad<OpenLoopRun>('openloop-load.ts', spec, settings.openLoopWarmupS + settings.openLoopDurationS, context)
}

export function summarizeOpenLoop (basis: OpenLoopBasis, samples: readonly OpenLoopSample[], durationS: number): OpenLoopResult {
  const shares = [...new Set(samples.map((sample) => sample.share))]
  return {
    basis,
    durationS,
    rates: shares.map((share) => {
      const mine = samples.filter((sample) => sample.share === share)
      const runs = mine.map((sample) => sample.run)
      const rss = mine.flatMap((sample) => sample.rssKb === null ? [] : [sample.rssKb])
      const sent = runs.reduce((sum, run) => sum + run.sent, 0)
      const failed = sent - runs.reduce((sum, run) => sum + run.ok, 0)
      const offeredRps = runs[0]?.offeredRps ?? 0
      const sendLagP99Ms = Math.max(...runs.map((run) => run.sendLagP99Ms))
      return {
        share,
        offeredRps,
        runs,
        achievedRps: summarize(runs.map((run) => run.achievedRps)),
        p50Ms: summarize(runs.map((run) => run.p50Ms)),
        p99Ms: summarize(runs.map((run) => run.p99Ms)),
        p999Ms: summarize(runs.map((run) => run.p999Ms)),
        sendLagP99Ms,
        sent,
        failed,
        rssKb: rss.length === 0 ? null : Math.max(...rss),
        held: sendLagP99Ms <= MAX_SEND_LAG_MS && failed <= sent * MAX_FAILED_SHARE && sent >= offeredRps * durationS * runs.length * MIN_SENT_SHARE,
      }
    }),
  }
}
