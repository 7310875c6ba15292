import t from 'tap'
import { OpenLoopTally, parseResultLine } from '../vegeta-results.ts'
import type { VegetaResult } from '../vegeta-results.ts'

// Lines as `vegeta encode --to json` (v12.13.0) writes them.
const OK_LINE = '{"attack":"","seq":7,"code":200,"timestamp":"2026-11-26T06:09:15.540502867Z","latency":2801701,"bytes_out":0,"bytes_in":0,"error":"","body":null,' +
  '"method":"GET","url":"http://127.0.0.1:18731/fixed","headers":{"Content-Length":["100"]}}'
const REFUSED_LINE = '{"attack":"","seq":1,"code":0,"timestamp":"2026-11-26T06:09:16.9041946+01:00","latency":479174,"bytes_out":0,"bytes_in":0,' +
  '"error":"Get \\"http://127.0.0.1:1/\\": dial tcp 0.0.0.0:0-\\u003e127.0.0.1:1: connect: connection refused","body":null,"method":"GET","url":"http://127.0.0.1:1/","headers":null}'

void t.test('a result line gives the schedule slot, status, send time to the nanosecond, latency and error', (t) => {
  t.same(parseResultLine(OK_LINE), { seq: 7, code: 200, sentS: Date.UTC(2026, 10, 26, 6, 9, 15) / 1000, sentNs: 540_502_867, latencyNs: 2_801_701, error: '' })
  const refused = parseResultLine(REFUSED_LINE)
  t.equal(refused.sentS, Date.UTC(2026, 10, 26, 5, 9, 16) / 1000, 'the zone offset is applied')
  t.equal(refused.sentNs, 904_194_600, 'fewer than nine digits are a fraction, not nanoseconds')
  t.match(refused, { code: 0, error: /connection refused/ })
  t.end()
})

void t.test('a line that is not a vegeta result is an error that shows the line', (t) => {
  t.throws(() => parseResultLine('Gob encoded garbage'), { message: /vegeta result is not JSON: Gob encoded garbage/ })
  t.throws(() => parseResultLine('{"seq":1,"code":200}'), { message: /lacks seq, code, latency or timestamp/ })
  t.throws(() => parseResultLine('{"seq":1,"code":200,"latency":5,"timestamp":"yesterday"}'), { message: /unreadable timestamp: yesterday/ })
  t.end()
})

/** A result sent `lateMs` after its slot in a 1,000 req/s schedule that started at second 100. */
function result (seq: number, latencyMs: number, options: { lateMs?: number, code?: number, error?: string } = {}): VegetaResult {
  const sentAtNs = seq * 1e6 + (options.lateMs ?? 0) * 1e6
  return { seq, code: options.code ?? 200, sentS: 100 + Math.floor(sentAtNs / 1e9), sentNs: sentAtNs % 1e9, latencyNs: latencyMs * 1e6, error: options.error ?? '' }
}

void t.test('the warm-up is left out by schedule slot, and p50, p99 and p99.9 come from the rest', (t) => {
  const tally = new OpenLoopTally({ rate: 1000, warmupS: 0.5 })
  // 500 warm-up requests, all slow: none of them may count
  for (let seq = 0; seq < 500; seq++) tally.add(result(seq, 50))
  // 2,000 counted: 1,978 at 0.2 ms, 20 at 0.7 ms, 2 at 0.95 ms (1 µs steps below 1 ms: exact)
  for (let seq = 500; seq < 2500; seq++) tally.add(result(seq, seq < 2478 ? 0.2 : seq < 2498 ? 0.7 : 0.95))
  const summary = tally.summary(2)
  t.match(summary, { offeredRps: 1000, durationS: 2, sent: 2000, ok: 2000, achievedRps: 1000, p50Ms: 0.2, p99Ms: 0.7, p999Ms: 0.95, sendLagP99Ms: 0, statusCodes: { 200: 2000 } })
  t.notOk('firstError' in summary)
  t.end()
})

void t.test('the whole attack, warm-up included, is counted for the proxy\'s CPU: every request sent, and first send to last answer', (t) => {
  const tally = new OpenLoopTally({ rate: 1000, warmupS: 0.5 })
  // the first warm-up request is answered last of its 500: 40 ms, still before the counted ones end
  for (let seq = 0; seq < 500; seq++) tally.add(result(seq, seq === 0 ? 40 : 1))
  // 2,000 counted; the last one sent (2.499 s) is answered after 3 ms
  for (let seq = 500; seq < 2500; seq++) tally.add(result(seq, seq === 2499 ? 3 : 0.2))
  t.match(tally.summary(2), { sent: 2000, sentWithWarmup: 2500, spanS: 2.502 })

  const slowStart = new OpenLoopTally({ rate: 1000, warmupS: 0.5 })
  // answered in reverse order of sending; the warm-up's first request is the last answered (at 3 s)
  for (let seq = 999; seq >= 0; seq--) slowStart.add(result(seq, seq === 0 ? 3000 : 0.2))
  t.match(slowStart.summary(0.5), { sent: 500, sentWithWarmup: 1000, spanS: 3 })

  t.match(new OpenLoopTally({ rate: 1000, warmupS: 0.5 }).summary(2), { sent: 0, sentWithWarmup: 0, spanS: 0 }, 'nothing sent: no span')
  t.end()
})

void t.test('results arrive in any order; the send lag is measured from the earliest on-time request', (t) => {
  const tally = new OpenLoopTally({ rate: 1000, warmupS: 0 })
  // 100 requests; the last 5 went out 0.4 ms late, and they arrive first
  const results = Array.from({ length: 100 }, (_, seq) => result(seq, 0.3, { lateMs: seq >= 95 ? 0.4 : 0 }))
  for (const one of results.reverse()) tally.add(one)
  t.match(tally.summary(0.1), { sendLagP99Ms: 0.4, p50Ms: 0.3 })
  t.end()
})

void t.test('failures count as sent, not served, with their latency, status and first error', (t) => {
  const tally = new OpenLoopTally({ rate: 100, warmupS: 0 })
  for (let seq = 0; seq < 98; seq++) tally.add(result(seq, 1))
  tally.add(result(98, 5000, { code: 0, error: 'timeout' }))
  tally.add(result(99, 2, { code: 502 }))
  const summary = tally.summary(1)
  t.match(summary, { sent: 100, sentWithWarmup: 100, ok: 98, achievedRps: 98, statusCodes: { 0: 1, 200: 98, 502: 1 }, firstError: 'timeout' })
  t.ok(summary.p999Ms >= 5000, `the timed-out request is the slowest: p99.9 ${summary.p999Ms} ms`)
  t.end()
})

void t.test('an impossible rate or warm-up is refused with the values', (t) => {
  t.throws(() => new OpenLoopTally({ rate: 0, warmupS: 0 }), { message: /rate must be > 0 and warmupS >= 0, got 0 and 0/ })
  t.throws(() => new OpenLoopTally({ rate: 10, warmupS: -1 }), { message: /got 10 and -1/ })
  t.end()
})
