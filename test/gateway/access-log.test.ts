// The audit trail: access-log lines name the user, the endpoint that answered, bytes each way
// and times; a WebSocket's line comes when it ends; usage lines (PODGATE_USAGE_INTERVAL) add
// up each user's interval; and no line ever carries a token, a cookie or a query string.
import { once } from 'node:events'
import { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { Agent, request } from 'undici'
import WebSocket from 'ws'
import { createLogger } from '../../src/log.ts'
import { startTestGateway, type TestGateway } from '../support/gateway.ts'
import { ManualClock } from '../support/manual-clock.ts'

type Line = Record<string, unknown>

/** A logger whose JSON lines the test reads back, raw and parsed. */
function capturedLogger (): { logger: ReturnType<typeof createLogger>, raw: string[], lines: (msg?: string) => Line[] } {
  const raw: string[] = []
  const stream = new Writable({
    write (chunk: Buffer, _encoding, done) {
      for (const text of chunk.toString().split('\n')) if (text !== '') raw.push(text)
      done()
    },
  })
  const logger = createLogger('debug', stream)
  const lines = (msg?: string): Line[] => raw.map((text) => JSON.parse(text) as Line).filter((line) => msg === undefined || line.msg === msg)
  return { logger, raw, lines }
}

/** Waits (bounded) until `count` lines with `msg` have been written. */
async function linesOf (read: (msg?: string) => Line[], msg: string, count: number): Promise<Line[]> {
  for (let i = 0; i < 200; i++) {
    const found = read(msg)
    if (found.length >= count) return found
    await sleep(10)
  }
  return read(msg)
}

async function gateway (t: { teardown (fn: () => unknown): void }, env: Record<string, string> = {}, clock?: ManualClock): Promise<{ gw: TestGateway, log: ReturnType<typeof capturedLogger> }> {
  const log = capturedLogger()
  const gw = await startTestGateway(t, { PODGATE_ACCESS_LOG: 'true', ...env }, { logger: log.logger, ...(clock === undefined ? {} : { clock }) })
  return { gw, log }
}

void t.test('an access line names the user, the endpoint, bytes each way and both times', async (t) => {
  const { gw, log } = await gateway(t)
  const backend = await gw.backend('alice')
  const token = await gw.token('alice')
  const body = 'x'.repeat(10_000)
  const res = await request(`${gw.url}/echo?secret=in-the-query`, { method: 'POST', body, headers: { authorization: `Bearer ${token}`, 'content-type': 'text/plain' } })
  const answer = await res.body.text()
  t.equal(res.statusCode, 200)
  const [line] = await linesOf(log.lines, 'request', 1) as [Line]
  t.match(line, { user: 'alice', method: 'POST', path: '/echo', status: 200, endpoint: `127.0.0.1:${backend.address.port}`, aborted: false }, 'who, what, where')
  t.ok((line.bytesIn as number) > body.length && (line.bytesIn as number) < body.length + 2_000, `bytesIn ${String(line.bytesIn)}: the body and the head`)
  t.ok((line.bytesOut as number) > answer.length && (line.bytesOut as number) < answer.length + 1_000, `bytesOut ${String(line.bytesOut)}: the answer and its head`)
  t.ok(typeof line.upstreamMs === 'number' && line.upstreamMs <= (line.ms as number), 'upstream time within the total')

  // A refused request: no user, no endpoint, podgate's own answer.
  const refused = await request(`${gw.url}/`, { headers: { authorization: 'Bearer nonsense' } })
  await refused.body.dump()
  const second = (await linesOf(log.lines, 'request', 2))[1]
  t.match(second, { status: 401, path: '/' }, 'the refusal is logged')
  t.notOk('user' in (second ?? {}), 'without a user')
  t.notOk('endpoint' in (second ?? {}), 'and without an endpoint')
})

void t.test('keep-alive: each exchange counts only its own bytes', async (t) => {
  const { gw, log } = await gateway(t)
  await gw.backend('alice')
  const token = await gw.token('alice')
  const agent = new Agent({ connections: 1 })
  t.teardown(() => agent.close())
  for (const n of [100, 50_000, 100]) {
    const res = await request(`${gw.url}/bytes?n=${n}`, { dispatcher: agent, headers: { authorization: `Bearer ${token}` } })
    await res.body.dump()
  }
  const lines = await linesOf(log.lines, 'request', 3)
  const out = lines.map((line) => line.bytesOut as number)
  t.ok(out[0]! > 100 && out[0]! < 1_100, `first: ${out[0]}`)
  t.ok(out[1]! > 50_000 && out[1]! < 51_000, `second: ${out[1]}`)
  t.ok(out[2]! > 100 && out[2]! < 1_100, `third, on the same connection, not the sum: ${out[2]}`)
})

void t.test('a WebSocket logs one line when it ends, with its duration and bytes each way', async (t) => {
  const { gw, log } = await gateway(t)
  const backend = await gw.backend('alice')
  const token = await gw.token('alice')
  const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/ws?ticket=in-the-query`, { headers: { authorization: `Bearer ${token}` } })
  t.teardown(() => { ws.terminate() })
  await once(ws, 'open')
  const message = 'm'.repeat(20_000)
  ws.send(message)
  await once(ws, 'message')
  await sleep(50)
  t.same(log.lines('request'), [], 'nothing logged while it is open')
  ws.close()
  const [line] = await linesOf(log.lines, 'request', 1) as [Line]
  t.match(line, { user: 'alice', path: '/ws', status: 101, endpoint: `127.0.0.1:${backend.address.port}` }, 'the 101, once it ended')
  t.ok((line.bytesIn as number) > message.length, `bytesIn ${String(line.bytesIn)}`)
  t.ok((line.bytesOut as number) > message.length, `bytesOut ${String(line.bytesOut)}`)
  t.ok((line.ms as number) >= 50, `duration ${String(line.ms)} ms: the whole session`)
})

void t.test('usage lines: one per active user per interval, WebSocket time included, the rest at shutdown', async (t) => {
  const clock = new ManualClock()
  const { gw, log } = await gateway(t, { PODGATE_USAGE_INTERVAL: '60s', PODGATE_ACCESS_LOG: 'false' }, clock)
  await gw.backend('alice')
  await gw.backend('bob')
  const alice = await gw.token('alice')
  const bob = await gw.token('bob')
  for (let i = 0; i < 3; i++) {
    const res = await request(`${gw.url}/bytes?n=1000`, { headers: { authorization: `Bearer ${alice}` } })
    await res.body.dump()
  }
  const res = await request(`${gw.url}/`, { headers: { authorization: `Bearer ${bob}` } })
  await res.body.dump()
  const refused = await request(`${gw.url}/`, { headers: { authorization: 'Bearer nonsense' } })
  await refused.body.dump()
  const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/ws`, { headers: { authorization: `Bearer ${alice}` } })
  t.teardown(() => { ws.terminate() })
  await once(ws, 'open')
  ws.send('y'.repeat(5_000))
  await once(ws, 'message')
  await sleep(50) // the last exchange's 'close' on the server

  await clock.advance(60_000)
  const first = log.lines('usage')
  t.equal(first.length, 2, 'one line per active user, none for the refused request')
  const byUser = new Map(first.map((line) => [line.user, line]))
  t.match(byUser.get('alice'), { requests: 4, websockets: 1, websocketSeconds: 60 }, 'alice: 3 requests and a WebSocket handshake, open the whole interval')
  t.ok((byUser.get('alice')?.bytesOut as number) > 3_000 + 5_000, 'her bytes out include the responses and the echo')
  t.ok((byUser.get('alice')?.bytesIn as number) > 5_000, 'her bytes in include what she sent on the WebSocket')
  t.match(byUser.get('bob'), { requests: 1, websockets: 0, websocketSeconds: 0 }, 'bob: one request')
  t.equal(Date.parse(String(byUser.get('bob')?.to)) - Date.parse(String(byUser.get('bob')?.from)), 60_000, 'from and to span the interval')

  await clock.advance(30_000)
  ws.close()
  await once(ws, 'close')
  await sleep(50)
  await clock.advance(30_000)
  const second = log.lines('usage').slice(2)
  t.equal(second.length, 1, 'only alice was active in the second interval')
  t.match(second[0], { user: 'alice', requests: 0, websockets: 0, websocketSeconds: 30 }, 'her WebSocket until it closed')

  const ws2 = new WebSocket(`${gw.url.replace('http', 'ws')}/ws`, { headers: { authorization: `Bearer ${bob}` } })
  t.teardown(() => { ws2.terminate() })
  await once(ws2, 'open')
  await clock.advance(10_000)
  await gw.podgate.close()
  const last = log.lines('usage').slice(3)
  t.match(last, [{ user: 'bob', requests: 1, websockets: 1, websocketSeconds: 10 }], 'shutdown writes the partial interval: nothing counted is lost')
})

