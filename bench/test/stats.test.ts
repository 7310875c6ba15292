import t from 'tap'
import { LatencyHistogram } from '../histogram.ts'
import { summarize } from '../stats.ts'

void t.test('summarize: median of odd and even counts, spread relative to the median', (t) => {
  t.same(summarize([3, 1, 2]), { median: 2, min: 1, max: 3, spreadPct: 100 })
  t.same(summarize([10, 40, 20, 30]), { median: 25, min: 10, max: 40, spreadPct: 120 })
  t.same(summarize([5]), { median: 5, min: 5, max: 5, spreadPct: 0 })
  t.end()
})

void t.test('summarize: ignores non-finite values, and an empty input gives NaN rather than a made-up number', (t) => {
  t.equal(summarize([Number.NaN, 4, Number.POSITIVE_INFINITY]).median, 4)
  t.ok(Number.isNaN(summarize([]).median))
  t.end()
})

void t.test('histogram: microsecond resolution below 1 ms', (t) => {
  const histogram = new LatencyHistogram()
  for (let us = 1; us <= 1000; us++) histogram.record(us / 1000)
  t.equal(histogram.count, 1000)
  t.equal(histogram.percentileMs(50), 0.5)
  t.equal(histogram.percentileMs(99), 0.99)
  t.equal(histogram.percentileMs(100), 1.005, 'values from 1 ms on fall in 10 µs buckets, reported at the middle')
  t.ok(Math.abs(histogram.meanMs - 0.5005) < 1e-9)
  t.end()
})

void t.test('histogram: three significant digits at larger values, capped at 10 s', (t) => {
  const histogram = new LatencyHistogram()
  histogram.record(12.345)
  t.ok(Math.abs(histogram.percentileMs(50) - 12.345) <= 0.05, `12.345 ms read back as ${histogram.percentileMs(50)}`)
  histogram.record(60_000)
  t.ok(histogram.percentileMs(100) <= 10_000 && histogram.percentileMs(100) > 9_900)
  t.end()
})

void t.test('histogram: ignores negative and non-finite values; empty reads as 0', (t) => {
  const histogram = new LatencyHistogram()
  t.equal(histogram.percentileMs(99), 0)
  histogram.record(-1)
  histogram.record(Number.NaN)
  t.equal(histogram.count, 0)
  t.end()
})
