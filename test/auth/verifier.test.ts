import t, { type Test } from 'tap'
import { generateKeyPairSync } from 'node:crypto'
import { extractToken } from '../../src/auth/extract.ts'
import { createTokenVerifier } from '../../src/auth/verifier.ts'
import type { TokenVerifier } from '../../src/auth/identity.ts'
import { HMAC_ALGORITHMS, type AuthConfig, type JwtAlgorithm } from '../../src/config.ts'
import { AuthError, type AuthFailureReason } from '../../src/errors.ts'
import { Metrics } from '../../src/metrics.ts'
import {
  TEST_CERTIFICATE, authConfig, certificatePrivateKey, encodeSegment, generateSigningKey, signPayload, signToken, testSecret, unsignedToken,
} from '../support/keys.ts'
import { ManualClock } from '../support/manual-clock.ts'

const NOW = Date.UTC(2030, 0, 1)
const clock = new ManualClock(NOW)
const nowS = NOW / 1000
const ISSUER = 'https://id.example'
const AUDIENCE = 'podgate'

/** Resolves to the AuthError verify() rejected with; fails the test if it resolved or rejected otherwise. */
async function refusal (verifier: TokenVerifier, token: string): Promise<AuthError> {
  try {
    const identity = await verifier.verify(token)
    throw new Error(`token was accepted as ${identity.user}`)
  } catch (err) {
    if (err instanceof AuthError) return err
    throw err
  }
}

