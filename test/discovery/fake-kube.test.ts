// The fake API server must speak the protocol the real @kubernetes/client-node expects, or
// every test built on it proves nothing. These tests drive it with that client.
import {
  ApiException, AppsV1Api, CoreV1Api, CustomObjectsApi, DiscoveryV1Api, makeInformer, PatchStrategy, setHeaderOptions, Watch,
  type KubeConfig, type V1Pod,
} from '@kubernetes/client-node'
import t from 'tap'
import { FakeKubeServer, sliceFor, type KubeObject } from '../support/fake-kube.ts'
import { applyJsonPatch, mergePatch, PatchError } from '../support/fake-kube-patch.ts'
import { parseFieldSelector, parseLabelSelector, SelectorError } from '../support/fake-kube-selector.ts'
import { kubeConfigFor } from '../support/kubeconfig.ts'

async function fakeCluster (t: { teardown: (fn: () => unknown) => void }, options: ConstructorParameters<typeof FakeKubeServer>[0] = {}): Promise<{ server: FakeKubeServer, kc: KubeConfig }> {
  const server = await FakeKubeServer.start(options)
  t.teardown(() => server.stop())
  return { server, kc: kubeConfigFor(server) }
}

function pod (name: string, labels: Record<string, string> = {}): V1Pod {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name, labels }, spec: { containers: [{ name: 'app', image: 'nginx' }] } }
}

async function statusOf (promise: Promise<unknown>): Promise<{ code: number, body: Record<string, unknown> }> {
  try {
    await promise
  } catch (err) {
    if (err instanceof ApiException) {
      const body: unknown = typeof err.body === 'string' ? JSON.parse(err.body) : err.body
      return { code: err.code, body: body as Record<string, unknown> }
    }
    throw err
  }
  throw new Error('the request succeeded')
}

interface ListBody {
  kind: string
  apiVersion: string
  metadata: { resourceVersion: string, continue?: string }
  items: KubeObject[]
}

interface WatchLine {
  type: string
  object: KubeObject & { code?: number, reason?: string, message?: string }
}

type AppliedDeployment = KubeObject & { spec: { replicas: number, template: { spec: { containers: Array<{ image: string }> } } } }

