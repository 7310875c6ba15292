import t, { type Test } from 'tap'
import { randomUUID } from 'node:crypto'
import { createTokenVerifier } from '../../src/auth/verifier.ts'
import type { TokenVerifier } from '../../src/auth/identity.ts'
import { AuthError } from '../../src/errors.ts'
import { Metrics } from '../../src/metrics.ts'
import { systemClock } from '../../src/clock.ts'
import { authConfig, generateSigningKey, publicJwk, signToken, startJwksServer, testSecret, type JwksServer, type SigningKey } from '../support/keys.ts'
import { ManualClock } from '../support/manual-clock.ts'

const START = Date.UTC(2030, 0, 1)
const COOLDOWN_MS = 30_000

interface Setup {
  server: JwksServer
  verifier: TokenVerifier
  /** The wall clock's reading, which the test sets (backwards too): JWKS fetching reads only now(). */
  clock: { now: number }
  metrics: Metrics
}

async function setup (t: Test, keys: Array<{ key: SigningKey, kid: string | undefined }>, fetchImpl: typeof fetch = fetch): Promise<Setup> {
  const server = await startJwksServer({ keys: await Promise.all(keys.map(({ key, kid }) => publicJwk(key, kid))) })
  t.teardown(() => server.close())
  const clock = { now: START }
  const metrics = new Metrics({ defaultMetrics: false })
  const verifier = createTokenVerifier(
    authConfig({ kind: 'jwks', url: server.url, cooldownMs: COOLDOWN_MS }, { tokenCacheSize: 0 }),
    { clock: { ...systemClock, now: () => clock.now }, metrics, fetch: fetchImpl },
  )
  t.teardown(() => verifier.close())
  return { server, verifier, clock, metrics }
}

function sign (key: SigningKey, user: string, kid: string | undefined, now: number): Promise<string> {
  return kid === undefined
    ? signToken(key.privateKey, key.alg, { sub: user }, { now, ttlSeconds: 7200 })
    : signToken(key.privateKey, key.alg, { sub: user }, { now, ttlSeconds: 7200, kid })
}

async function reasonOf (promise: Promise<unknown>): Promise<string> {
  try {
    await promise
    return 'accepted'
  } catch (err) {
    return err instanceof AuthError ? err.reason : `not an AuthError: ${String(err)}`
  }
}

void t.test('a rotated key is picked up without a restart, at most once per cooldown', async (t) => {
  const key1 = await generateSigningKey('ES256')
  const key2 = await generateSigningKey('ES256')
  const { server, verifier, clock, metrics } = await setup(t, [{ key: key1, kid: 'kid1' }])

  t.equal((await verifier.verify(await sign(key1, 'alice', 'kid1', START))).user, 'alice', 'kid1 accepted')
  t.equal((await verifier.verify(await sign(key1, 'bob', 'kid1', START))).user, 'bob', 'kid1 again, from the fetched set')
  t.equal(server.requests, 1, 'one fetch so far')

  server.setKeys({ keys: [await publicJwk(key2, 'kid2')] })
  const kid2Token = await sign(key2, 'carol', 'kid2', START)
  t.equal(await reasonOf(verifier.verify(kid2Token)), 'key', 'kid2 refused while the last fetch is within the cooldown')
  t.equal(server.requests, 1, 'the cooldown held off a fetch')

  clock.now = START + COOLDOWN_MS
  t.equal((await verifier.verify(kid2Token)).user, 'carol', 'kid2 accepted once the cooldown has passed')
  t.equal(server.requests, 2)
  t.equal(await reasonOf(verifier.verify(await sign(key1, 'alice', 'kid1', clock.now))), 'key', 'kid1, now gone from the JWKS, is refused')
  t.equal(server.requests, 2, 'and caused no fetch inside the cooldown')
  const fetches = (await metrics.jwksFetches.get()).values.find((v) => v.labels.result === 'ok')?.value
  t.equal(fetches, 2, 'fetches counted')
})

