import t from 'tap'
import { decodeJwt, decodeProtectedHeader } from 'jose'
import { mintToken } from '../../src/auth/mint.ts'
import { createTokenVerifier } from '../../src/auth/verifier.ts'
import { authConfig, testSecret } from '../support/keys.ts'
import { ManualClock } from '../support/manual-clock.ts'

const NOW = Date.UTC(2030, 0, 1)
const clock = new ManualClock(NOW)

void t.test('minted tokens verify and carry the user, expiry and options', async (t) => {
  const token = await mintToken({ secret: testSecret(), user: 'alice', ttlSeconds: 3600, clock })
  t.same(decodeProtectedHeader(token), { alg: 'HS256', typ: 'JWT' })
  t.same(decodeJwt(token), { sub: 'alice', iat: NOW / 1000, exp: NOW / 1000 + 3600 })
  const verifier = createTokenVerifier(authConfig({ kind: 'secret', secret: testSecret() }), { clock })
  t.teardown(() => verifier.close())
  t.same(await verifier.verify(token), { user: 'alice', expiresAt: NOW + 3_600_000, issuedAt: NOW })

  const custom = await mintToken({ secret: testSecret(), user: 'bob', ttlSeconds: 60, claim: 'uid', issuer: 'podgate-dev', audience: 'podgate', clock })
  const strict = createTokenVerifier(
    authConfig({ kind: 'secret', secret: testSecret() }, { userClaim: 'uid', issuer: ['podgate-dev'], audience: ['podgate'] }),
    { clock },
  )
  t.teardown(() => strict.close())
  t.equal((await strict.verify(custom)).user, 'bob')

  const tenant = await mintToken({ secret: testSecret(), user: 'carol', ttlSeconds: 60, claims: { team: 'team-a' }, clock })
  t.match(decodeJwt(tenant), { sub: 'carol', team: 'team-a' }, 'extra claims, e.g. the tenant')
})

void t.test('bad mint input is refused with a clear error', async (t) => {
  const base = { secret: testSecret(), user: 'alice', ttlSeconds: 60 }
  const cases: Array<[string, Parameters<typeof mintToken>[0], RegExp]> = [
    ['uppercase user', { ...base, user: 'Alice' }, /invalid user id "Alice"/],
    ['path user', { ...base, user: '../bob' }, /invalid user id/],
    ['short secret', { ...base, secret: new Uint8Array(16) }, /at least 32 bytes/],
    ['zero ttl', { ...base, ttlSeconds: 0 }, /ttlSeconds/],
    ['fractional ttl', { ...base, ttlSeconds: 1.5 }, /ttlSeconds/],
    ['reserved claim', { ...base, claim: 'exp' }, /cannot carry the user id/],
    ['extra registered claim', { ...base, claims: { iss: 'x' } }, /"iss" cannot be an extra claim/],
    ['extra claim over the user', { ...base, claims: { sub: 'bob' } }, /"sub" cannot be an extra claim/],
  ]
  for (const [name, options, message] of cases) {
    await t.rejects(mintToken(options), { name: 'BadRequestError', message }, name)
  }
})
