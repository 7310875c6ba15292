// The open-loop measure: latency at constant offered rates, shares of nginx + Lua's saturation
// rate measured earlier in the same run, taken with vegeta (load/openloop-load.ts). Unlike the
// closed loop of N connections, the sending never waits for answers, so queueing in the
// proxy shows in the percentiles instead of slowing the load down.
import { randomInt } from 'node:crypto'
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

/** The path an open-loop rate is first tried on: no proxy, so a rate it does not hold is more than the load generator can offer. */
export const OPEN_LOOP_CONTROL = 'direct'
/** Each try at a lower ceiling offers this share of the last one. */
const CEILING_STEP = 0.85
const MAX_CEILING_TRIES = 5

/** What the offered rates are shares of: the reference path's req/s in this run, or the fixed fallback. */
export interface OpenLoopBasis {
  readonly rps: number
  /** The reference path's id, or 'fixed' when it was not measured in this run. */
  readonly source: string
  /**
   * Set when the load generator could not offer the highest share of the reference rate to
   * the upstream directly: the reference rate, and the tries at the highest share that
   * lowered `rps` (the last one held, unless every try failed).
   */
  readonly capped?: { readonly fromRps: number, readonly tries: ReadonlyArray<{ readonly rps: number, readonly sendLagP99Ms: number, readonly held: boolean }> }
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
   * The proxy's CPU time (user + system) over a run divided by the requests sent in it, warm-up
   * included, in µs; null without a proxy. Absent from results written before it was measured.
   */
  readonly cpuUsPerRequest?: Summary | null
  /** The proxy's CPU time over a run divided by the run's wall time, in percent of one core; null and absent as `cpuUsPerRequest`. */
  readonly busyPct?: Summary | null
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

/** One run's numbers, with the proxy's RSS read right after it and its CPU time read around it. */
export interface OpenLoopSample {
  readonly share: number
  readonly run: OpenLoopRun
  readonly rssKb: number | null
  /** The proxy group's CPU seconds (user + system) from just before the run to just after it, warm-up included; null without a proxy. */
  readonly proxyCpuS: number | null
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
    localAddress: loopbackSource(),
  }
  return await runLoad<OpenLoopRun>('openloop-load.ts', spec, settings.openLoopWarmupS + settings.openLoopDurationS, context)
}

/** Whether a run (or runs added together) kept the schedule, sent almost all of it, and almost all got a 2xx. */
export function heldRate (load: { readonly scheduled: number, readonly sent: number, readonly failed: number, readonly sendLagP99Ms: number }): boolean {
  return load.sendLagP99Ms <= MAX_SEND_LAG_MS && load.failed <= load.sent * MAX_FAILED_SHARE && load.sent >= load.scheduled * MIN_SENT_SHARE
}

function runHeld (run: OpenLoopRun): boolean {
  return heldRate({ scheduled: run.offeredRps * run.durationS, sent: run.sent, failed: run.sent - run.ok, sendLagP99Ms: run.sendLagP99Ms })
}

/**
 * Lowers `basis` until the highest of `shares` is a rate `probe` (a run on the control path)
 * holds: on a small machine the load generator and the upstream share a CPU, and past what
 * they can offer every path would measure them instead of its proxy.
 */
export async function capToLoadGenerator (basis: OpenLoopBasis, shares: readonly number[], probe: (rps: number) => Promise<OpenLoopRun>): Promise<OpenLoopBasis> {
  const top = Math.max(...shares)
  const tries: Array<{ rps: number, sendLagP99Ms: number, held: boolean }> = []
  let rps = basis.rps
  for (let attempt = 0; attempt < MAX_CEILING_TRIES; attempt++) {
    const offered = Math.max(1, Math.round(rps * top))
    // Twice before lowering: the first run after the closed-loop measures sometimes falls behind where the next holds.
    let run = await probe(offered)
    if (!runHeld(run)) run = await probe(offered)
    const held = runHeld(run)
    tries.push({ rps: offered, sendLagP99Ms: run.sendLagP99Ms, held })
    if (held) break
    rps *= CEILING_STEP
  }
  return tries.length === 1 && tries[0]!.held ? basis : { ...basis, rps, capped: { fromRps: basis.rps, tries } }
}

/**
 * A loopback address (127.0.0.0/8, all of it this host's) for one run to send from. Other
 * paths' connections (nginx and configurable-http-proxy to their upstreams, the closed-loop
 * runs) leave tens of thousands of ports in TIME_WAIT for a minute; vegeta binds its port
 * before connecting, so from 127.0.0.1 it found none free ("bind: address already in use")
 * and a run sent almost nothing.
 */
export function loopbackSource (): string {
  return `127.${randomInt(1, 255)}.${randomInt(0, 256)}.${randomInt(1, 255)}`
}

export function summarizeOpenLoop (basis: OpenLoopBasis, samples: readonly OpenLoopSample[], durationS: number): OpenLoopResult {
  const shares = [...new Set(samples.map((sample) => sample.share))]
  return {
    basis,
    durationS,
    rates: shares.map((share) => {
      const mine = samples.filter((sample) => sample.share === share)
      const runs = mine.map((sample) => sample.run)
      // A run that sent nothing past its warm-up (vegeta's workers all stuck) has no latencies to take a median of.
      const timed = runs.some((run) => run.sent > 0) ? runs.filter((run) => run.sent > 0) : runs
      const rss = mine.flatMap((sample) => sample.rssKb === null ? [] : [sample.rssKb])
      const costs = mine.flatMap((sample) => proxyCost(sample) ?? [])
      const sent = runs.reduce((sum, run) => sum + run.sent, 0)
      const failed = sent - runs.reduce((sum, run) => sum + run.ok, 0)
      const offeredRps = runs[0]?.offeredRps ?? 0
      const sendLagP99Ms = Math.max(...runs.map((run) => run.sendLagP99Ms))
      return {
        share,
        offeredRps,
        runs,
        achievedRps: summarize(runs.map((run) => run.achievedRps)),
        p50Ms: summarize(timed.map((run) => run.p50Ms)),
        p99Ms: summarize(timed.map((run) => run.p99Ms)),
        p999Ms: summarize(timed.map((run) => run.p999Ms)),
        sendLagP99Ms,
        sent,
        failed,
        rssKb: rss.length === 0 ? null : Math.max(...rss),
        cpuUsPerRequest: costs.length === 0 ? null : summarize(costs.map((cost) => cost.cpuUsPerRequest)),
        busyPct: costs.length === 0 ? null : summarize(costs.map((cost) => cost.busyPct)),
        held: heldRate({ scheduled: offeredRps * durationS * runs.length, sent, failed, sendLagP99Ms }),
      }
    }),
  }
}

/**
 * The proxy's CPU per request and busy share in one run. The CPU was read around the whole run,
 * so it is divided by every request sent (the warm-up's too) and by the time from the first one
 * sent to the last answer, not by the run's start-up and reading of results, when the proxy idles.
 */
function proxyCost (sample: OpenLoopSample): { cpuUsPerRequest: number, busyPct: number } | undefined {
  const { proxyCpuS, run } = sample
  if (proxyCpuS === null || !(run.sentWithWarmup > 0) || !(run.spanS > 0)) return undefined
  return { cpuUsPerRequest: proxyCpuS * 1e6 / run.sentWithWarmup, busyPct: proxyCpuS / run.spanS * 100 }
}
