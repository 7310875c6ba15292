// What a client sends that podgate must refuse or clean before a pod sees it: malformed
// targets and header sets (4xx, never a 502 blamed on the pod), look-alikes of the identity
// and forwarding headers, ambiguous credentials, and `Expect: 100-continue` before a token.
import { connect, createServer, type Socket } from 'node:net'
import { once } from 'node:events'
import t from 'tap'
import { Agent, request } from 'undici'
import { endpoint } from '../../src/discovery/source.ts'
import { startTestGateway, type TestGateway } from '../support/gateway.ts'

interface Echoed { user: string, method: string, url: string, headers: Record<string, string> }

/** Sends exact request bytes on a fresh connection and reads until the server closes it. */
async function exchange (url: string, text: string): Promise<string> {
  const { port, hostname } = new URL(url)
  const socket = connect(Number(port), hostname)
  socket.write(text)
  let response = ''
  for await (const chunk of socket) response += (chunk as Buffer).toString('latin1')
  return response
}

/** A raw TCP upstream on 127.0.0.1 that `onConnection` drives, routed to as alice's only endpoint. */
async function rawUpstreamFor (t: { teardown: (fn: () => unknown) => void }, gw: TestGateway, onConnection: (socket: Socket) => void): Promise<void> {
  const upstream = createServer(onConnection)
  upstream.listen(0, '127.0.0.1')
  await once(upstream, 'listening')
  t.teardown(() => { upstream.close() })
  gw.local.set('alice', [endpoint('127.0.0.1', (upstream.address() as { port: number }).port)])
}

function statusOf (response: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(response)?.[1] ?? 0)
}

function bodyOf (response: string): string {
  return response.slice(response.indexOf('\r\n\r\n') + 4)
}

void t.test('requests the pod must not get are 4xx, counted as the client\'s, and the gateway keeps serving', async (t) => {
  const gw = await startTestGateway(t)
  await gw.backend('alice')
  const token = await gw.token('alice')
  const auth = `Authorization: Bearer ${token}\r\n`
  const cases: Array<[string, string, number, RegExp]> = [
    ['asterisk-form target', `OPTIONS * HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`, 400, /must be a path/],
    ['ftp absolute-form target', `GET ftp://x/ HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`, 400, /must be a path/],
    ['absolute-form with user info', `GET http://u@x/ HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`, 400, /invalid authority/],
    ['absolute-form without a host', `GET http:///a HTTP/1.1\r\nHost: x\r\n${auth}Connection: close\r\n\r\n`, 400, /invalid authority/],
    ['two Host headers', `GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n${auth}Connection: close\r\n\r\n`, 400, /more than one Host/],
    ['two Host headers, same value', `GET / HTTP/1.1\r\nHost: x\r\nhost: x\r\n${auth}Connection: close\r\n\r\n`, 400, /more than one Host/],
    ['Host with a space', `GET / HTTP/1.1\r\nHost: x y\r\n${auth}Connection: close\r\n\r\n`, 400, /invalid Host/],
    ['Host with a slash', `GET / HTTP/1.1\r\nHost: x/y\r\n${auth}Connection: close\r\n\r\n`, 400, /invalid Host/],
    ['two Host headers without a token', 'GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\nConnection: close\r\n\r\n', 400, /more than one Host/],
    ['CONNECT', `CONNECT app.example:443 HTTP/1.1\r\nHost: app.example:443\r\n${auth}\r\n`, 400, /not a forward proxy/],
  ]
  for (const [name, text, status, message] of cases) {
    const response = await exchange(gw.url, text)
    t.equal(statusOf(response), status, `${name}: ${status}`)
    t.match(bodyOf(response), message, `${name}: says why`)
  }
  const ok = await request(gw.url, { headers: { authorization: `Bearer ${token}` } })
  t.equal(ok.statusCode, 200, 'an honest request is served after them')
  await ok.body.dump()
  const metrics = await (await request(`${gw.adminUrl}/metrics`)).body.text()
  t.notMatch(metrics, /podgate_upstream_errors_total\{[^}]*\} [1-9]/, 'none counted as an upstream error')
  t.notMatch(metrics, /podgate_requests_total\{class="5xx"[^}]*\} [1-9]/, 'none answered 5xx')
})