async function until (condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

void t.test('label selectors: every operator, and clear errors for bad input', (t) => {
  const labels = { app: 'web', tier: 'front', 'podgate.dev/user': 'alice' }
  const cases: Array<[string, boolean]> = [
    ['', true], ['app=web', true], ['app==web', true], ['app!=web', false], ['app!=db', true], ['missing!=x', true],
    ['app', true], ['!app', false], ['!missing', true], ['app in (web,db)', true], ['app in (db)', false],
    ['app notin (db)', true], ['app notin (web, db)', false], ['missing notin (x)', true], ['missing in (x)', false],
    ['app=web,tier=front', true], ['app=web,tier=back', false], ['app in (web,db),podgate.dev/user=alice', true],
  ]
  for (const [selector, expected] of cases) t.equal(parseLabelSelector(selector)(labels), expected, JSON.stringify(selector))
  t.equal(parseLabelSelector('app')(undefined), false)
  t.equal(parseLabelSelector('!app')(undefined), true)
  for (const bad of ['app=we b', 'app in (web', '=web', 'a,,b', 'app in web)', 'Ä=1']) {
    t.throws(() => parseLabelSelector(bad), SelectorError, JSON.stringify(bad))
  }
  t.equal(parseFieldSelector('metadata.name=a')({ metadata: { name: 'a' } }), true)
  t.equal(parseFieldSelector('metadata.name!=a')({ metadata: { name: 'a' } }), false)
  t.equal(parseFieldSelector('status.phase=Running')({ status: { phase: 'Pending' } }), false)
  t.throws(() => parseFieldSelector('metadata.name'), SelectorError)
  t.end()
})

void t.test('patch formats: merge patch and JSON patch', (t) => {
  t.same(mergePatch({ a: 1, b: { c: 2, d: 3 }, e: [1] }, { b: { c: null, x: 1 }, e: [2], f: 'new' }), { a: 1, b: { d: 3, x: 1 }, e: [2], f: 'new' })
  const doc = { a: [1, 2], b: { 'x/y': 1, 'm~n': 2 } }
  t.same(applyJsonPatch(doc, [
    { op: 'add', path: '/a/-', value: 3 }, { op: 'add', path: '/a/0', value: 0 }, { op: 'remove', path: '/b/x~1y' },
    { op: 'replace', path: '/b/m~0n', value: 5 }, { op: 'copy', from: '/b/m~0n', path: '/c' }, { op: 'move', from: '/c', path: '/d' },
    { op: 'test', path: '/d', value: 5 },
  ]), { a: [0, 1, 2, 3], b: { 'm~n': 5 }, d: 5 })
  t.same(doc, { a: [1, 2], b: { 'x/y': 1, 'm~n': 2 } }, 'the input is not modified')
  t.throws(() => applyJsonPatch(doc, [{ op: 'test', path: '/a/0', value: 9 }]), PatchError)
  t.throws(() => applyJsonPatch(doc, [{ op: 'remove', path: '/nope' }]), PatchError)
  t.throws(() => applyJsonPatch(doc, [{ op: 'add', path: '/a/7', value: 1 }]), PatchError)
  t.throws(() => applyJsonPatch(doc, { op: 'add' }), PatchError)
  t.throws(() => applyJsonPatch(doc, [{ op: 'frobnicate', path: '/a' }]), PatchError)
  t.end()
})

void t.test('CoreV1Api: create, get, replace, list with selectors, delete', async (t) => {
  const { server, kc } = await fakeCluster(t)
  const core = kc.makeApiClient(CoreV1Api)
  const created = await core.createNamespacedPod({ namespace: 'default', body: pod('web-1', { app: 'web', tier: 'front' }) })
  t.equal(created.metadata?.name, 'web-1')
  t.equal(created.metadata?.namespace, 'default')
  t.match(created.metadata?.uid, /^[0-9a-f-]{36}$/)
  t.ok(created.metadata?.creationTimestamp instanceof Date, 'creationTimestamp parses as a date')
  t.equal(created.metadata?.generation, 1)
  t.match(created.metadata?.resourceVersion, /^\d+$/)

  const generated = await core.createNamespacedPod({ namespace: 'default', body: { ...pod(''), metadata: { generateName: 'worker-', labels: { app: 'worker' } } } })
  t.match(generated.metadata?.name, /^worker-[a-z0-9]{5}$/)
  await core.createNamespacedPod({ namespace: 'other', body: pod('db-1', { app: 'db' }) })

  const exists = await statusOf(core.createNamespacedPod({ namespace: 'default', body: pod('web-1') }))
  t.equal(exists.code, 409)
  t.match(exists.body, { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'AlreadyExists', code: 409, message: 'pods "web-1" already exists', details: { name: 'web-1', kind: 'pods' } })

  const missing = await statusOf(core.readNamespacedPod({ name: 'nope', namespace: 'default' }))
  t.match(missing, { code: 404, body: { kind: 'Status', reason: 'NotFound', message: 'pods "nope" not found', code: 404 } })
  const noName = await statusOf(core.createNamespacedPod({ namespace: 'default', body: { ...pod(''), metadata: {} } }))
  t.match(noName, { code: 422, body: { reason: 'Invalid' } })

  const read = await core.readNamespacedPod({ name: 'web-1', namespace: 'default' })
  const stale = { ...read, metadata: { ...read.metadata, resourceVersion: '1' } }
  await core.replaceNamespacedPod({ name: 'web-1', namespace: 'default', body: { ...read, spec: { containers: [{ name: 'app', image: 'nginx:2' }] } } })
  const conflict = await statusOf(core.replaceNamespacedPod({ name: 'web-1', namespace: 'default', body: stale }))
  t.match(conflict, { code: 409, body: { reason: 'Conflict' } })
  const replaced = await core.readNamespacedPod({ name: 'web-1', namespace: 'default' })
  t.equal(replaced.spec?.containers[0]?.image, 'nginx:2')
  t.equal(replaced.metadata?.generation, 2, 'a spec change bumps generation')
  t.equal(replaced.metadata?.uid, created.metadata?.uid)

  const names = async (labelSelector?: string): Promise<string[]> => {
    const list = await core.listNamespacedPod({ namespace: 'default', ...(labelSelector === undefined ? {} : { labelSelector }) })
    return list.items.map((p) => p.metadata?.name ?? '').sort()
  }
  t.same(await names(), ['web-1', generated.metadata?.name])
  t.same(await names('app=web'), ['web-1'])
  t.same(await names('app in (web,worker),tier'), ['web-1'])
  t.same(await names('!tier'), [generated.metadata?.name])
  t.same(await names('app!=web'), [generated.metadata?.name])
  const all = await core.listPodForAllNamespaces({})
  t.equal(all.items.length, 3, 'cluster-wide list spans namespaces')
  t.match(all.metadata?.resourceVersion, /^\d+$/)
  t.match(await statusOf(core.listNamespacedPod({ namespace: 'default', labelSelector: 'app in (web' })), { code: 400, body: { reason: 'BadRequest' } })

  const deleted = await core.deleteNamespacedPod({ name: 'web-1', namespace: 'default' })
  t.equal(deleted.metadata?.name, 'web-1')
  t.equal(server.get('v1/pods', 'default', 'web-1'), undefined)
  t.match(await statusOf(core.deleteNamespacedPod({ name: 'web-1', namespace: 'default' })), { code: 404 })
  t.ok(server.counts.create >= 4 && server.counts.list >= 6 && server.counts.delete === 2 && server.counts.get >= 2, JSON.stringify(server.counts))
})

void t.test('raw list shape: kind XList, items without kind for built-ins, limit and continue', async (t) => {
  const { server } = await fakeCluster(t)
  for (const name of ['a', 'b', 'c']) server.put({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'ns' }, data: { name } })
  const first = await (await fetch(`${server.url}/api/v1/namespaces/ns/configmaps?limit=2`)).json() as ListBody
  t.equal(first.kind, 'ConfigMapList')
  t.equal(first.apiVersion, 'v1')
  t.same(first.items.map((i) => i.metadata?.name), ['a', 'b'])
  t.equal(first.items[0]?.kind, undefined, 'list items of built-in types carry no kind')
  t.type(first.metadata.continue, 'string')
  const second = await (await fetch(`${server.url}/api/v1/namespaces/ns/configmaps?limit=2&continue=${first.metadata.continue ?? ''}`)).json() as ListBody
  t.same(second.items.map((i) => i.metadata?.name), ['c'])
  t.equal(second.metadata.continue, undefined)
  t.equal(second.metadata.resourceVersion, first.metadata.resourceVersion, 'pages share the first page\'s resourceVersion')
  server.put({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'd', namespace: 'ns' } })
  server.compact()
  const expired = await fetch(`${server.url}/api/v1/namespaces/ns/configmaps?limit=2&continue=${first.metadata.continue ?? ''}`)
  t.equal(expired.status, 410)
  t.match(await expired.json(), { kind: 'Status', code: 410, reason: 'Expired' })
  const unknown = await fetch(`${server.url}/apis/example.com/v1/namespaces/ns/widgets`)
  t.equal(unknown.status, 404)
  t.match(await unknown.json(), { kind: 'Status', reason: 'NotFound' })
  const discovery: unknown = await (await fetch(`${server.url}/apis/discovery.k8s.io/v1`)).json()
  t.match(discovery, { kind: 'APIResourceList', groupVersion: 'discovery.k8s.io/v1', resources: [{ name: 'endpointslices', kind: 'EndpointSlice', namespaced: true }] })
  const badJson = await fetch(`${server.url}/api/v1/namespaces/ns/configmaps`, { method: 'POST', body: '{nope', headers: { 'content-type': 'application/json' } })
  t.equal(badJson.status, 400)
  t.match(await badJson.json(), { kind: 'Status', reason: 'BadRequest' })
})

