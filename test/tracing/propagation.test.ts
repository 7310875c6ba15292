// PODGATE_TRACE_CONTEXT without an exporter, through a real gateway to a real backend that
// echoes the headers it received: continue keeps a valid client traceparent (and its
// tracestate) as sent and starts a sampled trace otherwise; restart always starts one; off
// passes the client's headers untouched and adds none. WebSocket upgrades carry it the same way.
import t, { type Test } from 'tap'
import { request } from 'undici'
import { WebSocket } from 'ws'
import { isValidTraceparent } from '../../src/tracing/context.ts'
import { startTestGateway, type TestGateway } from '../support/gateway.ts'

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736'
const VALID = `00-${TRACE}-00f067aa0ba902b7-01`
const STATE = 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE'
const INVALID = [
  `ff-${TRACE}-00f067aa0ba902b7-01`,
  `00-${TRACE.toUpperCase()}-00f067aa0ba902b7-01`,
  `00-${'0'.repeat(32)}-00f067aa0ba902b7-01`,
  `${VALID}-extra`,
  'garbage',
]

interface PodView { traceparent?: string, tracestate?: string }

async function gateway (t: Test, mode?: string): Promise<{ gw: TestGateway, token: string }> {
  const gw = await startTestGateway(t, mode === undefined ? {} : { PODGATE_TRACE_CONTEXT: mode })
  await gw.backend('alice')
  return { gw, token: await gw.token('alice') }
}

/** What the pod received of the trace context, for a request with `headers` (raw pairs: repeats allowed). */
async function podSees (gw: TestGateway, token: string, headers: string[] = []): Promise<PodView> {
  const { statusCode, body } = await request(`${gw.url}/`, { headers: ['authorization', `Bearer ${token}`, ...headers] })
  const echoed = await body.json() as { headers: PodView }
  if (statusCode !== 200) throw new Error(`status ${statusCode}`)
  return { traceparent: echoed.headers.traceparent, tracestate: echoed.headers.tracestate }
}

void t.test('continue (the default): a valid traceparent and its tracestate reach the pod as sent', async (t) => {
  const { gw, token } = await gateway(t)
  t.same(await podSees(gw, token, ['traceparent', VALID, 'tracestate', STATE]), { traceparent: VALID, tracestate: STATE })
  const future = `cc-${TRACE}-00f067aa0ba902b7-01-more`
  t.same(await podSees(gw, token, ['TraceParent', future]), { traceparent: future, tracestate: undefined }, 'a later version, any case, is continued')
})

void t.test('continue: without a traceparent a new sampled trace starts, each request its own', async (t) => {
  const { gw, token } = await gateway(t, 'continue')
  const first = await podSees(gw, token)
  const second = await podSees(gw, token, ['tracestate', STATE])
  for (const seen of [first, second]) {
    t.ok(isValidTraceparent(seen.traceparent ?? ''), `valid: ${seen.traceparent}`)
    t.match(seen.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/, 'version 00, sampled')
  }
  t.not(first.traceparent?.slice(3, 35), second.traceparent?.slice(3, 35), 'a trace per request')
  t.equal(second.tracestate, undefined, 'a tracestate without a traceparent belongs to no trace: dropped')
})

void t.test('continue: an invalid traceparent is replaced, and its tracestate dropped', async (t) => {
  const { gw, token } = await gateway(t, 'continue')
  for (const invalid of INVALID) {
    const seen = await podSees(gw, token, ['traceparent', invalid, 'tracestate', STATE])
    t.ok(isValidTraceparent(seen.traceparent ?? '') && seen.traceparent !== invalid, `${invalid} → ${seen.traceparent}`)
    t.equal(seen.tracestate, undefined)
  }
  const twice = await podSees(gw, token, ['traceparent', VALID, 'traceparent', VALID])
  t.ok(isValidTraceparent(twice.traceparent ?? ''), 'two traceparent headers are invalid together: one new one')
  t.not(twice.traceparent?.slice(3, 35), TRACE)
})

void t.test('restart: the client\'s trace context never reaches the pod', async (t) => {
  const { gw, token } = await gateway(t, 'restart')
  const seen = await podSees(gw, token, ['traceparent', VALID, 'tracestate', STATE])
  t.ok(isValidTraceparent(seen.traceparent ?? ''))
  t.not(seen.traceparent?.slice(3, 35), TRACE, 'a new trace id')
  t.equal(seen.tracestate, undefined)
})

void t.test('off: the client\'s headers pass untouched, and podgate adds none', async (t) => {
  const { gw, token } = await gateway(t, 'off')
  t.same(await podSees(gw, token), { traceparent: undefined, tracestate: undefined })
  t.same(await podSees(gw, token, ['traceparent', 'garbage', 'tracestate', STATE]), { traceparent: 'garbage', tracestate: STATE })
})

void t.test('a WebSocket upgrade carries the trace context too', async (t) => {
  const { gw, token } = await gateway(t, 'continue')
  const greeting = async (headers: Record<string, string>): Promise<PodView> => {
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/ws?greet`, { headers: { authorization: `Bearer ${token}`, ...headers } })
    t.teardown(() => { ws.terminate() })
    const [data] = await new Promise<[Buffer]>((resolve, reject) => {
      ws.once('message', (message: Buffer) => { resolve([message]) })
      ws.once('error', reject)
    })
    ws.close()
    return (JSON.parse(String(data)) as { headers: PodView }).headers
  }
  const continued = await greeting({ traceparent: VALID, tracestate: STATE })
  t.equal(continued.traceparent, VALID)
  t.equal(continued.tracestate, STATE)
  t.ok(isValidTraceparent((await greeting({})).traceparent ?? ''), 'started when absent')
})

void t.test('PODGATE_TRACE_CONTEXT: a value of another kind is a config error naming it', async (t) => {
  await t.rejects(startTestGateway(t, { PODGATE_TRACE_CONTEXT: 'sometimes' }), { message: /PODGATE_TRACE_CONTEXT.*continue, restart, off/ })
})