void t.test('a client that leaves before the answer is its own 499, not an upstream error', async (t) => {
  // A pod that takes each request and never answers; it tells when one arrives and when
  // podgate lets go of the connection it came on.
  const arrived: Array<() => void> = []
  const released: Array<() => void> = []
  const gw = await startTestGateway(t)
  await rawUpstreamFor(t, gw, (socket) => {
    socket.once('data', () => { arrived.shift()?.() })
    socket.once('close', () => { released.shift()?.() })
  })
  const token = await gw.token('alice')
  const { port } = new URL(gw.url)
  const websocket = 'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'
  for (const [name, extra] of [['a request', ''], ['a WebSocket upgrade', websocket]] as const) {
    const atPod = new Promise<void>((resolve) => { arrived.push(resolve) })
    const letGo = new Promise<void>((resolve) => { released.push(resolve) })
    const socket = connect(Number(port), '127.0.0.1')
    socket.write(`GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n${extra}\r\n`)
    await atPod
    socket.destroy()
    await letGo
    t.pass(`${name}: forwarded, then abandoned by the client, and podgate let go of the pod`)
  }
  const metrics = await (await request(`${gw.adminUrl}/metrics`)).body.text()
  t.notMatch(metrics, /podgate_upstream_errors_total\{[^}]*\} [1-9]/, 'no upstream error counted')
  t.match(metrics, /podgate_requests_total\{class="4xx",source="podgate"\} 2/, 'the abandoned request and the abandoned upgrade are each counted as the client\'s (499)')
})

void t.test('an absolute-form target reaches the pod as a path, whatever the scheme\'s case, with its authority as Host', async (t) => {
  const gw = await startTestGateway(t)
  await gw.backend('alice')
  const token = await gw.token('alice')
  for (const target of ['http://app.example:8443/?q=1', 'HTTP://app.example:8443/?q=1', 'HtTpS://app.example:8443/?q=1']) {
    const response = await exchange(gw.url, `GET ${target} HTTP/1.1\r\nHost: other.example\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`)
    t.equal(statusOf(response), 200, `${target}: served`)
    const echoed = JSON.parse(bodyOf(response)) as Echoed
    t.equal(echoed.url, '/?q=1', `${target}: the pod sees the path`)
    t.equal(echoed.headers.host, 'app.example:8443', `${target}: Host is the target's authority`)
  }
  const bare = await exchange(gw.url, `GET http://app.example?x=1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`)
  t.equal((JSON.parse(bodyOf(bare)) as Echoed).url, '/?x=1', 'a target with no path gets /')
})

