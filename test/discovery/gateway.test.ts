// The gateway routing from EndpointSlices: the fake API server publishes slices that point
// at real local backends, and requests go through podgate to them.
import t from 'tap'
import type { KubernetesEndpointSource } from '../../src/discovery/kubernetes.ts'
import { Agent, request } from 'undici'
import { createBackend, type LocalBackend } from '../../src/local/backend.ts'
import { FakeKubeServer, sliceFor } from '../support/fake-kube.ts'
import { startKubernetesSource, waitForSnapshot } from '../support/fake-kube-source.ts'
import { startTestGateway, type TestGateway } from '../support/gateway.ts'
import { ManualClock } from '../support/manual-clock.ts'

const SLICES = 'discovery.k8s.io/v1/endpointslices'

interface Teardown { teardown (fn: () => unknown): void }

async function setup (t: Teardown, options: { serverDown?: boolean, clock?: ManualClock } = {}): Promise<{ server: FakeKubeServer, source: KubernetesEndpointSource, gw: TestGateway, get: (user: string, path?: string) => Promise<{ status: number, body: string }> }> {
  const server = await FakeKubeServer.start({ bookmarkIntervalMs: 100 })
  t.teardown(() => server.stop())
  if (options.serverDown === true) await server.stop()
  const { source } = await startKubernetesSource(t, server, options.clock === undefined ? {} : { clock: options.clock })
  const gw = await startTestGateway(t, {}, { source })
  const dispatcher = new Agent({ keepAliveTimeout: 1000 })
  t.teardown(() => dispatcher.close())
  const get = async (user: string, path = '/'): Promise<{ status: number, body: string }> => {
    const res = await request(`${gw.url}${path}`, { dispatcher, headers: { authorization: `Bearer ${await gw.token(user)}` } })
    return { status: res.statusCode, body: await res.body.text() }
  }
  return { server, source, gw, get }
}

async function backends (t: Teardown, user: string, n: number): Promise<LocalBackend[]> {
  const list: LocalBackend[] = []
  for (let i = 0; i < n; i++) {
    const backend = await createBackend({ user })
    t.teardown(() => backend.close())
    list.push(backend)
  }
  return list
}

/** The informer's watch may be between two connections right after an event: wait (bounded). */
async function watchOpen (server: FakeKubeServer): Promise<void> {
  for (let i = 0; i < 200 && server.openWatches === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10))
  if (server.openWatches === 0) throw new Error('no watch open after 2 s')
}

/** One slice per backend: each listens on its own port, and a slice has one port for all its endpoints. */
function slicePerBackend (user: string, list: readonly LocalBackend[], ready: readonly boolean[] = list.map(() => true)): ReturnType<typeof sliceFor>[] {
  return list.map((b, i) => sliceFor(user, ['127.0.0.1'], { name: `user-${user}-${i}`, port: b.address.port, ready: ready[i] ?? true }))
}

void t.test('a slice appearing makes its user routable to the right backend within a second', async (t) => {
  const { server, gw, get } = await setup(t)
  const [alice] = await backends(t, 'alice', 1)
  const [bob] = await backends(t, 'bob', 1)
  t.equal((await get('alice')).status, 404, 'no slice yet: no workload')
  const published = Date.now()
  for (const slice of [...slicePerBackend('alice', [alice!]), ...slicePerBackend('bob', [bob!])]) server.put(slice)
  await waitForSnapshot(gw.source, (s) => (s.get('alice')?.length ?? 0) > 0 && (s.get('bob')?.length ?? 0) > 0, 'alice and bob', 1000)
  t.ok(Date.now() - published < 1000, `routable ${Date.now() - published} ms after the watch event`)
  const a = await get('alice')
  t.equal(a.status, 200)
  t.equal((JSON.parse(a.body) as { user: string }).user, 'alice')
  t.equal((JSON.parse((await get('bob')).body) as { user: string }).user, 'bob')
})

