import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { evaluateGoals } from '../goals.ts'
import type { GoalResult } from '../goals.ts'
import type { PathResult, ThroughputResult } from '../measure.ts'
import { summarizeOpenLoop } from '../open-loop.ts'
import { toMarkdown, writeReport } from '../report.ts'
import type { BenchReport } from '../report.ts'
import { parseSettings } from '../settings.ts'
import { summarize } from '../stats.ts'

function throughput (rps: number, cpuUs: number | null, backgroundPct = 0): ThroughputResult {
  const run = { rps, p50Ms: 1, p99Ms: 4, requests: rps * 5, cpuUsPerRequest: cpuUs, rssKb: cpuUs === null ? null : 60_000, backgroundPct }
  return { connections: 64, durationS: 5, runs: [run], rps: summarize([rps]), p50Ms: summarize([1]), p99Ms: summarize([4]), cpuUsPerRequest: cpuUs === null ? null : summarize([cpuUs]), rssKb: run.rssKb, backgroundPct }
}

function ok (id: string, extra: Partial<PathResult> = {}): PathResult {
  return { id, title: id, status: 'ok', ...extra }
}

const latency = (p50: number): PathResult['latency'] => ({ connections: 1, p50Ms: summarize([p50]), p99Ms: summarize([p50 * 3]) })
const ws = (window: number, messagesPerS: number): PathResult['websocket'] => ({ connections: 32, window, messageBytes: 64, messagesPerS: summarize([messagesPerS]) })

/**
 * Open-loop results at 25% and 50% of a 20,000 req/s reference, one 2 s run each after 0.5 s of
 * warm-up; `lagMs` above 2 ms means the rate was not held; `busyAtHalf`, the share of one core the
 * proxy used at 50% (none: no proxy).
 */
function openLoop (p50AtHalf: number, p99AtHalf: number, lagMs = 0.1, busyAtHalf?: number): PathResult['openLoop'] {
  const run = (offeredRps: number, p50Ms: number, p99Ms: number) => ({
    share: offeredRps / 20_000,
    rssKb: 70_000,
    proxyCpuS: busyAtHalf === undefined ? null : busyAtHalf / 100 * 2.5 * offeredRps / 10_000,
    run: { offeredRps, durationS: 2, sent: offeredRps * 2, ok: offeredRps * 2, sentWithWarmup: offeredRps * 2.5, spanS: 2.5, achievedRps: offeredRps, p50Ms, p99Ms, p999Ms: p99Ms * 2, sendLagP99Ms: lagMs, statusCodes: {} },
  })
  return summarizeOpenLoop({ rps: 20_000, source: 'nginx-lua-cached' }, [run(5000, 0.2, 1), run(10_000, p50AtHalf, p99AtHalf)], 2)
}

const results: PathResult[] = [
  ok('direct', { throughput: throughput(40_000, null), latency: latency(0.05), websocket: ws(1, 30_000), websocketWindow: ws(16, 100_000), openLoop: openLoop(0.15, 1) }),
  ok('podgate-hs256', {
    idleRssKb: 50_000,
    throughput: throughput(30_000, 25),
    latency: latency(0.12),
    websocket: ws(1, 27_000),
    websocketWindow: ws(16, 50_000),
    openLoop: openLoop(0.36, 4.5),
    stream: { bytes: 1024 ** 3, mibPerS: 400, rssBeforeKb: 50_000, peakRssKb: 150_000 },
  }),
  ok('podgate-hs256-nocache', { throughput: throughput(20_000, 40) }),
  ok('nginx-lua-keepalive', { throughput: throughput(42_000, 23) }),
  ok('nginx-lua-cached', { throughput: throughput(58_000, 16), openLoop: openLoop(0.3, 2.5) }),
  ok('nginx-keepalive', { throughput: throughput(60_000, 15), websocketWindow: ws(16, 55_000) }),
  ok('chp', { throughput: throughput(9_000, 92, 30) }),
  ok('podgate-users-1', { idleRssKb: 50_000, throughput: throughput(30_000, 25) }),
  ok('podgate-users-100000', { idleRssKb: 50_000 + 100_000, throughput: throughput(29_000, 26) }),
  { id: 'podgate-es256', title: 'x', status: 'failed', reason: 'exited' },
]

const byGoal = (goals: GoalResult[], pattern: RegExp): GoalResult => {
  const goal = goals.find((candidate) => pattern.test(candidate.goal))
  if (goal === undefined) throw new Error(`no goal matching ${String(pattern)}`)
  return goal
}