void t.test('a request undici refuses to build is the client\'s 400, not an upstream 502', async (t) => {
  // The gateway checks target and Host before dispatch; whatever else undici refuses while
  // building the upstream request (before any connection is used) is mapped here.
  const { refusedRequest } = await import('../../src/gateway/respond.ts')
  const built = Object.assign(new Error('invalid content-length header'), { code: 'UND_ERR_INVALID_ARG' })
  t.equal(refusedRequest(built)?.status, 400, 'UND_ERR_INVALID_ARG maps to 400')
  t.match(refusedRequest(built)?.message, /invalid content-length header/, 'naming what undici refused')
  t.equal(refusedRequest(Object.assign(new Error('expect header not supported'), { code: 'UND_ERR_NOT_SUPPORTED' }))?.status, 400, 'UND_ERR_NOT_SUPPORTED maps to 400')
  t.equal(refusedRequest(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' })), undefined, 'a connect failure is not the client\'s')
  t.equal(refusedRequest(new Error('no code')), undefined)
})

void t.test('look-alikes of the identity and forwarding headers never reach the pod', async (t) => {
  for (const trustProxy of [false, true]) {
    await t.test(`PODGATE_TRUST_PROXY=${trustProxy}`, async (t) => {
      const gw = await startTestGateway(t, { PODGATE_TRUST_PROXY: String(trustProxy) })
      await gw.backend('alice')
      const token = await gw.token('alice')
      const res = await request(gw.url, {
        headers: [
          'authorization', `Bearer ${token}`,
          'X_User_ID', 'bob',
          'x_user-id', 'carol',
          'X-User_Id', 'dave',
          'X_Forwarded_For', '6.6.6.6',
          'x-forwarded_host', 'evil.example',
          'X_Real_IP', '6.6.6.6',
          'X-Real-IP', '7.7.7.7',
          'True-Client-IP', '8.8.8.8',
          'x_kept_header', 'yes',
        ],
      })
      t.equal(res.statusCode, 200)
      const echoed = (await res.body.json() as Echoed).headers
      t.equal(echoed['x-user-id'], 'alice', 'the identity is the one podgate set')
      const names = Object.keys(echoed)
      t.same(names.filter((name) => name.replaceAll('_', '-') === 'x-user-id'), ['x-user-id'], 'no variant of the identity header')
      t.same(names.filter((name) => name.replaceAll('_', '-') === 'x-forwarded-for'), ['x-forwarded-for'], 'no variant of X-Forwarded-For')
      t.same(names.filter((name) => name.replaceAll('_', '-') === 'x-forwarded-host'), ['x-forwarded-host'], 'no variant of X-Forwarded-Host')
      t.notOk(names.includes('x_real_ip'), 'no variant of X-Real-IP')
      t.equal(echoed.x_kept_header, 'yes', 'other underscore headers pass')
      if (trustProxy) {
        t.equal(echoed['x-real-ip'], '7.7.7.7', 'behind a trusted proxy, its X-Real-IP passes')
        t.equal(echoed['true-client-ip'], '8.8.8.8', 'and its True-Client-IP')
      } else {
        t.equal(echoed['x-real-ip'], undefined, 'a client\'s X-Real-IP is dropped')
        t.equal(echoed['true-client-ip'], undefined, 'a client\'s True-Client-IP is dropped')
        t.equal(echoed['x-forwarded-for'], '127.0.0.1', 'X-Forwarded-For is the client\'s address')
      }
    })
  }
  await t.test('an identity header named with an underscore is matched the same way', async (t) => {
    const gw = await startTestGateway(t, { PODGATE_USER_HEADER: 'X_Remote_User' })
    await gw.backend('alice')
    const token = await gw.token('alice')
    const res = await request(gw.url, { headers: ['authorization', `Bearer ${token}`, 'X-Remote-User', 'bob', 'x_remote_user', 'carol'] })
    const echoed = (await res.body.json() as Echoed).headers
    t.same(Object.keys(echoed).filter((name) => name.replaceAll('_', '-') === 'x-remote-user'), ['x_remote_user'])
    t.equal(echoed.x_remote_user, 'alice')
  })
})

void t.test('a Connection header cannot remove Host or Content-Length', async (t) => {
  const gw = await startTestGateway(t)
  await gw.backend('alice')
  const token = await gw.token('alice')
  const upload = await exchange(gw.url, `POST /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Length: 5\r\nConnection: close, content-length\r\n\r\nhello`)
  t.equal(statusOf(upload), 200, 'a body whose length the Connection header names is still framed')
  t.match(bodyOf(upload), /hello/)
  const response = await exchange(gw.url, `GET / HTTP/1.1\r\nHost: app.example\r\nAuthorization: Bearer ${token}\r\nConnection: close, host, x-gone\r\nX-Gone: 1\r\n\r\n`)
  const echoed = JSON.parse(bodyOf(response)) as Echoed
  t.equal(echoed.headers.host, 'app.example', 'Host kept')
  t.equal(echoed.headers['x-gone'], undefined, 'a header the Connection header names is still removed')
})

void t.test('podgate\'s own headers come first, so a server that keeps only its first headers still sees the identity', async (t) => {
  // A raw upstream that records the header names in the order they arrive.
  const seen: string[][] = []
  const gw = await startTestGateway(t)
  await rawUpstreamFor(t, gw, (socket) => {
    let head = ''
    socket.on('data', (chunk) => {
      head += chunk.toString('latin1')
      if (!head.includes('\r\n\r\n')) return
      seen.push(head.split('\r\n').slice(1).filter((line) => line !== '').map((line) => line.slice(0, line.indexOf(':')).toLowerCase()))
      socket.end('HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n')
    })
  })
  const token = await gw.token('alice')
  const headers: string[] = ['authorization', `Bearer ${token}`]
  for (let i = 0; i < 90; i++) headers.push(`x-filler-${i}`, 'v')
  const res = await request(gw.url, { headers })
  t.equal(res.statusCode, 204)
  await res.body.dump()
  const names = seen[0] ?? []
  const firstFiller = names.indexOf('x-filler-0')
  for (const own of ['x-user-id', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host']) {
    t.ok(names.indexOf(own) !== -1 && names.indexOf(own) < firstFiller, `${own} comes before the client's headers`)
  }
  t.equal(names.filter((name) => name.startsWith('x-filler-')).length, 90, 'and the client\'s follow, all of them')
})

void t.test('more request headers than PODGATE_MAX_REQUEST_HEADERS is 431, never a truncated request', async (t) => {
  const gw = await startTestGateway(t, { PODGATE_MAX_REQUEST_HEADERS: '50' })
  await gw.backend('alice')
  const token = await gw.token('alice')
  const send = async (count: number): Promise<string> => {
    let text = `GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n`
    for (let i = 3; i < count; i++) text += `X-Filler-${i}: v\r\n`
    return await exchange(gw.url, text + '\r\n')
  }
  t.equal(statusOf(await send(50)), 200, '50 header fields are served')
  const over = await send(51)
  t.equal(statusOf(over), 431, '51 are refused')
  t.match(bodyOf(over), /PODGATE_TOO_MANY_HEADERS/)
  t.equal(statusOf(await send(1100)), 431, 'so are 1,100 (where a pod\'s runtime might keep only the first 1,000)')
  const defaults = await startTestGateway(t)
  t.equal(defaults.config.gateway.maxRequestHeaders, 100, 'the default cap is 100')
})

void t.test('ambiguous credentials are refused, not resolved by order', async (t) => {
  const gw = await startTestGateway(t)
  await gw.backend('alice')
  await gw.backend('bob')
  const alice = await gw.token('alice')
  const bob = await gw.token('bob')
  const cases: Array<[string, string[], number]> = [
    ['two Authorization headers that differ', ['authorization', `Bearer ${alice}`, 'authorization', `Bearer ${bob}`], 401],
    ['a bearer and a Basic Authorization', ['authorization', `Bearer ${alice}`, 'authorization', 'Basic Ym9iOng='], 401],
    ['two session cookies in one header', ['cookie', `session=${alice}; session=${bob}`], 401],
    ['two session cookies in two headers', ['cookie', `session=${bob}`, 'cookie', `theme=dark; session=${alice}`], 401],
    ['the same Authorization twice', ['authorization', `Bearer ${alice}`, 'authorization', `Bearer ${alice}`], 200],
    ['the same session cookie twice, once quoted', ['cookie', `session=${alice}; session="${alice}"`], 200],
    ['a bearer beside a different session cookie: the bearer', ['authorization', `Bearer ${alice}`, 'cookie', `session=${bob}`], 200],
  ]
  for (const [name, headers, status] of cases) {
    const res = await request(gw.url, { headers })
    t.equal(res.statusCode, status, `${name}: ${status}`)
    const body = await res.body.text()
    if (status === 401) {
      t.match(body, /more than one .* with different values/, `${name}: says why`)
      t.match(res.headers['www-authenticate'], /^Bearer realm="podgate"/)
    } else {
      t.equal((JSON.parse(body) as Echoed).user, 'alice', `${name}: alice's pod`)
    }
  }
  const metrics = await (await request(`${gw.adminUrl}/metrics`)).body.text()
  t.match(metrics, /podgate_auth_failures_total\{reason="ambiguous"\} 4/, 'counted as ambiguous')
})

void t.test('Expect: 100-continue is answered only after the token is verified', async (t) => {
  const gw = await startTestGateway(t)
  await gw.backend('alice')
  const token = await gw.token('alice')
  const refused = await exchange(gw.url, 'POST /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer not-a-token\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n')
  t.equal(statusOf(refused), 401, 'a bad token: 401 with no 100 before it')
  t.notMatch(refused, /100 Continue/)
  t.match(refused, /connection: close/i, 'and the connection closes, since the body was never asked for')

  // The honest client waits for 100 before it sends the body, as curl does.
  const { port } = new URL(gw.url)
  const socket = connect(Number(port), '127.0.0.1')
  t.teardown(() => { socket.destroy() })
  socket.write(`POST /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n`)
  let received = ''
  for await (const chunk of socket) {
    received += (chunk as Buffer).toString('latin1')
    if (received === 'HTTP/1.1 100 Continue\r\n\r\n') socket.write('hello')
  }
  t.match(received, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /, '100 Continue, then the pod\'s answer')
  t.match(received, /hello/, 'the body the client sent after 100 reached the pod')
})

void t.test('a request with an unknown user is not judged before the endpoint source has synced', async (t) => {
  const dispatcher = new Agent()
  t.teardown(() => dispatcher.close())
  const { UnsyncedSource } = await import('../support/unsynced-source.ts')
  const source = new UnsyncedSource()
  const gw = await startTestGateway(t, {}, { source })
  const token = await gw.token('alice')
  const before = await request(gw.url, { dispatcher, headers: { authorization: `Bearer ${token}` } })
  t.equal(before.statusCode, 503, 'not synced yet: 503, not 404')
  t.equal(before.headers['retry-after'], '5')
  t.match(await before.body.text(), /PODGATE_NOT_READY/)
  source.markSynced()
  const after = await request(gw.url, { dispatcher, headers: { authorization: `Bearer ${token}` } })
  t.equal(after.statusCode, 404, 'synced: a user with no workload is 404')
  await after.body.dump()
})
