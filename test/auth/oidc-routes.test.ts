// /.podgate/ on a gateway without podgate's own login: 404 PODGATE_NOT_FOUND for every path
// and method, a WebSocket refused, and nothing forwarded to the pod, even with a valid token.
import t from 'tap'
import { connect } from 'node:net'
import { request } from 'undici'
import { startTestGateway } from '../support/gateway.ts'

void t.test('without PODGATE_OIDC_ISSUER every /.podgate/ path is 404 and never forwarded', async (t) => {
  const gw = await startTestGateway(t)
  await gw.backend('alice')
  const token = await gw.token('alice')
  const headers = { authorization: `Bearer ${token}` }
  const routed = await request(`${gw.url}/`, { headers })
  t.equal(routed.statusCode, 200, 'the token routes elsewhere')
  await routed.body.dump()
  for (const [method, path] of [['GET', '/.podgate/login?rd=/'], ['GET', '/.podgate/callback?code=x&state=y'], ['POST', '/.podgate/logout'], ['GET', '/.podgate/anything'], ['GET', '/.podgate']] as const) {
    const res = await request(`${gw.url}${path}`, { method, headers })
    t.equal(res.statusCode, 404, `${method} ${path}`)
    const body = await res.body.json() as { error: string, message: string }
    t.equal(body.error, 'PODGATE_NOT_FOUND')
    t.equal(res.headers['cache-control'], 'no-store')
  }
  const login = await request(`${gw.url}/.podgate/login`)
  t.match(await login.body.json(), { message: /not configured \(PODGATE_OIDC_ISSUER\)/ })
  const elsewhere = await request(`${gw.url}/.podgate/admin`)
  t.match(await elsewhere.body.json(), { message: /podgate keeps the prefix for itself/ })
})

void t.test('a WebSocket to /.podgate/ is refused', async (t) => {
  const gw = await startTestGateway(t)
  await gw.backend('alice')
  const token = await gw.token('alice')
  const { port } = new URL(gw.url)
  const socket = connect(Number(port), '127.0.0.1')
  t.teardown(() => { socket.destroy() })
  socket.write(`GET /.podgate/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer ${token}\r\n\r\n`)
  let answer = ''
  for await (const chunk of socket) {
    answer += String(chunk)
    if (answer.includes('}')) break
  }
  t.match(answer, /^HTTP\/1\.1 404 /)
  t.match(answer, /PODGATE_NOT_FOUND/)
})

void t.test('with login configured, the wrong method is 400 and an unknown path 404', async (t) => {
  const gw = await startTestGateway(t, { PODGATE_OIDC_ISSUER: 'http://127.0.0.1:9/', PODGATE_OIDC_CLIENT_ID: 'podgate' })
  for (const [method, path, status] of [['POST', '/.podgate/login', 400], ['POST', '/.podgate/callback', 400], ['PUT', '/.podgate/logout', 400], ['GET', '/.podgate/userinfo', 404]] as const) {
    const res = await request(`${gw.url}${path}`, { method })
    t.equal(res.statusCode, status, `${method} ${path}`)
    await res.body.dump()
  }
})