void t.test('patches: merge, strategic, JSON patch, server-side apply, and the status subresource', async (t) => {
  const { server, kc } = await fakeCluster(t)
  const apps = kc.makeApiClient(AppsV1Api)
  const deployment = {
    apiVersion: 'apps/v1', kind: 'Deployment',
    metadata: { name: 'user-alice', labels: { app: 'a' } },
    spec: { replicas: 1, selector: { matchLabels: { app: 'a' } }, template: { metadata: { labels: { app: 'a' } }, spec: { containers: [{ name: 'app', image: 'img:1' }] } } },
    status: { readyReplicas: 5 },
  }
  const created = await apps.createNamespacedDeployment({ namespace: 'default', body: deployment })
  t.equal(created.status, undefined, 'status is dropped on create when the type has a status subresource')

  const merged = await apps.patchNamespacedDeployment({ namespace: 'default', name: 'user-alice', body: { metadata: { labels: { extra: 'yes', app: null } }, spec: { replicas: 0 } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch))
  t.same(merged.metadata?.labels, { extra: 'yes' })
  t.equal(merged.spec?.replicas, 0)
  t.equal(merged.metadata?.generation, 2)

  const strategic = await apps.patchNamespacedDeployment({ namespace: 'default', name: 'user-alice', body: { spec: { replicas: 2 } } },
    setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch))
  t.equal(strategic.spec?.replicas, 2)

  const jsonPatched = await apps.patchNamespacedDeployment({ namespace: 'default', name: 'user-alice', body: [{ op: 'replace', path: '/spec/replicas', value: 3 }] })
  t.equal(jsonPatched.spec?.replicas, 3, 'the client\'s default patch type is JSON patch')
  t.match(await statusOf(apps.patchNamespacedDeployment({ namespace: 'default', name: 'user-alice', body: [{ op: 'test', path: '/spec/replicas', value: 9 }] })), { code: 422 })
  t.match(await statusOf(apps.patchNamespacedDeployment({ namespace: 'default', name: 'nobody', body: [] })), { code: 404 })

  const withStatus = await apps.replaceNamespacedDeployment({ namespace: 'default', name: 'user-alice', body: { ...jsonPatched, status: { readyReplicas: 9 } } })
  t.equal(withStatus.status, undefined, 'writes to the main resource ignore status')
  const statusPatched = await apps.patchNamespacedDeploymentStatus({ namespace: 'default', name: 'user-alice', body: { status: { readyReplicas: 1 }, spec: { replicas: 99 } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch))
  t.equal(statusPatched.status?.readyReplicas, 1)
  t.equal(statusPatched.spec?.replicas, 3, 'writes to /status change only status')
  t.equal(statusPatched.metadata?.generation, jsonPatched.metadata?.generation, 'a status write does not bump generation')

  const apply = async (name: string, body: object, fieldManager?: string): Promise<Response> => fetch(
    `${server.url}/apis/apps/v1/namespaces/default/deployments/${name}?${fieldManager === undefined ? '' : `fieldManager=${fieldManager}&`}force=true`,
    { method: 'PATCH', headers: { 'content-type': 'application/apply-patch+yaml' }, body: JSON.stringify(body) },
  )
  const fresh = await apply('user-bob', { ...deployment, metadata: { name: 'user-bob' } }, 'podgate')
  t.equal(fresh.status, 201, 'apply creates an absent object')
  const again = await (await apply('user-bob', { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'user-bob', labels: { applied: 'twice' } }, spec: { replicas: 4 } }, 'podgate')).json() as AppliedDeployment
  t.equal(again.spec.replicas, 4)
  t.equal(again.spec.template.spec.containers[0]?.image, 'img:1', 'apply merges into the existing object')
  t.match(again.metadata?.managedFields, [{ manager: 'podgate', operation: 'Apply' }])
  t.equal((await apply('user-bob', { metadata: { name: 'user-bob' } })).status, 422, 'apply without fieldManager is refused')

  const noop = await apps.patchNamespacedDeployment({ namespace: 'default', name: 'user-bob', body: { spec: { replicas: 4 } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch))
  t.equal(noop.metadata?.resourceVersion, again.metadata?.resourceVersion, 'a patch that changes nothing keeps the resourceVersion')
  const unsupported = await fetch(`${server.url}/apis/apps/v1/namespaces/default/deployments/user-bob`, { method: 'PATCH', headers: { 'content-type': 'text/plain' }, body: 'x' })
  t.equal(unsupported.status, 415)
})

void t.test('CustomObjectsApi: a UserWorkload and its status', async (t) => {
  const { kc } = await fakeCluster(t)
  const custom = kc.makeApiClient(CustomObjectsApi)
  const ref = { group: 'podgate.dev', version: 'v1alpha1', namespace: 'users', plural: 'userworkloads' }
  const created = await custom.createNamespacedCustomObject({ ...ref, body: { apiVersion: 'podgate.dev/v1alpha1', kind: 'UserWorkload', metadata: { name: 'alice' }, spec: { user: 'alice', profile: 'default' } } }) as KubeObject
  t.equal(created.metadata?.namespace, 'users')
  const patched = await custom.patchNamespacedCustomObjectStatus({ ...ref, name: 'alice', body: { status: { phase: 'Ready', readyReplicas: 1 } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch)) as KubeObject
  t.same(patched.status, { phase: 'Ready', readyReplicas: 1 })
  const list = await custom.listNamespacedCustomObject({ ...ref }) as { kind: string, items: KubeObject[] }
  t.equal(list.kind, 'UserWorkloadList')
  t.equal(list.items[0]?.kind, 'UserWorkload', 'custom resource list items keep their kind')
  const missing = await statusOf(custom.getNamespacedCustomObject({ ...ref, name: 'bob' }))
  t.match(missing, { code: 404, body: { message: 'userworkloads.podgate.dev "bob" not found', details: { group: 'podgate.dev' } } })
})

void t.test('deletion: ownerReference garbage collection, Orphan, and finalizers', async (t) => {
  const { server, kc } = await fakeCluster(t)
  const core = kc.makeApiClient(CoreV1Api)
  const owner = server.put({ apiVersion: 'podgate.dev/v1alpha1', kind: 'UserWorkload', metadata: { name: 'alice', namespace: 'u' }, spec: { user: 'alice' } })
  const ownerRef = { apiVersion: 'podgate.dev/v1alpha1', kind: 'UserWorkload', name: 'alice', uid: owner.metadata?.uid ?? '', controller: true }
  const svc = server.put({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'user-alice', namespace: 'u', ownerReferences: [ownerRef] }, spec: { ports: [{ port: 80 }] } })
  server.put(sliceFor('alice', ['10.0.0.1'], { namespace: 'u', name: 'user-alice-x', labels: {} }))
  const slice = server.get('discovery.k8s.io/v1/endpointslices', 'u', 'user-alice-x')
  server.put({ ...slice, metadata: { ...slice?.metadata, ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: 'user-alice', uid: svc.metadata?.uid ?? '' }] } })
  server.put({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'shared', namespace: 'u', ownerReferences: [ownerRef, { apiVersion: 'v1', kind: 'Service', name: 'keep', uid: 'still-there' }] } })
  const keeper = server.put({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'keeper', namespace: 'u' } })
  server.put({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'co-owned', namespace: 'u', ownerReferences: [ownerRef, { apiVersion: 'v1', kind: 'ConfigMap', name: 'keeper', uid: keeper.metadata?.uid ?? '' }] } })

  server.delete('podgate.dev/v1alpha1/userworkloads', 'u', 'alice')
  t.equal(server.get('v1/services', 'u', 'user-alice'), undefined, 'the owned Service is collected')
  t.equal(server.get('discovery.k8s.io/v1/endpointslices', 'u', 'user-alice-x'), undefined, 'and, transitively, its EndpointSlice')
  t.ok(server.get('v1/configmaps', 'u', 'co-owned'), 'an object with another live owner stays')
  t.notOk(server.get('v1/configmaps', 'u', 'shared'), 'an owner reference to an object that does not exist does not keep a dependent')

  const owner2 = server.put({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'parent', namespace: 'u' } })
  server.put({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'child', namespace: 'u', ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: 'parent', uid: owner2.metadata?.uid ?? '' }] } })
  await core.deleteNamespacedService({ name: 'parent', namespace: 'u', propagationPolicy: 'Orphan' })
  const orphan = server.get('v1/configmaps', 'u', 'child')
  t.ok(orphan, 'Orphan keeps the dependent')
  t.equal(orphan?.metadata?.ownerReferences, undefined, 'and removes the owner reference')

  server.put({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'guarded', namespace: 'u', finalizers: ['podgate.dev/cleanup'] } })
  await core.deleteNamespacedConfigMap({ name: 'guarded', namespace: 'u' })
  const guarded = await core.readNamespacedConfigMap({ name: 'guarded', namespace: 'u' })
  t.ok(guarded.metadata?.deletionTimestamp, 'a finalizer holds the object with a deletionTimestamp')
  await core.patchNamespacedConfigMap({ name: 'guarded', namespace: 'u', body: { metadata: { finalizers: null } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch))
  t.equal(server.get('v1/configmaps', 'u', 'guarded'), undefined, 'removing the last finalizer completes the delete')

  // A writer acting on a stale view puts a dependent back after its owner went: collected after the write.
  const late = server.put({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'late', namespace: 'u', ownerReferences: [ownerRef] } })
  t.ok(late.metadata?.uid, 'the write itself succeeds, as on a real API server')
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(server.get('v1/configmaps', 'u', 'late'), undefined, 'a dependent written with only deleted owners is collected')
  server.put({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'made-up', namespace: 'u', ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: 'x', uid: 'never-existed' }] } })
  await new Promise((resolve) => setImmediate(resolve))
  t.ok(server.get('v1/configmaps', 'u', 'made-up'), 'an owner uid the store never held is left alone')

  server.store.garbageCollection = false
  const owner3 = server.put({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'p3', namespace: 'u' } })
  server.put({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c3', namespace: 'u', ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: 'p3', uid: owner3.metadata?.uid ?? '' }] } })
  server.delete('v1/services', 'u', 'p3')
  t.ok(server.get('v1/configmaps', 'u', 'c3'), 'with garbage collection off, dependents stay (like envtest)')
})