void t.test('a flood of unknown kids causes at most one fetch per cooldown', async (t) => {
  const key = await generateSigningKey('ES256')
  const { server, verifier, clock } = await setup(t, [{ key, kid: 'good' }])
  const good = await sign(key, 'alice', 'good', START)
  t.equal((await verifier.verify(good)).user, 'alice')
  t.equal(server.requests, 1)

  clock.now = START + COOLDOWN_MS
  server.delayMs = 50
  const flood = await Promise.all(Array.from({ length: 500 }, () => sign(key, 'mallory', randomUUID(), START)))
  const results = await Promise.all([...flood.map((tok) => reasonOf(verifier.verify(tok))), reasonOf(verifier.verify(good))])
  t.equal(results.slice(0, 500).filter((r) => r === 'key').length, 500, 'every unknown kid refused with key')
  t.equal(results[500], 'accepted', 'the known kid kept working during the flood')
  t.equal(server.requests, 2, '500 concurrent unknown kids: one fetch')

  const second = await Promise.all(flood.slice(0, 100).map((tok) => reasonOf(verifier.verify(tok))))
  t.same(new Set(second), new Set(['key']))
  t.equal(server.requests, 2, 'a second flood inside the cooldown: no fetch')
})

void t.test('concurrent unknown kids share the one fetch in flight, even with no cooldown', async (t) => {
  const key1 = await generateSigningKey('ES256')
  const key2 = await generateSigningKey('ES256')
  const server = await startJwksServer({ keys: [await publicJwk(key1, 'kid1')] })
  t.teardown(() => server.close())
  const verifier = createTokenVerifier(authConfig({ kind: 'jwks', url: server.url, cooldownMs: 0 }, { tokenCacheSize: 0 }), { clock: new ManualClock(START) })
  t.teardown(() => verifier.close())
  t.equal((await verifier.verify(await sign(key1, 'alice', 'kid1', START))).user, 'alice')
  t.equal(server.requests, 1)

  server.setKeys({ keys: [await publicJwk(key1, 'kid1'), await publicJwk(key2, 'kid2')] })
  server.delayMs = 50
  const flood = await Promise.all(Array.from({ length: 200 }, () => sign(key1, 'mallory', randomUUID(), START)))
  const rotated = await sign(key2, 'carol', 'kid2', START)
  const results = await Promise.all([reasonOf(verifier.verify(rotated)), ...flood.map((tok) => reasonOf(verifier.verify(tok)))])
  t.equal(results[0], 'accepted', 'the rotated-in kid2 is accepted by a caller that waited on the shared fetch')
  t.equal(results.filter((r) => r === 'key').length, 200)
  t.equal(server.requests, 2, '201 concurrent unknown kids: one fetch')
})

void t.test('a JWKS server that is down refuses tokens with key, without a fetch storm', async (t) => {
  const key = await generateSigningKey('ES256')
  const server = await startJwksServer({ keys: [] })
  const url = server.url
  await server.close()
  let fetches = 0
  const clock = new ManualClock(START)
  const verifier = createTokenVerifier(authConfig({ kind: 'jwks', url, cooldownMs: COOLDOWN_MS }), {
    clock,
    fetch: (input, init) => { fetches++; return fetch(input, init) },
  })
  t.teardown(() => verifier.close())
  const token = await sign(key, 'alice', 'kid1', START)
  const err = await verifier.verify(token).then(() => undefined, (e: unknown) => e)
  t.type(err, AuthError)
  t.equal((err as AuthError).reason, 'key')
  t.match((err as AuthError).message, /no JWKS available/)
  const results = await Promise.all(Array.from({ length: 100 }, () => reasonOf(verifier.verify(token))))
  t.same(new Set(results), new Set(['key']))
  t.equal(fetches, 1, 'one attempt per cooldown, however many requests')
  await clock.advance(COOLDOWN_MS)
  t.equal(await reasonOf(verifier.verify(token)), 'key')
  t.equal(fetches, 2, 'retried after the cooldown')
})

void t.test('a broken JWKS endpoint refuses tokens with key and a message saying why', async (t) => {
  const key = await generateSigningKey('ES256')
  const server = await startJwksServer({ keys: [] })
  t.teardown(() => server.close())
  const cases: Array<[string, number, string, RegExp]> = [
    ['HTTP 500', 500, '{"keys":[]}', /answered HTTP 500/],
    ['a redirect', 302, '', /answered HTTP 302/],
    ['not JSON', 200, '<html>', /JSON/],
    ['keys not an array', 200, '{"keys":"none"}', /malformed/],
    ['over 1 MiB', 200, JSON.stringify({ keys: [], padding: 'x'.repeat(1_100_000) }), /exceeds 1048576 bytes/],
  ]
  for (const [name, status, body, message] of cases) {
    server.setResponse(status, body)
    const verifier = createTokenVerifier(authConfig({ kind: 'jwks', url: server.url, cooldownMs: COOLDOWN_MS }), { clock: new ManualClock(START) })
    const err = await verifier.verify(await sign(key, 'alice', 'k', START)).then(() => undefined, (e: unknown) => e)
    verifier.close()
    t.match(err, { name: 'AuthError', reason: 'key', message }, name)
  }
})

