// Where a proxy's CPU goes per request: each selected path runs under load with V8's sampling
// profiler (`--cpu-prof`, through NODE_OPTIONS for the proxy alone), and its self time is
// summed by where the code lives (podgate's files, undici, node:http, streams, GC …) and by
// function, divided by the requests it served. Only samples taken while the load ran count:
// not the proxy's start-up, not its shutdown. Pinned as in `npm run bench`: load generator and
// upstream on one CPU, the proxy on the other. The load is a closed loop of `--connections`
// (autocannon), or with `--rate` an open loop at that many requests per second (vegeta, as the
// benchmark's open-loop measure; it must have been installed by `npm run bench`). With `--loop`
// the proxy is not profiled but measured from inside (bench/loop-probe.ts): how late its event
// loop ran and what garbage collection took while the load ran. Prints markdown.
// `--warmup S` runs the same load for S seconds first, not counted (the JIT, the first connections).
// Usage: node bench/profile.ts [--only podgate-hs256,node-minimal] [--seconds 10] [--warmup 0] [--connections 64 | --rate 8000] [--top 30] [--loop]
import { homedir, tmpdir } from 'node:os'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import type { HttpLoadResult, HttpLoadSpec } from './load/http-load.ts'
import type { LoopProbeResult } from './loop-probe.ts'
import { runLoad } from './load/run-load.ts'
import { openLoopRun } from './open-loop.ts'
import { hasTaskset, planCpus, describeMachine } from './machine.ts'
import { benchPaths } from './paths/index.ts'
import type { PathContext } from './paths/types.ts'
import { Prerequisites } from './prerequisites.ts'
import { ProcessGroup } from './processes.ts'
import { parseSettings } from './settings.ts'
import { startUpstream } from './upstream.ts'
import type { OpenLoopRun } from './vegeta-results.ts'

/** One sample per 100 µs: enough samples in a 10 s run to price a 1 µs cost. */
const SAMPLING_INTERVAL_US = 100
const STOP_TIMEOUT_MS = 30_000
const LOOP_INTRO = 'Event-loop delay: a timer due every millisecond inside the proxy (`monitorEventLoopDelay`, resolution 1 ms), and how late it fired, over the load only; a late tick means the loop was busy that long with other work (requests, garbage collection). One sample per tick, so a long stall counts once: read the max beside the percentiles. Garbage collection from `gc` performance entries: count and total pause, per kind; "µs per request" spreads the total over the 2xx answers.'
const LOOP_HEADER = '| path (process) | req/s | p50 | p99 | loop delay p50 / p90 / p99 / max | scavenges: count, total, µs per request | mark-compacts: count, total, longest |\n|---|---|---|---|---|---|---|'

interface ProfileNode {
  readonly id: number
  readonly callFrame: { readonly functionName: string, readonly url: string, readonly lineNumber: number }
}
interface CpuProfile {
  readonly nodes: readonly ProfileNode[]
  readonly samples: readonly number[]
  readonly timeDeltas: readonly number[]
  /** µs on the monotonic clock (process.hrtime's): when the first sample was taken, less its delta. */
  readonly startTime: number
}

/** A span of the monotonic clock, in µs, as the profile's timestamps are. */
interface Window { readonly fromUs: number, readonly toUs: number }

function monotonicUs (): number {
  return Number(process.hrtime.bigint() / 1000n)
}

const { values } = parseArgs({
  options: {
    only: { type: 'string', default: 'podgate-hs256,node-minimal' },
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '0' },
    connections: { type: 'string', default: '64' },
    rate: { type: 'string' },
    top: { type: 'string', default: '30' },
    loop: { type: 'boolean', default: false },
  },
})
const seconds = Number(values.seconds)
const warmup = Number(values.warmup)
const connections = Number(values.connections)
const rate = values.rate === undefined ? undefined : Number(values.rate)
const top = Number(values.top)
if (!(seconds > 0) || !(warmup >= 0) || !Number.isInteger(connections) || connections < 1 || !Number.isInteger(top) || top < 1 || (rate !== undefined && !(Number.isInteger(rate) && rate >= 1))) {
  throw new Error('usage: node bench/profile.ts [--only ids] [--seconds S > 0] [--warmup S ≥ 0] [--connections N ≥ 1 | --rate req/s ≥ 1] [--top N ≥ 1] [--loop]')
}

const benchDir = dirname(fileURLToPath(import.meta.url))
const repoDir = dirname(benchDir)

/** Where a frame's code lives: a podgate file, a package, a Node module, or V8's own bucket. */
function placeOf (frame: ProfileNode['callFrame']): string {
  const { url, functionName } = frame
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)'
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url)
  if (pkg !== null) return pkg[1]!
  if (url.startsWith('node:')) return url
  const own = url.indexOf(repoDir)
  return own === -1 ? url : url.slice(own + repoDir.length + 1)
}

