// The W3C traceparent check, the pooled ids and the header edits, directly (they are pure).
import t from 'tap'
import { dropTraceContext, formatTraceparent, isValidTraceparent, parseTraceparent, TraceIds } from '../../src/tracing/context.ts'

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736'
const PARENT = '00f067aa0ba902b7'
const VALID = `00-${TRACE}-${PARENT}-01`

void t.test('traceparent validity follows W3C Trace Context §3.2', (t) => {
  const cases: [string, boolean, string][] = [
    [VALID, true, 'version 00, sampled'],
    [`00-${TRACE}-${PARENT}-00`, true, 'not sampled'],
    [`00-${TRACE}-${PARENT}-ff`, true, 'unknown flags are kept'],
    [`01-${TRACE}-${PARENT}-01`, true, 'a later version, 55 characters'],
    [`cc-${TRACE}-${PARENT}-01-what-the-future-adds`, true, 'a later version may have more after a dash'],
    [`cc-${TRACE}-${PARENT}-01x`, false, 'a later version: more only after a dash'],
    [`00-${TRACE}-${PARENT}-01-extra`, false, 'version 00 is exactly 55 characters'],
    [`ff-${TRACE}-${PARENT}-01`, false, 'version ff is invalid'],
    [`00-${'0'.repeat(32)}-${PARENT}-01`, false, 'all-zero trace id'],
    [`00-${TRACE}-${'0'.repeat(16)}-01`, false, 'all-zero parent id'],
    [`00-${TRACE.toUpperCase()}-${PARENT}-01`, false, 'upper-case hex'],
    [`00-${TRACE}-${PARENT}-1`, false, 'short flags'],
    [`00_${TRACE}-${PARENT}-01`, false, 'wrong separator'],
    [`00-${TRACE.slice(1)}g-${PARENT}-01`, false, 'not hex'],
    [`${VALID}, ${VALID}`, false, 'two headers joined'],
    ['', false, 'empty'],
  ]
  for (const [value, valid, why] of cases) t.equal(isValidTraceparent(value), valid, why)
  t.same(parseTraceparent(VALID), { traceId: TRACE, parentId: PARENT, flags: 1 })
  t.equal(parseTraceparent([VALID, VALID]), undefined, 'an array is not one header')
  t.equal(parseTraceparent(undefined), undefined)
  t.equal(formatTraceparent(TRACE, PARENT, false), `00-${TRACE}-${PARENT}-00`)
  t.end()
})

void t.test('ids are random, valid, and a reserved span id is handed out once', (t) => {
  const ids = new TraceIds()
  const seen = new Set<string>()
  const wrong: string[] = []
  // More than one pool of randomness, so a refill is crossed.
  for (let i = 0; i < 1000; i++) {
    const traceparent = ids.newTraceparent()
    if (!isValidTraceparent(traceparent) || !traceparent.endsWith('-01')) wrong.push(traceparent)
    seen.add(traceparent.slice(3, 35))
    const span = ids.generateSpanId()
    const traceId = ids.generateTraceId()
    if (!/^[0-9a-f]{16}$/.test(span) || !/^[0-9a-f]{32}$/.test(traceId)) wrong.push(`${span} ${traceId}`)
  }
  t.same(wrong, [], 'every traceparent valid and sampled, every id lower-case hex of its length')
  t.equal(seen.size, 1000, 'no trace id repeats')
  ids.reserveSpanId(PARENT)
  t.equal(ids.generateSpanId(), PARENT)
  t.not(ids.generateSpanId(), PARENT, 'only once')
  ids.reserveSpanId(PARENT)
  ids.reserveSpanId(undefined)
  t.not(ids.generateSpanId(), PARENT, 'a cancelled reservation is not used')
  t.end()
})

void t.test('ids are the pool\'s bytes in order, and an all-zero draw is made valid', (t) => {
  let fills = 0
  // The first pool's bytes count up from 0, every later pool is all zeros.
  const ids = new TraceIds((buffer) => {
    fills++
    for (let i = 0; i < buffer.length; i++) buffer[i] = fills === 1 ? i & 0xff : 0
  })
  t.equal(ids.newTraceparent(), `00-000102030405060708090a0b0c0d0e0f-1011121314151617-01`, 'bytes 0–23, hex, in order')
  t.equal(ids.generateSpanId(), '18191a1b1c1d1e1f', 'the next 8 bytes')
  t.equal(ids.generateTraceId(), '202122232425262728292a2b2c2d2e2f')
  const zero = new TraceIds((buffer) => { buffer.fill(0) })
  t.equal(zero.generateTraceId(), `${'0'.repeat(31)}1`, 'an all-zero trace id ends in 1')
  t.equal(zero.generateSpanId(), `${'0'.repeat(15)}1`, 'an all-zero span id too')
  t.ok(isValidTraceparent(zero.newTraceparent()))
  // 4,080 bytes per pool: 170 traceparents of 24 bytes use the first one up exactly.
  for (let i = 0; i < 168; i++) ids.newTraceparent()
  t.equal(fills, 1, 'one fill for 170 traceparents')
  t.equal(ids.newTraceparent(), `00-${'0'.repeat(31)}1-${'0'.repeat(15)}1-01`, 'a refill starts at the new pool\'s first byte')
  t.equal(fills, 2)
  t.end()
})

void t.test('dropTraceContext removes every copy, any case, and keeps the rest in order', (t) => {
  const headers = ['x-user-id', 'alice', 'TraceParent', 'a', 'accept', '*/*', 'tracestate', 'k=v', 'traceparent', 'b', 'Tracestate', 'x=y']
  const withState = [...headers]
  dropTraceContext(withState, true)
  t.same(withState, ['x-user-id', 'alice', 'accept', '*/*'])
  const withoutState = [...headers]
  dropTraceContext(withoutState, false)
  t.same(withoutState, ['x-user-id', 'alice', 'accept', '*/*', 'tracestate', 'k=v', 'Tracestate', 'x=y'])
  t.end()
})
