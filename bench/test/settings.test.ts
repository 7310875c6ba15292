import t from 'tap'
import { parseSettings, selected } from '../settings.ts'

void t.test('defaults: 64 connections, 5 runs of 3 s, a 1 GiB body, up to 100,000 users, under the time budget', (t) => {
  const settings = parseSettings([])
  t.match(settings, { quick: false, connections: 64, runs: 5, latencyRuns: 3, durationS: 3, streamBytes: 1024 ** 3, upstream: 'auto', install: true })
  t.same(settings.userCounts, [1, 1000, 10_000, 100_000])
  t.ok(settings.budgetS < 600)
  t.end()
})

void t.test('open loop at 25, 50 and 75% of the reference rate (16,000 req/s when not measured); WebSocket throughput with 16 in flight', (t) => {
  t.match(parseSettings([]), { openLoopShares: [0.25, 0.5, 0.75], openLoopFallbackRps: 16_000, openLoopRuns: 5, openLoopDurationS: 3, openLoopWarmupS: 0.5, wsWindow: 16 })
  t.match(parseSettings(['--quick']), { openLoopShares: [0.25, 0.5, 0.75], openLoopRuns: 1, openLoopDurationS: 1, wsWindow: 16 })
  t.end()
})

void t.test('--quick: one short run of everything', (t) => {
  const settings = parseSettings(['--quick', '--only', 'direct,nginx', '--out', '/tmp/x', '--upstream', 'fixed', '--no-install'])
  t.match(settings, { quick: true, runs: 1, durationS: 1, warmupS: 0, outDir: '/tmp/x', upstream: 'fixed', install: false })
  t.same(settings.only, ['direct', 'nginx'])
  t.end()
})

void t.test('bad usage is a UsageError that shows the usage', (t) => {
  t.throws(() => parseSettings(['--bogus']), { name: 'UsageError', message: /Unknown option '--bogus'/ })
  t.throws(() => parseSettings(['--upstream', 'nginx']), { message: /--upstream: expected auto, backend or fixed[\s\S]*usage:/ })
  t.throws(() => parseSettings(['--help']), { message: /^usage:/ })
  t.end()
})

void t.test('--only matches whole ids and dash-separated prefixes', (t) => {
  const settings = parseSettings(['--only', 'nginx,podgate-hs256'])
  t.ok(selected(settings, 'nginx-lua-cached'))
  t.ok(selected(settings, 'podgate-hs256'))
  t.ok(selected(settings, 'podgate-hs256-nocache'))
  t.notOk(selected(settings, 'podgate-es256'))
  t.notOk(selected(settings, 'nginxish'))
  t.ok(selected(parseSettings([]), 'anything'), 'no --only selects everything')
  t.end()
})
