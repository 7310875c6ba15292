import { createHash } from 'node:crypto'
import { connect, createServer } from 'node:net'
import { once } from 'node:events'
import t from 'tap'
import { Agent, request } from 'undici'
import WebSocket from 'ws'
import { endpoint } from '../../src/discovery/source.ts'
import { startTestGateway } from '../support/gateway.ts'

interface Echoed { user: string, method: string, url: string, headers: Record<string, string> }

function client (t: { teardown: (fn: () => unknown) => void }): Agent {
  const agent = new Agent({ keepAliveTimeout: 1000 })
  t.teardown(() => agent.close())
  return agent
}

/** Sends exact request bytes and reads the whole response (the request asks to close). */
async function rawRequest (url: string, text: string): Promise<string> {
  const { port, hostname } = new URL(url)
  const socket = connect(Number(port), hostname)
  socket.write(text)
  let response = ''
  for await (const chunk of socket) response += String(chunk)
  return response
}

/** A port on 127.0.0.1 that refuses connections: bound once, then closed. */
async function closedPort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  await once(server, 'close')
  return port
}

void t.test('each user reaches their own backend, which sees only the identity podgate set', async (t) => {
  const gw = await startTestGateway(t)
  await gw.backend('alice')
  await gw.backend('bob')
  const dispatcher = client(t)
  const alice = await gw.token('alice')
  const res = await request(`${gw.url}/?q=1&next=%2Fhome`, {
    dispatcher,
    headers: [
      'authorization', `Bearer ${alice}`,
      'X-User-ID', 'bob',
      'x-user-id', 'carol',
      'X-USER-ID', 'dave',
      'x-forwarded-for', '6.6.6.6',
      'x-forwarded-host', 'evil.example',
      'x-kept', 'yes',
    ],
  })
  t.equal(res.statusCode, 200)
  const body = await res.body.json() as Echoed
  t.equal(body.user, 'alice')
  t.equal(body.url, '/?q=1&next=%2Fhome', 'path and query pass untouched')
  t.equal(body.headers['x-user-id'], 'alice', 'only the gateway-set identity arrives')
  t.notOk(JSON.stringify(body.headers).includes('bob'), 'no trace of the spoofed identity')
  t.notOk(JSON.stringify(body.headers).includes('carol'))
  t.equal(body.headers['x-forwarded-for'], '127.0.0.1', 'an untrusted X-Forwarded-For is replaced')
  t.equal(body.headers['x-forwarded-host'], new URL(gw.url).host)
  t.equal(body.headers['x-forwarded-proto'], 'http')
  t.equal(body.headers['x-kept'], 'yes')

  // Raw bytes: HTTP clients rewrite Connection, and this is about what a hostile one sends.
  const raw = await rawRequest(gw.url, `GET / HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${alice}\r\nconnection: close, x-private\r\nx-private: hop-only\r\nte: trailers\r\nkeep-alive: 5\r\nx-user-id: bob\r\nX-User-Id: bob\r\n\r\n`)
  const rawBody = JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as Echoed
  t.equal(rawBody.headers['x-user-id'], 'alice')
  t.notOk('x-private' in rawBody.headers, 'headers named in Connection are hop-by-hop')
  t.notOk('te' in rawBody.headers)
  t.notOk('keep-alive' in rawBody.headers)

  const bob = await request(gw.url, { dispatcher, headers: { cookie: `theme=dark; session=${await gw.token('bob')}` } })
  t.equal(bob.statusCode, 200)
  const bobSaw = await bob.body.json() as Echoed
  t.equal(bobSaw.user, 'bob', 'the session cookie works too')
  t.equal(bobSaw.headers.cookie, 'theme=dark', "the pod keeps its own cookies but never sees podgate's")
  t.notOk('authorization' in body.headers, 'nor the bearer token')
})

