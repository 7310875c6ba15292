// Where a proxy's CPU goes per request: each selected path runs under load with V8's sampling
// profiler (`--cpu-prof`, through NODE_OPTIONS for the proxy alone), and its self time is
// summed by where the code lives (podgate's files, undici, node:http, streams, GC …) and by
// function, divided by the requests it served. Only samples taken while the load ran count:
// not the proxy's start-up, not its shutdown. Pinned as in `npm run bench`: load generator and
// upstream on one CPU, the proxy on the other. The load is a closed loop of `--connections`
// (autocannon), or with `--rate` an open loop at that many requests per second (vegeta, as the
// benchmark's open-loop measure; it must have been installed by `npm run bench`). Prints markdown.
// Usage: node bench/profile.ts [--only podgate-hs256,node-minimal] [--seconds 10] [--connections 64 | --rate 8000] [--top 30]
import { homedir, tmpdir } from 'node:os'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import type { HttpLoadResult, HttpLoadSpec } from './load/http-load.ts'
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
    connections: { type: 'string', default: '64' },
    rate: { type: 'string' },
    top: { type: 'string', default: '30' },
  },
})
const seconds = Number(values.seconds)
const connections = Number(values.connections)
const rate = values.rate === undefined ? undefined : Number(values.rate)
const top = Number(values.top)
if (!(seconds > 0) || !Number.isInteger(connections) || connections < 1 || !Number.isInteger(top) || top < 1 || (rate !== undefined && !(Number.isInteger(rate) && rate >= 1))) {
  throw new Error('usage: node bench/profile.ts [--only ids] [--seconds S > 0] [--connections N ≥ 1 | --rate req/s ≥ 1] [--top N ≥ 1]')
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
const out: string[] = [`# Where the CPU goes per request (${seconds} s, ${loadName}, ${machine.cpuModel}, Node ${machine.node})`]
try {
  for (const path of paths) {
    const pathProcesses = processes.child()
    const upstream = await startUpstream({ processes: pathProcesses, repoDir, benchDir, cpus: cpus.upstream, choice: 'auto' })
    const context: PathContext = { repoDir, benchDir, workDir, processes: pathProcesses, cpus, upstream, prerequisites, log }
    const profileDir = join(workDir, path.id)
    mkdirSync(profileDir)
    // The proxy alone is started while NODE_OPTIONS asks for the profile: not the upstream, not the load.
    const saved = process.env.NODE_OPTIONS
    process.env.NODE_OPTIONS = `${saved ?? ''} --cpu-prof --cpu-prof-dir=${profileDir} --cpu-prof-interval=${SAMPLING_INTERVAL_US}`.trim()
    let running
    try {
      running = await path.start(context)
    } finally {
      if (saved === undefined) delete process.env.NODE_OPTIONS
      else process.env.NODE_OPTIONS = saved
    }
    log(`${path.id}: ${seconds} s of load`)
    const window = { fromUs: monotonicUs(), toUs: 0 }
    const load = vegeta?.ok === true
      ? openLoad(await openLoopRun(running, rate!, vegeta.value.binary, { ...settings, openLoopDurationS: seconds, openLoopWarmupS: 0 }, context))
      : await runLoad<HttpLoadResult>('http-load.ts', { url: `${running.baseUrl}/fixed`, connections, durationS: seconds, headerSets: running.headerSets } satisfies HttpLoadSpec, seconds, context)
    window.toUs = monotonicUs()
    if (load.ok === 0) throw new Error(`${path.id}: no 2xx answer under load (${JSON.stringify(load.statusCodes)})`)
    if (running.proxyPgid !== undefined) process.kill(-running.proxyPgid, 'SIGTERM')
    const deadline = Date.now() + STOP_TIMEOUT_MS
    let files: string[] = []
    while (files.length === 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200))
      files = readdirSync(profileDir).filter((name) => name.endsWith('.cpuprofile'))
    }
    await pathProcesses.stopAll()
    if (files.length === 0) throw new Error(`${path.id}: no profile written within ${STOP_TIMEOUT_MS} ms of SIGTERM`)
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

/** An open-loop run in the closed loop's terms: 2xx answers, their rate, the status counts. */
function openLoad (run: OpenLoopRun): Pick<HttpLoadResult, 'ok' | 'rps' | 'statusCodes'> {
  return { ok: run.ok, rps: run.achievedRps, statusCodes: run.statusCodes }
}
