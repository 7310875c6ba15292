import t from 'tap'
import { capToLoadGenerator, loopbackSource, offeredRates, openLoopBasis, summarizeOpenLoop } from '../open-loop.ts'
import type { OpenLoopSample } from '../open-loop.ts'
import { parseSettings } from '../settings.ts'
import type { OpenLoopRun } from '../vegeta-results.ts'

const settings = parseSettings([])

void t.test('the rates are shares of nginx + Lua\'s saturation rate in this run, or of the stated fallback', (t) => {
  t.same(openLoopBasis(25_875.4, settings), { rps: 25_875.4, source: 'nginx-lua-cached' })
  for (const missing of [undefined, Number.NaN, 0]) t.same(openLoopBasis(missing, settings), { rps: 16_000, source: 'fixed' })
  t.same(offeredRates({ rps: 25_875.4, source: 'nginx-lua-cached' }, settings.openLoopShares), [{ share: 0.25, rps: 6469 }, { share: 0.5, rps: 12_938 }, { share: 0.75, rps: 19_407 }])
  t.same(offeredRates({ rps: 2, source: 'fixed' }, [0.1]), [{ share: 0.1, rps: 1 }], 'never a rate of 0')
  t.end()
})

/** A 2 s run after 0.5 s of warm-up, the last answer read right at its end. */
function run (offeredRps: number, p50Ms: number, extra: Partial<OpenLoopRun> = {}): OpenLoopRun {
  const sent = offeredRps * 2
  return { offeredRps, durationS: 2, sent, ok: sent, sentWithWarmup: offeredRps * 2.5, spanS: 2.5, achievedRps: offeredRps, p50Ms, p99Ms: p50Ms * 4, p999Ms: p50Ms * 10, sendLagP99Ms: 0.05, statusCodes: { 200: sent }, ...extra }
}

void t.test('runs are summarized per rate: median percentiles, worst send lag, failures, largest RSS', (t) => {
  const samples: OpenLoopSample[] = [
    { share: 0.25, run: run(1000, 0.3), rssKb: 100, proxyCpuS: null },
    { share: 0.5, run: run(2000, 0.4, { sendLagP99Ms: 0.2 }), rssKb: 120, proxyCpuS: null },
    { share: 0.25, run: run(1000, 0.5, { ok: 1999 }), rssKb: 110, proxyCpuS: null },
    { share: 0.5, run: run(2000, 0.6), rssKb: null, proxyCpuS: null },
    { share: 0.25, run: run(1000, 0.4, { sendLagP99Ms: 0.3 }), rssKb: 90, proxyCpuS: null },
  ]
  const result = summarizeOpenLoop({ rps: 4000, source: 'nginx-lua-cached' }, samples, 2)
  t.same(result.rates.map((rate) => rate.share), [0.25, 0.5])
  const [quarter, half] = result.rates
  t.match(quarter, { offeredRps: 1000, sent: 6000, failed: 1, sendLagP99Ms: 0.3, rssKb: 110, held: true })
  t.match(quarter!.p50Ms, { median: 0.4, min: 0.3, max: 0.5 })
  t.equal(quarter!.runs.length, 3)
  t.match(half, { offeredRps: 2000, sent: 8000, failed: 0, rssKb: 120, held: true })
  t.match(half!.p99Ms, { median: 2, min: 1.6, max: 2.4 })
  t.equal(quarter!.cpuUsPerRequest, null, 'no proxy, no proxy CPU')
  t.equal(quarter!.busyPct, null)
  t.end()
})

void t.test('the proxy\'s CPU over a run is divided by every request sent, the warm-up\'s too, and by the run\'s span', (t) => {
  // 4,000 req/s: 8,000 requests counted, 10,000 sent in 2.5 s with the warm-up
  const samples: OpenLoopSample[] = [
    { share: 0.5, run: run(4000, 0.3), rssKb: null, proxyCpuS: 0.75 },
    { share: 0.5, run: run(4000, 0.3), rssKb: null, proxyCpuS: 1 },
    { share: 0.5, run: run(4000, 0.3), rssKb: null, proxyCpuS: 0.5 },
    { share: 0.25, run: run(2000, 0.2, { spanS: 2 }), rssKb: null, proxyCpuS: 0.5 },
  ]
  const [half, quarter] = summarizeOpenLoop({ rps: 8000, source: 'nginx-lua-cached' }, samples, 2).rates
  t.match(half!.cpuUsPerRequest, { median: 75, min: 50, max: 100 }, 'µs per request: 0.75 s over 10,000 requests, not over the 8,000 counted')
  t.match(half!.busyPct, { median: 30, min: 20, max: 40 }, 'percent of one core: 0.75 s of CPU in 2.5 s')
  t.match(quarter, { cpuUsPerRequest: { median: 100 }, busyPct: { median: 25 } }, 'the span is the run\'s own, not the schedule\'s')
  t.end()
})

