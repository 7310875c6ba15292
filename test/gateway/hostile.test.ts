// Hostile credentials at the front door: every one is a 401 with WWW-Authenticate, none is
// a 5xx, and the gateway keeps serving the honest request that follows each.
import t from 'tap'
import { Agent, request } from 'undici'
import { exportSPKI } from 'jose'
import { encodeSegment, generateSigningKey, signToken, unsignedToken } from '../support/keys.ts'
import { startTestGateway } from '../support/gateway.ts'

void t.test('hostile tokens are 401 and the gateway keeps serving', async (t) => {
  const rsa = await generateSigningKey('RS256')
  const gw = await startTestGateway(t, { PODGATE_JWT_PUBLIC_KEY: rsa.pem, PODGATE_JWT_ISSUER: 'https://idp.example', PODGATE_JWT_AUDIENCE: 'podgate' })
  await gw.backend('alice')
  await gw.backend('bob')
  const dispatcher = new Agent()
  t.teardown(() => dispatcher.close())
  const claims = { iss: 'https://idp.example', aud: 'podgate' }
  const good = await signToken(rsa.privateKey, 'RS256', { ...claims, sub: 'alice' })
  const now = Date.now()
  const pemBytes = new TextEncoder().encode(await exportSPKI(rsa.publicKey))
  const other = await generateSigningKey('RS256')
  const honest = await signToken(rsa.privateKey, 'RS256', { ...claims, sub: 'alice' })
  const [header, payload] = honest.split('.') as [string, string]

  const hostile: Array<[string, string]> = [
    ['alg none', unsignedToken({ alg: 'none', typ: 'JWT' }, { ...claims, sub: 'bob', exp: Math.floor(now / 1000) + 600 })],
    ['public key used as an HS256 secret', await signToken(pemBytes, 'HS256', { ...claims, sub: 'bob' })],
    ['expired', await signToken(rsa.privateKey, 'RS256', { ...claims, sub: 'alice' }, { now: now - 7_200_000, ttlSeconds: 60 })],
    ['nbf in the future', await signToken(rsa.privateKey, 'RS256', { ...claims, sub: 'alice', nbf: Math.floor(now / 1000) + 3600 })],
    ['wrong iss', await signToken(rsa.privateKey, 'RS256', { ...claims, iss: 'https://evil.example', sub: 'alice' })],
    ['wrong aud', await signToken(rsa.privateKey, 'RS256', { ...claims, aud: 'someone-else', sub: 'alice' })],
    ['signed by another key', await signToken(other.privateKey, 'RS256', { ...claims, sub: 'bob' })],
    ['payload swapped under a valid signature', `${header}.${encodeSegment({ ...claims, sub: 'bob', exp: Math.floor(now / 1000) + 600 })}.${honest.split('.')[2]}`],
    ['truncated', good.slice(0, good.length - 20)],
    ['two segments', `${header}.${payload}`],
    ['not base64url', '***.***.***'],
    ['64 KB token', `${header}.${'A'.repeat(64 * 1024)}.sig`],
    ['no user claim', await signToken(rsa.privateKey, 'RS256', { ...claims })],
    ['user ../bob', await signToken(rsa.privateKey, 'RS256', { ...claims, sub: '../bob' })],
    ['user Bob', await signToken(rsa.privateKey, 'RS256', { ...claims, sub: 'Bob' })],
    ['user bob\\u0000', await signToken(rsa.privateKey, 'RS256', { ...claims, sub: 'bob\u0000' })],
    ['user with a Cyrillic look-alike', await signToken(rsa.privateKey, 'RS256', { ...claims, sub: 'b\u043eb' })],
    ['numeric user', await signToken(rsa.privateKey, 'RS256', { ...claims, sub: 42 as unknown as string })],
    ['no exp', await signToken(rsa.privateKey, 'RS256', { ...claims, sub: 'alice' }, { exp: false })],
    ['empty bearer', ''],
    ['whitespace', '   '],
  ]
  for (const [name, token] of hostile) {
    for (const [where, headers] of [['bearer', { authorization: `Bearer ${token}` }], ['cookie', { cookie: `session=${token}` }]] as const) {
      const res = await request(gw.url, { dispatcher, headers })
      t.equal(res.statusCode, 401, `${name} (${where}): 401`)
      t.match(res.headers['www-authenticate'], /^Bearer realm="podgate"/, `${name} (${where}): WWW-Authenticate`)
      await res.body.dump()
    }
    const ok = await request(gw.url, { dispatcher, headers: { authorization: `Bearer ${good}` } })
    t.equal(ok.statusCode, 200, `after ${name}, an honest request is served`)
    await ok.body.dump()
  }
  const metrics = await (await request(`${gw.adminUrl}/metrics`, { dispatcher })).body.text()
  t.notMatch(metrics, /podgate_requests_total\{class="5xx"[^}]*\} [1-9]/, 'no 5xx at all')
})
