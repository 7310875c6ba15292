// The tenant check through gateway workers: a primary in this process with two real forked
// workers, whose source knows namespaces; the workers learn them from the relayed routes.
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { SignJWT } from 'jose'
import t from 'tap'
import { request } from 'undici'
import WebSocket from 'ws'
import { createTokenVerifier } from '../../src/auth/verifier.ts'
import { loadConfig } from '../../src/config.ts'
import { endpoint, type Endpoint } from '../../src/discovery/source.ts'
import { LocalEndpointSource } from '../../src/local/endpoint-source.ts'
import { createLogger } from '../../src/log.ts'
import { Metrics } from '../../src/metrics.ts'
import { startPrimary } from '../../src/workers/primary.ts'
import { primaryEnv } from '../support/serve.ts'

/** A code-fed source that also says which namespace each user is routed from. */
class NamespacedSource extends LocalEndpointSource {
  readonly #namespaces = new Map<string, string>()

  namespaceOf (user: string): string | undefined { return this.#namespaces.get(user) }

  route (user: string, namespace: string, endpoints: readonly Endpoint[]): void {
    this.#namespaces.set(user, namespace)
    this.set(user, endpoints)
  }
}

void t.test('through gateway workers, a token reaches its user only from the namespace it names', async (t) => {
  let seen = 0
  const backend = createServer((_req, res) => { seen++; res.end('ok') })
  backend.on('upgrade', (_req, socket) => { seen++; socket.destroy() })
  backend.listen(0, '127.0.0.1')
  await once(backend, 'listening')
  t.teardown(() => new Promise((resolve) => { backend.closeAllConnections(); backend.close(resolve) }))
  const port = (backend.address() as AddressInfo).port

  const secret = randomBytes(32).toString('hex')
  const env = primaryEnv(secret, { PODGATE_TENANT_CLAIM: 'tenant' })
  const config = loadConfig(env)
  const logger = createLogger('silent')
  const metrics = new Metrics({ defaultMetrics: false })
  const source = new NamespacedSource()
  // alice is in the table the workers start from; bob arrives as a change.
  source.route('alice', 'team-a', [endpoint('127.0.0.1', port)])
  const podgate = await startPrimary({
    config, source, logger, metrics, verifier: createTokenVerifier(config.auth, { metrics, logger }), workers: 2, workerEnv: env, workerExecArgv: [],
  })
  t.teardown(() => podgate.close())
  source.route('bob', 'team-b', [endpoint('127.0.0.1', port)])

  const tokenFor = (claims: Record<string, unknown>): Promise<string> => {
    const now = Math.floor(Date.now() / 1000)
    return new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt(now).setExpirationTime(now + 600).sign(new TextEncoder().encode(secret))
  }
  const get = async (claims: Record<string, unknown>): Promise<{ status: number, body: string }> => {
    const token = await tokenFor(claims)
    const res = await request(`${podgate.gatewayUrl}/`, { headers: { authorization: `Bearer ${token}` } })
    return { status: res.statusCode, body: await res.body.text() }
  }
  // Several requests each, so both workers (SO_REUSEPORT) very likely answer some.
  for (let i = 0; i < 6; i++) {
    t.equal((await get({ sub: 'alice', tenant: 'team-a' })).status, 200, 'alice from the initial table')
    t.equal((await get({ sub: 'bob', tenant: 'team-b' })).status, 200, 'bob from a relayed change')
    const refused = await get({ sub: 'alice', tenant: 'team-b' })
    t.equal(refused.status, 403)
    t.match(JSON.parse(refused.body), { error: 'PODGATE_FORBIDDEN' })
    t.equal((await get({ sub: 'bob', tenant: 'team-a' })).status, 403)
  }
  t.equal(seen, 12, 'the backend saw only the allowed requests')
  for (let i = 0; i < 4; i++) {
    const ws = new WebSocket(`${podgate.gatewayUrl.replace('http', 'ws')}/ws`, { headers: { authorization: `Bearer ${await tokenFor({ sub: 'alice', tenant: 'team-b' })}` } })
    const status = await new Promise<number>((resolve) => {
      ws.once('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); ws.terminate() })
      ws.once('upgrade', () => { resolve(101); ws.terminate() })
      ws.once('error', () => { resolve(0) })
    })
    t.equal(status, 403, 'a WebSocket upgrade for another tenant')
  }
  t.equal(seen, 12, 'no upgrade reached the backend')

  // bob moves to team-a with the same endpoint: the change alone moves the check.
  source.route('bob', 'team-a', [endpoint('127.0.0.1', port), endpoint('127.0.0.1', port)])
  const deadline = Date.now() + 5000
  let status = 0
  while (Date.now() < deadline && (status = (await get({ sub: 'bob', tenant: 'team-a' })).status) !== 200) await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(status, 200, 'bob now routed from team-a')
})