interface Tally { readonly byPlace: Map<string, number>, readonly byFunction: Map<string, number>, totalUs: number }

/** Self time by place and by function over the samples taken inside `window`. */
function tally (profile: CpuProfile, window: Window): Tally {
  const frames = new Map(profile.nodes.map((node) => [node.id, node.callFrame]))
  const result: Tally = { byPlace: new Map(), byFunction: new Map(), totalUs: 0 }
  let at = profile.startTime
  profile.samples.forEach((id, index) => {
    at += profile.timeDeltas[index] ?? 0
    const frame = frames.get(id)
    // a sample's time is the delta to the next one; the last sample's is unknown
    const us = profile.timeDeltas[index + 1] ?? 0
    if (at < window.fromUs || at > window.toUs || frame === undefined || frame.functionName === '(idle)') return
    const place = placeOf(frame)
    const name = `${frame.functionName === '' ? '(anonymous)' : frame.functionName} ${place}${frame.url === '' ? '' : `:${frame.lineNumber + 1}`}`
    result.byPlace.set(place, (result.byPlace.get(place) ?? 0) + us)
    result.byFunction.set(name, (result.byFunction.get(name) ?? 0) + us)
    result.totalUs += us
  })
  return result
}

function table (title: string, counts: Map<string, number>, requests: number, totalUs: number, limit: number): string {
  const rows = [...counts].sort((a, b) => b[1] - a[1]).slice(0, limit)
  return [`| ${title} | µs per request | share |`, '|---|---|---|',
    ...rows.map(([name, us]) => `| \`${name.replaceAll('|', '\\|')}\` | ${(us / requests).toFixed(2)} | ${(100 * us / totalUs).toFixed(1)}% |`)].join('\n')
}

