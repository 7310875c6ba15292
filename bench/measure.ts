// The one scenario runner: starts every path and checks it answers correctly, then runs each
// measure run by run across the paths, with the load generator in its own pinned process,
// reading each proxy's cost from /proc around every run.
import { cpus } from 'node:os'
import { authCallsProblem } from './auth-service.ts'
import type { AuthCallExpectation } from './auth-service.ts'
import { backgroundShare, readCpuCounters } from './background-load.ts'
import type { HttpLoadResult, HttpLoadSpec } from './load/http-load.ts'
import type { StreamLoadResult, StreamLoadSpec } from './load/stream-load.ts'
import type { WsLoadResult, WsLoadSpec } from './load/ws-load.ts'
import { runLoad } from './load/run-load.ts'
import { probe } from './http-probe.ts'
import { OPEN_LOOP_CONTROL, OPEN_LOOP_REFERENCE, capToLoadGenerator, offeredRates, openLoopBasis, openLoopRun, summarizeOpenLoop } from './open-loop.ts'
import type { OpenLoopBasis, OpenLoopResult, OpenLoopSample } from './open-loop.ts'
import type { BenchPath, Measure, PathContext, RunningPath } from './paths/types.ts'
import type { Availability, VegetaInstall } from './prerequisites.ts'
import { sampleGroup } from './proc-stats.ts'
import type { BenchSettings } from './settings.ts'
import { summarize } from './stats.ts'
import type { Summary } from './stats.ts'

export interface ThroughputRun {
  readonly rps: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly requests: number
  /** Proxy CPU time (user + system) over the run divided by the requests served. */
  readonly cpuUsPerRequest: number | null
  readonly rssKb: number | null
  /** Percent of the machine's CPU time other programs took during the run. */
  readonly backgroundPct: number
}

export interface ThroughputResult {
  readonly connections: number
  readonly durationS: number
  readonly runs: readonly ThroughputRun[]
  readonly rps: Summary
  readonly p50Ms: Summary
  readonly p99Ms: Summary
  readonly cpuUsPerRequest: Summary | null
  /** Largest proxy RSS seen after a run. */
  readonly rssKb: number | null
  /** The most CPU other programs took during any run, in percent. */
  readonly backgroundPct: number
}

export interface LatencyResult {
  readonly connections: 1
  readonly p50Ms: Summary
  readonly p99Ms: Summary
}

export interface WebSocketResult {
  readonly connections: number
  /** Messages each connection keeps in flight. */
  readonly window: number
  readonly messageBytes: number
  readonly messagesPerS: Summary
}

export interface StreamResult {
  readonly bytes: number
  readonly mibPerS: number
  readonly rssBeforeKb: number | null
  /** Highest proxy RSS sampled every 50 ms while the body streamed. */
  readonly peakRssKb: number | null
}

/** How often the path's proxy asked its auth service over the whole run. */
export interface AuthServiceResult {
  readonly expect: AuthCallExpectation
  readonly calls: number
  /** 2xx responses the path served over the whole run: every HTTP load run, warm-up included, and the check. */
  readonly requests: number
  /** The auth service's own CPU time per call, in µs; null when too few calls to tell. */
  readonly cpuUsPerCall: number | null
}

export interface PathResult {
  readonly id: string
  readonly title: string
  readonly status: 'ok' | 'skipped' | 'failed'
  readonly reason?: string
  /** Proxy RSS once started and answering, before any load. */
  readonly idleRssKb?: number | null
  readonly throughput?: ThroughputResult
  readonly latency?: LatencyResult
  readonly websocket?: WebSocketResult
  readonly websocketWindow?: WebSocketResult
  readonly openLoop?: OpenLoopResult
  readonly stream?: StreamResult
  readonly authService?: AuthServiceResult
  /** Measures the path lists that could not be taken on this machine, with why. */
  readonly notMeasured?: Partial<Record<Measure, string>>
}

export interface MeasureOptions {
  readonly settings: BenchSettings
  readonly context: PathContext
  readonly ticksPerSecond: number
}

export interface SuiteOptions {
  readonly settings: BenchSettings
  readonly ticksPerSecond: number
  /** The path's own context: its process group and a fresh upstream. */
  readonly contextFor: (path: BenchPath) => Promise<PathContext>
  /** Whether there is still time to start another path. */
  readonly timeLeft?: () => boolean
  readonly log?: (line: string) => void
}