void t.test('each goal is a ratio or bound over the paths it names', (t) => {
  const goals = evaluateGoals(results)
  t.match(byGoal(goals, /CPU per request/), { status: 'PASS', measured: '25.0 µs' })
  t.match(byGoal(goals, /configurable-http-proxy/), { status: 'PASS', measured: /^3\.33×/ })
  t.match(byGoal(goals, /cached verification/), { status: 'FAIL', measured: /^0\.52×/ })
  t.match(byGoal(goals, /cache off/), { status: 'FAIL', measured: /^0\.48×/ })
  t.match(byGoal(goals, /p50 latency added/), { status: 'PASS', measured: '0.070 ms' })
  t.match(byGoal(goals, /100,000 users routable vs 1/), { status: 'PASS', measured: /^0\.97×/ })
  // 100,000 KiB over 99,999 extra users is 1024 bytes each
  t.match(byGoal(goals, /RSS growth per routable user/), { status: 'PASS', measured: '1024 bytes' })
  t.match(byGoal(goals, /^WebSocket messages\/s through podgate/), { status: 'PASS', measured: /^0\.90×/ })
  t.match(byGoal(goals, /open-loop p50 at 50% of nginx \+ Lua's saturation rate/), { target: '≤ 1.3×', status: 'PASS', measured: '1.20× (0.360 / 0.300 ms; 10,000 req/s offered)' })
  t.match(byGoal(goals, /open-loop p99 at 50%/), { target: '≤ 1.5×', status: 'FAIL', measured: '1.80× (4.500 / 2.500 ms; 10,000 req/s offered)' })
  t.match(byGoal(goals, /several in flight/), { target: '≥ nginx\'s ratio', status: 'FAIL', measured: '0.50× vs 0.55× (50000, 55000 / 100000)' })
  t.match(byGoal(goals, /1 GiB streamed body/), { status: 'FAIL', measured: /^97\.7 MiB/ })
  t.end()
})

void t.test('goals whose paths did not run are SKIP, never PASS', (t) => {
  const goals = evaluateGoals([ok('direct', { throughput: throughput(40_000, null) })])
  t.same(new Set(goals.map((goal) => goal.status)), new Set(['SKIP']))
  t.end()
})

void t.test('the markdown report has the machine, every measured path, the goals, and what did not run', (t) => {
  const settings = parseSettings([])
  const report: BenchReport = {
    date: '2030-01-02T03:04:05.000Z',
    quick: false,
    machine: { cpuModel: 'Test CPU', cpus: 2, allowedCpus: [0, 1], memoryGiB: 8, node: 'v24.9.0', kernel: '6.1.0' },
    pinning: 'taskset: load generator on CPU 0, proxy on CPU 1',
    upstream: 'bench fixed responder',
    tools: { nginx: '1.22.1' },
    settings,
    elapsedS: 400,
    backgroundCpuPct: 20,
    paths: results,
    goals: evaluateGoals(results),
  }
  const markdown = toMarkdown(report)
  t.match(markdown, 'CPU: Test CPU, 2 CPUs (allowed: 0,1)')
  t.match(markdown, 'Node v24.9.0, Linux 6.1.0, nginx 1.22.1')
  t.match(markdown, 'taskset: load generator on CPU 0, proxy on CPU 1')
  t.match(markdown, 'the machine was busy')
  t.match(markdown, '| podgate-hs256 | 30.0k | 1.00 ms | 4.00 ms | 0.120 ms | 25.0 µs (25.0–25.0) | 58.6 MiB |')
  t.match(markdown, '| 100,000 | 29.0k |')
  t.match(markdown, '| chp † | 9000 |', 'a path whose runs were disturbed is marked')
  t.match(markdown, '† other programs took more than 5% of the CPU')
  t.match(markdown, '| 1 GiB | 400 |')
  t.match(markdown, '**podgate-es256** failed: exited')
  t.match(markdown, /\| podgate \(cache on\) vs nginx \+ Lua cached verification, req\/s \| ≥ 0\.6× \| 0\.52× \(30000 \/ 58000\) \| FAIL \|/)

  const dir = mkdtempSync(join(tmpdir(), 'bench-report-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const written = writeReport(report, dir)
  t.equal(written.json, join(dir, 'results', '2030-01-02.json'))
  t.same(JSON.parse(readFileSync(written.json, 'utf8')), JSON.parse(JSON.stringify(report)))
  t.equal(readFileSync(written.markdown, 'utf8'), markdown)
  t.end()
})

void t.test('the open-loop goals say when a rate was not held, or why they were not measured', (t) => {
  const notHeld = evaluateGoals([ok('podgate-hs256', { openLoop: openLoop(0.5, 9, 3) }), ok('nginx-lua-cached', { openLoop: openLoop(0.3, 2.5) })])
  t.match(byGoal(notHeld, /open-loop p50/), { status: 'FAIL', measured: '1.67× (0.500 / 0.300 ms; 10,000 req/s offered; podgate did not hold the rate)' })
  const why = 'vegeta v12.13.0 is not in /x (--no-install); run: GOBIN=/x go install github.com/tsenart/vegeta/v12@v12.13.0'
  const missing = evaluateGoals([ok('podgate-hs256', { notMeasured: { openloop: why } }), ok('nginx-lua-cached', { notMeasured: { openloop: why } })])
  t.match(byGoal(missing, /open-loop p99/), { status: 'SKIP', measured: `not measured: ${why}` })
  t.end()
})

void t.test('a miss says beside it what the Node floor (and nginx, for the WebSocket round trip) measured in the same run', (t) => {
  const withFloor = [...results, ok('node-minimal', { throughput: throughput(33_000, 22), latency: latency(0.11), openLoop: openLoop(0.33, 3) }), ok('nginx-keepalive', { throughput: throughput(60_000, 15), websocket: ws(1, 24_000), websocketWindow: ws(16, 55_000) })]
  const goals = evaluateGoals(withFloor)
  t.match(byGoal(goals, /CPU per request/), { measured: '25.0 µs (node-minimal: 22.0 µs)' })
  t.match(byGoal(goals, /p50 latency added/), { measured: '0.070 ms (node-minimal: 0.060 ms)' })
  t.match(byGoal(goals, /open-loop p50/), { measured: '1.20× (0.360 / 0.300 ms; 10,000 req/s offered; node-minimal: 1.10×)' })
  t.match(byGoal(goals, /open-loop p99/), { measured: '1.80× (4.500 / 2.500 ms; 10,000 req/s offered; node-minimal: 1.20×)' })
  t.match(byGoal(goals, /WebSocket messages\/s through podgate vs direct/), { measured: '0.90× (27000 / 30000; nginx: 0.80×)' })
  t.match(byGoal(evaluateGoals(results), /CPU per request/), { measured: '25.0 µs' }, 'nothing beside it without the floor')
  t.end()
})

void t.test('the gap to the floor is a ratio of CPU per request, with the floor that sends podgate\'s default headers beside it', (t) => {
  const podgate = ok('podgate-hs256', { throughput: throughput(20_000, 36.3) })
  const floor = ok('node-minimal', { throughput: throughput(30_000, 30) })
  const gap = (paths: PathResult[]): GoalResult => byGoal(evaluateGoals(paths), /vs the Node floor/)
  t.same(gap([podgate, floor]), { goal: 'podgate CPU per request vs the Node floor (node-minimal), every default feature on', target: '≤ 1.1×', measured: '1.21× (36.3 / 30.0 µs)', status: 'FAIL' })
  t.match(gap([podgate, floor, ok('node-minimal-wire', { throughput: throughput(28_000, 33) })]), {
    measured: '1.21× (36.3 / 30.0 µs; node-minimal-wire, the floor sending podgate\'s default request headers: 33.0 µs, 1.10× the floor, podgate 1.10× it)',
  })
  t.match(gap([ok('podgate-hs256', { throughput: throughput(20_000, 32.9) }), floor]), { measured: '1.10× (32.9 / 30.0 µs)', status: 'PASS' }, 'the bound itself passes')
  t.match(gap([podgate]), { measured: 'not measured', status: 'SKIP' })
  t.end()
})

void t.test('the open-loop goals say beside the ratio how busy each proxy\'s core was at that rate', (t) => {
  const busy = (podgate: PathResult['openLoop'], nginx: PathResult['openLoop'], floor: PathResult['openLoop']): GoalResult[] =>
    evaluateGoals([ok('podgate-hs256', { openLoop: podgate }), ok('nginx-lua-cached', { openLoop: nginx }), ok('node-minimal', { openLoop: floor })])
  const all = busy(openLoop(0.36, 4.5, 0.1, 62), openLoop(0.3, 2.5, 0.1, 41), openLoop(0.33, 3, 0.1, 55))
  t.match(byGoal(all, /open-loop p50/), { measured: '1.20× (0.360 / 0.300 ms; 10,000 req/s offered; node-minimal: 1.10×; proxy busy: podgate 62%, nginx + Lua 41%, node-minimal 55%)' })
  t.match(byGoal(all, /open-loop p99/), { measured: '1.80× (4.500 / 2.500 ms; 10,000 req/s offered; node-minimal: 1.20×; proxy busy: podgate 62%, nginx + Lua 41%, node-minimal 55%)' })
  const notHeld = busy(openLoop(0.5, 9, 3, 97), openLoop(0.3, 2.5), openLoop(0.33, 3))
  t.match(byGoal(notHeld, /open-loop p50/), { measured: '1.67× (0.500 / 0.300 ms; 10,000 req/s offered; node-minimal: 1.10×; proxy busy: podgate 97%; podgate did not hold the rate)' }, 'only the shares measured')
  t.end()
})
