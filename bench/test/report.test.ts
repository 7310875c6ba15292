import t from 'tap'
import type { PathResult } from '../measure.ts'
import { summarizeOpenLoop } from '../open-loop.ts'
import type { OpenLoopSample } from '../open-loop.ts'
import { toMarkdown, type BenchReport } from '../report.ts'
import { parseSettings } from '../settings.ts'
import { summarize } from '../stats.ts'

function path (id: string, rps: number[]): PathResult {
  const runs = rps.map((value) => ({ rps: value, p50Ms: 1, p99Ms: 2, requests: value, cpuUsPerRequest: 10, rssKb: 1000, backgroundPct: 0 }))
  return {
    id,
    title: id,
    status: 'ok',
    idleRssKb: 1000,
    throughput: { connections: 64, durationS: 3, runs, rps: summarize(rps), p50Ms: summarize([1]), p99Ms: summarize([2]), cpuUsPerRequest: summarize([10]), rssKb: 1000, backgroundPct: 0 },
  }
}

/** A path whose throughput runs cost `cpus` µs per request. */
function withCpu (id: string, cpus: number[]): PathResult {
  const base = path(id, [20_000])
  return { ...base, throughput: { ...base.throughput!, cpuUsPerRequest: summarize(cpus) } }
}

function report (paths: PathResult[]): BenchReport {
  const { outDir: _outDir, only: _only, ...settings } = parseSettings([])
  return {
    date: '2026-11-22T00:00:00.000Z',
    quick: false,
    machine: { cpuModel: 'test', cpus: 2, allowedCpus: [0, 1], memoryGiB: 1, node: 'v24', kernel: '6' },
    pinning: 'test',
    upstream: 'test',
    tools: {},
    settings,
    elapsedS: 1,
    backgroundCpuPct: 0,
    paths,
    goals: [],
  }
}

void t.test('runs of a path far apart mark the machine unsteady, close together steady', (t) => {
  t.match(toMarkdown(report([path('a', [100, 104, 102]), path('b', [50, 51, 52])])), /Runs of a path were \d+% apart .*: a steady machine/)
  t.match(toMarkdown(report([path('a', [100, 160, 70]), path('b', [50, 90, 40])])), /\*\*Unsteady machine\*\*: runs of the same path were 9\d% apart .* although no other program ran/)
  const busy = toMarkdown({ ...report([path('a', [100, 160, 70]), path('b', [50, 90, 40])]), backgroundCpuPct: 55 })
  t.match(busy, /\*\*Unsteady machine\*\*: runs of the same path were 9\d% apart .*, other programs taking the CPUs in turns/)
  t.notMatch(busy, 'no other program ran', 'a busy machine is not said to be quiet')
  t.end()
})

void t.test('the auth-url paths get their own table with the auth service\'s calls, and the ratio without a target', (t) => {
  const podgate: PathResult = { ...path('podgate-auth-url', [12_000]), title: 'podgate auth-url', authService: { expect: 'once', calls: 1, requests: 150_000, cpuUsPerCall: null } }
  const nginx: PathResult = { ...path('nginx-auth-request', [20_000]), title: 'nginx auth_request', authService: { expect: 'per-request', calls: 250_064, requests: 250_000, cpuUsPerCall: 6.5 } }
  const markdown = toMarkdown(report([path('direct', [40_000]), podgate, nginx]))
  t.match(markdown, '## Opaque tokens: an auth service asked once (podgate) or on every request (nginx auth_request)')
  t.match(markdown, '| podgate auth-url | 12.0k | 2.00 ms | 10.0 µs | 1 | 150,000 | — |')
  t.match(markdown, '| nginx auth_request | 20.0k | 2.00 ms | 10.0 µs | 250,064 | 250,000 | 6.5 µs |')
  t.match(markdown, 'podgate asking once vs nginx asking on every request: 0.60× the requests per second (12000 / 20000); proxy CPU per request 10.0 µs vs 10.0 µs (16.5 µs with the auth service\'s CPU per call added). Reported, not a goal')
  t.notMatch(toMarkdown(report([path('direct', [40_000])])), 'Opaque tokens', 'no section without the paths')
  t.end()
})

void t.test('the feature rows are priced against the defaults row of the same run', (t) => {
  const markdown = toMarkdown(report([withCpu('podgate-hs256', [40, 42]), withCpu('podgate-feature-none', [39, 41]), withCpu('podgate-feature-identity', [45, 47])]))
  t.match(markdown, '## Request-path features: cost per request')
  t.match(markdown, '| defaults | 20.0k | 41.0 µs (40.0–42.0) | — |')
  t.match(markdown, '| per-user limits, identity, usage, access log and trace context all off | 20.0k | 40.0 µs (39.0–41.0) | −1.0 µs (−2%) |')
  t.match(markdown, '| signed identity header (Ed25519) | 20.0k | 46.0 µs (45.0–47.0) | +5.0 µs (+12%) |')
  t.notMatch(toMarkdown(report([withCpu('podgate-hs256', [40])])), 'Request-path features', 'no section without feature rows')
  t.end()
})