const FIXED_BODY_BYTES = 100
/** Share of failed requests above which a run's numbers mean nothing. */
const MAX_FAILED_SHARE = 0.001
const RSS_SAMPLE_MS = 50
/** CPU time is read in clock ticks (10 ms): per call it means something only over many calls. */
const MIN_CALLS_FOR_CPU = 1000

/** One path through the whole suite: start, check, every measure, stop. */
export async function measurePath (path: BenchPath, options: MeasureOptions): Promise<PathResult> {
  const [result] = await measurePaths([path], { settings: options.settings, ticksPerSecond: options.ticksPerSecond, contextFor: () => Promise.resolve(options.context) })
  return result as PathResult
}

interface Live {
  readonly path: BenchPath
  readonly options: MeasureOptions
  readonly running: RunningPath
  readonly idleRssKb: number | null
  readonly throughputRuns: ThroughputRun[]
  readonly latencyRuns: HttpLoadResult[]
  readonly wsRates: number[]
  readonly wsWindowRates: number[]
  readonly openLoopSamples: OpenLoopSample[]
  /** 2xx responses served so far: the check and every autocannon run (the auth service's calls are checked against it). */
  served: number
  stream?: StreamResult
  authService?: AuthServiceResult
  failure?: string
}

/**
 * Starts every path first, then takes each measure run by run across all of them (run 1 of
 * every path, then run 2 …), so a machine that speeds up or slows down during the suite
 * moves every path's numbers alike instead of favouring the paths measured early.
 */
