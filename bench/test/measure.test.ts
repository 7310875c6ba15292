import { createServer } from 'node:http'
import type { Server } from 'node:http'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { homedir, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { describeMachine, hasTaskset, planCpus } from '../machine.ts'
import { measurePath, measurePaths } from '../measure.ts'
import type { MeasureOptions } from '../measure.ts'
import type { BenchPath, PathContext } from '../paths/types.ts'
import { Prerequisites } from '../prerequisites.ts'
import { clockTicksPerSecond } from '../proc-stats.ts'
import { ProcessGroup } from '../processes.ts'
import { parseSettings } from '../settings.ts'
import { startUpstream } from '../upstream.ts'

const benchDir = dirname(dirname(fileURLToPath(import.meta.url)))
const repoDir = dirname(benchDir)
const settings = { ...parseSettings(['--quick', '--no-install']), streamBytes: 8 * 1024 ** 2, wsConnections: 2 }

async function setUp (t: Test): Promise<{ options: MeasureOptions, context: PathContext, root: ProcessGroup }> {
  const root = new ProcessGroup()
  const workDir = mkdtempSync(join(tmpdir(), 'bench-measure-'))
  t.teardown(async () => {
    await root.stopAll()
    rmSync(workDir, { recursive: true, force: true })
  })
  const cpus = planCpus(describeMachine().allowedCpus, hasTaskset())
  const upstream = await startUpstream({ processes: root, repoDir, benchDir, cpus: cpus.upstream, choice: 'fixed' })
  const context: PathContext = {
    repoDir,
    benchDir,
    workDir,
    processes: root.child(),
    cpus,
    upstream,
    prerequisites: new Prerequisites({ processes: root, cacheDir: workDir, install: false, log: () => {} }),
    log: () => {},
  }
  return { options: { settings, context, ticksPerSecond: clockTicksPerSecond() }, context, root }
}

async function listen (t: Test, server: Server): Promise<string> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no address')
  return `http://127.0.0.1:${address.port}`
}

void t.test('every measure of a path, with the upstream standing in as the measured proxy', async (t) => {
  const { options, context } = await setUp(t)
  const path: BenchPath = {
    id: 'self',
    title: 'upstream measured as if it were the proxy',
    measures: ['throughput', 'latency', 'websocket', 'websocket-window', 'openloop', 'stream'],
    start: async (ctx) => await Promise.resolve({ baseUrl: ctx.upstream.url, headerSets: [{ authorization: 'Bearer x' }], proxyPgid: ctx.upstream.process.pid }),
  }
  const result = await measurePath(path, options)
  t.equal(result.status, 'ok', result.reason ?? '')
  const throughput = result.throughput!
  t.ok(throughput.rps.median > 100, `req/s ${throughput.rps.median}`)
  t.ok(throughput.p50Ms.median > 0 && throughput.p50Ms.median <= throughput.p99Ms.median)
  const cpu = throughput.cpuUsPerRequest!.median
  t.ok(cpu > 1 && cpu < 5000, `CPU per request ${cpu} µs`)
  t.ok(throughput.rssKb! > 10_000)
  t.ok(result.idleRssKb! > 10_000)
  t.ok(result.latency!.p50Ms.median > 0 && result.latency!.p50Ms.median < 50, `p50 at 1 connection ${result.latency!.p50Ms.median} ms`)
  t.ok(result.websocket!.messagesPerS.median > 100, `${result.websocket!.messagesPerS.median} messages/s`)
  t.match(result.websocketWindow, { window: 16, connections: 2 })
  t.ok(result.websocketWindow!.messagesPerS.median > 100, `${result.websocketWindow!.messagesPerS.median} messages/s with 16 in flight`)
  t.equal(result.openLoop, undefined, 'no vegeta in this context (--no-install)')
  t.match(result.notMeasured, { openloop: /^vegeta v12\.13\.0 is not in .* \(--no-install\); run: GOBIN=/ })
  t.match(result.stream, { bytes: 8 * 1024 ** 2 })
  t.ok(result.stream!.mibPerS > 1)
  t.ok(result.stream!.peakRssKb! >= result.stream!.rssBeforeKb!)
  t.ok(context.upstream.process.running, 'the shared upstream outlives the path')
})