void t.test('a run without a proxy, without requests or without a span has no CPU per request or busy share; the others at its rate still count', (t) => {
  const samples: OpenLoopSample[] = [
    { share: 0.5, run: run(1000, 0.3), rssKb: null, proxyCpuS: 0.25 },
    { share: 0.5, run: run(1000, 0.3), rssKb: null, proxyCpuS: null },
    { share: 0.5, run: run(1000, 0, { sent: 0, ok: 0, sentWithWarmup: 0, spanS: 0 }), rssKb: null, proxyCpuS: 0.5 },
  ]
  const [rate] = summarizeOpenLoop({ rps: 2000, source: 'nginx-lua-cached' }, samples, 2).rates
  t.same(rate!.cpuUsPerRequest, { median: 100, min: 100, max: 100, spreadPct: 0 })
  t.same(rate!.busyPct, { median: 10, min: 10, max: 10, spreadPct: 0 })
  t.end()
})

void t.test('a rate is not held when vegeta fell behind, could not send, or too many requests failed', (t) => {
  const held = (extra: Partial<OpenLoopRun>): boolean => summarizeOpenLoop({ rps: 4000, source: 'fixed' }, [{ share: 0.5, run: run(1000, 0.3, extra), rssKb: null, proxyCpuS: null }], 2).rates[0]!.held
  t.ok(held({}))
  t.ok(held({ sendLagP99Ms: 1.5 }), 'up to 2 ms late: Go\'s millisecond timers')
  t.notOk(held({ sendLagP99Ms: 2.5 }), 'sent more than 2 ms late')
  t.notOk(held({ sent: 1900, ok: 1900 }), 'only 95% of the schedule sent')
  t.ok(held({ ok: 1998 }), '0.1% failed is still held')
  t.notOk(held({ ok: 1997 }), 'more than 0.1% failed')
  t.end()
})

void t.test('a run that sent nothing past its warm-up is left out of the percentiles and the rate is not held', (t) => {
  const empty = run(1000, 0, { sent: 0, ok: 0, p99Ms: 0, p999Ms: 0, sendLagP99Ms: 0, statusCodes: {} })
  const samples: OpenLoopSample[] = [
    { share: 0.5, run: run(1000, 0.3), rssKb: null, proxyCpuS: null },
    { share: 0.5, run: empty, rssKb: null, proxyCpuS: null },
    { share: 0.5, run: run(1000, 0.5), rssKb: null, proxyCpuS: null },
  ]
  const [rate] = summarizeOpenLoop({ rps: 2000, source: 'nginx-lua-cached' }, samples, 2).rates
  t.match(rate!.p50Ms, { median: 0.4, min: 0.3, max: 0.5 })
  t.equal(rate!.runs.length, 3, 'the empty run is still reported')
  t.equal(rate!.held, false, 'a third of the schedule never sent')
  t.end()
})

void t.test('the basis is lowered until the control path holds the highest share', async (t) => {
  const basis = { rps: 20_000, source: 'nginx-lua-cached' }
  const offered: number[] = []
  // the load generator holds up to 10,000 req/s
  const probe = (rps: number): Promise<OpenLoopRun> => {
    offered.push(rps)
    return Promise.resolve(run(rps, 0.2, { sendLagP99Ms: rps > 10_000 ? 6 : 1.1 }))
  }
  const capped = await capToLoadGenerator(basis, [0.25, 0.5, 0.75], probe)
  t.same(offered, [15_000, 15_000, 12_750, 12_750, 10_838, 10_838, 9212], 'each rate tried twice before it is lowered')
  t.equal(Math.round(capped.rps), 12_283)
  t.same(capped.capped, { fromRps: 20_000, tries: [{ rps: 15_000, sendLagP99Ms: 6, held: false }, { rps: 12_750, sendLagP99Ms: 6, held: false }, { rps: 10_838, sendLagP99Ms: 6, held: false }, { rps: 9212, sendLagP99Ms: 1.1, held: true }] })
  t.same(offeredRates(capped, [0.75]), [{ share: 0.75, rps: 9212 }])

  offered.length = 0
  const low = { rps: 8000, source: 'nginx-lua-cached' }
  t.equal(await capToLoadGenerator(low, [0.25, 0.5, 0.75], probe), low, 'held at once: the same basis, not capped')
  t.same(offered, [6000])

  const never = await capToLoadGenerator(basis, [0.75], (rps) => Promise.resolve(run(rps, 0.2, { sendLagP99Ms: 50 })))
  t.equal(never.capped?.tries.length, 5, 'gives up after five rates')
  t.notOk(never.capped?.tries.some((attempt) => attempt.held))
})

void t.test('each run sends from its own loopback address, never 127.0.x.x where the other paths\' connections are', (t) => {
  const seen = new Set<string>()
  for (let i = 0; i < 200; i++) {
    const address = loopbackSource()
    t.match(address, /^127\.(\d+)\.(\d+)\.(\d+)$/)
    const [, b, c, d] = address.split('.').map(Number)
    t.ok(b! >= 1 && b! <= 254 && c! >= 0 && c! <= 255 && d! >= 1 && d! <= 254, address)
    seen.add(address)
  }
  t.ok(seen.size > 190, 'different addresses from run to run')
  t.end()
})

void t.test('a rate the second try holds is not lowered', async (t) => {
  let calls = 0
  const flaky = (rps: number): Promise<OpenLoopRun> => Promise.resolve(run(rps, 0.2, { sendLagP99Ms: ++calls === 1 ? 9 : 1.1 }))
  const basis = { rps: 20_000, source: 'nginx-lua-cached' }
  t.equal(await capToLoadGenerator(basis, [0.75], flaky), basis)
  t.equal(calls, 2)
})