void t.test('a wall clock stepped backwards does not hold off fetches', async (t) => {
  const key1 = await generateSigningKey('ES256')
  const key2 = await generateSigningKey('ES256')
  const { server, verifier, clock } = await setup(t, [{ key: key1, kid: 'kid1' }])
  t.equal((await verifier.verify(await sign(key1, 'alice', 'kid1', START))).user, 'alice')
  server.setKeys({ keys: [await publicJwk(key2, 'kid2')] })
  clock.now = START - 3_600_000
  t.equal((await verifier.verify(await sign(key2, 'bob', 'kid2', clock.now))).user, 'bob')
  t.equal(server.requests, 2)
})

void t.test('the last good keys stay in use when a refresh fails', async (t) => {
  const key = await generateSigningKey('EdDSA')
  const responses: Array<Promise<unknown>> = []
  const { server, verifier, clock, metrics } = await setup(t, [{ key, kid: 'ed' }], (input, init) => {
    const response = fetch(input, init)
    responses.push(response.catch(() => undefined))
    return response
  })
  t.equal((await verifier.verify(await sign(key, 'alice', 'ed', START))).user, 'alice')
  await server.close()
  clock.now = START + 11 * 60_000
  const token = await sign(key, 'alice', 'ed', clock.now)
  t.equal((await verifier.verify(token)).user, 'alice', 'accepted while the background refresh runs')
  t.equal(responses.length, 2, 'the stale key set started a refresh')
  await Promise.all(responses)
  await new Promise((resolve) => setImmediate(resolve))
  t.equal((await verifier.verify(token)).user, 'alice', 'accepted after the refresh failed')
  const failed = (await metrics.jwksFetches.get()).values.find((v) => v.labels.result === 'error')?.value
  t.equal(failed, 1, 'the failed refresh was counted once')
})

void t.test('a kid-less token is checked against each matching key', async (t) => {
  const key1 = await generateSigningKey('ES256')
  const key2 = await generateSigningKey('ES256')
  const { verifier } = await setup(t, [{ key: key1, kid: undefined }, { key: key2, kid: undefined }])
  t.equal((await verifier.verify(await sign(key2, 'bob', undefined, START))).user, 'bob', 'signed by the second key')
  t.equal((await verifier.verify(await sign(key1, 'alice', undefined, START))).user, 'alice', 'signed by the first key')
  const stranger = await generateSigningKey('ES256')
  t.equal(await reasonOf(verifier.verify(await sign(stranger, 'eve', undefined, START))), 'signature')
})

void t.test('a JWKS never admits HMAC: an HS256 token is refused', async (t) => {
  const key = await generateSigningKey('RS256')
  const { verifier, server } = await setup(t, [{ key, kid: 'rsa' }])
  const forged = await signToken(testSecret(), 'HS256', { sub: 'alice' }, { now: START, kid: 'rsa' })
  t.equal(await reasonOf(verifier.verify(forged)), 'algorithm')
  t.equal(server.requests, 0, 'refused before any key was fetched')
})

void t.test('the JWKS fetch goes through the injected fetch', async (t) => {
  const key = await generateSigningKey('ES256')
  const server = await startJwksServer({ keys: [await publicJwk(key, 'k')] })
  t.teardown(() => server.close())
  const seen: string[] = []
  const verifier = createTokenVerifier(authConfig({ kind: 'jwks', url: server.url, cooldownMs: 0 }), {
    clock: new ManualClock(START),
    fetch: (input, init) => { seen.push(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url); return fetch(input, init) },
  })
  t.teardown(() => verifier.close())
  t.equal((await verifier.verify(await sign(key, 'alice', 'k', START))).user, 'alice')
  t.same(seen, [server.url.href])
})
