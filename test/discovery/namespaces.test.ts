// KubernetesEndpointSource over several namespaces (one informer each) and over all of them
// (one cluster-wide watch), against the fake API server through the real client-node informer.
import t from 'tap'
import { pickNamespace } from '../../src/discovery/endpoint-slices.ts'
import type { EndpointChange } from '../../src/discovery/source.ts'
import type { Metrics } from '../../src/metrics.ts'
import { FakeKubeServer, sliceFor } from '../support/fake-kube.ts'
import { originsOf, startKubernetesSource, waitForSnapshot } from '../support/fake-kube-source.ts'

const SLICES = 'discovery.k8s.io/v1/endpointslices'
const SLICES_PATH = '/apis/discovery.k8s.io/v1'

interface Started {
  server: FakeKubeServer
  /** Paths of every request the server received. */
  paths: string[]
  /** Moves the server's clock (creationTimestamp) forward. */
  later: (ms: number) => void
}

async function fakeServer (t: { teardown: (fn: () => unknown) => void }): Promise<Started> {
  let now = Date.parse('2026-01-01T00:00:00Z')
  const server = await FakeKubeServer.start({ bookmarkIntervalMs: 100, now: () => new Date(now) })
  t.teardown(() => server.stop())
  const paths: string[] = []
  // A rule that never matches: the server's way of showing a test every request.
  server.refuse(({ path }) => { paths.push(path); return false })
  return { server, paths, later: (ms) => { now += ms } }
}

