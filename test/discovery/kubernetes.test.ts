// KubernetesEndpointSource against the fake API server, through the real client-node informer.
import { writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { createKubernetesSource, DEFAULT_COALESCE_MS, KubernetesEndpointSource } from '../../src/discovery/kubernetes.ts'
import { endpoint, type EndpointChange } from '../../src/discovery/source.ts'
import { createLogger } from '../../src/log.ts'
import { Metrics } from '../../src/metrics.ts'
import { FakeKubeServer, sliceFor } from '../support/fake-kube.ts'
import { originsOf, startKubernetesSource, waitForSnapshot } from '../support/fake-kube-source.ts'
import { kubeConfigFor, kubeconfigYaml } from '../support/kubeconfig.ts'
import { ManualClock } from '../support/manual-clock.ts'
import { resolveCluster } from '../../src/kube/kubeconfig.ts'

const SLICES = 'discovery.k8s.io/v1/endpointslices'

async function fakeServer (t: { teardown: (fn: () => unknown) => void }, options: ConstructorParameters<typeof FakeKubeServer>[0] = {}): Promise<FakeKubeServer> {
  const server = await FakeKubeServer.start({ bookmarkIntervalMs: 100, ...options })
  t.teardown(() => server.stop())
  return server
}

async function until (condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Waits (in real time) for a watch event to arrive, then moves `clock` past the coalescing window that publishes it. */
async function publishEvents (clock: ManualClock, what: string): Promise<void> {
  await until(() => clock.timers().some((timer) => timer.delayMs <= DEFAULT_COALESCE_MS), what)
  await clock.advance(DEFAULT_COALESCE_MS)
}

async function metricValue (metrics: Metrics, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const metric = await metrics.registry.getSingleMetric(name)?.get()
  return metric?.values.find((v) => Object.entries(labels).every(([k, value]) => v.labels[k] === value))?.value
}

void t.test('a new slice routes its user within a second of the event, and a deleted one stops', async (t) => {
  const server = await fakeServer(t)
  const { source } = await startKubernetesSource(t, server)
  await source.synced
  t.equal(source.isSynced, true)
  t.equal(source.snapshot.size, 0)
  const changes: EndpointChange[] = []
  t.teardown(source.onChange((change) => changes.push(change)))

  const before = source.snapshot
  server.put(sliceFor('alice', ['10.0.0.1'], { name: 'alice-1' }))
  const snapshot = await waitForSnapshot(source, (s) => s.has('alice'), 'alice', 1000)
  t.same(snapshot.get('alice'), [endpoint('10.0.0.1', 8080)])
  t.equal(before.size, 0, 'the previous snapshot is never mutated')
  t.same([...(changes[0]?.users ?? [])], ['alice'], 'the change names the user')

  server.delete(SLICES, 'default', 'alice-1')
  await waitForSnapshot(source, (s) => !s.has('alice'), 'alice gone', 1000)
  t.same([...(changes[1]?.users ?? [])], ['alice'])
  t.equal(snapshot.get('alice')?.length, 1, 'a snapshot handed out earlier still holds what it held')
})

void t.test('slices of one Service merge, addresses de-duplicate, only ready endpoints route', async (t) => {
  const server = await fakeServer(t)
  server.put(sliceFor('alice', ['10.0.0.2', '10.0.0.1'], { name: 'alice-a' }))
  server.put(sliceFor('alice', ['10.0.0.2', '10.0.0.3'], { name: 'alice-b' }))
  server.put(sliceFor('bob', ['10.0.1.1'], { name: 'bob-ready' }))
  server.put(sliceFor('bob', ['10.0.1.2'], { name: 'bob-not-ready', ready: false }))
  server.put(sliceFor('bob', ['10.0.1.3'], { name: 'bob-unknown', ready: null }))
  server.put(sliceFor('bob', ['10.0.1.4'], { name: 'bob-terminating', ready: true, terminating: true }))
  server.put(sliceFor('carol', ['10.0.2.1'], { name: 'carol-starting', ready: false }))
  server.put(sliceFor('dave', ['fd00::1'], { name: 'dave-v6' }))
  server.put(sliceFor('eve', ['10.0.3.1'], { name: 'eve-other-namespace', namespace: 'elsewhere' }))
  server.put(sliceFor('frank', ['10.0.4.1'], { name: 'frank-unmanaged', labels: { 'app.kubernetes.io/managed-by': 'helm' } }))
  const { source } = await startKubernetesSource(t, server)
  await source.synced
  const snapshot = source.snapshot
  t.same(originsOf(snapshot, 'alice'), ['http://10.0.0.1:8080', 'http://10.0.0.2:8080', 'http://10.0.0.3:8080'], 'merged, unique, in a stable order')
  t.same(originsOf(snapshot, 'bob'), ['http://10.0.1.1:8080', 'http://10.0.1.3:8080'], 'ready=true and ready unset route; ready=false and terminating do not')
  t.same(snapshot.get('carol'), [], 'a user whose slices have no ready endpoint is known but not routable')
  t.same(originsOf(snapshot, 'dave'), ['http://[fd00::1]:8080'])
  t.equal(snapshot.has('eve'), false, 'other namespaces are not watched')
  t.equal(snapshot.has('frank'), false, 'slices not managed by podgate are not watched')
  t.equal(source.routableUsers, 3)
  t.equal(source.endpointCount, 6)
  t.equal(source.isSynced, true)

  server.put(sliceFor('carol', ['10.0.2.1'], { name: 'carol-starting', ready: true }))
  await waitForSnapshot(source, (s) => (s.get('carol')?.length ?? 0) > 0, 'carol ready', 1000)
  server.delete(SLICES, 'default', 'alice-a')
  const after = await waitForSnapshot(source, (s) => originsOf(s, 'alice').length === 2, 'alice down to one slice', 1000)
  t.same(originsOf(after, 'alice'), ['http://10.0.0.2:8080', 'http://10.0.0.3:8080'], 'an address still in another slice stays')
})

void t.test('the port named http, else the only port', async (t) => {
  const server = await fakeServer(t)
  server.put(sliceFor('named', ['10.0.0.1'], { port: 8000, extraPorts: [{ name: 'metrics', port: 9090 }] }))
  server.put(sliceFor('named-second', ['10.0.0.2'], { portName: 'metrics', port: 9090, extraPorts: [{ name: 'http', port: 3000 }] }))
  server.put(sliceFor('only', ['10.0.0.3'], { portName: null, port: 5000 }))
  server.put(sliceFor('ambiguous', ['10.0.0.4'], { portName: 'web', port: 80, extraPorts: [{ name: 'admin', port: 81 }], name: 'ambiguous-slice' }))
  server.put(sliceFor('udp', ['10.0.0.5'], { extraPorts: [], port: 53, labels: {}, name: 'udp-slice' }))
  const udp = server.get(SLICES, 'default', 'udp-slice')
  server.put({ ...udp, ports: [{ name: 'http', port: 53, protocol: 'UDP' }] })
  const { source, logs } = await startKubernetesSource(t, server)
  await source.synced
  t.same(originsOf(source.snapshot, 'named'), ['http://10.0.0.1:8000'])
  t.same(originsOf(source.snapshot, 'named-second'), ['http://10.0.0.2:3000'])
  t.same(originsOf(source.snapshot, 'only'), ['http://10.0.0.3:5000'])
  t.same(source.snapshot.get('ambiguous'), [], 'known (503), never routed to a guessed port')
  t.same(source.snapshot.get('udp'), [])
  t.match(logs.filter((l) => l.msg === 'EndpointSlice not fully routable'), [
    { level: 40, slice: 'default/ambiguous-slice', problem: 'no HTTP port: it has 2 ports and none is named "http"' },
    { level: 40, slice: 'default/udp-slice', problem: 'no HTTP port: port "http" is not a usable TCP port' },
  ])
})

void t.test('a broken watch: the snapshot keeps serving and the source resumes by itself', async (t) => {
  const server = await fakeServer(t)
  server.put(sliceFor('alice', ['10.0.0.1'], { name: 'alice' }))
  const clock = new ManualClock()
  const { source, metrics, logs } = await startKubernetesSource(t, server, { clock })
  await source.synced
  await until(() => server.openWatches === 1, 'the watch')
  const served = source.snapshot
  t.equal(server.dropWatches(), 1)
  await until(() => source.restarts === 1, 'the broken watch noticed')
  t.equal(source.snapshot, served, 'the same snapshot serves while the watch is down')
  t.equal(source.isSynced, true)

  server.put(sliceFor('bob', ['10.0.0.2'], { name: 'bob' }))
  await clock.advance(200)
  await waitForSnapshot(source, (s) => s.has('bob'), 'bob after the restart')
  t.same(originsOf(source.snapshot, 'alice'), ['http://10.0.0.1:8080'])
  t.equal(source.restarts, 1)
  t.equal(await metricValue(metrics, 'podgate_endpointslice_informer_restarts_total', { reason: 'error' }), 1)
  t.match(logs.find((l) => l.msg === 'watch failed; restarting the informer'), { level: 40, attempt: 1 })

  await until(() => server.openWatches === 1, 'the resumed watch')
  server.put(sliceFor('carol', ['10.0.0.3'], { name: 'carol' }))
  await publishEvents(clock, 'carol\'s event')
  await waitForSnapshot(source, (s) => s.has('carol'), 'carol on the resumed watch', 1000)
  t.equal(server.openWatches, 1, 'exactly one watch is open again')
})

void t.test('410 Gone after the history was compacted: relist, and deletions missed meanwhile apply', async (t) => {
  const server = await fakeServer(t)
  server.put(sliceFor('alice', ['10.0.0.1'], { name: 'alice' }))
  server.put(sliceFor('bob', ['10.0.0.2'], { name: 'bob' }))
  server.put(sliceFor('carol', ['10.0.0.3', '10.0.0.4'], { name: 'carol' }))
  const { source, metrics } = await startKubernetesSource(t, server)
  await source.synced
  t.equal(await metricValue(metrics, 'podgate_endpointslice_lists_total'), 1)

  server.muteWatches()
  server.delete(SLICES, 'default', 'bob')
  server.put(sliceFor('carol', ['10.0.0.3'], { name: 'carol' }))
  server.put(sliceFor('dave', ['10.0.0.5'], { name: 'dave' }))
  server.compact()
  t.ok(source.snapshot.has('bob'), 'the muted watch did not deliver the delete')
  server.endWatches()
  const after = await waitForSnapshot(source, (s) => !s.has('bob') && s.has('dave'), 'the relisted view')
  t.equal(server.goneWatches, 1, 'the resumed watch was answered 410 Gone')
  t.same(originsOf(after, 'carol'), ['http://10.0.0.3:8080'], 'a change missed meanwhile applies')
  t.same(originsOf(after, 'alice'), ['http://10.0.0.1:8080'])
  t.equal(await metricValue(metrics, 'podgate_endpointslice_lists_total'), 2)
  t.equal(source.restarts, 0, 'the informer handles 410 itself; no restart')
})

void t.test('API server outage: keeps serving, then relists and drops what was deleted meanwhile', async (t) => {
  const server = await fakeServer(t)
  server.put(sliceFor('alice', ['10.0.0.1'], { name: 'alice' }))
  server.put(sliceFor('bob', ['10.0.0.2'], { name: 'bob' }))
  const { source } = await startKubernetesSource(t, server)
  await source.synced
  await server.stop()
  server.delete(SLICES, 'default', 'bob')
  server.put(sliceFor('carol', ['10.0.0.3'], { name: 'carol' }))
  server.compact()
  await until(() => source.restarts >= 2, 'two failed restarts')
  t.pass('the informer keeps retrying while the server is down')
  t.same([...source.snapshot.keys()].sort(), ['alice', 'bob'], 'the last known snapshot serves during the outage')
  await server.start()
  const after = await waitForSnapshot(source, (s) => s.has('carol') && !s.has('bob'), 'the view after the outage')
  t.same([...after.keys()].sort(), ['alice', 'carol'])
})

void t.test('API server down at start: synced waits, then resolves once it is up', async (t) => {
  const server = await fakeServer(t)
  server.put(sliceFor('alice', ['10.0.0.1'], { name: 'alice' }))
  await server.stop()
  const { source } = await startKubernetesSource(t, server)
  let synced = false
  void source.synced.then(() => { synced = true })
  await until(() => source.restarts >= 2, 'two failed attempts')
  t.equal(synced, false)
  t.equal(source.isSynced, false)
  await server.start()
  await source.synced
  t.equal(source.isSynced, true)
  t.same(originsOf(source.snapshot, 'alice'), ['http://10.0.0.1:8080'], 'synced resolves with the full snapshot in place')
})

void t.test('failed lists back off exponentially with jitter; a healthy watch resets the backoff', async (t) => {
  const server = await fakeServer(t)
  server.put(sliceFor('alice', ['10.0.0.1'], { name: 'alice' }))
  const lift = server.refuse(({ verb }) => verb === 'list', { status: 500 })
  const { source, logs, metrics } = await startKubernetesSource(t, server, { backoff: { initialMs: 40, maxMs: 160 }, random: () => 0 })
  const delays = (): unknown[] => logs.filter((l) => l.msg === 'watch failed; restarting the informer').map((l) => l.delayMs)
  const deadline = Date.now() + 5000
  while (delays().length < 5 && Date.now() < deadline) await sleep(10)
  t.same(delays().slice(0, 5), [20, 40, 80, 80, 80], 'half of min(max, initial × 2^n) with random() = 0')
  lift()
  await source.synced
  await waitForSnapshot(source, (s) => s.has('alice'), 'alice')
  const bookmarks = async (): Promise<number> => await metricValue(metrics, 'podgate_endpointslice_watch_events_total', { type: 'bookmark' }) ?? 0
  const bookmarkDeadline = Date.now() + 5000
  while (await bookmarks() === 0 && Date.now() < bookmarkDeadline) await sleep(10)
  const count = delays().length
  server.dropWatches()
  const resetDeadline = Date.now() + 5000
  while (delays().length === count && Date.now() < resetDeadline) await sleep(10)
  t.equal(delays()[count], 20, 'after bookmarks arrived, the next failure starts from the initial delay again')
})

void t.test('the watchdog restarts a watch that went silent; bookmarks keep a healthy one alive', async (t) => {
  const server = await fakeServer(t, { bookmarkIntervalMs: 20 })
  server.put(sliceFor('alice', ['10.0.0.1'], { name: 'alice' }))
  const clock = new ManualClock()
  const { source, metrics, logs } = await startKubernetesSource(t, server, { watchdogMs: 1000, clock })
  await source.synced
  await until(() => server.openWatches === 1, 'the watch')
  const bookmarks = async (): Promise<number> => await metricValue(metrics, 'podgate_endpointslice_watch_events_total', { type: 'bookmark' }) ?? 0
  // 1.5 s on the clock, one watchdog check (every 250 ms) at a time, with a bookmark before each.
  for (let check = 0; check < 6; check++) {
    const seen = await bookmarks()
    while (await bookmarks() === seen) await sleep(2)
    await clock.advance(250)
  }
  t.equal(source.restarts, 0, 'a watch with a bookmark between watchdog checks is never silent for 1 s')
  t.ok(await bookmarks() >= 6, 'bookmarks counted')
  const seconds = await metricValue(metrics, 'podgate_endpointslice_seconds_since_last_event')
  t.ok(seconds !== undefined && seconds <= 0.25, `seconds since the last event is small (${seconds})`)

  t.equal(server.muteWatches(), 1)
  server.put(sliceFor('bob', ['10.0.0.2'], { name: 'bob' }))
  // The last bookmark came within the last check interval (250 ms) before the mute.
  await clock.advance(750)
  t.equal(source.restarts, 0, 'silent for at most 1 s: no restart yet')
  await clock.advance(500)
  t.equal(source.restarts, 1, 'a check after more than 1 s of silence restarts it')
  await waitForSnapshot(source, (s) => s.has('bob'), 'bob after the watchdog restart', 5000)
  t.equal(await metricValue(metrics, 'podgate_endpointslice_informer_restarts_total', { reason: 'watchdog' }), 1)
  t.match(logs.find((l) => l.msg === 'watch silent for too long; restarting the informer'), { level: 40 })
  await until(() => server.openWatches === 1, 'one open watch')
  t.pass('the silent connection was closed; one watch serves')
})

void t.test('close stops every request and timer', async (t) => {
  const server = await fakeServer(t)
  const clock = new ManualClock()
  const { source } = await startKubernetesSource(t, server, { clock })
  await source.synced
  await until(() => server.openWatches === 1, 'the watch')
  await source.close()
  await until(() => server.openWatches === 0, 'the watch closed')
  t.same(clock.timers(), [], 'no timer left')
  const counts = { ...server.counts }
  server.put(sliceFor('alice', ['10.0.0.1'], { name: 'alice' }))
  server.dropWatches()
  await clock.advance(10 * 60_000)
  t.same(server.counts, counts, 'no request after close, however long after')
  t.equal(source.snapshot.size, 0)
  await source.close()
})

void t.test('bad options are refused with the field named', (t) => {
  const base = { kubeConfig: kubeConfigFor('http://127.0.0.1:1'), namespaces: ['default'], logger: createLogger('silent') }
  t.throws(() => new KubernetesEndpointSource({ ...base, namespaces: ['Not_A_Namespace'] }), { name: 'TypeError', message: /options\.namespaces/ })
  t.throws(() => new KubernetesEndpointSource({ ...base, namespaces: [] }), { name: 'TypeError', message: /options\.namespaces/ })
  t.throws(() => new KubernetesEndpointSource({ ...base, watchdogMs: 0 }), { message: /options\.watchdogMs/ })
  t.throws(() => new KubernetesEndpointSource({ ...base, coalesceMs: -1 }), { message: /options\.coalesceMs/ })
  t.throws(() => new KubernetesEndpointSource({ ...base, backoff: { initialMs: Number.NaN, maxMs: 10 } }), { message: /options\.backoff\.initialMs/ })
  t.throws(() => new KubernetesEndpointSource({ ...base, backoff: { initialMs: 100, maxMs: 10 } }), { message: /backoff\.maxMs/ })
  t.end()
})

void t.test('createKubernetesSource: KUBECONFIG and PODGATE_NAMESPACE pick the cluster and namespace', async (t) => {
  const server = await fakeServer(t, { token: 'cluster-token' })
  const dir = await mkdtemp(join(tmpdir(), 'podgate-kubeconfig-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'config')
  writeFileSync(file, kubeconfigYaml(server, { token: 'cluster-token', namespace: 'from-context' }))
  server.put(sliceFor('alice', ['10.0.0.1'], { name: 'alice', namespace: 'users' }))
  server.put(sliceFor('bob', ['10.0.0.2'], { name: 'bob', namespace: 'from-context' }))
  const metrics = new Metrics({ defaultMetrics: false })
  const environment = { env: { KUBECONFIG: file }, serviceAccountDir: join(dir, 'no-service-account') }
  const source = createKubernetesSource({ cluster: resolveCluster('users', environment), logger: createLogger('silent'), metrics })
  t.teardown(() => source.close())
  await source.start()
  await source.synced
  t.same([...source.snapshot.keys()], ['alice'], 'PODGATE_NAMESPACE wins and the token reaches the server')

  const fromContext = createKubernetesSource({ cluster: resolveCluster(undefined, environment), logger: createLogger('silent') })
  t.teardown(() => fromContext.close())
  await fromContext.start()
  await fromContext.synced
  t.same([...fromContext.snapshot.keys()], ['bob'], 'without PODGATE_NAMESPACE or a service account, the context namespace applies')
})

void t.test('a throwing change listener is logged and does not disturb the informer', async (t) => {
  const server = await fakeServer(t)
  const { source, logs } = await startKubernetesSource(t, server)
  await source.synced
  t.teardown(source.onChange(() => { throw new Error('listener bug') }))
  server.put(sliceFor('alice', ['10.0.0.1'], { name: 'alice' }))
  await until(() => source.snapshot.has('alice'), 'alice')
  server.put(sliceFor('bob', ['10.0.0.2'], { name: 'bob' }))
  await until(() => source.snapshot.has('bob'), 'bob after the failing listener')
  t.equal(source.restarts, 0)
  t.match(logs.filter((l) => l.msg === 'endpoint change listener failed'), [{ level: 50, err: { message: 'listener bug' } }, { level: 50 }])
})
