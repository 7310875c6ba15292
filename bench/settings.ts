// Command line → the settings of one benchmark run.
import { parseArgs } from 'node:util'
import type { UpstreamChoice } from './upstream.ts'

export interface BenchSettings {
  readonly quick: boolean
  /** Path ids (or id prefixes such as "nginx") to run; empty runs all. */
  readonly only: readonly string[]
  /** Where results/<date>.json and RESULTS.md go. */
  readonly outDir: string | undefined
  readonly upstream: UpstreamChoice
  readonly install: boolean
  readonly connections: number
  readonly durationS: number
  /** Throughput runs per path (the median is reported). */
  readonly runs: number
  /** Runs of the 1-connection latency and WebSocket measures. */
  readonly latencyRuns: number
  readonly warmupS: number
  readonly latencyDurationS: number
  readonly wsConnections: number
  readonly wsMessageBytes: number
  /** Messages each connection keeps in flight in the WebSocket throughput measure. */
  readonly wsWindow: number
  /** Open-loop rates, as shares of the reference path's saturation rate measured in the same run. */
  readonly openLoopShares: readonly number[]
  /** The saturation rate the shares apply to when the reference path was not measured. */
  readonly openLoopFallbackRps: number
  readonly openLoopRuns: number
  /** Seconds measured per open-loop run, after openLoopWarmupS at the same rate that are not counted. */
  readonly openLoopDurationS: number
  readonly openLoopWarmupS: number
  readonly streamBytes: number
  readonly userCounts: readonly number[]
  /**
   * Paths not started once this much of the run has passed are skipped (installs happen while
   * paths start); measuring every started path takes a fixed time after that.
   */
  readonly budgetS: number
  /** How long to wait at start for other programs to quiet down. */
  readonly quietWaitS: number
}

export const USAGE = `usage: npm run bench -- [--quick] [--only id[,id…]] [--out DIR] [--upstream auto|backend|fixed] [--no-install]
  --quick        smoke run: 1 s per measurement, 1 run, a 64 MiB body, 1 and 1,000 users
  --only         run only these paths (ids or prefixes: direct, podgate, nginx, chp, …)
  --out DIR      write DIR/results/<date>.json and DIR/RESULTS.md (default: bench/, or a
                 temporary directory with --quick)
  --upstream     auto (built-in backend if present, else bench/fixed-responder.ts), backend, fixed
  --no-install   never install nginx (apt-get) or configurable-http-proxy (npm); skip those paths`

/**
 * Twice the 8,000 req/s at which podgate's open-loop median was first seen at 2× nginx + Lua's,
 * so the middle rate repeats that measurement when nginx + Lua is not in the run.
 */
const OPEN_LOOP_FALLBACK_RPS = 16_000
const UPSTREAM_CHOICES: readonly string[] = ['auto', 'backend', 'fixed'] satisfies UpstreamChoice[]

export class UsageError extends Error {
  override name = 'UsageError'
}

export function parseSettings (argv: readonly string[]): BenchSettings {
  let parsed
  try {
    parsed = parseArgs({
      args: [...argv],
      options: {
        'quick': { type: 'boolean', default: false },
        'only': { type: 'string', default: '' },
        'out': { type: 'string' },
        'upstream': { type: 'string', default: 'auto' },
        'no-install': { type: 'boolean', default: false },
        'help': { type: 'boolean', default: false },
      },
      strict: true,
      allowPositionals: false,
    })
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${USAGE}`)
  }
  const { values } = parsed
  if (values.help) throw new UsageError(USAGE)
  const upstream = values.upstream as UpstreamChoice
  if (!UPSTREAM_CHOICES.includes(upstream)) throw new UsageError(`--upstream: expected auto, backend or fixed, got ${JSON.stringify(upstream)}\n${USAGE}`)
  const only = values.only.split(',').map((id) => id.trim()).filter((id) => id !== '')
  const common = {
    only,
    outDir: values.out,
    upstream,
    install: !values['no-install'],
    connections: 64,
    wsMessageBytes: 64,
    wsWindow: 16,
    openLoopShares: [0.25, 0.5, 0.75],
    openLoopFallbackRps: OPEN_LOOP_FALLBACK_RPS,
    openLoopWarmupS: 0.5,
  }
  if (values.quick) {
    return { ...common, quick: true, durationS: 1, runs: 1, latencyRuns: 1, warmupS: 0, latencyDurationS: 1, wsConnections: 8, openLoopRuns: 1, openLoopDurationS: 1, streamBytes: 64 * 1024 ** 2, userCounts: [1, 1000], budgetS: 240, quietWaitS: 0 }
  }
  return { ...common, quick: false, durationS: 3, runs: 5, latencyRuns: 3, warmupS: 1, latencyDurationS: 2, wsConnections: 32, openLoopRuns: 5, openLoopDurationS: 3, streamBytes: 1024 ** 3, userCounts: [1, 1000, 10_000, 100_000], budgetS: 170, quietWaitS: 60 }
}

/** Whether a path id was selected by --only. */
export function selected (settings: BenchSettings, id: string): boolean {
  return settings.only.length === 0 || settings.only.some((wanted) => id === wanted || id.startsWith(`${wanted}-`))
}
