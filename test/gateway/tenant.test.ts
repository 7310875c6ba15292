// The tenant check (PODGATE_TENANT_CLAIM): a gateway over the Kubernetes source, slices in two
// namespaces pointing at a counting backend, and tokens carrying (or not) the tenant claim.
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { SignJWT } from 'jose'
import t from 'tap'
import { request } from 'undici'
import WebSocket from 'ws'
import { endpoint } from '../../src/discovery/source.ts'
import { FakeKubeServer, sliceFor } from '../support/fake-kube.ts'
import { startKubernetesSource, waitForSnapshot } from '../support/fake-kube-source.ts'
import { startTestGateway, type TestGateway } from '../support/gateway.ts'

interface Teardown { teardown (fn: () => unknown): void }

/** A backend that only counts what reaches it: requests and upgrades. */
interface CountingBackend { readonly port: number, readonly seen: () => number }

async function countingBackend (t: Teardown): Promise<CountingBackend> {
  let seen = 0
  const server: Server = createServer((_req, res) => { seen++; res.end('ok') })
  server.on('upgrade', (_req, socket) => { seen++; socket.destroy() })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve) }))
  return { port: (server.address() as AddressInfo).port, seen: () => seen }
}

function tokenFor (gw: TestGateway, claims: Record<string, unknown>): Promise<string> {
  const now = Math.floor(Date.now() / 1000)
  return new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt(now).setExpirationTime(now + 600).sign(new TextEncoder().encode(gw.secret))
}

async function get (gw: TestGateway, token: string): Promise<{ status: number, body: { error?: string, message?: string } | string }> {
  const res = await request(`${gw.url}/`, { headers: { authorization: `Bearer ${token}` } })
  const text = await res.body.text()
  return { status: res.statusCode, body: res.headers['content-type']?.toString().startsWith('application/json') === true ? JSON.parse(text) as { error?: string } : text }
}

