// KubernetesWorkloads (what the admin API and the spawner call) and the UserWorkload cache,
// against the fake API server through the real client-node.
import { CustomObjectsApi } from '@kubernetes/client-node'
import { connect, createServer, type AddressInfo, type Socket } from 'node:net'
import t from 'tap'
import { BadRequestError } from '../../src/errors.ts'
import { createLogger } from '../../src/log.ts'
import { KubernetesWorkloads } from '../../src/controller/kubernetes-workloads.ts'
import { UserWorkloadCache, type UserWorkloadChange } from '../../src/controller/user-workload-cache.ts'
import { toWorkload } from '../../src/controller/user-workload.ts'
import { parseProfiles } from '../../src/controller/profiles.ts'
import { ActivityRecorder } from '../../src/workloads/activity.ts'
import type { WorkloadChange } from '../../src/workloads/workloads.ts'
import { FakeKubeServer } from '../support/fake-kube.ts'
import { kubeConfigFor } from '../support/kubeconfig.ts'
import { ManualClock } from '../support/manual-clock.ts'

const NS = 'default'
const UW = 'podgate.dev/v1alpha1/userworkloads'
const profiles = parseProfiles('web:\n  image: app:1\ngpu:\n  image: app:2\n')

interface Teardown { teardown (fn: () => unknown): void }

const logger = createLogger('silent')

async function setup (t: Teardown): Promise<{ server: FakeKubeServer, cache: UserWorkloadCache, workloads: KubernetesWorkloads }> {
  const server = await FakeKubeServer.start({ bookmarkIntervalMs: 100 })
  const kubeConfig = kubeConfigFor(server)
  const cache = new UserWorkloadCache({ kubeConfig, namespaces: [NS], logger, defaultProfile: profiles.default.name, backoff: { initialMs: 20, maxMs: 200 } })
  const workloads = new KubernetesWorkloads({ kubeConfig, namespaces: [NS], defaultNamespace: NS, profiles, logger, cache })
  t.teardown(async () => {
    await workloads.close()
    await cache.close()
    await server.stop()
  })
  cache.start()
  await cache.synced
  return { server, cache, workloads }
}