export async function measurePaths (paths: readonly BenchPath[], options: SuiteOptions): Promise<PathResult[]> {
  const { settings } = options
  const log = options.log ?? (() => {})
  const results = new Map<string, PathResult>()
  const live: Live[] = []
  let vegeta: Availability<VegetaInstall> | undefined
  let basis: OpenLoopBasis | undefined
  try {
    for (const path of paths) {
      const base = { id: path.id, title: path.title }
      if (options.timeLeft?.() === false) {
        results.set(path.id, { ...base, status: 'skipped', reason: 'the time budget was used up before it could start' })
        continue
      }
      const context = await options.contextFor(path)
      const skipReason = await path.unavailable?.(context)
      if (skipReason !== undefined) {
        await context.processes.stopAll()
        results.set(path.id, { ...base, status: 'skipped', reason: skipReason })
        continue
      }
      try {
        const running = await path.start(context)
        await checkAnswers(running)
        live.push({ path, options: { settings, context, ticksPerSecond: options.ticksPerSecond }, running, idleRssKb: rssOf(running), throughputRuns: [], latencyRuns: [], wsRates: [], wsWindowRates: [], openLoopSamples: [], served: 1 })
        log(`started ${path.id}`)
      } catch (err) {
        await context.processes.stopAll()
        results.set(path.id, { ...base, status: 'failed', reason: (err as Error).message })
        log(`${path.id} failed to start: ${(err as Error).message}`)
      }
    }
    const measuring = (measure: Measure): Live[] => live.filter((entry) => entry.failure === undefined && entry.path.measures.includes(measure))
    // Installed (when missing) before any measure, never between measured runs.
    vegeta = measuring('openloop').length === 0 ? undefined : await measuring('openloop')[0]!.options.context.prerequisites.vegeta()
    if (vegeta?.ok === false) log(`open-loop latency not measured: ${vegeta.reason}`)
    // Paths wait frozen (SIGSTOP) between their runs: a dozen idle proxies and upstreams would
    // otherwise take a few percent of the CPUs, and wake on the measured proxy's core.
    for (const entry of live) entry.options.context.processes.pause()
    const attempt = async (entry: Live, what: () => Promise<void>): Promise<void> => {
      const processes = entry.options.context.processes
      processes.resume()
      try {
        await what()
        processes.pause()
      } catch (err) {
        entry.failure = (err as Error).message
        log(`${entry.path.id} failed: ${entry.failure}`)
        await processes.stopAll()
      }
    }
    if (settings.warmupS > 0) {
      for (const entry of measuring('throughput')) await attempt(entry, async () => { entry.served += (await httpLoad(entry.running, settings.connections, settings.warmupS, entry.options)).ok })
    }
    for (let run = 0; run < settings.runs; run++) {
      log(`throughput run ${run + 1} of ${settings.runs}`)
      for (const entry of measuring('throughput')) {
        await attempt(entry, async () => {
          const measured = await throughputRun(entry.running, entry.options)
          entry.throughputRuns.push(measured)
          entry.served += measured.requests
        })
      }
    }
    for (let run = 0; run < settings.latencyRuns; run++) {
      log(`latency run ${run + 1} of ${settings.latencyRuns}`)
      for (const entry of measuring('latency')) {
        await attempt(entry, async () => {
          const measured = await httpLoad(entry.running, 1, settings.latencyDurationS, entry.options)
          entry.latencyRuns.push(measured)
          entry.served += measured.ok
        })
      }
    }
    for (let run = 0; run < settings.latencyRuns; run++) {
      log(`WebSocket run ${run + 1} of ${settings.latencyRuns}`)
      for (const entry of measuring('websocket')) await attempt(entry, async () => { entry.wsRates.push(await webSocketRun(entry.running, 1, entry.options)) })
    }
    for (let run = 0; run < settings.latencyRuns; run++) {
      log(`WebSocket run ${run + 1} of ${settings.latencyRuns}, ${settings.wsWindow} messages in flight per connection`)
      for (const entry of measuring('websocket-window')) await attempt(entry, async () => { entry.wsWindowRates.push(await webSocketRun(entry.running, settings.wsWindow, entry.options)) })
    }
    if (vegeta?.ok === true && measuring('openloop').length > 0) {
      const binary = vegeta.value.binary
      basis = openLoopBasis(referenceRps(live), settings)
      const control = measuring('openloop').find((entry) => entry.path.id === OPEN_LOOP_CONTROL)
      if (control !== undefined) {
        const uncapped = basis
        await attempt(control, async () => {
          basis = await capToLoadGenerator(uncapped, settings.openLoopShares, async (rps) => {
            log(`open-loop ceiling: ${rps} req/s on ${control.path.id}`)
            return await openLoopRun(control.running, rps, binary, settings, control.options.context)
          })
        })
      }
      const of = `${basis.source === 'fixed' ? 'a fixed' : `${basis.source}'s`} ${Math.round(basis.rps)} req/s${basis.capped === undefined ? '' : `, capped from ${Math.round(basis.capped.fromRps)} to what the load generator offers`}`
      for (let run = 0; run < settings.openLoopRuns; run++) {
        for (const rate of offeredRates(basis, settings.openLoopShares)) {
          log(`open-loop run ${run + 1} of ${settings.openLoopRuns} at ${rate.rps} req/s (${rate.share * 100}% of ${of})`)
          for (const entry of measuring('openloop')) {
            await attempt(entry, async () => { entry.openLoopSamples.push(await openLoopSample(entry.running, rate, binary, entry.options)) })
          }
        }
      }
    }
    for (const entry of measuring('stream')) {
      log(`streaming through ${entry.path.id}`)
      await attempt(entry, async () => { entry.stream = await measureStream(entry.running, entry.options) })
    }
    // Last, so every request of the run is counted: did the proxy ask its auth service as often as it should?
    for (const entry of live.filter((candidate) => candidate.failure === undefined && candidate.running.authService !== undefined)) {
      await attempt(entry, async () => { entry.authService = await authServiceUse(entry) })
    }
  } finally {
    await Promise.all(live.map((entry) => entry.options.context.processes.stopAll()))
  }
  for (const entry of live) results.set(entry.path.id, summarizePath(entry, vegeta, basis))
  return paths.map((path) => results.get(path.id) as PathResult)
}

/** The reference path's saturation rate in this run, when it was measured. */
function referenceRps (live: readonly Live[]): number | undefined {
  const reference = live.find((entry) => entry.path.id === OPEN_LOOP_REFERENCE && entry.failure === undefined && entry.throughputRuns.length > 0)
  return reference === undefined ? undefined : summarize(reference.throughputRuns.map((run) => run.rps)).median
}