const settings = parseSettings([])
const machine = describeMachine()
const cpus = planCpus(machine.allowedCpus, hasTaskset())
const processes = new ProcessGroup()
const workDir = mkdtempSync(join(tmpdir(), 'podgate-profile-'))
process.once('exit', () => { processes.killAllNow() })
const log = (line: string): void => { process.stderr.write(`${line}\n`) }
// The benchmark's cache, where `npm run bench` installed vegeta; nothing is installed here.
const prerequisites = new Prerequisites({ processes, cacheDir: join(homedir(), '.cache', 'podgate', 'bench'), install: false, log })
const vegeta = rate === undefined ? undefined : await prerequisites.vegeta()
if (vegeta?.ok === false) throw new Error(`--rate needs vegeta: ${vegeta.reason}`)
const wanted = values.only.split(',').map((id) => id.trim()).filter((id) => id !== '')
const paths = benchPaths(settings).filter((path) => wanted.includes(path.id))
if (paths.length === 0) throw new Error(`--only ${values.only}: no such path`)
const loadName = rate === undefined ? `${connections} connections` : `open loop at ${rate} req/s`
const loop = values.loop
const out: string[] = [`# ${loop ? 'Event-loop delay and garbage collection' : 'Where the CPU goes per request'} (${seconds} s, ${loadName}, ${machine.cpuModel}, Node ${machine.node})`]
if (loop) out.push('', LOOP_INTRO, '', LOOP_HEADER)
try {
  for (const path of paths) {
    const pathProcesses = processes.child()
    const upstream = await startUpstream({ processes: pathProcesses, repoDir, benchDir, cpus: cpus.upstream, choice: 'auto' })
    const context: PathContext = { repoDir, benchDir, workDir, processes: pathProcesses, cpus, upstream, prerequisites, log }
    const profileDir = join(workDir, path.id)
    mkdirSync(profileDir)
    // The proxy alone is started while NODE_OPTIONS asks for the profile (or the probe): not the upstream, not the load.
    const saved = { options: process.env.NODE_OPTIONS, probeDir: process.env.LOOP_PROBE_DIR }
    const asked = loop ? `--import ${join(benchDir, 'loop-probe.ts')}` : `--cpu-prof --cpu-prof-dir=${profileDir} --cpu-prof-interval=${SAMPLING_INTERVAL_US}`
    process.env.NODE_OPTIONS = `${saved.options ?? ''} ${asked}`.trim()
    if (loop) process.env.LOOP_PROBE_DIR = profileDir
    let running
    try {
      running = await path.start(context)
    } finally {
      restoreEnv('NODE_OPTIONS', saved.options)
      restoreEnv('LOOP_PROBE_DIR', saved.probeDir)
    }
    const pgid = running.proxyPgid
    if (loop && pgid === undefined) throw new Error(`${path.id}: --loop needs the proxy's process group`)
    const loadFor = async (durationS: number): Promise<Pick<HttpLoadResult, 'ok' | 'rps' | 'p50Ms' | 'p99Ms' | 'statusCodes'>> => vegeta?.ok === true
      ? openLoad(await openLoopRun(running, rate!, vegeta.value.binary, { ...settings, openLoopDurationS: durationS, openLoopWarmupS: 0 }, context))
      : await runLoad<HttpLoadResult>('http-load.ts', { url: `${running.baseUrl}/fixed`, connections, durationS, headerSets: running.headerSets } satisfies HttpLoadSpec, durationS, context)
    if (warmup > 0) {
      log(`${path.id}: ${warmup} s of warm-up`)
      await loadFor(warmup)
    }
    log(`${path.id}: ${seconds} s of load`)
    // The probe's window: the first SIGUSR2 opens it, the second closes it.
    if (loop) process.kill(-pgid!, 'SIGUSR2')
    const window = { fromUs: monotonicUs(), toUs: 0 }
    const load = await loadFor(seconds)
    window.toUs = monotonicUs()
    if (loop) process.kill(-pgid!, 'SIGUSR2')
    if (load.ok === 0) throw new Error(`${path.id}: no 2xx answer under load (${JSON.stringify(load.statusCodes)})`)
    if (pgid !== undefined) process.kill(-pgid, 'SIGTERM')
    const suffix = loop ? '.loop.json' : '.cpuprofile'
    const deadline = Date.now() + STOP_TIMEOUT_MS
    let files: string[] = []
    while (files.length === 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200))
      files = readdirSync(profileDir).filter((name) => name.endsWith(suffix))
    }
    await pathProcesses.stopAll()
    if (files.length === 0) throw new Error(`${path.id}: nothing written within ${STOP_TIMEOUT_MS} ms of SIGTERM`)
    if (loop) {
      for (const name of files) out.push(loopRow(path.id, load, JSON.parse(readFileSync(join(profileDir, name), 'utf8')) as LoopProbeResult))
      continue
    }
    // every process of the proxy (a primary and its workers write one each) counts
    const counted = files.map((name) => tally(JSON.parse(readFileSync(join(profileDir, name), 'utf8')) as CpuProfile, window))
    const merged: Tally = { byPlace: new Map(), byFunction: new Map(), totalUs: 0 }
    for (const one of counted) {
      for (const [key, us] of one.byPlace) merged.byPlace.set(key, (merged.byPlace.get(key) ?? 0) + us)
      for (const [key, us] of one.byFunction) merged.byFunction.set(key, (merged.byFunction.get(key) ?? 0) + us)
      merged.totalUs += one.totalUs
    }
    const requests = load.ok
    out.push('', `## ${path.id}: ${path.title}`, '',
      `${requests} requests in ${seconds} s (${Math.round(load.rps)} req/s); ${(merged.totalUs / requests).toFixed(1)} µs of sampled CPU per request (while the load ran, idle excluded)`,
      '', table('where', merged.byPlace, requests, merged.totalUs, top), '', table('function (self time)', merged.byFunction, requests, merged.totalUs, top))
  }
} finally {
  await processes.stopAll()
  rmSync(workDir, { recursive: true, force: true })
}
process.stdout.write(out.join('\n') + '\n')

/** An open-loop run in the closed loop's terms: 2xx answers, their rate, latency, the status counts. */
function openLoad (run: OpenLoopRun): Pick<HttpLoadResult, 'ok' | 'rps' | 'p50Ms' | 'p99Ms' | 'statusCodes'> {
  return { ok: run.ok, rps: run.achievedRps, p50Ms: run.p50Ms, p99Ms: run.p99Ms, statusCodes: run.statusCodes }
}

function restoreEnv (name: string, value: string | undefined): void {
  if (value === undefined) delete process.env[name]
  else process.env[name] = value
}

function loopRow (id: string, load: Pick<HttpLoadResult, 'ok' | 'rps' | 'p50Ms' | 'p99Ms'>, probe: LoopProbeResult): string {
  const ms = (value: number): string => `${value.toFixed(2)} ms`
  const { delayMs: d, gc } = probe
  return `| ${id} (${probe.pid}) | ${Math.round(load.rps)} | ${ms(load.p50Ms)} | ${ms(load.p99Ms)} | ${ms(d.p50)} / ${ms(d.p90)} / ${ms(d.p99)} / ${ms(d.max)} | ` +
    `${gc.scavenge.count}, ${ms(gc.scavenge.totalMs)}, ${(1000 * gc.scavenge.totalMs / load.ok).toFixed(2)} | ${gc.markCompact.count}, ${ms(gc.markCompact.totalMs)}, ${ms(gc.markCompact.maxMs)} |`
}