async function until (condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

async function metricValue (metrics: Metrics, name: string): Promise<number | undefined> {
  const metric = await metrics.registry.getSingleMetric(name)?.get()
  return metric?.values[0]?.value
}

void t.test('users in two served namespaces route from one snapshot; an unserved namespace is never asked', async (t) => {
  const { server, paths } = await fakeServer(t)
  server.put(sliceFor('alice', ['10.0.0.1'], { name: 'alice', namespace: 'team-a' }))
  server.put(sliceFor('bob', ['10.0.1.1'], { name: 'bob', namespace: 'team-b' }))
  server.put(sliceFor('eve', ['10.0.2.1'], { name: 'eve', namespace: 'team-c' }))
  const { source, metrics } = await startKubernetesSource(t, server, { namespaces: ['team-a', 'team-b'] })
  await source.synced
  t.equal(source.isSynced, true)
  t.same(originsOf(source.snapshot, 'alice'), ['http://10.0.0.1:8080'])
  t.same(originsOf(source.snapshot, 'bob'), ['http://10.0.1.1:8080'])
  t.equal(source.namespaceOf('alice'), 'team-a')
  t.equal(source.namespaceOf('bob'), 'team-b')
  t.equal(await metricValue(metrics, 'podgate_endpointslice_lists_total'), 2, 'one list per namespace, counted together')

  await until(() => server.openWatches === 2, 'one watch per namespace')
  server.put(sliceFor('carol', ['10.0.1.2'], { name: 'carol', namespace: 'team-b' }))
  server.put(sliceFor('eve', ['10.0.2.2'], { name: 'eve', namespace: 'team-c' }))
  await waitForSnapshot(source, (s) => s.has('carol'), 'carol from the second namespace')
  t.equal(source.snapshot.has('eve'), false, 'slices in an unserved namespace never route')
  t.same(paths.filter((p) => p.includes('/namespaces/team-c')), [], 'no request ever named team-c')
  t.same(paths.filter((p) => p === `${SLICES_PATH}/endpointslices`), [], 'and no cluster-wide request was made')
  t.equal(source.usersInSeveralNamespaces, 0)
})

void t.test('one user in two namespaces: the older slices win on every replica; the gauge counts them; the other takes over', async (t) => {
  const { server, later } = await fakeServer(t)
  server.put(sliceFor('alice', ['10.0.1.1'], { name: 'alice', namespace: 'team-b' }))
  later(60_000)
  server.put(sliceFor('alice', ['10.0.0.1'], { name: 'alice', namespace: 'team-a' }))
  const first = await startKubernetesSource(t, server, { namespaces: ['team-a', 'team-b'] })
  const second = await startKubernetesSource(t, server, { namespaces: ['team-b', 'team-a'] })
  await Promise.all([first.source.synced, second.source.synced])
  for (const { source, metrics, logs } of [first, second]) {
    t.same(originsOf(source.snapshot, 'alice'), ['http://10.0.1.1:8080'], 'team-b created its slice first: it is routed')
    t.equal(source.namespaceOf('alice'), 'team-b')
    t.equal(await metricValue(metrics, 'podgate_users_in_several_namespaces'), 1)
    t.match(logs.filter((l) => l.msg === 'user has EndpointSlices in several namespaces; routing only the oldest'), [{ level: 40, user: 'alice', routed: 'team-b', ignored: ['team-a'] }])
  }

  const { source, metrics, logs } = first
  const changes: EndpointChange[] = []
  t.teardown(source.onChange((change) => changes.push(change)))
  await until(() => server.openWatches === 4, 'the watches')
  server.put(sliceFor('alice', ['10.0.0.2'], { name: 'alice', namespace: 'team-a' }))
  server.put(sliceFor('alice', ['10.0.1.2'], { name: 'alice', namespace: 'team-b' }))
  await waitForSnapshot(source, (s) => originsOf(s, 'alice')[0] === 'http://10.0.1.2:8080', 'the winner\'s update')
  t.equal(logs.filter((l) => l.msg === 'user has EndpointSlices in several namespaces; routing only the oldest').length, 1, 'one warning per conflict, not one per event')
  t.notOk(changes.some((c) => originsOf(c.snapshot, 'alice')[0] === 'http://10.0.0.2:8080'), 'the losing namespace\'s update never routes')

  server.delete(SLICES, 'team-b', 'alice')
  await waitForSnapshot(source, (s) => originsOf(s, 'alice')[0] === 'http://10.0.0.2:8080', 'team-a taking over')
  t.equal(source.namespaceOf('alice'), 'team-a')
  t.equal(await metricValue(metrics, 'podgate_users_in_several_namespaces'), 0)
  server.delete(SLICES, 'team-a', 'alice')
  await waitForSnapshot(source, (s) => !s.has('alice'), 'alice gone')
  t.equal(source.namespaceOf('alice'), undefined)
})

void t.test('pickNamespace: the oldest claim, ties by namespace name, whatever the order', (t) => {
  t.equal(pickNamespace([{ namespace: 'b', createdAt: 1 }, { namespace: 'a', createdAt: 2 }]), 'b')
  t.equal(pickNamespace([{ namespace: 'b', createdAt: 1 }, { namespace: 'a', createdAt: 1 }]), 'a')
  t.equal(pickNamespace([{ namespace: 'a', createdAt: 1 }, { namespace: 'b', createdAt: 1 }]), 'a')
  t.equal(pickNamespace([{ namespace: 'a', createdAt: Infinity }, { namespace: 'b', createdAt: 5 }]), 'b', 'an unknown age counts as the newest')
  t.equal(pickNamespace([]), undefined)
  t.end()
})

void t.test('all namespaces: one cluster-wide list and watch', async (t) => {
  const { server, paths } = await fakeServer(t)
  server.put(sliceFor('alice', ['10.0.0.1'], { name: 'alice', namespace: 'team-a' }))
  server.put(sliceFor('bob', ['10.0.1.1'], { name: 'bob', namespace: 'team-b' }))
  server.put(sliceFor('frank', ['10.0.4.1'], { name: 'frank', namespace: 'team-b', labels: { 'app.kubernetes.io/managed-by': 'helm' } }))
  const { source } = await startKubernetesSource(t, server, { namespaces: 'all' })
  await source.synced
  t.same([...source.snapshot.keys()].sort(), ['alice', 'bob'], 'every namespace, podgate\'s slices only')
  await until(() => server.openWatches === 1, 'the watch')
  server.put(sliceFor('carol', ['10.0.2.1'], { name: 'carol', namespace: 'team-c' }))
  await waitForSnapshot(source, (s) => s.has('carol'), 'carol from a namespace nobody listed')
  t.equal(source.namespaceOf('carol'), 'team-c')
  t.equal(server.openWatches, 1, 'one watch for the whole cluster')
  t.same(paths.filter((p) => p.includes('/namespaces/')), [], 'no namespaced request')
  t.ok(paths.length >= 2 && paths.every((p) => p === `${SLICES_PATH}/endpointslices`), 'the list and the watch are cluster-wide')
})

void t.test('a 410 relist in one namespace leaves the other namespace\'s routes alone', async (t) => {
  const { server } = await fakeServer(t)
  server.put(sliceFor('alice', ['10.0.0.1'], { name: 'alice', namespace: 'team-a' }))
  server.put(sliceFor('dave', ['10.0.0.4'], { name: 'dave', namespace: 'team-a' }))
  server.put(sliceFor('bob', ['10.0.1.1'], { name: 'bob', namespace: 'team-b' }))
  const { source, metrics } = await startKubernetesSource(t, server, { namespaces: ['team-a', 'team-b'] })
  await source.synced
  await until(() => server.openWatches === 2, 'the watches')
  const bob = source.snapshot.get('bob')
  const changes: EndpointChange[] = []
  t.teardown(source.onChange((change) => changes.push(change)))

  server.muteWatches()
  server.delete(SLICES, 'team-a', 'dave')
  server.injectError({ path: `${SLICES_PATH}/namespaces/team-a/endpointslices`, verb: 'watch', status: 410, times: 1 })
  server.endWatches()
  await waitForSnapshot(source, (s) => !s.has('dave'), 'team-a relisted without dave')
  t.equal(await metricValue(metrics, 'podgate_endpointslice_lists_total'), 3, 'only team-a listed again')
  t.equal(source.snapshot.get('bob'), bob, 'team-b\'s entry is the very same list')
  t.notOk(changes.some((c) => c.users.has('bob') || c.users.has('alice')), 'no change ever touched a user the relist kept')
  t.same(originsOf(source.snapshot, 'alice'), ['http://10.0.0.1:8080'])
  t.equal(source.restarts, 0, 'a 410 is a relist, not a restart')
})

void t.test('synced waits for every namespace', async (t) => {
  const { server } = await fakeServer(t)
  server.put(sliceFor('alice', ['10.0.0.1'], { name: 'alice', namespace: 'team-a' }))
  const lift = server.refuse(({ path, verb }) => verb === 'list' && path.includes('/namespaces/team-b/'), { status: 500 })
  const { source } = await startKubernetesSource(t, server, { namespaces: ['team-a', 'team-b'] })
  await waitForSnapshot(source, (s) => s.has('alice'), 'team-a listed')
  await until(() => source.restarts >= 1, 'team-b\'s failed list')
  t.equal(source.isSynced, false, 'one namespace listed is not synced')
  lift()
  await source.synced
  t.equal(source.isSynced, true)
})