/** `vegeta` and `basis` are the run's: whether open-loop runs could be taken, and at which rates. */
function summarizePath (entry: Live, vegeta: Availability<unknown> | undefined, basis: OpenLoopBasis | undefined): PathResult {
  const base = { id: entry.path.id, title: entry.path.title }
  if (entry.failure !== undefined) return { ...base, status: 'failed', reason: entry.failure }
  const { settings } = entry.options
  const measures = entry.path.measures
  return {
    ...base,
    status: 'ok',
    idleRssKb: entry.idleRssKb,
    ...(measures.includes('throughput') ? { throughput: summarizeThroughput(entry.throughputRuns, settings) } : {}),
    ...(measures.includes('latency') ? { latency: { connections: 1, p50Ms: summarize(entry.latencyRuns.map((run) => run.p50Ms)), p99Ms: summarize(entry.latencyRuns.map((run) => run.p99Ms)) } } : {}),
    ...(measures.includes('websocket') ? { websocket: { connections: settings.wsConnections, window: 1, messageBytes: settings.wsMessageBytes, messagesPerS: summarize(entry.wsRates) } } : {}),
    ...(measures.includes('websocket-window') ? { websocketWindow: { connections: settings.wsConnections, window: settings.wsWindow, messageBytes: settings.wsMessageBytes, messagesPerS: summarize(entry.wsWindowRates) } } : {}),
    ...(basis === undefined || !measures.includes('openloop') ? {} : { openLoop: summarizeOpenLoop(basis, entry.openLoopSamples, settings.openLoopDurationS) }),
    ...(vegeta?.ok === false && measures.includes('openloop') ? { notMeasured: { openloop: vegeta.reason } } : {}),
    ...(entry.stream === undefined ? {} : { stream: entry.stream }),
    ...(entry.authService === undefined ? {} : { authService: entry.authService }),
  }
}

/** Reads the auth service's call count once every request has been served; throws when the proxy broke its promise. */
async function authServiceUse (entry: Live): Promise<AuthServiceResult> {
  const probe = entry.running.authService!
  const usage = await probe.usage()
  const problem = authCallsProblem(probe.expect, usage.calls, entry.served)
  if (problem !== undefined) throw new Error(problem)
  return { expect: probe.expect, calls: usage.calls, requests: entry.served, cpuUsPerCall: usage.calls >= MIN_CALLS_FOR_CPU ? usage.cpuUs / usage.calls : null }
}

/** A path that answers 401 or 404 quickly would look fast: check it serves the real body first. */
async function checkAnswers (running: RunningPath): Promise<void> {
  const response = await probe(`${running.baseUrl}/fixed`, { headers: running.headerSets[0] })
  if (response.status !== 200 || response.body.length !== FIXED_BODY_BYTES) {
    throw new Error(`GET ${running.baseUrl}/fixed answered HTTP ${response.status} with ${response.body.length} bytes, expected 200 with ${FIXED_BODY_BYTES}: ${response.body.toString().slice(0, 200)}`)
  }
}

async function throughputRun (running: RunningPath, options: MeasureOptions): Promise<ThroughputRun> {
  const { settings } = options
  const ours = [options.context.upstream.process.pid, ...(running.proxyPgid === undefined ? [] : [running.proxyPgid])]
  const countersBefore = readCpuCounters(ours)
  const startedAt = performance.now()
  const { value: load, cpuS, rssKb } = await aroundProxy(running, options, () => httpLoad(running, settings.connections, settings.durationS, options))
  const background = backgroundShare(countersBefore, readCpuCounters(ours), (performance.now() - startedAt) / 1000, cpus().length, options.ticksPerSecond)
  return {
    rps: load.rps,
    p50Ms: load.p50Ms,
    p99Ms: load.p99Ms,
    requests: load.ok,
    cpuUsPerRequest: cpuS === null ? null : cpuS * 1e6 / load.ok,
    rssKb,
    backgroundPct: Math.round(background * 1000) / 10,
  }
}

/** One open-loop run, with the proxy's CPU time read around it and its RSS after, as a throughput run's. */
async function openLoopSample (running: RunningPath, rate: { readonly share: number, readonly rps: number }, vegeta: string, options: MeasureOptions): Promise<OpenLoopSample> {
  const { value: run, cpuS, rssKb } = await aroundProxy(running, options, () => openLoopRun(running, rate.rps, vegeta, options.settings, options.context))
  return { share: rate.share, run, rssKb, proxyCpuS: cpuS }
}

