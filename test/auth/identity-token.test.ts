// The identity token podgate signs for a pod, checked with jose against the published keys:
// claims, explicit type, kid, a req_hash a pod recomputes, raw r‖s ES256 signatures, and with
// `user` binding one token per user reused within its window only, on a ManualClock.
import { createHash } from 'node:crypto'
import t from 'tap'
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose'
import { loadConfig } from '../../src/config.ts'
import { createIdentitySigner, IDENTITY_TOKEN_TYPE, requestHash } from '../../src/auth/identity-token.ts'
import type { IdentityConfig } from '../../src/auth/identity-config.ts'
import { systemClock } from '../../src/clock.ts'
import { IDENTITY_ALGORITHMS, identityKeyPem, keyFiles, type IdentityAlg } from '../support/identity.ts'
import { MANUAL_CLOCK_START, ManualClock } from '../support/manual-clock.ts'

interface TestDir { testdir (fixture: Record<string, string>): string }

function identityConfig (t: TestDir, alg: IdentityAlg, env: Record<string, string> = {}): IdentityConfig {
  const files = keyFiles(t, { 'key.pem': identityKeyPem(alg).privatePem })
  const identity = loadConfig({ PODGATE_JWT_SECRET: 'a-secret-of-at-least-thirty-two-bytes!', PODGATE_IDENTITY_KEY: files['key.pem'], ...env }).gateway.identity
  if (identity === undefined) throw new Error('identity is off')
  return identity
}

function jwks (identity: IdentityConfig): ReturnType<typeof createLocalJWKSet> {
  return createLocalJWKSet({ keys: identity.published } as unknown as JSONWebKeySet)
}

void t.test('off: no signer', (t) => {
  t.equal(createIdentitySigner(undefined), undefined)
  t.end()
})

void t.test('req_hash is base64url(SHA-256(method SP target)), the target with its query, as received', (t) => {
  const expected = createHash('sha256').update('POST /api/items/42?sort=desc&x=%2F').digest('base64url')
  t.equal(requestHash('POST', '/api/items/42?sort=desc&x=%2F'), expected)
  t.not(requestHash('GET', '/a'), requestHash('POST', '/a'), 'the method is bound')
  t.not(requestHash('GET', '/a?x=1'), requestHash('GET', '/a?x=2'), 'the query is bound')
  t.not(requestHash('GET', '/a%2Fb'), requestHash('GET', '/a/b'), 'the target before percent-decoding')
  t.end()
})

for (const alg of IDENTITY_ALGORITHMS) {
  void t.test(`${alg}, request binding: a fresh token per request that a pod verifies with the JWKS`, async (t) => {
    const identity = identityConfig(t, alg)
    const clock = new ManualClock()
    const signer = createIdentitySigner(identity, clock)
    const token = signer?.token('alice', 'GET', '/notebooks/1?tab=2') ?? ''
    t.same(decodeProtectedHeader(token), { alg, kid: identity.key.jwk.kid, typ: IDENTITY_TOKEN_TYPE })
    const { payload } = await jwtVerify(token, jwks(identity), {
      audience: 'user-alice',
      algorithms: [alg],
      typ: IDENTITY_TOKEN_TYPE,
      currentDate: new Date(clock.now()),
    })
    const iat = Math.floor(clock.now() / 1000)
    t.same(Object.keys(payload).sort(), ['aud', 'exp', 'iat', 'jti', 'req_hash', 'sub'])
    t.match(payload, { sub: 'alice', aud: 'user-alice', iat, exp: iat + 30, req_hash: requestHash('GET', '/notebooks/1?tab=2') })
    t.match(payload.jti, /^[0-9a-f-]{36}$/)
    if (alg === 'ES256') t.equal(Buffer.from(token.split('.')[2] ?? '', 'base64url').length, 64, 'r‖s, 32 bytes each (RFC 7518 §3.4), not DER')
    const again = signer?.token('alice', 'GET', '/notebooks/1?tab=2') ?? ''
    t.not(again, token, 'each request gets its own token')
    const { payload: second } = await jwtVerify(again, jwks(identity), { currentDate: new Date(clock.now()) })
    t.not(second.jti, payload.jti, 'with its own jti')
    await t.rejects(jwtVerify(token, jwks(identity), { currentDate: new Date(clock.now() + 31_000) }), { code: 'ERR_JWT_EXPIRED' }, 'refused after exp')
  })
}

void t.test('user binding: one token per user within min(5 s, TTL/2), then a new one; no req_hash', async (t) => {
  const identity = identityConfig(t, 'EdDSA', { PODGATE_IDENTITY_BINDING: 'user' })
  const clock = new ManualClock()
  const signer = createIdentitySigner(identity, clock)
  const first = signer?.token('alice', 'GET', '/a')
  t.equal(signer?.token('alice', 'POST', '/b'), first, 'reused for another request of the same user')
  t.not(signer?.token('bob', 'GET', '/a'), first, 'never for another user')
  const { payload } = await jwtVerify(first ?? '', jwks(identity), { audience: 'user-alice', currentDate: new Date(clock.now()) })
  t.equal(payload.req_hash, undefined, 'not bound to a request')
  await clock.advance(4_999)
  t.equal(signer?.token('alice', 'GET', '/a'), first, 'still reused just before 5 s')
  await clock.advance(1)
  const renewed = signer?.token('alice', 'GET', '/a')
  t.not(renewed, first, 'a new token from 5 s on')
  const { payload: next } = await jwtVerify(renewed ?? '', jwks(identity), { currentDate: new Date(clock.now()) })
  t.equal(next.iat, Math.floor(clock.now() / 1000))
})

void t.test('user binding: a clock set back starts a new window instead of stretching this one', (t) => {
  let now = MANUAL_CLOCK_START
  const signer = createIdentitySigner(identityConfig(t, 'EdDSA', { PODGATE_IDENTITY_BINDING: 'user' }), { ...systemClock, now: () => now })
  const first = signer?.token('alice', 'GET', '/')
  now -= 3_600_000
  t.not(signer?.token('alice', 'GET', '/'), first)
  t.end()
})

void t.test('user binding with a short TTL reuses for half of it', async (t) => {
  const identity = identityConfig(t, 'ES256', { PODGATE_IDENTITY_BINDING: 'user', PODGATE_IDENTITY_TTL: '2s' })
  const clock = new ManualClock()
  const signer = createIdentitySigner(identity, clock)
  const first = signer?.token('alice', 'GET', '/')
  await clock.advance(999)
  t.equal(signer?.token('alice', 'GET', '/'), first)
  await clock.advance(1)
  t.not(signer?.token('alice', 'GET', '/'), first, 'renewed after 1 s: a pod always gets at least half the TTL')
})
