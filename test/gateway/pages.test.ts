// Pages for people: a browser navigation gets a small self-contained page for each of podgate's
// errors (a program keeps the JSON), transient states reload themselves and a failed workload
// never does; upgrades get the same status and headers as JSON, and are counted like requests.
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { PassThrough } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { request } from 'undici'
import WebSocket from 'ws'
import { mintToken } from '../../src/auth/mint.ts'
import { loadConfig } from '../../src/config.ts'
import { endpoint } from '../../src/discovery/source.ts'
import {
  AuthError, ConfigError, DrainingError, ForbiddenError, LoginFailedError, NotReadyError, PodgateError, UpstreamError, UpstreamTimeoutError, WorkloadFailedError, WorkloadNotFoundError,
} from '../../src/errors.ts'
import { CONTENT_SECURITY_POLICY, errorPage, startingPage } from '../../src/gateway/pages.ts'
import { errorResponse } from '../../src/gateway/respond.ts'
import { runDemo } from '../../src/local/demo.ts'
import { createLogger } from '../../src/log.ts'
import { startTestGateway, type TestGateway } from '../support/gateway.ts'

const BROWSER = { accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' }
const API = { accept: 'application/json' }
const HOSTILE = '<script>alert(1)</script>'

interface Answer { status: number, headers: Record<string, string | string[] | undefined>, text: string }

// undici's request, not fetch(): fetch always sends Sec-Fetch-Mode: cors, which is never a navigation.
async function get (url: string, headers: Record<string, string>): Promise<Answer> {
  const res = await request(url, { headers })
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() }
}

/** The style element's content and the hash the CSP header allows must be the same. */
function styleHash (page: string): string {
  const style = /<style>([\s\S]*?)<\/style>/.exec(page)?.[1] ?? ''
  return `'sha256-${createHash('sha256').update(style).digest('base64')}'`
}

/** The failures a spawner can answer with, one user each; any other user is routed normally. */
function failures (user: string): Error | undefined {
  switch (user) {
    case 'tenant-b': return new ForbiddenError('the token\'s tenant is not the namespace this user\'s workload is in')
    case 'nobody': return new WorkloadNotFoundError('no workload for this user')
    case 'starting': return new NotReadyError('the workload API is not answering', 7)
    case 'draining': return new DrainingError('draining')
    case 'failed': return new WorkloadFailedError(`ImagePullBackOff: ${HOSTILE} registry.example/nope:1 not found`)
    default: return undefined
  }
}

async function gatewayWithFailures (t: Parameters<typeof startTestGateway>[0], env: Record<string, string> = {}, logger?: ReturnType<typeof createLogger>): Promise<TestGateway> {
  return startTestGateway(t, env, {
    onMissing: (user) => Promise.reject(failures(user) ?? new WorkloadNotFoundError('no workload for this user')),
    ...(logger === undefined ? {} : { logger }),
  })
}

