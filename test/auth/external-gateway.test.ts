// A real gateway with PODGATE_AUTH_URL in front of real backends: opaque credentials (bearer
// or session cookie) reach their user's backend, a refused one is 401, an outage of the auth
// service is 503 for new credentials while remembered ones keep working, and 1,000 requests
// of 10 users cost 10 calls.
import t from 'tap'
import { Agent, request } from 'undici'
import { startAuthService, tokenTable } from '../support/auth-service.ts'
import { startTestGateway } from '../support/gateway.ts'

interface Echoed { user: string }

const USERS = Array.from({ length: 10 }, (_, i) => `user-${i}`)
const TABLE = Object.fromEntries(USERS.map((user) => [`opaque-token-of-${user}`, user]))

function client (t: { teardown: (fn: () => unknown) => void }): Agent {
  const agent = new Agent({ connections: 64, keepAliveTimeout: 1000 })
  t.teardown(() => agent.close())
  return agent
}

void t.test('opaque credentials through a gateway with PODGATE_AUTH_URL', async (t) => {
  const service = await startAuthService(t, tokenTable({ ...TABLE, 'opaque-alice': 'alice', 'opaque-bob': 'bob' }))
  const gw = await startTestGateway(t, { PODGATE_AUTH_URL: service.url })
  await gw.backend('alice')
  await gw.backend('bob')
  const dispatcher = client(t)

  const alice = await request(`${gw.url}/?x=1`, { dispatcher, headers: { authorization: 'Bearer opaque-alice' } })
  t.equal(alice.statusCode, 200)
  t.equal((await alice.body.json() as Echoed).user, 'alice', 'a bearer token reaches its user')
  t.equal(service.calls[0]?.headers['x-original-url'], `${gw.url}/?x=1`, 'the service is told what was asked')

  const bob = await request(gw.url, { dispatcher, headers: { cookie: 'theme=dark; session=opaque-bob' } })
  t.equal(bob.statusCode, 200)
  t.equal((await bob.body.json() as Echoed).user, 'bob', 'a session cookie reaches its user')

  const jwt = await gw.token('alice')
  const withJwt = await request(gw.url, { dispatcher, headers: { authorization: `Bearer ${jwt}` } })
  t.equal(withJwt.statusCode, 200)
  await withJwt.body.dump()
  t.equal(service.calls.length, 2, 'a JWT is still verified in-process')

  const refused = await request(gw.url, { dispatcher, headers: { authorization: 'Bearer stolen' } })
  t.equal(refused.statusCode, 401)
  t.match(refused.headers['www-authenticate'], /error="invalid_token"/)
  t.same(await refused.body.json(), { error: 'PODGATE_AUTH', message: 'the auth service refused the credential' })

  await service.close()
  const down = await request(gw.url, { dispatcher, headers: { authorization: 'Bearer opaque-token-of-user-1' } })
  t.equal(down.statusCode, 503, 'a new credential while the service is down')
  t.equal(down.headers['retry-after'], '5')
  t.match(await down.body.json(), { error: 'PODGATE_NOT_READY', message: /authentication service could not be reached/ })
  const again = await request(gw.url, { dispatcher, headers: { authorization: 'Bearer opaque-alice' } })
  t.equal(again.statusCode, 200, 'a remembered credential keeps working')
  t.equal((await again.body.json() as Echoed).user, 'alice')
  const cookie = await request(gw.url, { dispatcher, headers: { cookie: 'session=opaque-bob' } })
  t.equal(cookie.statusCode, 200)
  await cookie.body.dump()
})

void t.test('1,000 requests of 10 users make 10 calls to the auth service', async (t) => {
  const service = await startAuthService(t, tokenTable(TABLE))
  const gw = await startTestGateway(t, { PODGATE_AUTH_URL: service.url })
  for (const user of USERS) await gw.backend(user)
  const dispatcher = client(t)
  const tokens = Object.keys(TABLE)
  let next = 0
  const wrong: string[] = []
  // 50 requests in flight at a time, users interleaved.
  await Promise.all(Array.from({ length: 50 }, async () => {
    while (next < 1000) {
      const i = next++
      const token = tokens[i % tokens.length] ?? ''
      const res = await request(gw.url, { dispatcher, headers: i % 2 === 0 ? { authorization: `Bearer ${token}` } : { cookie: `session=${token}` } })
      const body = await res.body.json() as Echoed
      if (res.statusCode !== 200 || body.user !== TABLE[token]) wrong.push(`${i}: ${res.statusCode} ${body.user}`)
    }
  }))
  t.same(wrong, [], 'every request reached its user')
  t.equal(service.calls.length, 10, 'one call per user')
  t.comment(`1,000 requests of 10 users: ${service.calls.length} calls to the auth service`)
  const lookups = (await gw.metrics.registry.getSingleMetric('podgate_auth_url_cache_total')?.get())?.values ?? []
  t.equal(lookups.reduce((sum, v) => sum + v.value, 0), 1000, 'every request counted once as a hit or a miss')
})