/** The status a WebSocket upgrade was answered with (101 when it went through). */
async function upgradeStatus (gw: TestGateway, token: string): Promise<number> {
  const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/ws`, { headers: { authorization: `Bearer ${token}` } })
  return new Promise((resolve) => {
    ws.once('upgrade', (res) => { resolve(res.statusCode ?? 0); ws.terminate() })
    ws.once('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); ws.terminate() })
    ws.once('error', () => { resolve(0) })
  })
}

async function setup (t: Teardown, env: Record<string, string>): Promise<{ gw: TestGateway, backend: CountingBackend, active: string[] }> {
  const server = await FakeKubeServer.start({ bookmarkIntervalMs: 100 })
  t.teardown(() => server.stop())
  const backend = await countingBackend(t)
  server.put(sliceFor('alice', ['127.0.0.1'], { name: 'user-alice', namespace: 'team-a', port: backend.port }))
  server.put(sliceFor('bob', ['127.0.0.1'], { name: 'user-bob', namespace: 'team-b', port: backend.port }))
  const { source } = await startKubernetesSource(t, server, { namespaces: ['team-a', 'team-b'] })
  await waitForSnapshot(source, (s) => s.has('alice') && s.has('bob'), 'alice and bob')
  const active: string[] = []
  const gw = await startTestGateway(t, env, { source, onActivity: (user) => { active.push(user) } })
  return { gw, backend, active }
}

void t.test('with PODGATE_TENANT_CLAIM, a token reaches its user only from the namespace it names', async (t) => {
  const { gw, backend, active } = await setup(t, { PODGATE_TENANT_CLAIM: 'tenant' })
  const own = await get(gw, await tokenFor(gw, { sub: 'alice', tenant: 'team-a' }))
  t.equal(own.status, 200, 'tenant team-a reaches alice in team-a')
  t.equal(backend.seen(), 1)

  const other = await get(gw, await tokenFor(gw, { sub: 'alice', tenant: 'team-b' }))
  t.equal(other.status, 403, 'tenant team-b may not reach alice in team-a')
  t.match(other.body, { error: 'PODGATE_FORBIDDEN', message: /tenant/ })
  t.equal(backend.seen(), 1, 'the backend saw nothing of the refused request')
  t.same(active, ['alice'], 'and it counted as no activity')
  t.equal((await get(gw, await tokenFor(gw, { sub: 'bob', tenant: 'team-b' }))).status, 200, 'bob in team-b with tenant team-b')

  const missing = await get(gw, await tokenFor(gw, { sub: 'alice' }))
  t.equal(missing.status, 401, 'no tenant claim: refused as a token')
  t.match(missing.body, { error: 'PODGATE_AUTH', message: /"tenant" claim/ })
  const notLabel = await get(gw, await tokenFor(gw, { sub: 'alice', tenant: 'Team_A' }))
  t.equal(notLabel.status, 401, 'a tenant that is not a namespace name is refused')
  t.equal(backend.seen(), 2)

  const requests = await gw.metrics.registry.getSingleMetricAsString('podgate_requests_total')
  t.match(requests, /podgate_requests_total\{class="4xx",source="podgate"\} 3/, 'the 403 and the 401s count as 4xx')
})

void t.test('a WebSocket upgrade for another tenant is 403 and never reaches the pod', async (t) => {
  const { gw, backend } = await setup(t, { PODGATE_TENANT_CLAIM: 'tenant' })
  t.equal(await upgradeStatus(gw, await tokenFor(gw, { sub: 'alice', tenant: 'team-b' })), 403)
  t.equal(backend.seen(), 0, 'the backend saw no upgrade')
  await upgradeStatus(gw, await tokenFor(gw, { sub: 'alice', tenant: 'team-a' }))
  t.equal(backend.seen(), 1, 'the matching tenant is forwarded')
})

void t.test('without PODGATE_TENANT_CLAIM, a tenant claim changes nothing', async (t) => {
  const { gw, backend } = await setup(t, {})
  t.equal((await get(gw, await tokenFor(gw, { sub: 'alice', tenant: 'team-b' }))).status, 200)
  t.equal((await get(gw, await tokenFor(gw, { sub: 'alice' }))).status, 200)
  t.equal(backend.seen(), 2)
})

void t.test('a source without namespaces cannot check a tenant: 403, fail closed', async (t) => {
  const backend = await countingBackend(t)
  const gw = await startTestGateway(t, { PODGATE_TENANT_CLAIM: 'tenant' })
  gw.local.set('alice', [endpoint('127.0.0.1', backend.port)])
  const res = await get(gw, await tokenFor(gw, { sub: 'alice', tenant: 'team-a' }))
  t.equal(res.status, 403)
  t.match(res.body, { error: 'PODGATE_FORBIDDEN', message: /cannot be checked/ })
  t.equal(await upgradeStatus(gw, await tokenFor(gw, { sub: 'alice', tenant: 'team-a' })), 403)
  t.equal(backend.seen(), 0)
})

void t.test('spawn on demand is refused before the spawn for a tenant that is not a namespace the provisioner serves', async (t) => {
  const spawned: Array<[string, string | undefined]> = []
  const onMissing = (user: string, _accept: string | undefined, namespace?: string): Promise<never> => { spawned.push([user, namespace]); return Promise.reject(new Error('not in this test')) }
  const gw = await startTestGateway(t, { PODGATE_TENANT_CLAIM: 'tenant' }, { onMissing, spawnNamespaces: ['team-a', 'team-b'] })
  const res = await get(gw, await tokenFor(gw, { sub: 'carol', tenant: 'team-c' }))
  t.equal(res.status, 403)
  t.match(res.body, { error: 'PODGATE_FORBIDDEN', message: /not a namespace this gateway creates workloads in/ })
  t.same(spawned, [], 'nothing was spawned')
  t.equal((await get(gw, await tokenFor(gw, { sub: 'carol', tenant: 'team-b' }))).status, 500, 'a served tenant goes on to the spawn')
  t.same(spawned, [['carol', 'team-b']], 'which is asked to create in the token\'s tenant')
})

void t.test('a spawned workload is routed only when it came up in the token\'s tenant', async (t) => {
  const server = await FakeKubeServer.start({ bookmarkIntervalMs: 100 })
  t.teardown(() => server.stop())
  const backend = await countingBackend(t)
  const { source } = await startKubernetesSource(t, server, { namespaces: ['team-a', 'team-b'] })
  await source.synced
  // Stands in for the spawner: the workload comes up where `place` says, whatever was asked.
  let place = (namespace: string | undefined): string => namespace ?? 'team-a'
  const onMissing = async (user: string, _accept: string | undefined, namespace?: string): Promise<readonly ReturnType<typeof endpoint>[]> => {
    server.put(sliceFor(user, ['127.0.0.1'], { name: `user-${user}`, namespace: place(namespace), port: backend.port }))
    const snapshot = await waitForSnapshot(source, (s) => s.has(user), user)
    return snapshot.get(user) ?? []
  }
  const gw = await startTestGateway(t, { PODGATE_TENANT_CLAIM: 'tenant' }, { source, onMissing, spawnNamespaces: ['team-a', 'team-b'] })
  t.equal((await get(gw, await tokenFor(gw, { sub: 'dora', tenant: 'team-b' }))).status, 200, 'spawned in team-b for a team-b token')
  t.equal(backend.seen(), 1)
  place = () => 'team-a'
  const res = await get(gw, await tokenFor(gw, { sub: 'emil', tenant: 'team-b' }))
  t.equal(res.status, 403, 'a workload that came up in another tenant\'s namespace is not forwarded to')
  t.match(res.body, { error: 'PODGATE_FORBIDDEN' })
  t.equal(backend.seen(), 1)
})