void t.test('no log line carries a token, a cookie or a query string, whatever the client sends', async (t) => {
  const { gw, log } = await gateway(t, { PODGATE_USAGE_INTERVAL: '1s' })
  await gw.backend('alice')
  const token = await gw.token('alice')
  const secrets = [token, 'cookie-secret-value', 'query-secret-value', 'basic-secret-value']
  const tries: Array<{ path: string, headers: Record<string, string> }> = [
    { path: '/?access_token=query-secret-value', headers: { authorization: `Bearer ${token}` } },
    { path: '/', headers: { cookie: `session=${token}; other=cookie-secret-value` } },
    { path: '/', headers: { authorization: `Bearer ${token}x` } },
    { path: '/', headers: { authorization: `Bearer ${token.slice(0, -3)}` } },
    { path: '/', headers: { authorization: 'Basic basic-secret-value' } },
    { path: '/', headers: { cookie: `session=${token}`, authorization: `Bearer ${token}.x` } },
    { path: '/', headers: { authorization: `Bearer ${token}`, 'x-user-id': 'query-secret-value' } },
    { path: `/${'a'.repeat(100)}?x=query-secret-value`, headers: { authorization: `Bearer ${token}` } },
    { path: '/ws?token=query-secret-value', headers: { authorization: `Bearer ${token}` } },
  ]
  for (const { path, headers } of tries) {
    const res = await request(`${gw.url}${path}`, { headers })
    await res.body.dump()
  }
  const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/ws?token=query-secret-value`, { headers: { cookie: `session=${token}` } })
  t.teardown(() => { ws.terminate() })
  await once(ws, 'open')
  ws.close()
  await linesOf(log.lines, 'request', tries.length + 1)
  await gw.podgate.close()
  t.ok(log.raw.length > tries.length, `${log.raw.length} lines written`)
  for (const secret of secrets) {
    t.same(log.raw.filter((text) => text.includes(secret)), [], `no line contains ${secret === token ? 'the token' : secret}`)
  }
  t.same(log.raw.filter((text) => text.includes('?')), [], 'no line carries a query string')
})
