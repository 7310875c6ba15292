// PODGATE_FORWARD_CREDENTIALS, seen from a backend's echo: by default podgate's own
// credential (a bearer Authorization, the session cookie) never reaches the pod; with true
// both pass unchanged. Either way the identity header is podgate's.
import t, { type Test } from 'tap'
import { request } from 'undici'
import { startAuthService, tokenTable } from '../support/auth-service.ts'
import { startTestGateway } from '../support/gateway.ts'

interface Echoed { user: string, headers: Record<string, string | undefined> }

async function echo (t: Test, url: string, headers: Record<string, string>): Promise<Echoed> {
  const res = await request(url, { headers })
  t.equal(res.statusCode, 200, JSON.stringify(headers))
  return await res.body.json() as Echoed
}

for (const forward of [false, true]) {
  void t.test(`PODGATE_FORWARD_CREDENTIALS=${forward}`, async (t) => {
    const gw = await startTestGateway(t, forward ? { PODGATE_FORWARD_CREDENTIALS: 'true' } : {})
    await gw.backend('alice')
    const jwt = await gw.token('alice')

    const viaBearer = await echo(t, gw.url, { authorization: `Bearer ${jwt}`, 'x-user-id': 'mallory' })
    t.equal(viaBearer.user, 'alice')
    t.equal(viaBearer.headers['x-user-id'], 'alice', 'the identity header is podgate\'s either way')
    t.equal(viaBearer.headers.authorization, forward ? `Bearer ${jwt}` : undefined, forward ? 'the bearer header passes unchanged' : 'the bearer header is removed')

    const viaCookie = await echo(t, gw.url, { cookie: `theme=dark; session=${jwt}; lang=de` })
    t.equal(viaCookie.headers.cookie, forward ? `theme=dark; session=${jwt}; lang=de` : 'theme=dark; lang=de', forward ? 'the Cookie header passes unchanged' : 'only the session cookie is removed')

    const basic = await echo(t, gw.url, { cookie: `session=${jwt}`, authorization: 'Basic dXNlcjpwYXNz' })
    t.equal(basic.headers.authorization, 'Basic dXNlcjpwYXNz', 'another scheme always passes')
    t.equal(basic.headers.cookie, forward ? `session=${jwt}` : undefined)
  })
}

void t.test('an opaque credential checked by PODGATE_AUTH_URL is forwarded the same way', async (t) => {
  const service = await startAuthService(t, tokenTable({ 'opaque-alice': 'alice' }))
  for (const forward of [false, true]) {
    const gw = await startTestGateway(t, { PODGATE_AUTH_URL: service.url, PODGATE_FORWARD_CREDENTIALS: String(forward) })
    await gw.backend('alice')
    const seen = await echo(t, gw.url, { authorization: 'Bearer opaque-alice', cookie: 'session=opaque-alice; theme=dark' })
    t.equal(seen.user, 'alice')
    t.equal(seen.headers.authorization, forward ? 'Bearer opaque-alice' : undefined, `forward=${forward}: Authorization`)
    t.equal(seen.headers.cookie, forward ? 'session=opaque-alice; theme=dark' : 'theme=dark', `forward=${forward}: Cookie`)
  }
})
