// The identity header end to end: a real backend behind a real gateway verifies
// X-Podgate-Identity with jose's createRemoteJWKSet against the gateway's admin-port JWKS, as a
// pod would; replays on another request and after exp fail; client copies never reach the pod,
// on or off; WebSocket upgrades carry it; a key published for rotation keeps old tokens valid;
// and `podgate serve` with two workers signs what its primary publishes.
import { once } from 'node:events'
import { createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { createRemoteJWKSet, jwtVerify } from 'jose'
import { request } from 'undici'
import { WebSocket, WebSocketServer } from 'ws'
import { mintToken } from '../../src/auth/mint.ts'
import { requestHash } from '../../src/auth/identity-token.ts'
import { endpoint } from '../../src/discovery/source.ts'
import { IDENTITY_ALGORITHMS, identityKeyPem, keyFiles, podVerifier, type PodVerdict } from '../support/identity.ts'
import { startTestGateway, type TestGateway } from '../support/gateway.ts'
import { startServe } from '../support/serve.ts'

/** What the backend answers: its verdict on the identity header and every copy of it it received. */
interface Seen {
  readonly verdict: PodVerdict
  /** Values of every received header whose name folds to the identity header's (any case, `_` for `-`). */
  readonly copies: string[]
  readonly userHeader: string | undefined
}

interface PodBackend {
  readonly port: number
  readonly url: string
}

/** A user's pod: verifies the identity header of every request and WebSocket, and says what it found. */
async function startPod (t: Test, verify: (req: IncomingMessage) => Promise<PodVerdict>, header = 'x-podgate-identity'): Promise<PodBackend> {
  const seen = async (req: IncomingMessage): Promise<Seen> => ({
    verdict: await verify(req),
    copies: req.rawHeaders.filter((_, i) => i % 2 === 1 && req.rawHeaders[i - 1]?.toLowerCase().replaceAll('_', '-') === header),
    userHeader: req.headers['x-user-id'] as string | undefined,
  })
  const server = createServer((req, res) => {
    req.resume()
    void seen(req).then((body) => { res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body)) })
  })
  const sockets = new WebSocketServer({ server })
  sockets.on('connection', (socket, req) => {
    void seen(req).then((body) => { socket.send(JSON.stringify(body)) })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(async () => {
    for (const client of sockets.clients) client.terminate()
    sockets.close()
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })
  const port = (server.address() as AddressInfo).port
  return { port, url: `http://127.0.0.1:${port}` }
}

async function getJson (url: string, headers: Record<string, string>, method = 'GET'): Promise<{ status: number, body: Seen }> {
  const res = await request(url, { method: method as 'GET', headers })
  return { status: res.statusCode, body: await res.body.json() as Seen }
}

/** A gateway signing with a fresh key of `alg`, routing alice to a pod that checks what it gets. */
async function setup (t: Test, alg: 'EdDSA' | 'ES256', env: Record<string, string> = {}): Promise<{ gw: TestGateway, pod: PodBackend, jwksUrl: string, auth: Record<string, string> }> {
  const files = keyFiles(t, { 'identity.pem': identityKeyPem(alg).privatePem })
  const gw = await startTestGateway(t, { PODGATE_IDENTITY_KEY: files['identity.pem'], ...env })
  const jwksUrl = `${gw.adminUrl}/.well-known/jwks.json`
  const pod = await startPod(t, podVerifier(jwksUrl, { binding: env.PODGATE_IDENTITY_BINDING !== 'user' }))
  gw.local.set('alice', [endpoint('127.0.0.1', pod.port)])
  return { gw, pod, jwksUrl, auth: { authorization: `Bearer ${await gw.token('alice')}` } }
}

for (const alg of IDENTITY_ALGORITHMS) {
  void t.test(`${alg}: the pod verifies the header with the published JWKS; a replay on another request or after exp fails`, async (t) => {
    const { gw, pod, jwksUrl, auth } = await setup(t, alg)
    const { status, body } = await getJson(`${gw.url}/notebooks/1?tab=2`, auth)
    t.equal(status, 200)
    t.equal(body.copies.length, 1, 'one identity header')
    t.ok(body.verdict.ok, `verified: ${JSON.stringify(body.verdict)}`)
    if (!body.verdict.ok) return
    t.match(body.verdict.payload, { sub: 'alice', aud: 'user-alice', req_hash: requestHash('GET', '/notebooks/1?tab=2') })
    t.equal(body.verdict.payload.exp, Number(body.verdict.payload.iat) + 30)
    const posted = await getJson(`${gw.url}/notebooks/1`, auth, 'POST')
    t.ok(posted.body.verdict.ok, 'a POST is signed for POST')

    // Someone who got hold of the header presents it to the pod directly.
    const token = body.copies[0] ?? ''
    const direct = (path: string, method = 'GET'): Promise<{ body: Seen }> => getJson(`${pod.url}${path}`, { 'x-user-id': 'alice', 'x-podgate-identity': token }, method)
    t.ok((await direct('/notebooks/1?tab=2')).body.verdict.ok, 'the same request verifies (within its TTL)')
    t.same((await direct('/notebooks/2?tab=2')).body.verdict, { ok: false, error: 'req_hash does not match this request' }, 'another path fails the binding')
    t.same((await direct('/notebooks/1?tab=3')).body.verdict, { ok: false, error: 'req_hash does not match this request' }, 'another query too')
    t.same((await direct('/notebooks/1?tab=2', 'DELETE')).body.verdict, { ok: false, error: 'req_hash does not match this request' }, 'another method too')
    t.notOk((await getJson(`${pod.url}/notebooks/1?tab=2`, { 'x-user-id': 'bob', 'x-podgate-identity': token })).body.verdict.ok, 'bob\'s pod refuses alice\'s token (aud)')
    await t.rejects(jwtVerify(token, createRemoteJWKSet(new URL(jwksUrl)), { audience: 'user-alice', currentDate: new Date(Date.now() + 31_000) }), { code: 'ERR_JWT_EXPIRED' }, 'after exp it fails')
  })
}

void t.test('client copies of the header and its look-alikes never reach the pod', async (t) => {
  const { gw, auth } = await setup(t, 'EdDSA')
  const genuine = (await getJson(`${gw.url}/x`, auth)).body.copies[0] ?? ''
  // A genuine token for this very request, sent by the client: still replaced, never passed on.
  const res = await request(`${gw.url}/x`, {
    headers: [
      'authorization', auth.authorization ?? '',
      'X-Podgate-Identity', genuine, 'X-PODGATE-IDENTITY', 'forged', 'x_podgate_identity', 'forged', 'X-Podgate_Identity', 'forged',
    ],
  })
  const body = await res.body.json() as Seen
  t.equal(body.copies.length, 1, 'exactly podgate\'s')
  t.not(body.copies[0], genuine, 'a fresh token, not the client\'s')
  t.ok(body.verdict.ok)
})

void t.test('off: no header, the client\'s copies are dropped all the same, no JWKS', async (t) => {
  const gw = await startTestGateway(t)
  const pod = await startPod(t, () => Promise.resolve({ ok: false, error: 'not checked' }))
  gw.local.set('alice', [endpoint('127.0.0.1', pod.port)])
  const { body } = await getJson(`${gw.url}/`, { authorization: `Bearer ${await gw.token('alice')}`, 'x-podgate-identity': 'forged', 'x_podgate_identity': 'forged' })
  t.same(body.copies, [], 'a pod that checks the header never sees a client\'s copy')
  t.equal(body.userHeader, 'alice')
  const jwks = await request(`${gw.adminUrl}/.well-known/jwks.json`)
  await jwks.body.dump()
  t.equal(jwks.statusCode, 404)
})

void t.test('the JWKS: public keys with kid, alg and use, cacheable', async (t) => {
  const { gw } = await setup(t, 'ES256')
  const res = await request(`${gw.adminUrl}/.well-known/jwks.json`)
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^application\/jwk-set\+json\b/)
  t.equal(res.headers['cache-control'], 'public, max-age=300')
  const { keys } = await res.body.json() as { keys: Record<string, string>[] }
  t.equal(keys.length, 1)
  t.same(Object.keys(keys[0] ?? {}).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y'], 'public members only')
  t.match(keys[0], { kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig', kid: gw.config.gateway.identity?.key.jwk.kid })
})

void t.test('a WebSocket upgrade carries a token bound to GET and its target', async (t) => {
  const { gw, auth } = await setup(t, 'EdDSA')
  const socket = new WebSocket(`${gw.url.replace('http', 'ws')}/socket?room=1`, { headers: { ...auth, 'x-podgate-identity': 'forged' } })
  t.teardown(() => { socket.terminate() })
  const [message] = await once(socket, 'message') as [Buffer]
  const body = JSON.parse(String(message)) as Seen
  t.equal(body.copies.length, 1)
  t.ok(body.verdict.ok, `verified: ${JSON.stringify(body.verdict)}`)
  if (body.verdict.ok) t.equal(body.verdict.payload.req_hash, requestHash('GET', '/socket?room=1'))
})

void t.test('user binding: one token per user for a few seconds, verified without req_hash', async (t) => {
  const { gw, auth } = await setup(t, 'EdDSA', { PODGATE_IDENTITY_BINDING: 'user' })
  const first = (await getJson(`${gw.url}/a`, auth)).body
  const second = (await getJson(`${gw.url}/b`, auth)).body
  t.ok(first.verdict.ok && second.verdict.ok)
  t.equal(second.copies[0], first.copies[0], 'the same token for the next request')
  if (first.verdict.ok) t.equal(first.verdict.payload.req_hash, undefined)
})

void t.test('a custom header name', async (t) => {
  const files = keyFiles(t, { 'identity.pem': identityKeyPem('EdDSA').privatePem })
  const gw = await startTestGateway(t, { PODGATE_IDENTITY_KEY: files['identity.pem'], PODGATE_IDENTITY_HEADER: 'X-Pod-Identity' })
  const pod = await startPod(t, podVerifier(`${gw.adminUrl}/.well-known/jwks.json`, { header: 'x-pod-identity' }), 'x-pod-identity')
  gw.local.set('alice', [endpoint('127.0.0.1', pod.port)])
  const { body } = await getJson(`${gw.url}/`, { authorization: `Bearer ${await gw.token('alice')}`, 'x-pod-identity': 'forged' })
  t.equal(body.copies.length, 1)
  t.ok(body.verdict.ok)
})

void t.test('rotation: a token signed by a previous key verifies while that key is published', async (t) => {
  const previous = identityKeyPem('EdDSA')
  const current = identityKeyPem('ES256')
  const files = keyFiles(t, { 'previous.pem': previous.privatePem, 'previous.pub': previous.publicPem, 'current.pem': current.privatePem })
  const old = await startTestGateway(t, { PODGATE_IDENTITY_KEY: files['previous.pem'] })
  const pod = await startPod(t, () => Promise.resolve({ ok: false, error: 'not checked' }))
  old.local.set('alice', [endpoint('127.0.0.1', pod.port)])
  const oldToken = (await getJson(`${old.url}/`, { authorization: `Bearer ${await old.token('alice')}` })).body.copies[0] ?? ''

  const rotated = await startTestGateway(t, { PODGATE_IDENTITY_KEY: files['current.pem'], PODGATE_IDENTITY_PUBLISHED_KEYS: files['previous.pub'] })
  const check = { audience: 'user-alice' }
  const rotatedJwks = createRemoteJWKSet(new URL(`${rotated.adminUrl}/.well-known/jwks.json`))
  const { protectedHeader } = await jwtVerify(oldToken, rotatedJwks, check)
  t.equal(protectedHeader.kid, old.config.gateway.identity?.key.jwk.kid, 'the previous key still verifies its tokens')
  t.same(rotated.config.gateway.identity?.published.map((k) => k.kid), [rotated.config.gateway.identity?.key.jwk.kid, protectedHeader.kid], 'published: the signing key, then the previous one')

  const retired = await startTestGateway(t, { PODGATE_IDENTITY_KEY: files['current.pem'] })
  await t.rejects(jwtVerify(oldToken, createRemoteJWKSet(new URL(`${retired.adminUrl}/.well-known/jwks.json`)), check), { code: 'ERR_JWKS_NO_MATCHING_KEY' }, 'once unpublished, refused')
})

void t.test('podgate serve with two workers: the workers sign, the primary publishes', async (t) => {
  const pod = await startPod(t, () => Promise.resolve({ ok: false, error: 'checked by the test' }))
  const dir = mkdtempSync(join(tmpdir(), 'podgate-identity-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const routes = join(dir, 'routes.json')
  writeFileSync(routes, JSON.stringify({ alice: [`127.0.0.1:${pod.port}`] }))
  const key = join(dir, 'identity.pem')
  writeFileSync(key, identityKeyPem('EdDSA').privatePem)
  const secret = 'a-secret-of-at-least-thirty-two-bytes!'
  const serve = await startServe(t, { PODGATE_JWT_SECRET: secret, PODGATE_LOCAL_ROUTES: routes, PODGATE_WORKERS: '2', PODGATE_IDENTITY_KEY: key })
  const token = await mintToken({ secret: new TextEncoder().encode(secret), user: 'alice', ttlSeconds: 600 })
  const jwks = createRemoteJWKSet(new URL(`${serve.adminUrl}/.well-known/jwks.json`))
  for (let i = 0; i < 4; i++) {
    // A new connection each time, so the kernel may hand it to either worker.
    const { body } = await getJson(`${serve.gatewayUrl}/n/${i}`, { authorization: `Bearer ${token}`, connection: 'close' })
    const { payload } = await jwtVerify(body.copies[0] ?? '', jwks, { audience: 'user-alice' })
    t.equal(payload.req_hash, requestHash('GET', `/n/${i}`))
  }
})