void t.test('load cycles through the header sets', async (t) => {
  const { options } = await setUp(t)
  const seen = new Map<string, number>()
  const baseUrl = await listen(t, createServer((request, response) => {
    const token = request.headers.authorization ?? 'none'
    seen.set(token, (seen.get(token) ?? 0) + 1)
    response.end(Buffer.alloc(100, 'x'))
  }))
  const path: BenchPath = {
    id: 'rotating',
    title: 'rotating tokens',
    measures: ['throughput'],
    start: async () => await Promise.resolve({ baseUrl, headerSets: [{ authorization: 'one' }, { authorization: 'two' }], proxyPgid: undefined }),
  }
  const result = await measurePath(path, options)
  t.equal(result.status, 'ok', result.reason ?? '')
  t.ok((seen.get('one') ?? 0) > 10 && (seen.get('two') ?? 0) > 10, `both tokens used: ${JSON.stringify([...seen])}`)
  t.equal(result.throughput!.cpuUsPerRequest, null, 'no proxy process, no proxy cost')
})

void t.test('a path that does not serve the 100-byte body fails before any load, with the status', async (t) => {
  const { options } = await setUp(t)
  const baseUrl = await listen(t, createServer((_request, response) => { response.writeHead(401).end('no token') }))
  const path: BenchPath = { id: 'refusing', title: 'refusing', measures: ['throughput'], start: async () => await Promise.resolve({ baseUrl, headerSets: [{}], proxyPgid: undefined }) }
  const result = await measurePath(path, options)
  t.equal(result.status, 'failed')
  t.match(result.reason, /answered HTTP 401 with 8 bytes, expected 200 with 100: no token/)
})

void t.test('an unavailable path is skipped with its reason and never started', async (t) => {
  const { options } = await setUp(t)
  let started = false
  const path: BenchPath = {
    id: 'absent',
    title: 'absent',
    measures: ['throughput'],
    unavailable: async () => await Promise.resolve('nginx is not installed'),
    start: async () => { started = true; return await Promise.reject(new Error('unreachable')) },
  }
  t.same(await measurePath(path, options), { id: 'absent', title: 'absent', status: 'skipped', reason: 'nginx is not installed' })
  t.notOk(started)
})

void t.test('a path that fails to start is reported, and what it started is stopped', async (t) => {
  const { options } = await setUp(t)
  let leftover: { running: boolean } | undefined
  const path: BenchPath = {
    id: 'crashing',
    title: 'crashing',
    measures: ['throughput'],
    start: async (ctx) => {
      leftover = ctx.processes.spawn('helper', 'sleep', ['30'])
      return await Promise.reject(new Error('proxy exited: bad config'))
    },
  }
  t.match(await measurePath(path, options), { status: 'failed', reason: 'proxy exited: bad config' })
  t.equal(leftover?.running, false)
})

