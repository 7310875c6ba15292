// The external verifier (PODGATE_AUTH_URL) against a real auth service on 127.0.0.1: what it
// sends, what each answer becomes, what is remembered and for how long, one call for many
// concurrent misses, hostile answers, revocation, the mode switch and the metrics.
import { once } from 'node:events'
import type { IncomingHttpHeaders } from 'node:http'
import { createServer } from 'node:net'
import { Writable } from 'node:stream'
import t, { type Test } from 'tap'
import { createCredentialVerifier } from '../../src/auth/credential-verifier.ts'
import { MAX_AUTH_URL_BODY_BYTES } from '../../src/auth/external.ts'
import type { CredentialRequest, TokenVerifier } from '../../src/auth/identity.ts'
import type { Clock } from '../../src/clock.ts'
import { loadConfig, type Env } from '../../src/config.ts'
import { AuthError, NotReadyError } from '../../src/errors.ts'
import { createLogger } from '../../src/log.ts'
import { Metrics } from '../../src/metrics.ts'
import { startAuthService, tokenTable, type AuthHandler } from '../support/auth-service.ts'
import { TEST_SECRET_TEXT, signToken, testSecret } from '../support/keys.ts'
import { ManualClock } from '../support/manual-clock.ts'

const OPAQUE = 'c2VjcmV0LW9wYXF1ZS10b2tlbi1mb3ItYWxpY2U'
const TABLE = { [OPAQUE]: 'alice', 'opaque-bob': 'bob' }

interface Setup {
  readonly verifier: TokenVerifier
  readonly metrics: Metrics
  /** Every log line written, as text. */
  readonly logs: string[]
}

function setup (t: Test, url: string, env: Env = {}, clock?: Clock): Setup {
  const config = loadConfig({ PODGATE_JWT_SECRET: TEST_SECRET_TEXT, PODGATE_AUTH_URL: url, ...env })
  const metrics = new Metrics({ defaultMetrics: false })
  const logs: string[] = []
  const sink = new Writable({ write (chunk, _encoding, done) { logs.push(String(chunk)); done() } })
  const verifier = createCredentialVerifier(config, { metrics, logger: createLogger('debug', sink), clock })
  t.teardown(() => { verifier.close() })
  return { verifier, metrics, logs }
}

/** A request as the gateway hands it over (an IncomingMessage has these fields). */
function bearer (token: string, extra: IncomingHttpHeaders = {}): CredentialRequest {
  return { headers: { host: 'app.example', authorization: `Bearer ${token}`, ...extra }, method: 'GET', url: '/' }
}

async function counts (metrics: Metrics, name: string): Promise<Record<string, number>> {
  const metric = metrics.registry.getSingleMetric(name)
  if (metric === undefined) throw new Error(`${name} is not registered`)
  const values = (await metric.get()).values
  return Object.fromEntries(values.filter((v) => v.value > 0).map((v) => [String(v.labels.result), v.value]))
}

async function durationCount (metrics: Metrics): Promise<number> {
  const metric = metrics.registry.getSingleMetric('podgate_auth_url_request_duration_seconds')
  const values = (await metric?.get())?.values ?? []
  return values.find((v) => (v as { metricName?: string }).metricName === 'podgate_auth_url_request_duration_seconds_count')?.value ?? 0
}

async function closedPort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  await once(server, 'close')
  return port
}