/** One 2 s open-loop run at `share` of 20,000 req/s after 0.5 s of warm-up, the proxy using `cpuUsPerRequest` µs on each request it was sent. */
function openLoopSample (share: number, p50Ms: number, options: { sendLagP99Ms?: number, cpuUsPerRequest?: number | null } = {}): OpenLoopSample {
  const { sendLagP99Ms = 0.05, cpuUsPerRequest = null } = options
  const sentWithWarmup = share * 50_000
  return {
    share,
    rssKb: 80 * 1024,
    proxyCpuS: cpuUsPerRequest === null ? null : cpuUsPerRequest * sentWithWarmup / 1e6,
    run: { offeredRps: share * 20_000, durationS: 2, sent: share * 40_000, ok: share * 40_000, sentWithWarmup, spanS: 2.5, achievedRps: share * 20_000, p50Ms, p99Ms: p50Ms * 10, p999Ms: p50Ms * 20, sendLagP99Ms, statusCodes: {} },
  }
}

void t.test('the open-loop table: every path at every rate, against nginx + Lua at the same rate, rates not held marked', (t) => {
  const withOpenLoop = (id: string, p50: [number, number, number], lag?: number): PathResult => ({
    ...path(id, [20_000]),
    openLoop: summarizeOpenLoop({ rps: 20_000, source: 'nginx-lua-cached' }, [openLoopSample(0.25, p50[0]), openLoopSample(0.5, p50[1]), openLoopSample(0.75, p50[2], { sendLagP99Ms: lag })], 2),
  })
  const markdown = toMarkdown(report([withOpenLoop('podgate-hs256', [0.4, 0.6, 1.2], 4), withOpenLoop('nginx-lua-cached', [0.2, 0.3, 0.4])]))
  t.match(markdown, '## Latency at a fixed offered rate (open loop)')
  t.match(markdown, 'The rates are 25%, 50%, 75% of nginx-lua-cached\'s saturation rate in this run, 20,000 req/s (the median of its throughput runs).')
  t.match(markdown, '| load | path | offered req/s | served req/s | p50 | p99 | p99.9 | vs nginx-lua-cached (p50 / p99 / p99.9) | send lag p99 | proxy CPU per request | proxy busy | proxy RSS after |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n')
  t.match(markdown, '| 50% | podgate-hs256 | 10.0k | 10.0k | 0.600 ms | 6.00 ms | 12.00 ms | 2.00× / 2.00× / 2.00× | 0.050 ms | — | — | 80.0 MiB |')
  t.match(markdown, '| 75% | podgate-hs256 ‡ | 15.0k | 15.0k | 1.20 ms | 12.00 ms | 24.00 ms | 3.00× / 3.00× / 3.00× | 4.00 ms | — | — | 80.0 MiB |')
  t.match(markdown, '| 75% | nginx-lua-cached | 15.0k |')
  t.match(markdown, '‡ the path did not hold this rate: vegeta fell more than 2 ms behind its schedule (p99)')
  t.ok(markdown.indexOf('| 25% | nginx-lua-cached') < markdown.indexOf('| 50% | podgate-hs256'), 'grouped by rate')

  const why = 'vegeta v12.13.0 is not in /cache (--no-install)'
  const skipped = toMarkdown(report([{ ...path('podgate-hs256', [20_000]), notMeasured: { openloop: why } }]))
  t.match(skipped, `## Latency at a fixed offered rate (open loop)\n\nNot measured: ${why}\n`)
  t.notMatch(toMarkdown(report([path('direct', [40_000])])), 'open loop)', 'no section for a run without the measure')
  t.end()
})

void t.test('the open-loop table shows each proxy\'s CPU per request and how busy its core was, and says why they matter', (t) => {
  // 10,000 req/s, 25,000 requests sent in 2.5 s with the warm-up: 62 µs each is 1.55 s of CPU, 62% of one core
  const samples = [openLoopSample(0.5, 0.3, { cpuUsPerRequest: 60 }), openLoopSample(0.5, 0.3, { cpuUsPerRequest: 62 }), openLoopSample(0.5, 0.3, { cpuUsPerRequest: 75 })]
  const podgate: PathResult = { ...path('podgate-hs256', [20_000]), openLoop: summarizeOpenLoop({ rps: 20_000, source: 'nginx-lua-cached' }, samples, 2) }
  const direct: PathResult = { ...path('direct', [40_000]), openLoop: summarizeOpenLoop({ rps: 20_000, source: 'nginx-lua-cached' }, [openLoopSample(0.5, 0.1)], 2) }
  const markdown = toMarkdown(report([direct, podgate]))
  t.match(markdown, '| 50% | podgate-hs256 | 10.0k | 10.0k | 0.300 ms | 3.00 ms | 6.00 ms | — | 0.050 ms | 62.0 µs (60.0–75.0) | 62% | 80.0 MiB |')
  t.match(markdown, '| 50% | direct | 10.0k | 10.0k | 0.100 ms | 1.00 ms | 2.00 ms | — | 0.050 ms | — | — | 80.0 MiB |', 'no proxy: neither')
  t.match(markdown, 'Proxy CPU per request is the proxy\'s CPU time over a run per request sent, warm-up included, higher than at saturation (the throughput table) because requests arrive one at a time and nothing is batched per event-loop turn; ' +
    'proxy busy is that CPU time over the run\'s wall time (first request sent to last answer read), as a share of one core, and queueing grows with how busy the core is')

  // results written before the proxy's CPU was read around open-loop runs (bench/results/2026-11-26.json) have neither field
  const { cpuUsPerRequest: _cpu, busyPct: _busy, ...before } = podgate.openLoop!.rates[0]!
  const old = toMarkdown(report([{ ...podgate, openLoop: { ...podgate.openLoop!, rates: [before] } }]))
  t.match(old, '| 50% | podgate-hs256 | 10.0k | 10.0k | 0.300 ms | 3.00 ms | 6.00 ms | — | 0.050 ms | — | — | 80.0 MiB |')
  t.end()
})