void t.test('informer (makeInformer) sees adds, updates, deletes and follows a label selector', async (t) => {
  const { server, kc } = await fakeCluster(t)
  const core = kc.makeApiClient(CoreV1Api)
  server.put({ ...pod('before', { app: 'web' }), metadata: { name: 'before', namespace: 'default', labels: { app: 'web' } } })
  const informer = makeInformer<V1Pod>(kc, '/api/v1/namespaces/default/pods', () => core.listNamespacedPod({ namespace: 'default', labelSelector: 'app=web' }), 'app=web')
  const seen: string[] = []
  informer.on('add', (p) => seen.push(`add ${p.metadata?.name ?? ''}`))
  informer.on('update', (p) => seen.push(`update ${p.metadata?.name ?? ''}`))
  informer.on('delete', (p) => seen.push(`delete ${p.metadata?.name ?? ''}`))
  informer.on('error', (err) => seen.push(`error ${String(err)}`))
  await informer.start()
  t.teardown(() => informer.stop())
  await until(() => server.openWatches === 1, 'the watch')
  t.same(seen, ['add before'])

  await core.createNamespacedPod({ namespace: 'default', body: pod('web-2', { app: 'web' }) })
  await core.createNamespacedPod({ namespace: 'default', body: pod('db', { app: 'db' }) })
  await core.patchNamespacedPod({ name: 'web-2', namespace: 'default', body: { metadata: { annotations: { a: 'b' } } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch))
  await core.patchNamespacedPod({ name: 'before', namespace: 'default', body: { metadata: { labels: { app: 'other' } } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch))
  await core.deleteNamespacedPod({ name: 'web-2', namespace: 'default' })
  await until(() => seen.length === 5, 'five events')
  t.same(seen, ['add before', 'add web-2', 'update web-2', 'delete before', 'delete web-2'], 'a label change out of the selector is a delete for the watch')
  t.same(informer.list('default').map((p) => p.metadata?.name), [])
})

void t.test('watch streams: bookmarks, timeoutSeconds, and 410 Gone as an ERROR event', async (t) => {
  const { server, kc } = await fakeCluster(t, { bookmarkIntervalMs: 20 })
  server.put({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'a', namespace: 'default' } })
  const rv = String(server.store.resourceVersion)
  const events: WatchLine[] = []
  const ended = new Promise<unknown>((resolve) => {
    void new Watch(kc).watch('/api/v1/namespaces/default/configmaps', { resourceVersion: rv, allowWatchBookmarks: true, timeoutSeconds: 1 },
      (type: string, object: WatchLine['object']) => events.push({ type, object }), resolve)
  })
  await until(() => events.some((e) => e.type === 'BOOKMARK'), 'a bookmark')
  server.put({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'b', namespace: 'default' } })
  await until(() => events.some((e) => e.type === 'ADDED'), 'the ADDED event')
  const added = events.find((e) => e.type === 'ADDED')
  t.equal(added?.object.metadata?.name, 'b', 'only events after the requested resourceVersion are sent')
  t.equal(added?.object.kind, 'ConfigMap')
  t.match(events.find((e) => e.type === 'BOOKMARK')?.object, { kind: 'ConfigMap', apiVersion: 'v1', metadata: { resourceVersion: /^\d+$/ } })
  t.equal(await ended, null, 'timeoutSeconds ends the watch cleanly')

  server.compact()
  const gone: WatchLine[] = []
  const goneEnded = new Promise<unknown>((resolve) => {
    void new Watch(kc).watch('/api/v1/namespaces/default/configmaps', { resourceVersion: rv }, (type: string, object: WatchLine['object']) => gone.push({ type, object }), resolve)
  })
  t.equal(await goneEnded, null)
  t.match(gone, [{ type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired', message: /too old resource version/ } }])
  t.equal(server.goneWatches, 1)
})

void t.test('informer across broken, ended and expired watches', async (t) => {
  const { server, kc } = await fakeCluster(t)
  const discovery = kc.makeApiClient(DiscoveryV1Api)
  server.put(sliceFor('alice', ['10.0.0.1'], { name: 'alice' }))
  server.put(sliceFor('bob', ['10.0.0.2'], { name: 'bob' }))
  const informer = makeInformer(kc, '/apis/discovery.k8s.io/v1/namespaces/default/endpointslices', () => discovery.listNamespacedEndpointSlice({ namespace: 'default' }))
  const deletes: string[] = []
  const errors: unknown[] = []
  informer.on('delete', (s) => deletes.push(s.metadata?.name ?? ''))
  informer.on('error', (err) => errors.push(err))
  await informer.start()
  t.teardown(() => informer.stop())
  await until(() => server.openWatches === 1, 'the watch')
  t.equal(server.counts.list, 1)

  server.endWatches()
  await until(() => server.counts.watch === 2 && server.openWatches === 1, 'the informer to resume its watch')
  t.equal(server.counts.list, 1, 'a cleanly ended watch resumes from its resourceVersion without a list')

  server.muteWatches()
  server.delete('discovery.k8s.io/v1/endpointslices', 'default', 'bob')
  server.compact()
  server.endWatches()
  await until(() => server.counts.list === 2 && server.openWatches === 1, 'the relist after 410')
  t.equal(server.goneWatches, 1)
  t.same(deletes, ['bob'], 'the relist reports what was deleted while the history was lost')
  t.same(informer.list('default').map((s) => s.metadata?.name), ['alice'])
  t.same(errors, [])

  server.dropWatches()
  await until(() => errors.length === 1, 'the error event')
  t.match(String(errors[0]), /terminated|other side closed|socket/i, 'a broken stream is an error event')
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal(server.openWatches, 0, 'and the informer stays stopped: this is why podgate supervises it')
})

void t.test('failure hooks: refuse, injectError, token, stop and start on the same port', async (t) => {
  const { server, kc } = await fakeCluster(t, { token: 'sekret' })
  const core = kc.makeApiClient(CoreV1Api)
  t.match(await statusOf(core.listNamespacedPod({ namespace: 'default' })), { code: 401 }, 'a wrong token is refused')
  const raw = await fetch(`${server.url}/api/v1/namespaces/default/pods`, { headers: { authorization: 'Bearer wrong' } })
  t.match(await raw.json(), { kind: 'Status', code: 401, reason: 'Unauthorized' })
  const authed = kubeConfigFor(server, { token: 'sekret' }).makeApiClient(CoreV1Api)
  server.refuse(2)
  t.match(await statusOf(authed.listNamespacedPod({ namespace: 'default' })), { code: 503, body: { kind: 'Status', reason: 'ServiceUnavailable' } })
  t.match(await statusOf(authed.listNamespacedPod({ namespace: 'default' })), { code: 503 })
  t.equal((await authed.listNamespacedPod({ namespace: 'default' })).items.length, 0, 'the third request is served')

  const lift = server.refuse(({ verb }) => verb === 'create', { status: 500 })
  t.match(await statusOf(authed.createNamespacedPod({ namespace: 'default', body: pod('x') })), { code: 500, body: { reason: 'InternalError' } })
  t.match(await statusOf(authed.createNamespacedPod({ namespace: 'default', body: pod('x') })), { code: 500 })
  lift()
  await authed.createNamespacedPod({ namespace: 'default', body: pod('x') })

  server.injectError({ method: 'GET', path: '/api/v1/namespaces/default/pods/x', status: 429, times: 1 })
  t.match(await statusOf(authed.readNamespacedPod({ name: 'x', namespace: 'default' })), { code: 429, body: { reason: 'TooManyRequests' } })
  t.equal((await authed.readNamespacedPod({ name: 'x', namespace: 'default' })).metadata?.name, 'x', 'times: 1 fails only once')
  server.injectError({ verb: 'list', status: 500, reset: true, times: 1 })
  await t.rejects(authed.listNamespacedPod({ namespace: 'default' }), 'reset: true cuts the connection')

  const port = server.port
  await server.stop()
  t.equal(server.listening, false)
  await t.rejects(authed.listNamespacedPod({ namespace: 'default' }), 'nothing listens while stopped')
  await server.start()
  t.equal(server.port, port, 'start() comes back on the same port')
  t.equal((await authed.listNamespacedPod({ namespace: 'default' })).items.length, 1, 'with the same data')
})

void t.test('a watch stays registered until the client goes away', async (t) => {
  const { server } = await fakeCluster(t)
  const controller = new AbortController()
  const response = await fetch(`${server.url}/api/v1/namespaces/default/pods?watch=1`, { signal: controller.signal })
  t.equal(response.status, 200)
  t.equal(response.headers.get('content-type'), 'application/json')
  t.equal(server.openWatches, 1)
  controller.abort()
  await response.body?.cancel().catch(() => {})
  await until(() => server.openWatches === 0, 'the watch to be released')
  t.equal(server.muteWatches(), 0)
})