void t.test('scale 1 → 3 spreads requests; a not-ready endpoint gets none; a deleted slice is 404', async (t) => {
  const { server, gw, get } = await setup(t)
  const list = await backends(t, 'alice', 3)
  const hits = new Map<number, number>()
  for (const b of list) b.server.on('request', () => { hits.set(b.address.port, (hits.get(b.address.port) ?? 0) + 1) })
  const slices = slicePerBackend('alice', list)
  server.put(slices[0]!)
  await waitForSnapshot(gw.source, (s) => s.get('alice')?.length === 1, 'one endpoint')
  t.equal((await get('alice')).status, 200)
  server.put(slices[1]!)
  server.put(slices[2]!)
  await waitForSnapshot(gw.source, (s) => s.get('alice')?.length === 3, 'three endpoints')
  hits.clear()
  for (let i = 0; i < 30; i++) t.equal((await get('alice')).status, 200)
  t.equal(hits.size, 3, 'all three endpoints served')

  const notReady = slicePerBackend('alice', list, [true, true, false])[2]!
  server.put(notReady)
  await waitForSnapshot(gw.source, (s) => s.get('alice')?.length === 2, 'two ready endpoints')
  hits.clear()
  for (let i = 0; i < 20; i++) t.equal((await get('alice')).status, 200)
  t.notOk(hits.has(list[2]!.address.port), 'the not-ready endpoint got no new request')

  for (const slice of slices) server.delete(SLICES, 'default', String((slice.metadata as { name: string }).name))
  await waitForSnapshot(gw.source, (s) => !s.has('alice'), 'alice gone')
  t.equal((await get('alice')).status, 404, 'no slices: no workload (spawn off)')
})

void t.test('broken watches: routing continues from the cache and the watch resumes', async (t) => {
  const { server, gw, get } = await setup(t)
  const [alice] = await backends(t, 'alice', 1)
  const [bob] = await backends(t, 'bob', 1)
  server.put(slicePerBackend('alice', [alice!])[0]!)
  await waitForSnapshot(gw.source, (s) => s.has('alice'), 'alice')
  await watchOpen(server)
  server.refuse(5, { status: 503 })
  t.ok(server.dropWatches() >= 1, 'every watch connection dropped')
  t.equal((await get('alice')).status, 200, 'served from the cache meanwhile')
  server.put(slicePerBackend('bob', [bob!])[0]!)
  await waitForSnapshot(gw.source, (s) => s.has('bob'), 'bob after the watch resumed')
  t.equal((await get('bob')).status, 200, 'a slice added after the break routes: the watch came back by itself')
})

void t.test('410 Gone: relist, and an endpoint deleted during the outage is gone afterwards', async (t) => {
  const { server, gw, get } = await setup(t)
  const [alice] = await backends(t, 'alice', 1)
  const [bob] = await backends(t, 'bob', 1)
  server.put(slicePerBackend('alice', [alice!])[0]!)
  server.put(slicePerBackend('bob', [bob!])[0]!)
  await waitForSnapshot(gw.source, (s) => s.has('alice') && s.has('bob'), 'both')
  await watchOpen(server)
  server.muteWatches()
  server.delete(SLICES, 'default', 'user-bob-0')
  server.compact()
  t.equal((await get('bob')).status, 200, 'the muted watch has not told us yet')
  server.endWatches()
  await waitForSnapshot(gw.source, (s) => !s.has('bob'), 'bob gone after the relist')
  t.equal((await get('bob')).status, 404)
  t.equal((await get('alice')).status, 200)
})

void t.test('API server down at start: /readyz is 503 until it is up, then 200', async (t) => {
  const clock = new ManualClock()
  const { server, source, gw, get } = await setup(t, { serverDown: true, clock })
  const [alice] = await backends(t, 'alice', 1)
  server.put(slicePerBackend('alice', [alice!])[0]!)
  const dispatcher = new Agent()
  t.teardown(() => dispatcher.close())
  const ready = async (): Promise<number> => {
    const res = await request(`${gw.adminUrl}/readyz`, { dispatcher })
    await res.body.dump()
    return res.statusCode
  }
  t.equal(await ready(), 503)
  // Failed lists, each retried after its backoff on the clock (the refused connections are real).
  for (let i = 0; i < 1_000 && source.restarts < 3; i++) {
    await clock.advance(10)
    await new Promise((resolve) => setTimeout(resolve, 1))
  }
  t.ok(source.restarts >= 3, `${source.restarts} lists failed`)
  t.equal(await ready(), 503, 'still not ready while the API server is down')
  await server.start()
  await clock.advance(200)
  await gw.source.synced
  t.equal(await ready(), 200)
  t.equal((await get('alice')).status, 200)
})