async function failureCount (metrics: Metrics, reason: AuthFailureReason): Promise<number> {
  return (await metrics.authFailures.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0
}

void t.test('accepts valid tokens for every supported algorithm', async (t) => {
  for (const alg of HMAC_ALGORITHMS) {
    const verifier = createTokenVerifier(authConfig({ kind: 'secret', secret: testSecret() }), { clock })
    t.teardown(() => verifier.close())
    const identity = await verifier.verify(await signToken(testSecret(), alg, { sub: 'alice' }, { now: NOW, ttlSeconds: 600 }))
    t.same(identity, { user: 'alice', expiresAt: NOW + 600_000, issuedAt: NOW }, alg)
  }
  const asymmetric: JwtAlgorithm[] = ['RS256', 'RS512', 'PS256', 'PS384', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519']
  for (const alg of asymmetric) {
    const key = await generateSigningKey(alg)
    const verifier = createTokenVerifier(authConfig({ kind: 'public-key', pem: key.pem }), { clock })
    t.teardown(() => verifier.close())
    const identity = await verifier.verify(await signToken(key.privateKey, alg, { sub: `user-${alg.toLowerCase()}` }, { now: NOW }))
    t.equal(identity.user, `user-${alg.toLowerCase()}`, alg)
  }
})

void t.test('accepts tokens for a key given as an X.509 certificate', async (t) => {
  const verifier = createTokenVerifier(authConfig({ kind: 'public-key', pem: TEST_CERTIFICATE }), { clock })
  t.teardown(() => verifier.close())
  const token = await signToken(await certificatePrivateKey(), 'ES256', { sub: 'carol' }, { now: NOW })
  t.equal((await verifier.verify(token)).user, 'carol')
  const other = await generateSigningKey('ES256')
  t.equal((await refusal(verifier, await signToken(other.privateKey, 'ES256', { sub: 'carol' }, { now: NOW }))).reason, 'signature')
})

interface HostileContext {
  /** Signs with the verifier's own key and algorithm; iss and aud are right unless overridden. */
  sign (claims: Record<string, unknown>, options?: { exp?: false }): Promise<string>
  /** Signs raw payload bytes with the verifier's own key. */
  signPayload (payload: Uint8Array): Promise<string>
  /** A token signed with a different key of the same kind. */
  signWithOtherKey (claims: Record<string, unknown>): Promise<string>
  /** The public key PEM, when the verifier uses one. */
  pem: string | undefined
}

interface HostileCase {
  name: string
  reason: AuthFailureReason
  token (ctx: HostileContext): string | Promise<string>
  onlyWithPublicKey?: boolean
}

const good = { sub: 'alice', iss: ISSUER, aud: AUDIENCE }

const HOSTILE: HostileCase[] = [
  { name: 'alg none, unsigned', reason: 'algorithm', token: () => unsignedToken({ alg: 'none', typ: 'JWT' }, { ...good, exp: nowS + 600 }) },
  { name: 'alg NONE, unsigned', reason: 'algorithm', token: () => unsignedToken({ alg: 'NONE' }, { ...good, exp: nowS + 600 }) },
  { name: 'alg none with a signature', reason: 'algorithm', token: () => unsignedToken({ alg: 'none' }, { ...good, exp: nowS + 600 }) + 'c2lnbmF0dXJl' },
  { name: 'no alg', reason: 'malformed', token: () => unsignedToken({ typ: 'JWT' }, { ...good, exp: nowS + 600 }) + 'c2ln' },
  {
    name: 'public key PEM used as the HS256 secret',
    reason: 'algorithm',
    onlyWithPublicKey: true,
    token: (ctx) => signToken(new TextEncoder().encode(ctx.pem), 'HS256', good, { now: NOW }),
  },
  { name: 'expired', reason: 'expired', token: (ctx) => ctx.sign({ ...good, exp: nowS - 3600 }) },
  { name: 'expired just beyond the clock tolerance', reason: 'expired', token: (ctx) => ctx.sign({ ...good, exp: nowS - 31 }) },
  { name: 'nbf in the future', reason: 'not_yet_valid', token: (ctx) => ctx.sign({ ...good, nbf: nowS + 3600 }) },
  { name: 'nbf not a number', reason: 'claim', token: (ctx) => ctx.sign({ ...good, nbf: 'soon' }) },
  { name: 'wrong iss', reason: 'issuer', token: (ctx) => ctx.sign({ ...good, iss: 'https://evil.example' }) },
  { name: 'no iss', reason: 'issuer', token: (ctx) => ctx.sign({ sub: 'alice', aud: AUDIENCE }) },
  { name: 'wrong aud', reason: 'audience', token: (ctx) => ctx.sign({ ...good, aud: 'someone-else' }) },
  { name: 'wrong aud list', reason: 'audience', token: (ctx) => ctx.sign({ ...good, aud: ['a', 'b'] }) },
  { name: 'signed with another key', reason: 'signature', token: (ctx) => ctx.signWithOtherKey(good) },
  {
    name: 'payload swapped under a valid signature',
    reason: 'signature',
    token: async (ctx) => {
      const [header, , signature] = (await ctx.sign(good)).split('.')
      return `${header}.${encodeSegment({ ...good, sub: 'bob', exp: nowS + 600 })}.${signature}`
    },
  },
  {
    name: 'signature bytes altered',
    reason: 'signature',
    token: async (ctx) => {
      const token = await ctx.sign(good)
      const at = token.lastIndexOf('.') + 5
      return token.slice(0, at) + (token[at] === 'A' ? 'B' : 'A') + token.slice(at + 1)
    },
  },
  { name: 'truncated to header.payload', reason: 'malformed', token: async (ctx) => { const token = await ctx.sign(good); return token.slice(0, token.lastIndexOf('.')) } },
  { name: 'truncated mid-signature', reason: 'signature', token: async (ctx) => (await ctx.sign(good)).slice(0, -12) },
  { name: 'truncated mid-payload', reason: 'malformed', token: async (ctx) => { const token = await ctx.sign(good); return token.slice(0, token.indexOf('.') + 6) } },
  { name: 'not base64url', reason: 'malformed', token: () => '***.***.***' },
  { name: 'four segments', reason: 'malformed', token: async (ctx) => `${await ctx.sign(good)}.x` },
  { name: 'header not an object', reason: 'malformed', token: () => `${encodeSegment([1])}.${encodeSegment(good)}.c2ln` },
  { name: 'signed payload not JSON', reason: 'malformed', token: (ctx) => ctx.signPayload(new TextEncoder().encode('not json')) },
  { name: 'signed payload a JSON array', reason: 'malformed', token: (ctx) => ctx.signPayload(new TextEncoder().encode('["alice"]')) },
  { name: 'empty', reason: 'missing', token: () => '' },
  { name: '64 KB token', reason: 'too_large', token: () => `${encodeSegment({ alg: 'HS256' })}.${'A'.repeat(64 * 1024)}.c2ln` },
  { name: 'no user claim', reason: 'user', token: (ctx) => ctx.sign({ iss: ISSUER, aud: AUDIENCE }) },
  { name: 'user ../bob', reason: 'user', token: (ctx) => ctx.sign({ ...good, sub: '../bob' }) },
  { name: 'user Bob (uppercase)', reason: 'user', token: (ctx) => ctx.sign({ ...good, sub: 'Bob' }) },
  { name: 'user bob\\u0000', reason: 'user', token: (ctx) => ctx.sign({ ...good, sub: 'bob\u0000' }) },
  { name: 'user with a Cyrillic look-alike', reason: 'user', token: (ctx) => ctx.sign({ ...good, sub: '\u0430lice' }) },
  { name: 'user with a trailing space', reason: 'user', token: (ctx) => ctx.sign({ ...good, sub: 'alice ' }) },
  { name: 'user with a trailing newline', reason: 'user', token: (ctx) => ctx.sign({ ...good, sub: 'alice\n' }) },
  { name: 'user of 64 characters', reason: 'user', token: (ctx) => ctx.sign({ ...good, sub: 'a'.repeat(64) }) },
  { name: 'user starting with -', reason: 'user', token: (ctx) => ctx.sign({ ...good, sub: '-alice' }) },
  { name: 'user empty', reason: 'user', token: (ctx) => ctx.sign({ ...good, sub: '' }) },
  { name: 'numeric sub', reason: 'user', token: (ctx) => ctx.sign({ ...good, sub: 42 }) },
  { name: 'sub as an array', reason: 'user', token: (ctx) => ctx.sign({ ...good, sub: ['alice'] }) },
  { name: 'missing exp', reason: 'claim', token: (ctx) => ctx.sign(good, { exp: false }) },
  { name: 'exp not a number', reason: 'claim', token: (ctx) => ctx.sign({ ...good, exp: String(nowS + 600) }) },
]

async function runHostileTable (t: Test, kind: string, config: AuthConfig, ctx: HostileContext): Promise<void> {
  const metrics = new Metrics({ defaultMetrics: false })
  const verifier = createTokenVerifier(config, { clock, metrics })
  t.teardown(() => verifier.close())
  const valid = await ctx.sign(good)
  t.equal((await verifier.verify(valid)).user, 'alice', `${kind}: the valid token is accepted`)
  for (const hostile of HOSTILE) {
    if (hostile.onlyWithPublicKey === true && ctx.pem === undefined) continue
    const token = await hostile.token(ctx)
    const before = await failureCount(metrics, hostile.reason)
    const err = await refusal(verifier, token)
    t.equal(err.reason, hostile.reason, `${kind}: ${hostile.name} → ${hostile.reason} (${err.message})`)
    t.equal(await failureCount(metrics, hostile.reason), before + 1, `${kind}: ${hostile.name} counted`)
    t.equal(verifier.cached(token), undefined, `${kind}: ${hostile.name} not cached`)
    if (hostile.reason === 'too_large') {
      t.throws(() => extractToken({ authorization: `Bearer ${token}` }, 'session', config.maxTokenBytes), { name: 'AuthError', reason: 'too_large' }, `${kind}: extractor refuses ${hostile.name}`)
    }
    t.equal((await verifier.verify(valid)).user, 'alice', `${kind}: still works after ${hostile.name}`)
  }
}

void t.test('refuses hostile tokens with the right reason (HS256 secret)', async (t) => {
  const secret = testSecret()
  const other = new TextEncoder().encode('another-secret-of-at-least-32-bytes!')
  const config = authConfig({ kind: 'secret', secret }, { issuer: [ISSUER, 'https://other-id.example'], audience: [AUDIENCE] })
  await runHostileTable(t, 'HS256', config, {
    sign: (claims, options) => signToken(secret, 'HS256', claims, { now: NOW, ...options }),
    signPayload: (payload) => signPayload(secret, 'HS256', payload),
    signWithOtherKey: (claims) => signToken(other, 'HS256', claims, { now: NOW }),
    pem: undefined,
  })
})

void t.test('refuses hostile tokens with the right reason (RS256 public key)', async (t) => {
  const key = await generateSigningKey('RS256')
  const other = await generateSigningKey('RS256')
  const config = authConfig({ kind: 'public-key', pem: key.pem }, { issuer: [ISSUER], audience: [AUDIENCE, 'other-audience'] })
  await runHostileTable(t, 'RS256', config, {
    sign: (claims, options) => signToken(key.privateKey, 'RS256', claims, { now: NOW, ...options }),
    signPayload: (payload) => signPayload(key.privateKey, 'RS256', payload),
    signWithOtherKey: (claims) => signToken(other.privateKey, 'RS256', claims, { now: NOW }),
    pem: key.pem,
  })
})

void t.test('a public key is never an HMAC secret, even when HS256 is configured', async (t) => {
  const key = await generateSigningKey('RS256')
  const verifier = createTokenVerifier(authConfig({ kind: 'public-key', pem: key.pem }, { algorithms: ['HS256', 'RS256'] }), { clock })
  t.teardown(() => verifier.close())
  const forged = await signToken(new TextEncoder().encode(key.pem), 'HS256', { sub: 'alice' }, { now: NOW })
  t.equal((await refusal(verifier, forged)).reason, 'algorithm')
  t.equal((await verifier.verify(await signToken(key.privateKey, 'RS256', { sub: 'alice' }, { now: NOW }))).user, 'alice')
})

void t.test('the algorithm list is intersected with what the key can do', async (t) => {
  // A node KeyObject signs with any RSA algorithm, unlike a WebCrypto key bound to one.
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const verifier = createTokenVerifier(authConfig({ kind: 'public-key', pem: pemOf(publicKey) }, { algorithms: ['PS256'] }), { clock })
  t.teardown(() => verifier.close())
  t.equal((await refusal(verifier, await signToken(privateKey, 'RS256', { sub: 'alice' }, { now: NOW }))).reason, 'algorithm')
  t.equal((await verifier.verify(await signToken(privateKey, 'PS256', { sub: 'alice' }, { now: NOW }))).user, 'alice')

  const hs256Only = createTokenVerifier(authConfig({ kind: 'secret', secret: testSecret() }, { algorithms: ['HS256'] }), { clock })
  t.teardown(() => hs256Only.close())
  t.equal((await refusal(hs256Only, await signToken(testSecret(), 'HS512', { sub: 'alice' }, { now: NOW }))).reason, 'algorithm')
})

void t.test('honours the clock tolerance for exp and nbf', async (t) => {
  const secret = testSecret()
  const verifier = createTokenVerifier(authConfig({ kind: 'secret', secret }, { clockToleranceS: 30 }), { clock })
  t.teardown(() => verifier.close())
  t.equal((await verifier.verify(await signToken(secret, 'HS256', { sub: 'alice', exp: nowS - 10 }, { now: NOW }))).user, 'alice', 'expired 10 s ago')
  t.equal((await verifier.verify(await signToken(secret, 'HS256', { sub: 'alice', nbf: nowS + 10 }, { now: NOW }))).user, 'alice', 'valid in 10 s')
  const strict = createTokenVerifier(authConfig({ kind: 'secret', secret }, { clockToleranceS: 0 }), { clock })
  t.teardown(() => strict.close())
  t.equal((await refusal(strict, await signToken(secret, 'HS256', { sub: 'alice', exp: nowS - 10 }, { now: NOW }))).reason, 'expired')
  t.equal((await refusal(strict, await signToken(secret, 'HS256', { sub: 'alice', nbf: nowS + 10 }, { now: NOW }))).reason, 'not_yet_valid')
})

void t.test('reads the user from the configured claim, without changing it', async (t) => {
  const secret = testSecret()
  const verifier = createTokenVerifier(authConfig({ kind: 'secret', secret }, { userClaim: 'preferred_username' }), { clock })
  t.teardown(() => verifier.close())
  t.equal((await verifier.verify(await signToken(secret, 'HS256', { sub: 'x', preferred_username: 'dev-42' }, { now: NOW }))).user, 'dev-42')
  t.equal((await refusal(verifier, await signToken(secret, 'HS256', { sub: 'alice' }, { now: NOW }))).reason, 'user')
  const proto = createTokenVerifier(authConfig({ kind: 'secret', secret }, { userClaim: 'constructor' }), { clock })
  t.teardown(() => proto.close())
  t.equal((await refusal(proto, await signToken(secret, 'HS256', { sub: 'alice' }, { now: NOW }))).reason, 'user', 'inherited properties are not claims')
})

void t.test('verify() rejects, never throws, whatever it is given', async (t) => {
  const verifier = createTokenVerifier(authConfig({ kind: 'secret', secret: testSecret() }), { clock })
  t.teardown(() => verifier.close())
  const verifyAnything = (input: unknown): Promise<unknown> => verifier.verify(input as string)
  for (const input of [undefined, null, 42, {}, ['a.b.c']]) {
    let pending: Promise<unknown> = Promise.resolve('verify() was not called')
    t.doesNotThrow(() => { pending = verifyAnything(input) }, `no synchronous throw for ${JSON.stringify(input)}`)
    await t.rejects(pending, { name: 'AuthError', reason: 'missing' })
  }
})

void t.test('unusable keys and algorithm lists stop construction with a ConfigError', async (t) => {
  const rsa = await generateSigningKey('RS256')
  const cases: Array<[string, AuthConfig, string]> = [
    ['secret with asymmetric algorithms only', authConfig({ kind: 'secret', secret: testSecret() }, { algorithms: ['RS256', 'ES256'] }), 'PODGATE_JWT_ALGORITHMS'],
    ['RSA key with EC algorithms only', authConfig({ kind: 'public-key', pem: rsa.pem }, { algorithms: ['ES256', 'HS256'] }), 'PODGATE_JWT_ALGORITHMS'],
    ['garbage PEM', authConfig({ kind: 'public-key', pem: '-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----' }), 'PODGATE_JWT_PUBLIC_KEY'],
    ['no PEM block', authConfig({ kind: 'public-key', pem: 'hello' }), 'PODGATE_JWT_PUBLIC_KEY'],
    ['1024-bit RSA', authConfig({ kind: 'public-key', pem: pemOf(generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey) }), 'PODGATE_JWT_PUBLIC_KEY'],
    ['Ed448', authConfig({ kind: 'public-key', pem: pemOf(generateKeyPairSync('ed448').publicKey) }), 'PODGATE_JWT_PUBLIC_KEY'],
    ['secp256k1', authConfig({ kind: 'public-key', pem: pemOf(generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey) }), 'PODGATE_JWT_PUBLIC_KEY'],
    ['negative cache size', authConfig({ kind: 'secret', secret: testSecret() }, { tokenCacheSize: -1 }), 'PODGATE_TOKEN_CACHE_SIZE'],
  ]
  for (const [name, config, variable] of cases) {
    t.throws(() => createTokenVerifier(config), { name: 'ConfigError', variable }, name)
  }
})

function pemOf (key: { export (options: { type: 'spki', format: 'pem' }): string | Buffer }): string {
  return key.export({ type: 'spki', format: 'pem' }).toString()
}

void t.test('PEM text around the key block is ignored', async (t) => {
  const key = await generateSigningKey('ES256')
  const verifier = createTokenVerifier(authConfig({ kind: 'public-key', pem: `issuer key, rotated 2030-01-01\n${key.pem}\n` }), { clock })
  t.teardown(() => verifier.close())
  t.equal((await verifier.verify(await signToken(key.privateKey, 'ES256', { sub: 'alice' }, { now: NOW }))).user, 'alice')
})

void t.test('PODGATE_TENANT_CLAIM: the tenant is a required DNS-1123 label, kept with the cached identity', async (t) => {
  const sign = (claims: Record<string, unknown>): Promise<string> => signToken(testSecret(), 'HS256', claims, { now: NOW, ttlSeconds: 600 })
  const metrics = new Metrics({ defaultMetrics: false })
  const verifier = createTokenVerifier(authConfig({ kind: 'secret', secret: testSecret() }, { tenantClaim: 'org' }), { clock, metrics })
  t.teardown(() => verifier.close())
  const token = await sign({ sub: 'alice', org: 'team-a' })
  t.same(await verifier.verify(token), { user: 'alice', expiresAt: NOW + 600_000, issuedAt: NOW, tenant: 'team-a' })
  t.equal(verifier.cached(token)?.tenant, 'team-a', 'the cache hit carries the tenant')
  const refused: Array<[Record<string, unknown>, RegExp]> = [
    [{ sub: 'alice' }, /no "org" claim, required by PODGATE_TENANT_CLAIM/],
    [{ sub: 'alice', org: 42 }, /"org" is a number, not a string/],
    [{ sub: 'alice', org: ['team-a'] }, /"org" is an array/],
    [{ sub: 'alice', org: 'Team_A' }, /"org" is not a DNS-1123 label/],
    [{ sub: 'alice', org: '' }, /"org" is not a DNS-1123 label/],
  ]
  for (const [claims, message] of refused) {
    const err = await refusal(verifier, await sign(claims))
    t.equal(err.reason, 'claim', JSON.stringify(claims))
    t.match(err.message, message)
  }
  t.equal(await failureCount(metrics, 'claim'), refused.length, 'counted under reason="claim"')

  const rs = await generateSigningKey('RS256')
  const viaJose = createTokenVerifier(authConfig({ kind: 'public-key', pem: rs.pem }, { tenantClaim: 'org' }), { clock })
  t.teardown(() => viaJose.close())
  t.equal((await viaJose.verify(await signToken(rs.privateKey, 'RS256', { sub: 'bob', org: 'team-b' }, { now: NOW }))).tenant, 'team-b', 'jose path: the same check')
  t.equal((await refusal(viaJose, await signToken(rs.privateKey, 'RS256', { sub: 'bob' }, { now: NOW }))).reason, 'claim')

  const off = createTokenVerifier(authConfig({ kind: 'secret', secret: testSecret() }), { clock })
  t.teardown(() => off.close())
  t.same(await off.verify(token), { user: 'alice', expiresAt: NOW + 600_000, issuedAt: NOW }, 'unset: no tenant on the identity')
})