/** Runs `load` with the proxy group's CPU seconds read around it and its RSS after; null for both without a proxy. */
async function aroundProxy<T> (running: RunningPath, options: MeasureOptions, load: () => Promise<T>): Promise<{ value: T, cpuS: number | null, rssKb: number | null }> {
  const before = running.proxyPgid === undefined ? undefined : sampleGroup(running.proxyPgid)
  const value = await load()
  const after = running.proxyPgid === undefined ? undefined : sampleGroup(running.proxyPgid)
  return { value, cpuS: before === undefined || after === undefined ? null : (after.cpuTicks - before.cpuTicks) / options.ticksPerSecond, rssKb: after?.rssKb ?? null }
}

function summarizeThroughput (runs: readonly ThroughputRun[], settings: BenchSettings): ThroughputResult {
  const cpu = runs.map((run) => run.cpuUsPerRequest).filter((value) => value !== null)
  const rss = runs.map((run) => run.rssKb).filter((value) => value !== null)
  return {
    connections: settings.connections,
    durationS: settings.durationS,
    runs,
    rps: summarize(runs.map((run) => run.rps)),
    p50Ms: summarize(runs.map((run) => run.p50Ms)),
    p99Ms: summarize(runs.map((run) => run.p99Ms)),
    cpuUsPerRequest: cpu.length === 0 ? null : summarize(cpu),
    rssKb: rss.length === 0 ? null : Math.max(...rss),
    backgroundPct: Math.max(...runs.map((run) => run.backgroundPct)),
  }
}

async function httpLoad (running: RunningPath, connections: number, durationS: number, options: MeasureOptions): Promise<HttpLoadResult> {
  const spec: HttpLoadSpec = { url: `${running.baseUrl}/fixed`, connections, durationS, headerSets: running.headerSets }
  const result = await runLoad<HttpLoadResult>('http-load.ts', spec, durationS, options.context)
  const failed = result.requests - result.ok + result.errors + result.timeouts
  if (result.ok === 0 || failed > result.requests * MAX_FAILED_SHARE) {
    throw new Error(`${connections}-connection load: ${result.ok} OK of ${result.requests} responses, ${result.errors} errors, ${result.timeouts} timeouts, statuses ${JSON.stringify(result.statusCodes)}`)
  }
  return result
}

async function webSocketRun (running: RunningPath, window: number, options: MeasureOptions): Promise<number> {
  const { settings } = options
  const spec: WsLoadSpec = {
    url: `${running.baseUrl.replace(/^http/, 'ws')}/ws`,
    connections: settings.wsConnections,
    window,
    durationS: settings.durationS,
    messageBytes: settings.wsMessageBytes,
    headers: running.headerSets[0] ?? {},
  }
  const result = await runLoad<WsLoadResult>('ws-load.ts', spec, settings.durationS, options.context)
  if (result.errors > 0) throw new Error(`WebSocket load: ${result.errors} of ${spec.connections} connections closed or stalled`)
  return result.messagesPerS
}

async function measureStream (running: RunningPath, options: MeasureOptions): Promise<StreamResult> {
  const bytes = options.settings.streamBytes
  // at a pessimistic 50 MiB/s, plus start-up
  const timeoutS = Math.ceil(bytes / 1024 ** 2 / 50) + 10
  const spec: StreamLoadSpec = { url: `${running.baseUrl}/echo`, bytes, headers: running.headerSets[0] ?? {}, timeoutS }
  const rssBeforeKb = rssOf(running)
  let peakRssKb = rssBeforeKb
  const sampler = setInterval(() => {
    const rss = rssOf(running)
    if (rss !== null && (peakRssKb === null || rss > peakRssKb)) peakRssKb = rss
  }, RSS_SAMPLE_MS)
  try {
    const result = await runLoad<StreamLoadResult>('stream-load.ts', spec, timeoutS, options.context)
    if (result.status !== 200 || result.receivedBytes !== bytes) {
      throw new Error(`streamed body: HTTP ${result.status}, ${result.receivedBytes} of ${bytes} bytes echoed`)
    }
    return { bytes, mibPerS: result.mibPerS, rssBeforeKb, peakRssKb }
  } finally {
    clearInterval(sampler)
  }
}

function rssOf (running: RunningPath): number | null {
  return running.proxyPgid === undefined ? null : sampleGroup(running.proxyPgid).rssKb
}