void t.test('each error gets its page in a browser and its JSON elsewhere', async (t) => {
  const gw = await gatewayWithFailures(t)
  const table: Array<{ user: string | undefined, status: number, title: string, retryAfter?: string, refresh?: number, code: string }> = [
    { user: undefined, status: 401, title: 'Sign in to continue', code: 'PODGATE_AUTH' },
    { user: 'tenant-b', status: 403, title: 'Not allowed', code: 'PODGATE_FORBIDDEN' },
    { user: 'nobody', status: 404, title: 'No workspace for you', code: 'PODGATE_NO_WORKLOAD' },
    { user: 'starting', status: 503, title: 'Not ready yet', retryAfter: '7', refresh: 7, code: 'PODGATE_NOT_READY' },
    { user: 'draining', status: 503, title: 'Back in a moment', retryAfter: '1', refresh: 1, code: 'PODGATE_DRAINING' },
    { user: 'failed', status: 503, title: 'Your workspace could not start', retryAfter: '30', code: 'PODGATE_WORKLOAD_FAILED' },
  ]
  for (const row of table) {
    const name = `${row.status} ${row.code}`
    const auth: Record<string, string> = row.user === undefined ? {} : { authorization: `Bearer ${await gw.token(row.user)}` }
    const page = await get(`${gw.url}/lab`, { ...BROWSER, ...auth })
    t.equal(page.status, row.status, `${name}: status`)
    t.equal(page.headers['content-type'], 'text/html; charset=utf-8', `${name}: a page`)
    t.equal(page.headers['content-security-policy'], CONTENT_SECURITY_POLICY, `${name}: CSP`)
    t.match(CONTENT_SECURITY_POLICY, styleHash(page.text), `${name}: the CSP allows exactly the page's style`)
    t.equal(page.headers['x-content-type-options'], 'nosniff')
    t.equal(page.headers['cache-control'], 'no-store', `${name}: not cached`)
    t.match(page.headers.vary, /Accept/, `${name}: Vary`)
    t.equal(page.headers['retry-after'], row.retryAfter, `${name}: Retry-After`)
    t.match(page.text, `<title>${row.title}</title>`, `${name}: says what happened`)
    if (row.refresh === undefined) t.notMatch(page.text, 'http-equiv="refresh"', `${name}: does not reload itself`)
    else t.match(page.text, `<meta http-equiv="refresh" content="${row.refresh}">`, `${name}: reloads itself after Retry-After`)
    if (row.user !== undefined && row.status !== 503) t.match(page.text, `<strong>${row.user}</strong>`, `${name}: names the user`)
    t.notMatch(page.text, /<script|<link|<img|src=|https?:\/\//i, `${name}: self-contained, and the reason is escaped`)
    t.ok(Buffer.byteLength(page.text) < 4_096, `${name}: small (${Buffer.byteLength(page.text)} bytes)`)
    if (row.status === 401) t.equal(page.headers['www-authenticate'], 'Bearer realm="podgate"', `${name}: the challenge, on a page too`)

    const api = await get(`${gw.url}/lab`, { ...API, ...auth })
    t.equal(api.status, row.status, `${name}: same status for a program`)
    t.equal(api.headers['content-type'], 'application/json; charset=utf-8')
    t.equal(api.headers['content-security-policy'], undefined)
    t.equal(api.headers['retry-after'], row.retryAfter)
    t.same(Object.keys(JSON.parse(api.text) as object), ['error', 'message'], `${name}: the JSON as before`)
    t.equal((JSON.parse(api.text) as { error: string }).error, row.code)
  }
  const failed = await get(`${gw.url}/`, { ...BROWSER, authorization: `Bearer ${await gw.token('failed')}` })
  t.match(failed.text, `ImagePullBackOff: &lt;script&gt;alert(1)&lt;/script&gt; registry.example/nope:1 not found`, 'the reason, escaped')
  t.match(failed.text, 'Tell the operator of this service', 'says what the person can do')
  t.match(failed.text, '<a href="">check again</a>', 'a plain link that asks again; nothing reaches a pod that is not running')
})

void t.test('a program that takes HTML but is not navigating gets JSON: XHR, CORS fetch, POST', async (t) => {
  const gw = await gatewayWithFailures(t)
  const auth = { authorization: `Bearer ${await gw.token('nobody')}` }
  for (const [name, headers] of [
    ['XMLHttpRequest', { ...BROWSER, ...auth, 'x-requested-with': 'XMLHttpRequest' }],
    ['fetch() in a page', { ...BROWSER, ...auth, 'sec-fetch-mode': 'cors', 'sec-fetch-dest': 'empty' }],
    ['curl', { ...auth, accept: '*/*' }],
  ] as const) {
    const res = await get(`${gw.url}/`, headers)
    t.equal(res.headers['content-type'], 'application/json; charset=utf-8', name)
    t.equal(res.status, 404)
  }
  const post = await request(`${gw.url}/`, { method: 'POST', headers: { ...BROWSER, ...auth }, body: 'x' })
  t.equal(post.headers['content-type'], 'application/json; charset=utf-8', 'a form POST')
  t.equal(post.headers.vary, undefined, 'a POST never varies: it is never a page')
  await post.body.dump()
})

void t.test('502 and 504 from the pod: a page with a retry link that does not reload itself', async (t) => {
  const gw = await startTestGateway(t, { PODGATE_HEADERS_TIMEOUT: '300ms' })
  // A port that refuses connections, and one that takes requests and never answers.
  const closed = createServer()
  closed.listen(0, '127.0.0.1')
  await once(closed, 'listening')
  const closedPort = (closed.address() as { port: number }).port
  closed.close()
  await once(closed, 'close')
  const silent = createServer(() => {})
  silent.listen(0, '127.0.0.1')
  await once(silent, 'listening')
  t.teardown(() => { silent.close() })
  gw.local.set('gone', [endpoint('127.0.0.1', closedPort)])
  gw.local.set('stuck', [endpoint('127.0.0.1', (silent.address() as { port: number }).port)])
  for (const [user, status, title, code] of [['gone', 502, 'Your workspace is not answering', 'PODGATE_UPSTREAM'], ['stuck', 504, 'Your workspace is taking too long', 'PODGATE_UPSTREAM_TIMEOUT']] as const) {
    const auth = { authorization: `Bearer ${await gw.token(user)}` }
    const page = await get(`${gw.url}/`, { ...BROWSER, ...auth })
    t.equal(page.status, status)
    t.equal(page.headers['content-type'], 'text/html; charset=utf-8')
    t.match(page.text, title)
    t.match(page.text, '<a href="">Try again</a>')
    t.notMatch(page.text, 'http-equiv="refresh"', 'a broken pod is not hammered by reloads')
    const api = await get(`${gw.url}/`, { ...API, ...auth })
    t.equal(api.status, status)
    t.match(JSON.parse(api.text), { error: code })
  }
})

void t.test('every page escapes the user id and the message', (t) => {
  const errors: PodgateError[] = [
    new AuthError('claim', HOSTILE), new AuthError('missing', HOSTILE), new ForbiddenError(HOSTILE), new WorkloadNotFoundError(HOSTILE),
    new NotReadyError(HOSTILE, 3), new DrainingError(HOSTILE), new WorkloadFailedError(HOSTILE), new UpstreamError('connect', HOSTILE),
    new UpstreamTimeoutError(HOSTILE), new LoginFailedError(HOSTILE), new PodgateError(HOSTILE),
  ]
  for (const error of errors) {
    const page = errorPage(error, HOSTILE)
    t.notMatch(page, '<script', `${error.name}: nothing unescaped`)
    t.match(page, '&lt;script&gt;alert(1)&lt;/script&gt;', `${error.name}: shown escaped`)
  }
  t.notMatch(startingPage({ user: HOSTILE, refreshSeconds: 3 }), '<script')
  t.end()
})

void t.test('a 429 with Retry-After reloads itself after it; the renderer decides for any error class', (t) => {
  class RateLimitedError extends PodgateError {
    override readonly code = 'PODGATE_RATE_LIMITED'
    override readonly status = 429
    readonly retryAfterSeconds = 9
  }
  const req = { method: 'GET', url: '/', headers: BROWSER, socket: undefined as never }
  const page = errorResponse(new RateLimitedError('slow down'), { req })
  t.equal(page.status, 429)
  t.equal(page.headers['retry-after'], '9')
  t.match(page.body, '<meta http-equiv="refresh" content="9">')
  t.match(page.body, 'Too many requests')
  const upgrade = errorResponse(new RateLimitedError('slow down'), { req, upgrade: true })
  t.equal(upgrade.headers['content-type'], 'application/json; charset=utf-8', 'an upgrade is never a page')
  t.equal(upgrade.headers['retry-after'], '9')
  t.equal(upgrade.headers.vary, undefined)
  const internal = errorResponse(new Error('secret internals'), { req: { ...req, headers: API } })
  t.same([internal.status, JSON.parse(internal.body)], [500, { error: 'PODGATE_ERROR', message: 'internal error' }], 'anything else is a bare 500')
  t.end()
})

/** Answers an upgrade request: [status, headers, body] (101 when upgraded). */
function upgrade (gw: TestGateway, headers: Record<string, string>): Promise<[number, Record<string, unknown>, string]> {
  const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/ws`, { headers })
  ws.on('error', () => {})
  return new Promise((resolve) => {
    ws.once('upgrade', (res) => { resolve([res.statusCode ?? 0, res.headers, '']); ws.close() })
    ws.once('unexpected-response', (_req, res) => {
      let text = ''
      res.on('data', (chunk: Buffer) => { text += String(chunk) })
      res.on('end', () => { resolve([res.statusCode ?? 0, res.headers, text]); ws.terminate() })
    })
  })
}

void t.test('upgrades get the same status, Retry-After and challenge as JSON, and are counted and logged like requests', async (t) => {
  const log = new PassThrough()
  let lines = ''
  log.on('data', (chunk: Buffer) => { lines += String(chunk) })
  const gw = await gatewayWithFailures(t, { PODGATE_ACCESS_LOG: 'true' }, createLogger('info', log))
  await gw.backend('alice')
  const expired = await mintToken({ secret: new TextEncoder().encode(gw.secret), user: 'alice', ttlSeconds: 1, clock: { now: () => Date.now() - 3_600_000, setTimeout, clearTimeout } as never })

  const [none, noneHeaders, noneBody] = await upgrade(gw, BROWSER)
  t.equal(none, 401, 'no token: 401 even for a browser, never a redirect or a page')
  t.equal(noneHeaders['www-authenticate'], 'Bearer realm="podgate"')
  t.equal(noneHeaders['content-type'], 'application/json; charset=utf-8')
  t.equal(noneHeaders['cache-control'], 'no-store')
  t.match(JSON.parse(noneBody), { error: 'PODGATE_AUTH' })

  const [stale, staleHeaders] = await upgrade(gw, { authorization: `Bearer ${expired}` })
  t.equal(stale, 401)
  t.equal(staleHeaders['www-authenticate'], 'Bearer realm="podgate", error="invalid_token"', 'the token\'s fault, said the way RFC 6750 says it')

  const [busy, busyHeaders, busyBody] = await upgrade(gw, { authorization: `Bearer ${await gw.token('starting')}` })
  t.equal(busy, 503)
  t.equal(busyHeaders['retry-after'], '7', 'Retry-After on an upgrade too')
  t.match(JSON.parse(busyBody), { error: 'PODGATE_NOT_READY' })

  const [failed, failedHeaders] = await upgrade(gw, { authorization: `Bearer ${await gw.token('failed')}` })
  t.equal(failed, 503)
  t.equal(failedHeaders['retry-after'], '30')

  const [upgraded] = await upgrade(gw, { authorization: `Bearer ${await gw.token('alice')}` })
  t.equal(upgraded, 101)

  const metrics = await (await request(`${gw.adminUrl}/metrics`)).body.text()
  t.match(metrics, /podgate_requests_total\{class="1xx",source="pod"\} 1\n/, 'the upgrade that went through: 101')
  t.match(metrics, /podgate_requests_total\{class="4xx",source="podgate"\} 2\n/, 'the two refused')
  t.match(metrics, /podgate_requests_total\{class="5xx",source="podgate"\} 2\n/, 'the two that could not be served')
  t.match(metrics, /podgate_request_duration_seconds_count\{class="1xx"\} 1\n/)
  // The upgraded one is logged when it ends (the helper closes it once upgraded).
  for (let i = 0; i < 200 && !lines.includes('"status":101'); i++) await sleep(10)
  const logged = lines.split('\n').filter((line) => line.includes('"msg":"request"')).map((line) => JSON.parse(line) as { method: string, path: string, status: number, aborted: boolean })
  t.same(logged.map((l) => [l.method, l.path, l.status, l.aborted]), [['GET', '/ws', 401, false], ['GET', '/ws', 401, false], ['GET', '/ws', 503, false], ['GET', '/ws', 503, false], ['GET', '/ws', 101, false]], 'one access-log line each')
})

void t.test('PODGATE_BROWSER_GRACE: 2s by default, at most PODGATE_START_TIMEOUT', (t) => {
  const key = { PODGATE_JWT_SECRET: 'x'.repeat(32) }
  t.equal(loadConfig(key).gateway.browserGraceMs, 2_000)
  t.equal(loadConfig({ ...key, PODGATE_BROWSER_GRACE: '0' }).gateway.browserGraceMs, 0, '0: the starting page at once')
  t.equal(loadConfig({ ...key, PODGATE_BROWSER_GRACE: '500ms' }).gateway.browserGraceMs, 500)
  t.equal(loadConfig({ ...key, PODGATE_START_TIMEOUT: '1s' }).gateway.browserGraceMs, 1_000, 'the default never outlasts a shorter start timeout')
  t.throws(() => loadConfig({ ...key, PODGATE_START_TIMEOUT: '1s', PODGATE_BROWSER_GRACE: '5s' }), new ConfigError('PODGATE_BROWSER_GRACE', 'must not exceed PODGATE_START_TIMEOUT (1000 ms), got 5000 ms'))
  t.throws(() => loadConfig({ ...key, PODGATE_BROWSER_GRACE: 'soon' }), new ConfigError('PODGATE_BROWSER_GRACE', 'expected a duration such as 500ms, 30s, 10m or 1h, got "soon"'))
  t.end()
})

void t.test('podgate demo: a browser sees the starting page while a new user\'s backend starts', async (t) => {
  const secret = 'a demo secret that is at least thirty-two bytes long'
  const env = { PODGATE_JWT_SECRET: secret, PODGATE_PORT: '0', PODGATE_ADMIN_PORT: '0', PODGATE_ACCESS_LOG: 'false', PODGATE_BROWSER_GRACE: '300ms' }
  const out = new PassThrough()
  let output = ''
  out.on('data', (chunk: Buffer) => { output += String(chunk) })
  const demo = await runDemo({ config: loadConfig(env, { requireKey: false }), env, logger: createLogger('silent'), out })
  t.teardown(() => demo.close())
  t.match(output, /carol's backend takes 2300ms to start/, 'the instructions say so')
  t.match(output, /curl -si http:\/\/127\.0\.0\.1:\d+\/ -H 'Accept: text\/html' -H 'Authorization: Bearer [\w.-]+'/)

  const created = await request(`${demo.adminUrl}/api/users/carol`, { method: 'PUT', headers: { authorization: `Bearer ${demo.adminToken}` } })
  t.equal(created.statusCode, 201)
  await created.body.dump()
  const carol = { authorization: `Bearer ${await mintToken({ secret: new TextEncoder().encode(secret), user: 'carol', ttlSeconds: 60 })}` }
  const started = performance.now()
  const page = await get(`${demo.gatewayUrl}/`, { ...BROWSER, ...carol })
  t.equal(page.status, 503)
  t.match(page.text, 'Starting your workspace')
  t.ok(performance.now() - started < 2_000, 'after PODGATE_BROWSER_GRACE, before the backend is up')
  const api = await get(`${demo.gatewayUrl}/`, { ...API, ...carol })
  t.equal(api.status, 200, 'an API client waits for the backend')
  t.equal((JSON.parse(api.text) as { user: string }).user, 'carol')
  const alice = await get(`${demo.gatewayUrl}/`, { ...BROWSER, authorization: `Bearer ${demo.tokens.alice}` })
  t.equal(alice.status, 200, 'the demo users are ready at once')
})