void t.test('runs are interleaved across paths, and a path that breaks mid-way fails alone', async (t) => {
  const { options } = await setUp(t)
  const order: string[] = []
  let brokenAfter = Infinity
  const server = (name: string) => createServer((_request, response) => {
    if (order.at(-1) !== name) order.push(name)
    if (name === 'c' && order.filter((seen) => seen === 'c').length > brokenAfter) response.writeHead(500)
    response.end(Buffer.alloc(100, 'x'))
  })
  const urls = { a: await listen(t, server('a')), b: await listen(t, server('b')), c: await listen(t, server('c')) }
  const path = (name: 'a' | 'b' | 'c'): BenchPath => ({
    id: name,
    title: name,
    measures: ['throughput'],
    start: async () => await Promise.resolve({ baseUrl: urls[name], headerSets: [{}], proxyPgid: undefined }),
  })
  brokenAfter = 2 // c answers its check and its first run, then only 500s
  const results = await measurePaths([path('a'), path('b'), path('c')], { ...options, settings: { ...options.settings, runs: 3 }, contextFor: () => Promise.resolve(options.context) })
  t.same(order, ['a', 'b', 'c', 'a', 'b', 'c', 'a', 'b', 'c', 'a', 'b'], 'checks, then run 1 of each path, run 2 of each …; c left out once it failed')
  t.same(results.map((result) => [result.id, result.status]), [['a', 'ok'], ['b', 'ok'], ['c', 'failed']])
  t.equal(results[0]?.throughput?.runs.length, 3)
  t.match(results[2]?.reason, /statuses \{"500"/)
})

void t.test('after the last run, a path\'s auth service calls are checked against the 2xx it served; a broken promise fails the path', async (t) => {
  const { options } = await setUp(t)
  // each path's server stands in for proxy and auth service at once: it counts every request it answered
  const path = async (id: string, expect: 'once' | 'per-request', calls: (answered: number) => number): Promise<{ path: BenchPath, answered: () => number }> => {
    let answered = 0
    const baseUrl = await listen(t, createServer((_request, response) => { answered++; response.end(Buffer.alloc(100, 'x')) }))
    const usage = async (): Promise<{ calls: number, cpuUs: number }> => await Promise.resolve({ calls: calls(answered), cpuUs: 5_000_000 })
    return {
      path: { id, title: id, measures: ['throughput', 'latency'], start: async () => await Promise.resolve({ baseUrl, headerSets: [{}], proxyPgid: undefined, authService: { expect, usage } }) },
      answered: () => answered,
    }
  }
  const paths = [
    await path('warm-cache', 'once', () => 1),
    await path('cache-broken', 'once', () => 40),
    await path('asks-every-time', 'per-request', (answered) => answered),
    await path('skips-some', 'per-request', () => 10),
  ]
  const results = await measurePaths(paths.map((entry) => entry.path), { ...options, contextFor: () => Promise.resolve(options.context) })
  t.same(results.map((result) => [result.id, result.status]), [['warm-cache', 'ok'], ['cache-broken', 'failed'], ['asks-every-time', 'ok'], ['skips-some', 'failed']])
  const warm = results[0]!.authService!
  t.match(warm, { expect: 'once', calls: 1, cpuUsPerCall: null })
  const throughputServed = results[0]!.throughput!.runs.reduce((sum, run) => sum + run.requests, 0)
  t.ok(warm.requests > throughputServed && warm.requests <= paths[0]!.answered(), `the check, the throughput and the latency runs counted: ${warm.requests} of ${paths[0]!.answered()} answered`)
  t.match(results[1]!.reason, /answered 40 calls for \d+ requests; a warm cache asks 1 to 2 times/)
  const every = results[2]!.authService!
  t.ok(every.calls >= every.requests && every.requests > 100, `${every.calls} calls for ${every.requests} 2xx responses`)
  if (every.calls >= 1000) t.equal(every.cpuUsPerCall, 5_000_000 / every.calls)
  t.match(results[3]!.reason, /answered 10 calls for \d+ requests; every request should have asked it/)
})

void t.test('open-loop runs: vegeta (built into the cache when missing) at each share of the rate, run by run across the paths', async (t) => {
  const { options, context, root } = await setUp(t)
  const log: string[] = []
  // the benchmark's own cache, so a later `npm run bench` finds vegeta built
  const prerequisites = new Prerequisites({ processes: root, cacheDir: join(homedir(), '.cache', 'podgate', 'bench'), install: true, log: (line) => { log.push(line) } })
  const order: string[] = []
  const server = (name: string) => createServer((_request, response) => {
    if (order.at(-1) !== name) order.push(name)
    response.end(Buffer.alloc(100, 'x'))
  })
  const urls = { a: await listen(t, server('a')), b: await listen(t, server('b')) }
  const path = (name: 'a' | 'b'): BenchPath => ({
    id: name,
    title: name,
    measures: ['openloop'],
    start: async () => await Promise.resolve({ baseUrl: urls[name], headerSets: [{ authorization: 'one' }], proxyPgid: undefined }),
  })
  // no nginx-lua-cached among the paths: the rates are shares of the fallback
  const settings = { ...options.settings, openLoopFallbackRps: 400, openLoopRuns: 2, openLoopDurationS: 0.5, openLoopWarmupS: 0.25 }
  const results = await measurePaths([path('a'), path('b')], { ...options, settings, contextFor: () => Promise.resolve({ ...context, prerequisites }), log: (line) => { log.push(line) } })
  t.same(results.map((result) => [result.id, result.status, result.reason]), [['a', 'ok', undefined], ['b', 'ok', undefined]], log.join('\n'))
  t.same(order, ['a', 'b', 'a', 'b', 'a', 'b', 'a', 'b', 'a', 'b', 'a', 'b', 'a', 'b'], 'the checks, then each rate of each round, path after path')
  for (const result of results) {
    const openLoop = result.openLoop!
    t.same(openLoop.basis, { rps: 400, source: 'fixed' })
    t.same(openLoop.rates.map((rate) => [rate.share, rate.offeredRps, rate.runs.length]), [[0.25, 100, 2], [0.5, 200, 2], [0.75, 300, 2]])
    for (const rate of openLoop.rates) {
      t.ok(rate.sent > 0 && rate.failed === 0, `${result.id} at ${rate.offeredRps} req/s: ${rate.sent} sent, ${rate.failed} failed`)
      t.ok(rate.p50Ms.median > 0 && rate.p50Ms.median <= rate.p99Ms.median && rate.p99Ms.median <= rate.p999Ms.median, `${result.id}: ordered percentiles ${JSON.stringify([rate.p50Ms, rate.p99Ms, rate.p999Ms])}`)
      t.equal(rate.rssKb, null, 'no proxy process, no RSS')
      t.same([rate.cpuUsPerRequest, rate.busyPct], [null, null], 'no proxy process, no proxy CPU')
    }
  }
  t.ok(log.some((line) => /open-loop run 1 of 2 at 100 req\/s \(25% of a fixed 400 req\/s\)/.test(line)), 'the log says what the rate is a share of')
})