void t.test('the WebSocket tables: one message in flight, and several, each against direct', (t) => {
  const ws = (window: number, messagesPerS: number): PathResult['websocket'] => ({ connections: 32, window, messageBytes: 64, messagesPerS: summarize([messagesPerS]) })
  const markdown = toMarkdown(report([
    { ...path('direct', [40_000]), websocket: ws(1, 100_000), websocketWindow: ws(16, 300_000) },
    { ...path('podgate-hs256', [20_000]), websocket: ws(1, 50_000), websocketWindow: ws(16, 120_000) },
  ]))
  t.match(markdown, '## WebSocket\n')
  t.match(markdown, '| podgate-hs256 | 50.0k | 0.50× | 32 | 1 | 64 B |')
  t.match(markdown, '## WebSocket with 16 messages in flight')
  t.match(markdown, '| podgate-hs256 | 120.0k | 0.40× | 32 | 16 | 64 B |')
  t.end()
})

void t.test('the gap to the floor is priced piece by piece when the node-minimal-<step> paths ran', (t) => {
  const markdown = toMarkdown(report([withCpu('podgate-hs256', [40]), withCpu('node-minimal', [30]), withCpu('node-minimal-headers', [31.5]), withCpu('node-minimal-checks', [29.5]), withCpu('node-minimal-all', [33])]))
  t.match(markdown, 'The difference, 10.0 µs (33%)')
  t.match(markdown, '| node-minimal-headers | 31.5 µs (31.5–31.5) | +1.5 µs |')
  t.match(markdown, '| node-minimal-checks | 29.5 µs (29.5–29.5) | −0.5 µs |')
  t.match(markdown, '| the pieces added up | | +1.0 µs |')
  t.match(markdown, '| node-minimal-all | 33.0 µs (33.0–33.0) | +3.0 µs |')
  t.match(markdown, 'Every piece at once costs +3.0 µs here and podgate +10.0 µs')
  t.match(markdown, "The floor's own runs were 0.0 µs apart (min–max)")
  t.notMatch(markdown, 'no real cost can', 'pieces that add up to less than all at once are not called noise')
  const noisy = toMarkdown(report([withCpu('podgate-hs256', [40]), withCpu('node-minimal', [30, 31, 32]), withCpu('node-minimal-headers', [36]), withCpu('node-minimal-checks', [35]), withCpu('node-minimal-all', [37])]))
  t.match(noisy, "The floor's own runs were 2.0 µs apart (min–max)")
  t.match(noisy, 'Here the pieces added up cost +3.0 µs more than every piece at once, which no real cost can')
  const withinSpread = toMarkdown(report([withCpu('podgate-hs256', [40]), withCpu('node-minimal', [30, 31, 32]), withCpu('node-minimal-headers', [33.5]), withCpu('node-minimal-checks', [33]), withCpu('node-minimal-all', [35])]))
  t.notMatch(withinSpread, 'no real cost can', 'an excess within the floor\'s spread is not called noise')
  t.match(toMarkdown(report([withCpu('podgate-hs256', [40]), withCpu('node-minimal', [30]), withCpu('node-minimal-headers', [31.5])])), 'What the pieces do not add up to (+8.5 µs)')
  t.notMatch(toMarkdown(report([withCpu('podgate-hs256', [40]), withCpu('node-minimal', [30])])), 'piece by piece', 'no table without the step paths')
  t.match(toMarkdown(report([withCpu('podgate-hs256', [40]), withCpu('node-minimal', [30]), withCpu('node-minimal-wire', [32.5])])),
    'spends 32.5 µs, +2.5 µs: what those headers cost on their own (undici\'s checks, the longer request). podgate is +7.5 µs (+23.1%) above that.')
  t.match(toMarkdown(report([withCpu('podgate-hs256', [40]), withCpu('node-minimal', [30]), withCpu('node-minimal-wire', [29.8])])),
    'spends 29.8 µs, −0.2 µs: those headers cost nothing this run can tell from the floor. podgate is +10.2 µs (+34.2%) above that.')
  t.end()
})
