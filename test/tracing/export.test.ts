// Span export through a real gateway to an OTLP/HTTP receiver on loopback: one SERVER span per
// request (continuing the client's trace, or a new one), a CLIENT child for the exchange with
// the pod whose id is the parent in the traceparent the pod receives, upgrades too; the
// sampler, the service name and the flush at close; and nothing exported ever carries the
// token or the query string.
import { once } from 'node:events'
import { createServer } from 'node:net'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { WebSocket } from 'ws'
import { endpoint } from '../../src/discovery/source.ts'
import { createBackend } from '../../src/local/backend.ts'
import { isValidTraceparent } from '../../src/tracing/context.ts'
import { startTestGateway, type TestGateway } from '../support/gateway.ts'
import { SPAN_KIND_CLIENT, SPAN_KIND_SERVER, STATUS_ERROR, startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../support/otlp-receiver.ts'

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736'
const PARENT = '00f067aa0ba902b7'
const STATE = 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE'
const QUERY_SECRET = 'q-secret-4f1e0c'

interface Traced {
  readonly gw: TestGateway
  readonly receiver: OtlpReceiver
  readonly token: string
  readonly backendPort: number
}

/** A gateway exporting to a fresh receiver, batches sent at once; alice has a backend. */
async function traced (t: Test, env: Record<string, string> = {}): Promise<Traced> {
  const receiver = await startOtlpReceiver(t)
  const gw = await startTestGateway(t, { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: '0', ...env })
  const backend = await gw.backend('alice')
  return { gw, receiver, token: await gw.token('alice'), backendPort: backend.address.port }
}

/** GET through the gateway; the pod's view of the trace context when the backend answered. */
async function get (gw: TestGateway, path: string, headers: string[]): Promise<{ status: number, traceparent?: string, tracestate?: string }> {
  const { statusCode, body } = await request(`${gw.url}${path}`, { headers })
  const text = await body.text()
  if (statusCode !== 200) return { status: statusCode }
  const { headers: seen } = JSON.parse(text) as { headers: { traceparent?: string, tracestate?: string } }
  return { status: statusCode, traceparent: seen.traceparent, tracestate: seen.tracestate }
}

/** The SERVER span of `traceId` and its CLIENT child, once both arrived. */
async function exchangeSpans (receiver: OtlpReceiver, traceId: string): Promise<{ server: ReceivedSpan, client: ReceivedSpan }> {
  const spans = await receiver.waitFor((all) => all.filter((s) => s.traceId === traceId).length >= 2)
  const server = spans.find((s) => s.traceId === traceId && s.kind === SPAN_KIND_SERVER)
  const client = spans.find((s) => s.traceId === traceId && s.kind === SPAN_KIND_CLIENT)
  if (server === undefined || client === undefined) throw new Error(`expected a SERVER and a CLIENT span of ${traceId}: ${JSON.stringify(spans.map((s) => [s.traceId, s.kind]))}`)
  return { server, client }
}

function checkExchange (t: Test, server: ReceivedSpan, client: ReceivedSpan, backendPort: number): void {
  t.equal(server.name, 'GET')
  t.match(server.attributes, { 'http.request.method': 'GET', 'url.path': '/', 'http.response.status_code': 200, 'enduser.id': 'alice' })
  t.same(server.events.map((e) => e.name), ['auth', 'lookup'], 'an event when the token named the user, one when the endpoints were found')
  t.equal(server.resource['service.name'], 'podgate')
  t.equal(client.parentSpanId, server.spanId, 'the CLIENT span is the SERVER span\'s child')
  t.equal(client.name, 'GET')
  t.match(client.attributes, { 'http.request.method': 'GET', 'server.address': '127.0.0.1', 'server.port': backendPort, 'http.response.status_code': 200 })
  t.ok(client.startNs >= server.startNs && client.endNs <= server.endNs && client.startNs <= client.endNs, 'the exchange lies within the request')
  t.ok(server.events.every((e) => e.timeNs >= server.startNs && e.timeNs <= client.startNs), 'auth and lookup come before the exchange')
}

void t.test('continue: the client\'s trace is continued, and the pod\'s parent is the CLIENT span', async (t) => {
  const { gw, receiver, token, backendPort } = await traced(t)
  const pod = await get(gw, `/?token=${QUERY_SECRET}`, ['authorization', `Bearer ${token}`, 'traceparent', `00-${TRACE}-${PARENT}-01`, 'tracestate', STATE])
  const { server, client } = await exchangeSpans(receiver, TRACE)
  t.equal(server.parentSpanId, PARENT, 'the SERVER span\'s parent is the client\'s span')
  t.equal(server.traceState, STATE, 'the tracestate is kept')
  checkExchange(t, server, client, backendPort)
  t.equal(pod.traceparent, `00-${TRACE}-${client.spanId}-01`, 'the pod continues from the CLIENT span')
  t.equal(pod.tracestate, STATE, 'and gets the tracestate as sent')
  const exported = receiver.bodies.join('\n')
  t.notMatch(exported, token, 'no token in any export')
  t.notMatch(exported, QUERY_SECRET, 'no query string in any export')
})

void t.test('a request without a traceparent starts a trace, exported and passed on', async (t) => {
  const { gw, receiver, token, backendPort } = await traced(t)
  const pod = await get(gw, '/', ['authorization', `Bearer ${token}`])
  t.ok(isValidTraceparent(pod.traceparent ?? ''), `the pod gets a traceparent: ${pod.traceparent}`)
  const traceId = pod.traceparent?.slice(3, 35) ?? ''
  const { server, client } = await exchangeSpans(receiver, traceId)
  t.equal(server.parentSpanId, '', 'the SERVER span is the root')
  checkExchange(t, server, client, backendPort)
  t.equal(pod.traceparent, `00-${traceId}-${client.spanId}-01`)
})

void t.test('an invalid traceparent is replaced by a new trace; restart replaces a valid one', async (t) => {
  for (const [mode, inbound] of [['continue', `00-${TRACE.toUpperCase()}-${PARENT}-01`], ['restart', `00-${TRACE}-${PARENT}-01`]] as const) {
    const { gw, receiver, token } = await traced(t, { PODGATE_TRACE_CONTEXT: mode })
    const pod = await get(gw, '/', ['authorization', `Bearer ${token}`, 'traceparent', inbound, 'tracestate', STATE])
    const traceId = pod.traceparent?.slice(3, 35) ?? ''
    t.not(traceId, TRACE, `${mode}: a new trace id`)
    t.equal(pod.tracestate, undefined, `${mode}: the client's tracestate is dropped with its traceparent`)
    const { server, client } = await exchangeSpans(receiver, traceId)
    t.equal(server.parentSpanId, '', `${mode}: the SERVER span is the root`)
    t.equal(server.traceState, '')
    t.equal(pod.traceparent, `00-${traceId}-${client.spanId}-01`)
  }
})

void t.test('off: spans are exported on their own trace, the pod gets the client\'s headers untouched', async (t) => {
  const { gw, receiver, token } = await traced(t, { PODGATE_TRACE_CONTEXT: 'off' })
  const inbound = `00-${TRACE}-${PARENT}-01`
  const pod = await get(gw, '/', ['authorization', `Bearer ${token}`, 'traceparent', inbound, 'tracestate', STATE])
  t.same(pod, { status: 200, traceparent: inbound, tracestate: STATE })
  const spans = await receiver.waitFor((all) => all.length >= 2)
  t.same(spans.map((s) => s.kind).sort(), [SPAN_KIND_SERVER, SPAN_KIND_CLIENT])
  t.ok(spans.every((s) => s.traceId !== TRACE), 'not the client\'s trace')
})

void t.test('podgate\'s own answers get a SERVER span, an error status from 500 on', async (t) => {
  const { gw, receiver, token } = await traced(t)
  // bob's only endpoint refuses connections: podgate answers 502.
  const closed = createServer()
  closed.listen(0, '127.0.0.1')
  await once(closed, 'listening')
  const { port } = closed.address() as { port: number }
  closed.close()
  await once(closed, 'close')
  gw.local.set('bob', [endpoint('127.0.0.1', port)])
  const bob = await gw.token('bob')
  const refused = `00-${'1'.repeat(32)}-${PARENT}-01`
  const unauthorized = `00-${'2'.repeat(32)}-${PARENT}-01`
  t.equal((await get(gw, '/x?a=1', ['authorization', `Bearer ${bob}`, 'traceparent', refused])).status, 502)
  t.equal((await get(gw, '/y', ['traceparent', unauthorized])).status, 401)
  const spans = await receiver.waitFor((all) => all.some((s) => s.traceId === unauthorized.slice(3, 35)) && all.filter((s) => s.traceId === refused.slice(3, 35)).length >= 2)
  const failed = spans.find((s) => s.traceId === refused.slice(3, 35) && s.kind === SPAN_KIND_SERVER)
  const upstream = spans.find((s) => s.traceId === refused.slice(3, 35) && s.kind === SPAN_KIND_CLIENT)
  t.match(failed, { statusCode: STATUS_ERROR, attributes: { 'http.response.status_code': 502, 'error.type': '502', 'url.path': '/x', 'enduser.id': 'bob' } })
  t.match(upstream, { statusCode: STATUS_ERROR, parentSpanId: failed?.spanId, attributes: { 'server.port': port, 'error.type': '502' } })
  t.equal(upstream?.attributes['http.response.status_code'], undefined, 'the pod gave no status')
  const denied = spans.filter((s) => s.traceId === unauthorized.slice(3, 35))
  t.equal(denied.length, 1, 'a refused token: the SERVER span alone')
  t.match(denied[0], { kind: SPAN_KIND_SERVER, statusCode: 0, attributes: { 'http.response.status_code': 401, 'url.path': '/y' } })
  t.equal(denied[0]?.attributes['enduser.id'], undefined, 'no user')
  t.same(denied[0]?.events, [])
  t.notMatch(receiver.bodies.join('\n'), token)
  t.notMatch(receiver.bodies.join('\n'), bob)
})

void t.test('an IPv6 endpoint is named by its bare address', async (t) => {
  const { gw, receiver } = await traced(t)
  const backend = await createBackend({ user: 'carol', host: '::1' })
  t.teardown(() => backend.close())
  gw.local.set('carol', [endpoint('::1', backend.address.port)])
  const pod = await get(gw, '/', ['authorization', `Bearer ${await gw.token('carol')}`])
  const { client } = await exchangeSpans(receiver, pod.traceparent?.slice(3, 35) ?? '')
  t.match(client.attributes, { 'server.address': '::1', 'server.port': backend.address.port })
})

void t.test('a WebSocket upgrade gets its spans, ended at the 101', async (t) => {
  const { gw, receiver, token, backendPort } = await traced(t)
  const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/ws?greet`, { headers: { authorization: `Bearer ${token}`, traceparent: `00-${TRACE}-${PARENT}-01` } })
  t.teardown(() => { ws.terminate() })
  const [data] = await once(ws, 'message') as [Buffer]
  const seen = (JSON.parse(String(data)) as { headers: { traceparent?: string } }).headers
  const { server, client } = await exchangeSpans(receiver, TRACE)
  t.equal(ws.readyState, WebSocket.OPEN, 'exported while the socket is still open')
  t.match(server.attributes, { 'http.response.status_code': 101, 'url.path': '/ws', 'enduser.id': 'alice' })
  t.match(client.attributes, { 'http.response.status_code': 101, 'server.port': backendPort })
  t.equal(seen.traceparent, `00-${TRACE}-${client.spanId}-01`)
  ws.close()
})

void t.test('the sampler follows a parent that is not sampled, and still passes the trace on', async (t) => {
  const { gw, receiver, token } = await traced(t, { OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0', OTEL_SERVICE_NAME: 'edge-gateway' })
  const unsampled = await get(gw, '/', ['authorization', `Bearer ${token}`, 'traceparent', `00-${TRACE}-${PARENT}-00`])
  t.match(unsampled.traceparent, new RegExp(`^00-${TRACE}-[0-9a-f]{16}-00$`), 'the pod continues the trace, not sampled')
  t.not(unsampled.traceparent?.slice(36, 52), PARENT, 'from podgate\'s span')
  const sampled = await get(gw, '/', ['authorization', `Bearer ${token}`, 'traceparent', `00-${'3'.repeat(32)}-${PARENT}-01`])
  const rootless = await get(gw, '/', ['authorization', `Bearer ${token}`])
  t.match(rootless.traceparent, /-00$/, 'a new trace under ratio 0 is not sampled')
  const spans = await receiver.waitFor((all) => all.length >= 2)
  await gw.podgate.close()
  t.same([...new Set(receiver.spans.map((s) => s.traceId))], ['3'.repeat(32)], 'only the sampled parent\'s trace is exported')
  t.equal(spans[0]?.resource['service.name'], 'edge-gateway', 'OTEL_SERVICE_NAME')
  t.ok(isValidTraceparent(sampled.traceparent ?? ''))
})

void t.test('spans still buffered are exported when the gateway closes', async (t) => {
  const { gw, receiver, token } = await traced(t, { OTEL_BSP_SCHEDULE_DELAY: '600000' })
  const pod = await get(gw, '/', ['authorization', `Bearer ${token}`])
  t.same(receiver.spans, [], 'nothing sent yet: the batch waits')
  await gw.podgate.close()
  t.same(receiver.spans.map((s) => s.traceId), [pod.traceparent?.slice(3, 35), pod.traceparent?.slice(3, 35)], 'both spans sent by the close')
})