void t.test('a trusted proxy in front extends X-Forwarded-For and keeps its proto and host', async (t) => {
  const gw = await startTestGateway(t, { PODGATE_TRUST_PROXY: 'true' })
  await gw.backend('alice')
  const res = await request(gw.url, {
    dispatcher: client(t),
    headers: { authorization: `Bearer ${await gw.token('alice')}`, 'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'notebooks.example' },
  })
  const body = await res.body.json() as Echoed
  t.equal(body.headers['x-forwarded-for'], '203.0.113.7, 127.0.0.1')
  t.equal(body.headers['x-forwarded-proto'], 'https')
  t.equal(body.headers['x-forwarded-host'], 'notebooks.example')
})

void t.test('errors are the contract statuses, as JSON', async (t) => {
  const gw = await startTestGateway(t)
  const dispatcher = client(t)
  const none = await request(gw.url, { dispatcher })
  t.equal(none.statusCode, 401)
  t.equal(none.headers['www-authenticate'], 'Bearer realm="podgate"')
  t.match(await none.body.json(), { error: 'PODGATE_AUTH' })

  const bad = await request(gw.url, { dispatcher, headers: { authorization: 'Bearer not.a.token' } })
  t.equal(bad.statusCode, 401)
  t.match(bad.headers['www-authenticate'], /error="invalid_token"/)
  await bad.body.dump()

  const nobody = await request(gw.url, { dispatcher, headers: { authorization: `Bearer ${await gw.token('nobody')}` } })
  t.equal(nobody.statusCode, 404, 'a verified user without a workload')
  t.match(await nobody.body.json(), { error: 'PODGATE_NO_WORKLOAD' })

  gw.local.set('starting', [])
  const starting = await request(gw.url, { dispatcher, headers: { authorization: `Bearer ${await gw.token('starting')}` } })
  t.equal(starting.statusCode, 503, 'a known user with no ready endpoint')
  t.equal(starting.headers['retry-after'], '5')
  t.match(await starting.body.json(), { error: 'PODGATE_NOT_READY' })

  gw.local.set('down', [endpoint('127.0.0.1', await closedPort())])
  const down = await request(gw.url, { dispatcher, headers: { authorization: `Bearer ${await gw.token('down')}` } })
  t.equal(down.statusCode, 502)
  t.match(await down.body.json(), { error: 'PODGATE_UPSTREAM' })

  const metrics = await (await request(`${gw.adminUrl}/metrics`, { dispatcher })).body.text()
  t.match(metrics, /podgate_requests_total\{class="4xx",source="podgate"\} 3/)
  t.match(metrics, /podgate_requests_total\{class="5xx",source="podgate"\} 2/)
  t.match(metrics, /podgate_auth_failures_total\{reason="missing"\} 1/)
  t.match(metrics, /podgate_upstream_errors_total\{kind="connect"\} 1/)
  t.notMatch(metrics, /="(?:nobody|starting|down)"/, 'no user id in any label')
})

void t.test('requests spread across ready endpoints; a refused connection is retried on another', async (t) => {
  const gw = await startTestGateway(t)
  const backends = [await gw.backend('alice'), await gw.backend('alice'), await gw.backend('alice')]
  const seen = new Map<number, number>()
  for (const b of backends) {
    b.server.on('request', () => { seen.set(b.address.port, (seen.get(b.address.port) ?? 0) + 1) })
  }
  const dispatcher = client(t)
  const token = await gw.token('alice')
  for (let i = 0; i < 30; i++) {
    const res = await request(gw.url, { dispatcher, headers: { authorization: `Bearer ${token}` } })
    t.equal(res.statusCode, 200)
    await res.body.dump()
  }
  t.equal(seen.size, 3, 'all three endpoints served')
  for (const count of seen.values()) t.ok(count >= 5, `fair share (${count} of 30)`)

  const refused = await closedPort()
  gw.local.set('alice', [endpoint('127.0.0.1', refused), endpoint('127.0.0.1', backends[0]!.address.port)])
  for (let i = 0; i < 4; i++) {
    const res = await request(gw.url, { dispatcher, headers: { authorization: `Bearer ${token}` } })
    t.equal(res.statusCode, 200, 'GET retried on the live endpoint')
    await res.body.dump()
  }
  const metrics = await (await request(`${gw.adminUrl}/metrics`, { dispatcher })).body.text()
  t.match(metrics, /podgate_upstream_retries_total [1-9]/)
})

void t.test('request and response bodies stream through unchanged', async (t) => {
  const gw = await startTestGateway(t)
  await gw.backend('alice')
  const token = await gw.token('alice')
  const payload = Buffer.alloc(3 * 1024 * 1024 + 17)
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 31 + 7) & 0xff
  const res = await request(`${gw.url}/echo`, { dispatcher: client(t), method: 'POST', body: payload, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' } })
  t.equal(res.statusCode, 200)
  const echoed = Buffer.from(await res.body.arrayBuffer())
  t.equal(createHash('sha256').update(echoed).digest('hex'), createHash('sha256').update(payload).digest('hex'))

  const json = await request(`${gw.url}/echo`, { dispatcher: client(t), method: 'POST', body: '{"a":1}', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } })
  t.equal(await json.body.text(), '{"a":1}', 'JSON bodies are not parsed on the way')
})

void t.test('server-sent events arrive before the upstream response ends', async (t) => {
  const gw = await startTestGateway(t)
  await gw.backend('alice')
  const res = await request(`${gw.url}/sse?count=3`, { dispatcher: client(t), headers: { authorization: `Bearer ${await gw.token('alice')}` } })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /text\/event-stream/)
  const started = Date.now()
  let first: number | undefined
  let text = ''
  for await (const chunk of res.body) {
    first ??= Date.now()
    text += String(chunk)
  }
  const ended = Date.now()
  t.ok(first !== undefined && ended - first >= 1500, `first event ${first! - started} ms in, end ${ended - started} ms in`)
  t.equal(text.match(/^data:/gm)?.length, 3)
})