async function until (condition: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

void t.test('put creates a UserWorkload once; later puts change only the profile', async (t) => {
  const { server, workloads } = await setup(t)
  const first = await workloads.put('alice', {})
  t.equal(first.created, true)
  t.match(first.workload, { user: 'alice', profile: 'web', suspended: false, status: { phase: 'Pending', readyReplicas: 0 } }, 'no profile: the default, reported by name')
  t.match(first.workload.createdAt, /^\d{4}-\d\d-\d\dT/)
  const stored = server.get(UW, NS, 'user-alice')
  t.same(stored?.spec, { user: 'alice', suspended: false })
  t.match(stored?.metadata?.labels, { 'app.kubernetes.io/managed-by': 'podgate', 'podgate.dev/user': 'alice' })
  const rv = stored?.metadata?.resourceVersion

  const again = await workloads.put('alice', {})
  t.equal(again.created, false)
  t.equal(server.get(UW, NS, 'user-alice')?.metadata?.resourceVersion, rv, 'an identical put writes nothing')

  const gpu = await workloads.put('alice', { profile: 'gpu' })
  t.equal(gpu.created, false)
  t.equal(gpu.workload.profile, 'gpu')
  t.equal((server.get(UW, NS, 'user-alice')?.spec as { profile?: string } | undefined)?.profile, 'gpu')
  const back = await workloads.put('alice', {})
  t.equal(back.workload.profile, 'web')
  t.same(server.get(UW, NS, 'user-alice')?.spec, { user: 'alice', suspended: false }, 'back to the default: spec.profile removed')
})

void t.test('put refuses bad ids and unknown profiles with a 400 naming the field', async (t) => {
  const { server, workloads } = await setup(t)
  await t.rejects(workloads.put('a'.repeat(59), {}), { constructor: BadRequestError, status: 400, message: /^user id: at most 58 characters/ })
  await t.rejects(workloads.put('Alice', {}), { constructor: BadRequestError, message: /^user id:/ })
  await t.rejects(workloads.put('bob', { profile: 'huge' }), { constructor: BadRequestError, message: 'profile: unknown profile "huge"; known: web, gpu' })
  t.equal(server.list(UW).length, 0, 'nothing was created')
})

void t.test('twenty concurrent puts: one creates, all agree', async (t) => {
  const { server, workloads } = await setup(t)
  const results = await Promise.all(Array.from({ length: 20 }, () => workloads.put('carol', { profile: 'gpu' })))
  t.equal(results.filter((r) => r.created).length, 1)
  t.ok(results.every((r) => r.workload.user === 'carol' && r.workload.profile === 'gpu'))
  t.equal(server.list(UW).length, 1)
})

void t.test('get, list, setSuspended and delete', async (t) => {
  const { server, workloads } = await setup(t)
  t.equal(await workloads.get('dave'), undefined)
  t.equal(await workloads.get('NOT valid'), undefined)
  for (const user of ['dave', 'bea', 'cy']) await workloads.put(user, {})
  server.put({ apiVersion: 'podgate.dev/v1alpha1', kind: 'UserWorkload', metadata: { name: 'hand-made', namespace: NS }, spec: { user: 'eve' } })
  t.same((await workloads.list()).map((w) => w.user), ['bea', 'cy', 'dave'], 'sorted; a UserWorkload not named user-<id> is not a workload')

  await workloads.setSuspended('dave', true)
  t.equal((server.get(UW, NS, 'user-dave')?.spec as { suspended?: boolean } | undefined)?.suspended, true)
  t.equal((await workloads.get('dave'))?.suspended, true)
  await workloads.setSuspended('dave', false)
  t.equal((await workloads.get('dave'))?.suspended, false)
  await t.rejects(workloads.setSuspended('nobody', true), { name: 'WorkloadNotFoundError', message: 'no workload for user nobody' })

  t.equal(await workloads.delete('dave'), true)
  t.equal(server.get(UW, NS, 'user-dave'), undefined)
  t.equal(await workloads.delete('dave'), false, 'deleting again is not an error')
})

void t.test('list pages through many workloads', async (t) => {
  const { server, workloads } = await setup(t)
  for (let i = 0; i < 1_203; i++) server.put({ apiVersion: 'podgate.dev/v1alpha1', kind: 'UserWorkload', metadata: { name: `user-u${i}`, namespace: NS }, spec: { user: `u${i}` } })
  const lists = server.counts.list
  t.equal((await workloads.list()).length, 1_203)
  t.equal(server.counts.list - lists, 3, 'three pages of 500')
})

void t.test('the cache: cached() without I/O and change events for create, status and delete', async (t) => {
  const { server, cache, workloads } = await setup(t)
  const raw: UserWorkloadChange[] = []
  const changes: WorkloadChange[] = []
  t.teardown(cache.onChange((change) => raw.push(change)))
  t.teardown(workloads.onChange((change) => changes.push(change)))
  await workloads.put('fay', {})
  await until(() => workloads.cached('fay') !== undefined, 'fay cached')
  t.equal(cache.cached('fay')?.status.phase, 'Pending')
  server.store.patch(server.store.typeOf(UW), NS, 'user-fay', (current) => ({ ...current, status: { phase: 'Ready', readyReplicas: 1, serviceName: 'user-fay' } }), { subresource: 'status' })
  await until(() => workloads.cached('fay')?.status.phase === 'Ready', 'the status change')
  t.equal(workloads.cached('fay')?.status.readyReplicas, 1)
  t.ok(Object.isFrozen(workloads.cached('fay')), 'cached workloads are immutable')
  await workloads.delete('fay')
  await until(() => workloads.cached('fay') === undefined, 'fay gone from the cache')
  t.same(changes.map((c) => [c.user, c.workload?.status.phase]), [['fay', 'Pending'], ['fay', 'Ready'], ['fay', undefined]])

  server.put({ apiVersion: 'podgate.dev/v1alpha1', kind: 'UserWorkload', metadata: { name: 'odd', namespace: NS }, spec: { user: 'gus' } })
  await until(() => cache.object(NS, 'odd') !== undefined, 'the odd one cached')
  t.equal(cache.cached('gus'), undefined, 'a UserWorkload not named user-<id> serves nobody')
  t.equal(changes.length, 3, 'and is not reported as a workload change')
  t.match(raw.at(-1), { name: 'odd', user: 'gus', workload: undefined }, 'the raw change still reaches the reconciler')
})

void t.test('the cache relists after the API server forgets its history, without losing workloads', async (t) => {
  const { server, cache, workloads } = await setup(t)
  await workloads.put('hal', {})
  await until(() => cache.cached('hal') !== undefined, 'hal cached')
  server.compact()
  server.dropWatches()
  server.put({ apiVersion: 'podgate.dev/v1alpha1', kind: 'UserWorkload', metadata: { name: 'user-ida', namespace: NS }, spec: { user: 'ida' } })
  server.delete(UW, NS, 'user-hal')
  await until(() => cache.cached('ida') !== undefined && cache.cached('hal') === undefined, 'the relisted view', 10_000)
  t.same(cache.workloads().map((w) => w.user), ['ida'])
})

// The throttle is the ActivityRecorder's (one for both backends); here it drives the real writer.
void t.test('activity writes lastActivity at most once per interval per user', async (t) => {
  const clock = new ManualClock(Date.parse('2025-03-01T10:00:00Z'))
  const { server, workloads } = await setup(t)
  const touched: string[] = []
  const recorder = new ActivityRecorder({
    workloads: { touch: (user, at) => { touched.push(`${user} ${at.toISOString()}`); workloads.touch(user, at) } },
    logger,
    idleTimeoutMs: 0,
    touchIntervalMs: 30_000,
    clock,
  })
  await workloads.put('jo', {})
  const activity = (): unknown => (server.get(UW, NS, 'user-jo')?.status as { lastActivity?: unknown } | undefined)?.lastActivity
  const patches = (): number => server.counts.patch
  const before = patches()
  recorder.record('jo')
  await until(() => activity() === '2025-03-01T10:00:00Z', 'the first write')
  t.equal(patches() - before, 1)
  for (let i = 1; i <= 10; i++) {
    await clock.advance(1_000)
    recorder.record('jo')
  }
  // The recorder calls touch synchronously: no touch, no write started.
  t.equal(touched.length, 1, 'reports within the interval wait')
  t.equal(patches() - before, 1, 'touches within the interval wait')
  t.equal(clock.timers().length, 1, 'one timer for the user (and for every other)')
  await clock.advance(19_999)
  t.equal(touched.length, 1, 'nothing before the interval ends')
  await clock.advance(1)
  await until(() => activity() === '2025-03-01T10:00:10Z', 'the latest touch written at the end of the interval')
  t.equal(patches() - before, 2)
  workloads.touch('nobody', new Date(clock.now()))
  workloads.touch('Not A User', new Date(clock.now()))
  workloads.touch('jo', new Date(Number.NaN))
  await clock.advance(31_000)
  recorder.record('jo')
  await until(() => activity() === '2025-03-01T10:01:01Z', 'a write after the interval, at once')
  await clock.advance(1_000)
  recorder.record('jo')
  recorder.close()
  await workloads.close()
  t.equal(activity(), '2025-03-01T10:01:02Z', 'close flushes the pending activity')
  t.equal(server.get(UW, NS, 'user-nobody'), undefined, 'touching an unknown user creates nothing')
})

void t.test('touch writes what it is given, one write per user in flight, never an older one last', async (t) => {
  const { server, cache, workloads } = await setup(t)
  await workloads.put('kim', {})
  const activity = (): unknown => (server.get(UW, NS, 'user-kim')?.status as { lastActivity?: unknown } | undefined)?.lastActivity
  const at = (seconds: number): Date => new Date(Date.parse('2025-03-01T10:00:00Z') + seconds * 1000)
  const before = server.counts.patch
  workloads.touch('kim', at(0))
  workloads.touch('kim', at(2))
  workloads.touch('kim', at(1))
  await until(() => activity() === '2025-03-01T10:00:02Z', 'the newest activity')
  await until(() => cache.cached('kim')?.status.lastActivity === '2025-03-01T10:00:02Z', 'the cache to see it')
  t.equal(server.counts.patch - before, 2, 'the first write, then the newest of those that waited for it')
  workloads.touch('kim', at(3))
  await until(() => activity() === '2025-03-01T10:00:03Z', 'a touch right after: no throttle here')
  await until(() => cache.cached('kim')?.status.lastActivity === '2025-03-01T10:00:03Z', 'the cache to see it')
  const written = server.counts.patch
  workloads.touch('kim', at(1))
  await workloads.close()
  t.equal(server.counts.patch, written, 'older than what the status already records: not written')
})

void t.test('toWorkload reads what it can and defaults the rest', (t) => {
  t.equal(toWorkload({ metadata: { name: 'user-x' }, spec: {} }), undefined, 'no spec.user')
  t.equal(toWorkload({ metadata: { name: 'x' }, spec: { user: 'x' } }), undefined, 'a name that is not user-<id>')
  t.match(toWorkload({ metadata: { name: 'user-x' }, spec: { user: 'x' }, status: { phase: 'Bogus', readyReplicas: -1 } }, 'web'), {
    user: 'x', profile: 'web', suspended: false, status: { phase: 'Pending', readyReplicas: 0 },
  })
  t.end()
})

void t.test('API calls share pooled connections (client-node alone opens one per request)', async (t) => {
  const server = await FakeKubeServer.start()
  let connections = 0
  const sockets = new Set<Socket>()
  const proxy = createServer((client) => {
    connections++
    const upstream = connect(server.port, '127.0.0.1')
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
    }
    client.pipe(upstream).pipe(client)
    client.on('error', () => upstream.destroy())
    upstream.on('error', () => client.destroy())
  })
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`
  const workloads = new KubernetesWorkloads({ kubeConfig: kubeConfigFor(url), namespaces: [NS], defaultNamespace: NS, profiles, logger: createLogger('silent') })
  t.teardown(async () => {
    await workloads.close()
    for (const socket of sockets) socket.destroy()
    await new Promise((resolve) => proxy.close(resolve))
    await server.stop()
  })
  await workloads.put('kai', {})
  let found = 0
  for (let i = 0; i < 50; i++) if (await workloads.get('kai') !== undefined) found++
  t.equal(found, 50)
  t.ok(connections <= 2, `51 requests over ${connections} connection(s)`)

  const before = connections
  const api = kubeConfigFor(url).makeApiClient(CustomObjectsApi)
  for (let i = 0; i < 5; i++) await api.getNamespacedCustomObject({ group: 'podgate.dev', version: 'v1alpha1', namespace: NS, plural: 'userworkloads', name: 'user-kai' })
  t.equal(connections - before, 5, 'without the pool, client-node 2.0.1 opens a connection per request')
})