void t.test('an allowed credential: the user from the header, and the request the service sees', async (t) => {
  const service = await startAuthService(t, tokenTable(TABLE))
  const { verifier } = setup(t, `${service.url}?via=podgate`)
  const identity = await verifier.verify(OPAQUE, {
    headers: { host: 'app.example:8080', cookie: `theme=dark; session=${OPAQUE}`, 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil.example' },
    method: 'POST',
    url: '/notebooks/7?tab=2',
  })
  t.equal(identity.user, 'alice')
  t.equal(identity.tenant, undefined)
  t.equal(service.calls.length, 1)
  const call = service.calls[0]
  t.equal(call?.method, 'GET')
  t.equal(call?.url, '/auth/validate?via=podgate', 'the configured path and query')
  t.equal(call?.headers.cookie, `session=${OPAQUE}`, 'the session cookie alone: the credential the answer is remembered for')
  t.equal(call?.headers.authorization, undefined, 'no Authorization when the client sent none')
  t.equal(call?.headers['x-original-url'], 'http://app.example:8080/notebooks/7?tab=2', 'X-Forwarded-* are not believed without PODGATE_TRUST_PROXY')
  t.equal(call?.headers['x-original-method'], 'POST')

  const trusting = setup(t, service.url, { PODGATE_TRUST_PROXY: 'true' })
  await trusting.verifier.verify('opaque-bob', bearer('opaque-bob', { 'x-forwarded-proto': 'https, http', 'x-forwarded-host': 'podgate.example.org, inner' }))
  t.equal(service.calls[1]?.headers['x-original-url'], 'https://podgate.example.org/', 'behind a trusted proxy: the first X-Forwarded-Proto and -Host')
  t.equal(service.calls[1]?.headers.authorization, 'Bearer opaque-bob')

  // A bearer token beside someone else's session cookie: the service judges the bearer token alone.
  await t.rejects(trusting.verifier.verify('opaque-carl', bearer('opaque-carl', { cookie: `session=${OPAQUE}` })), { name: 'AuthError', reason: 'refused' })
  t.equal(service.calls.at(-1)?.headers.cookie, undefined, 'the cookie beside a bearer token is not sent')
  t.equal(service.calls.at(-1)?.headers.authorization, 'Bearer opaque-carl')

  await trusting.verifier.verify(OPAQUE)
  t.equal(service.calls.at(-1)?.headers.authorization, `Bearer ${OPAQUE}`, 'without a request the credential goes as a bearer token')
})

void t.test('401 and 403 refuse the credential (reason refused); other statuses are 503', async (t) => {
  let status = 401
  const service = await startAuthService(t, (_req, res) => { res.writeHead(status).end() })
  const { verifier } = setup(t, service.url, { PODGATE_AUTH_URL_NEGATIVE_TTL: '0' })
  await t.rejects(verifier.verify('nope', bearer('nope')), { name: 'AuthError', reason: 'refused', status: 401 })
  status = 403
  await t.rejects(verifier.verify('nope', bearer('nope')), { name: 'AuthError', reason: 'refused' })
  for (const other of [400, 404, 429, 500, 502, 503, 204]) {
    status = other
    const err = await verifier.verify('nope', bearer('nope')).catch((e: unknown) => e)
    if (other === 204) {
      t.ok(err instanceof AuthError && err.reason === 'user', '204 is a 2xx: allowed, but without a user it is refused (user)')
      continue
    }
    t.ok(err instanceof NotReadyError, `${other} → 503`)
    t.equal((err as NotReadyError).retryAfterSeconds, 5, `${other}: Retry-After`)
  }
})

void t.test('PODGATE_AUTH_URL_USER_HEADER and _PREFIX: X-Target-Service: user-alice is alice', async (t) => {
  const service = await startAuthService(t, tokenTable({ ...TABLE, unprefixed: 'x' }, 'X-Target-Service', 'user-'))
  const { verifier } = setup(t, service.url, { PODGATE_AUTH_URL_USER_HEADER: 'X-Target-Service', PODGATE_AUTH_URL_USER_PREFIX: 'user-' })
  t.equal((await verifier.verify(OPAQUE, bearer(OPAQUE))).user, 'alice')
  service.handler = (_req, res) => { res.writeHead(200, { 'X-Target-Service': 'alice' }).end() }
  await t.rejects(verifier.verify('unprefixed', bearer('unprefixed')), { name: 'AuthError', reason: 'user', message: /does not start with PODGATE_AUTH_URL_USER_PREFIX/ })
  service.handler = (_req, res) => { res.writeHead(200, { 'X-Target-Service': 'user-' }).end() }
  await t.rejects(verifier.verify('empty', bearer('empty')), { name: 'AuthError', reason: 'user', message: /not a DNS-1123 label/ })
})

void t.test('single flight: 200 concurrent verifications of one new credential make one call', async (t) => {
  const service = await startAuthService(t, (req, res) => {
    // Answer late, so every caller is waiting while the call is out.
    setTimeout(() => { tokenTable(TABLE)(req, res) }, 50)
  })
  const { verifier, metrics } = setup(t, service.url)
  const results = await Promise.all(Array.from({ length: 200 }, () => verifier.verify(OPAQUE, bearer(OPAQUE))))
  t.equal(service.calls.length, 1, 'one call')
  t.ok(results.every((identity) => identity.user === 'alice'), 'every caller gets alice')
  t.same(await counts(metrics, 'podgate_auth_url_requests_total'), { allowed: 1 })
  t.same(await counts(metrics, 'podgate_auth_url_cache_total'), { miss: 200 }, 'each joined the call in flight')

  // A refusal is shared the same way.
  const refusals = await Promise.allSettled(Array.from({ length: 200 }, () => verifier.verify('stolen', bearer('stolen'))))
  t.equal(service.calls.length, 2, 'one more call')
  t.ok(refusals.every((r) => r.status === 'rejected' && (r.reason as AuthError).reason === 'refused'))
})

void t.test('allowed credentials are remembered for PODGATE_AUTH_URL_TTL, refused ones for PODGATE_AUTH_URL_NEGATIVE_TTL', async (t) => {
  const clock = new ManualClock()
  const service = await startAuthService(t, tokenTable(TABLE))
  const { verifier, metrics } = setup(t, service.url, {}, clock)
  t.equal(verifier.cached(OPAQUE), undefined, 'nothing before the first call')
  const first = await verifier.verify(OPAQUE, bearer(OPAQUE))
  t.equal(first.expiresAt, clock.now() + 60_000, 'valid for the default 60 s')
  t.equal(verifier.cached(OPAQUE), first, 'cached() answers without a call')
  t.equal(await verifier.verify(OPAQUE, bearer(OPAQUE)), first, 'and so does verify()')
  await clock.advance(59_999)
  t.equal(verifier.cached(OPAQUE)?.user, 'alice', 'still remembered 1 ms before the TTL ends')
  t.equal(service.calls.length, 1)
  await clock.advance(1)
  t.equal(verifier.cached(OPAQUE), undefined, 'forgotten at the TTL')
  await verifier.verify(OPAQUE, bearer(OPAQUE))
  t.equal(service.calls.length, 2, 'asked again')

  await t.rejects(verifier.verify('stolen', bearer('stolen')), { name: 'AuthError', reason: 'refused' })
  t.equal(service.calls.length, 3)
  await clock.advance(4_999)
  await t.rejects(verifier.verify('stolen', bearer('stolen')), { name: 'AuthError', reason: 'refused' }, 'refused from memory within 5 s')
  t.equal(verifier.cached('stolen'), undefined, 'a refusal never answers cached()')
  t.equal(service.calls.length, 3, 'without a call')
  await clock.advance(1)
  await t.rejects(verifier.verify('stolen', bearer('stolen')), { name: 'AuthError', reason: 'refused' })
  t.equal(service.calls.length, 4, 'asked again after 5 s')
  t.same(await counts(metrics, 'podgate_auth_url_cache_total'), { hit: 4, miss: 4 })
})

void t.test('PODGATE_AUTH_URL_TTL=0 and PODGATE_TOKEN_CACHE_SIZE=0 remember nothing', async (t) => {
  const service = await startAuthService(t, tokenTable(TABLE))
  for (const env of [{ PODGATE_AUTH_URL_TTL: '0', PODGATE_AUTH_URL_NEGATIVE_TTL: '0' }, { PODGATE_TOKEN_CACHE_SIZE: '0' }]) {
    const before = service.calls.length
    const { verifier } = setup(t, service.url, env)
    await verifier.verify(OPAQUE, bearer(OPAQUE))
    t.equal(verifier.cached(OPAQUE), undefined, JSON.stringify(env))
    await verifier.verify(OPAQUE, bearer(OPAQUE))
    await t.rejects(verifier.verify('stolen', bearer('stolen')))
    await t.rejects(verifier.verify('stolen', bearer('stolen')))
    t.equal(service.calls.length - before, 4, `${JSON.stringify(env)}: every verification asks`)
  }
})

interface HostileCase {
  readonly name: string
  readonly handler: AuthHandler
  /** The AuthError reason, or 'not-ready' for a 503. */
  readonly expected: AuthError['reason'] | 'not-ready'
}

void t.test('hostile answers: each a 401 or a 503, nothing remembered, the next request asks again', async (t) => {
  const redirectTarget = await startAuthService(t, tokenTable(TABLE))
  let bodyCut = 0
  const bigBody = (declare: boolean): AuthHandler => (_req, res) => {
    res.writeHead(200, declare ? { 'x-user-id': 'alice', 'content-length': String(10 * 1024 * 1024) } : { 'x-user-id': 'alice' })
    const chunk = Buffer.alloc(64 * 1024, 0x61)
    let sent = 0
    res.on('close', () => { if (!res.writableFinished) bodyCut++ })
    const pump = (): void => {
      while (sent < 10 * 1024 * 1024) {
        sent += chunk.length
        if (!res.write(chunk)) {
          res.once('drain', pump)
          return
        }
      }
      res.end()
    }
    pump()
  }
  const cases: HostileCase[] = [
    { name: '2xx without the user header', handler: (_req, res) => { res.writeHead(200).end() }, expected: 'user' },
    { name: 'an invalid user id', handler: (_req, res) => { res.writeHead(200, { 'x-user-id': 'Alice Smith' }).end() }, expected: 'user' },
    { name: 'a path as user id', handler: (_req, res) => { res.writeHead(200, { 'x-user-id': '../admin' }).end() }, expected: 'user' },
    { name: 'two user header values', handler: (_req, res) => { res.setHeader('x-user-id', ['alice', 'bob']); res.writeHead(200).end() }, expected: 'user' },
    { name: 'a 30 s hang', handler: (_req, res) => { setTimeout(() => { res.writeHead(200, { 'x-user-id': 'alice' }).end() }, 30_000).unref() }, expected: 'not-ready' },
    { name: 'headers, then a body that stalls', handler: (_req, res) => { res.writeHead(200, { 'x-user-id': 'alice' }); res.write('x') }, expected: 'not-ready' },
    { name: 'a 10 MB chunked body', handler: bigBody(false), expected: 'not-ready' },
    { name: 'a declared 10 MB body', handler: bigBody(true), expected: 'not-ready' },
    { name: 'a 302 redirect to a service that would allow', handler: (_req, res) => { res.writeHead(302, { location: redirectTarget.url, 'x-user-id': 'alice' }).end() }, expected: 'not-ready' },
    { name: 'a 500', handler: (_req, res) => { res.writeHead(500, { 'x-user-id': 'alice' }).end() }, expected: 'not-ready' },
    { name: 'a reset connection', handler: (req) => { req.socket.destroy() }, expected: 'not-ready' },
  ]
  const service = await startAuthService(t, tokenTable(TABLE))
  const { verifier, metrics, logs } = setup(t, service.url, { PODGATE_AUTH_URL_TIMEOUT: '300ms' })
  for (const { name, handler, expected } of cases) {
    service.handler = handler
    const before = service.calls.length
    const started = performance.now()
    const err = await verifier.verify(OPAQUE, bearer(OPAQUE)).catch((e: unknown) => e)
    const ms = performance.now() - started
    if (expected === 'not-ready') {
      t.ok(err instanceof NotReadyError && err.status === 503 && err.retryAfterSeconds > 0, `${name}: 503 with Retry-After`)
    } else {
      t.ok(err instanceof AuthError && err.reason === expected, `${name}: 401 (${expected})`)
    }
    t.ok(ms < 5_000, `${name}: answered in ${Math.round(ms)} ms`)
    t.equal(verifier.cached(OPAQUE), undefined, `${name}: not remembered`)
    service.handler = tokenTable(TABLE)
    t.equal((await verifier.verify(OPAQUE, bearer(OPAQUE))).user, 'alice', `${name}: the next verification asks again and succeeds`)
    t.equal(service.calls.length - before, 2, `${name}: two calls`)
    await t.rejects(verifier.verify('stolen', bearer('stolen')), { name: 'AuthError', reason: 'refused' })
    verifier.revoke('alice', 0)
  }
  t.equal(redirectTarget.calls.length, 0, 'the redirect was not followed')
  t.equal(bodyCut, 2, 'both 10 MB bodies were cut off, not read to the end')
  const requests = await counts(metrics, 'podgate_auth_url_requests_total')
  t.equal(requests.error, cases.length, 'each hostile answer counted as an error')
  t.equal(requests.allowed, cases.length)
  t.notOk(logs.some((line) => line.includes(OPAQUE)), 'no log line carries the credential')
  const warnings = logs.map((line) => JSON.parse(line) as { level: number, msg: string }).filter((line) => line.level === 40)
  t.equal(warnings.filter((w) => /without a usable identity/.test(w.msg)).length, 3, 'one warning per kind of unusable 2xx (missing, not a label, repeated)')
  t.ok(warnings.some((w) => /answering 503/.test(w.msg)), 'the first failure of a streak is a warning')
})

void t.test('the service down: 503 for a new credential, remembered ones keep working', async (t) => {
  const service = await startAuthService(t, tokenTable(TABLE))
  const { verifier } = setup(t, service.url)
  await verifier.verify(OPAQUE, bearer(OPAQUE))
  await service.close()
  t.equal(verifier.cached(OPAQUE)?.user, 'alice', 'remembered')
  await t.rejects(verifier.verify('opaque-bob', bearer('opaque-bob')), { name: 'NotReadyError', status: 503, message: /could not be reached \(ECONNREFUSED\)/ })

  const refused = setup(t, `http://127.0.0.1:${await closedPort()}/auth`)
  await t.rejects(refused.verifier.verify(OPAQUE, bearer(OPAQUE)), { name: 'NotReadyError' }, 'connection refused')
})

void t.test('revoke drops the user\'s remembered allowances; a call in flight across it is not remembered', async (t) => {
  const clock = new ManualClock()
  const service = await startAuthService(t, tokenTable(TABLE))
  const { verifier } = setup(t, service.url, {}, clock)
  await verifier.verify(OPAQUE, bearer(OPAQUE))
  await verifier.verify('opaque-bob', bearer('opaque-bob'))
  verifier.revoke('alice', clock.now() / 1000)
  t.equal(verifier.cached(OPAQUE), undefined, 'alice is forgotten')
  t.equal(verifier.cached('opaque-bob')?.user, 'bob', 'bob is kept')
  await verifier.verify(OPAQUE, bearer(OPAQUE))
  t.equal(service.calls.length, 3, 'alice\'s next request asks again')

  let release = (): void => {}
  service.handler = (req, res) => { release = () => { tokenTable(TABLE)(req, res) } }
  verifier.revoke('alice', clock.now() / 1000)
  const inFlight = verifier.verify(OPAQUE, bearer(OPAQUE))
  while (service.calls.length < 4) await new Promise((resolve) => setImmediate(resolve))
  verifier.revoke('alice', clock.now() / 1000)
  release()
  t.equal((await inFlight).user, 'alice', 'the answer stands for the request that asked')
  t.equal(verifier.cached(OPAQUE), undefined, 'but is not remembered')
})

void t.test('fallback sends JWT-shaped credentials to the JWT verifier only; always sends everything out', async (t) => {
  const service = await startAuthService(t, tokenTable(TABLE))
  const jwt = await signToken(testSecret(), 'HS256', { sub: 'carol' })
  const forged = await signToken(new TextEncoder().encode('another-secret-of-at-least-32-bytes!!'), 'HS256', { sub: 'alice' })

  const fallback = setup(t, service.url)
  t.equal((await fallback.verifier.verify(jwt, bearer(jwt))).user, 'carol', 'a JWT is verified in-process')
  t.equal(fallback.verifier.cached(jwt)?.user, 'carol', 'and cached like any JWT')
  await t.rejects(fallback.verifier.verify(forged, bearer(forged)), { name: 'AuthError', reason: 'signature' }, 'a forged JWT is refused by jose, never sent out')
  t.equal(service.calls.length, 0, 'no call for JWT-shaped credentials')
  t.equal((await fallback.verifier.verify(OPAQUE, bearer(OPAQUE))).user, 'alice', 'an opaque credential goes out')
  t.equal(service.calls.length, 1)
  t.equal(fallback.verifier.cached(OPAQUE)?.user, 'alice')
  t.same(await counts(fallback.metrics, 'podgate_token_cache_total'), { hit: 1 }, 'the opaque credential never touched the JWT cache')

  service.handler = (_req, res) => { res.writeHead(200, { 'x-user-id': 'dave' }).end() }
  const always = setup(t, service.url, { PODGATE_AUTH_URL_MODE: 'always', PODGATE_JWT_SECRET: '' })
  t.equal((await always.verifier.verify(jwt, bearer(jwt))).user, 'dave', 'always: even a valid JWT is the service\'s call')
  t.equal((await always.verifier.verify(forged, bearer(forged))).user, 'dave')
  t.equal(service.calls.length, 3)
  t.equal(always.verifier.cached(jwt)?.user, 'dave')
})

void t.test('with PODGATE_TENANT_CLAIM the tenant comes from PODGATE_AUTH_URL_TENANT_HEADER', async (t) => {
  let tenant: string | string[] | undefined = 'team-a'
  const service = await startAuthService(t, (_req, res) => {
    if (tenant !== undefined) res.setHeader('x-tenant', tenant)
    res.writeHead(200, { 'x-user-id': 'alice' }).end()
  })
  const { verifier } = setup(t, service.url, { PODGATE_TENANT_CLAIM: 'tenant', PODGATE_AUTH_URL_TENANT_HEADER: 'X-Tenant', PODGATE_AUTH_URL_TTL: '0' })
  const identity = await verifier.verify(OPAQUE, bearer(OPAQUE))
  t.same([identity.user, identity.tenant], ['alice', 'team-a'])
  for (const bad of [undefined, 'Team A', ['team-a', 'team-b']]) {
    tenant = bad
    await t.rejects(verifier.verify(OPAQUE, bearer(OPAQUE)), { name: 'AuthError', reason: 'claim' }, JSON.stringify(bad))
  }
})

void t.test('metrics: calls by result, their durations, cache lookups', async (t) => {
  const service = await startAuthService(t, tokenTable(TABLE))
  const { verifier, metrics } = setup(t, service.url)
  await verifier.verify(OPAQUE, bearer(OPAQUE))
  verifier.cached(OPAQUE)
  verifier.cached(OPAQUE)
  await t.rejects(verifier.verify('stolen', bearer('stolen')))
  await t.rejects(verifier.verify('stolen', bearer('stolen')))
  service.handler = (_req, res) => { res.writeHead(502).end() }
  await t.rejects(verifier.verify('opaque-bob', bearer('opaque-bob')))
  t.same(await counts(metrics, 'podgate_auth_url_requests_total'), { allowed: 1, refused: 1, error: 1 })
  t.same(await counts(metrics, 'podgate_auth_url_cache_total'), { hit: 3, miss: 3 })
  t.equal(await durationCount(metrics), 3, 'one duration per call')
  const failures = (await metrics.authFailures.get()).values
  t.same(failures.filter((v) => v.value > 0).map((v) => [v.labels.reason, v.value]), [['refused', 2]], 'each refused verification counts as an auth failure')
})

void t.test('close() ends the pool: later verifications fail with 503, never hang', async (t) => {
  const service = await startAuthService(t, tokenTable(TABLE))
  const { verifier } = setup(t, service.url)
  await verifier.verify(OPAQUE, bearer(OPAQUE))
  verifier.close()
  t.equal(verifier.cached(OPAQUE), undefined)
  await t.rejects(verifier.verify('opaque-bob', bearer('opaque-bob')), { name: 'NotReadyError' })
})

void t.test('the body limit is small', (t) => {
  t.ok(MAX_AUTH_URL_BODY_BYTES <= 65_536)
  t.end()
})