void t.test('an upstream that dies mid-response breaks the client stream; the gateway keeps serving', async (t) => {
  const gw = await startTestGateway(t)
  await gw.backend('alice')
  const dispatcher = client(t)
  const headers = { authorization: `Bearer ${await gw.token('alice')}` }
  const res = await request(`${gw.url}/die`, { dispatcher, headers })
  t.equal(res.statusCode, 200)
  await t.rejects(res.body.arrayBuffer(), 'the client sees a broken body, not a clean end')
  const again = await request(gw.url, { dispatcher, headers })
  t.equal(again.statusCode, 200)
  await again.body.dump()
})

void t.test('an upstream that never answers gives 504 after the configured timeout', async (t) => {
  const gw = await startTestGateway(t, { PODGATE_HEADERS_TIMEOUT: '300ms' })
  await gw.backend('alice')
  const started = Date.now()
  const res = await request(`${gw.url}/hang`, { dispatcher: client(t), headers: { authorization: `Bearer ${await gw.token('alice')}` } })
  t.equal(res.statusCode, 504)
  t.match(await res.body.json(), { error: 'PODGATE_UPSTREAM_TIMEOUT' })
  t.ok(Date.now() - started >= 250, 'not before the timeout')
})

void t.test('WebSocket frames pass both ways and a close is propagated', async (t) => {
  const gw = await startTestGateway(t)
  await gw.backend('alice')
  const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/ws`, { headers: { authorization: `Bearer ${await gw.token('alice')}` } })
  await once(ws, 'open')
  ws.send('hello')
  const [text] = await once(ws, 'message') as [Buffer]
  t.equal(text.toString(), 'hello')
  ws.send(Buffer.from([0, 1, 2, 255]))
  const [binary] = await once(ws, 'message') as [Buffer]
  t.same([...binary], [0, 1, 2, 255])
  ws.close(4001, 'bye')
  const [code] = await once(ws, 'close') as [number]
  t.equal(code, 4001, 'the close code made the round trip')

  const anonymous = new WebSocket(`${gw.url.replace('http', 'ws')}/ws`)
  anonymous.on('error', () => {})
  const [, response] = await once(anonymous, 'unexpected-response') as [unknown, { statusCode: number, resume: () => void }]
  t.equal(response.statusCode, 401)
  response.resume()
})

void t.test('readiness follows the source and the drain; in-flight requests finish', async (t) => {
  const gw = await startTestGateway(t, { PODGATE_DRAIN_TIMEOUT: '5s' })
  await gw.backend('alice')
  const dispatcher = client(t)
  const ready = await request(`${gw.adminUrl}/readyz`, { dispatcher })
  t.equal(ready.statusCode, 200)
  await ready.body.dump()
  const slow = request(`${gw.url}/slow?ms=400`, { dispatcher, headers: { authorization: `Bearer ${await gw.token('alice')}` } })
  await new Promise((resolve) => setTimeout(resolve, 100))
  const drained = gw.podgate.drain()
  const notReady = await request(`${gw.adminUrl}/readyz`, { dispatcher })
  t.equal(notReady.statusCode, 503, 'not ready while draining')
  t.match(await notReady.body.json(), { reason: 'draining' })
  const res = await slow
  t.equal(res.statusCode, 200, 'the in-flight request completed')
  await res.body.dump()
  await drained
  await t.rejects(request(gw.url, { dispatcher: client(t) }), 'no new connections after the drain')
})

void t.test('a WebSocket the client keeps using counts as activity; a silent one does not', async (t) => {
  const seen: string[] = []
  const gw = await startTestGateway(t, {}, { onActivity: (user) => { seen.push(user) }, activityIntervalMs: 40 })
  await gw.backend('alice')
  const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/ws`, { headers: { authorization: `Bearer ${await gw.token('alice')}` } })
  t.teardown(() => { ws.terminate() })
  await once(ws, 'open')
  t.same(seen, ['alice'], 'the upgrade itself is activity')
  for (let i = 0; i < 5; i++) {
    ws.send(`ping ${i}`)
    await once(ws, 'message')
    await new Promise((resolve) => setTimeout(resolve, 60))
  }
  const busy = seen.length
  t.ok(busy >= 3, `frames kept reporting activity (${busy} reports)`)
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.ok(seen.length <= busy + 1, 'a silent socket stops counting')
  t.ok(seen.every((user) => user === 'alice'))
})
