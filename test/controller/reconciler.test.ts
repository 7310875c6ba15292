// The Kubernetes provisioner end to end against the fake API server: a UserWorkload becomes a
// Deployment, Service and NetworkPolicy (and PVC), a simulated controller turns the Deployment
// into a real backend and an EndpointSlice, the status follows, and the gateway's
// EndpointSlice source routes to it. Then: idempotence, API failures, orphans, bad images.
import { readFileSync } from 'node:fs'
import { get as httpGet } from 'node:http'
import { Writable } from 'node:stream'
import t from 'tap'
import { parse as parseYaml } from 'yaml'
import { createLogger, type Logger } from '../../src/log.ts'
import { Metrics } from '../../src/metrics.ts'
import { startKubernetesProvisioner, type KubernetesProvisioner, type KubernetesProvisionerOptions } from '../../src/controller/provisioner.ts'
import { parseProfiles } from '../../src/controller/profiles.ts'
import { FakeKubeServer, type KubeObject } from '../support/fake-kube.ts'
import { originsOf, startKubernetesSource, waitForSnapshot } from '../support/fake-kube-source.ts'
import { kubeConfigFor } from '../support/kubeconfig.ts'
import { FAST_PROVISIONER_TIMINGS } from '../support/provisioner.ts'
import { SimulatedController } from '../support/simulated-controller.ts'

const NS = 'default'
const UW = 'podgate.dev/v1alpha1/userworkloads'
const DEPLOYMENTS = 'apps/v1/deployments'
const SERVICES = 'v1/services'
const POLICIES = 'networking.k8s.io/v1/networkpolicies'
const CLAIMS = 'v1/persistentvolumeclaims'
const PODS = 'v1/pods'
const CHILD_KINDS = [DEPLOYMENTS, SERVICES, POLICIES] as const

const PROFILES = parseProfiles(`
web:
  image: podgate-backend:test
stateful:
  image: podgate-backend:test
  storage: { size: 1Gi }
scratch:
  image: podgate-backend:test
  storage: { size: 1Gi, keepOnDelete: false }
broken:
  image: registry.example.com/does-not-exist:1
`)

interface Teardown { teardown (fn: () => unknown): void }

interface Harness {
  readonly server: FakeKubeServer
  readonly provisioner: KubernetesProvisioner
  readonly sim: SimulatedController
  readonly logs: Array<Record<string, unknown>>
  readonly metrics: Metrics
}

function captureLogger (logs: Array<Record<string, unknown>>): Logger {
  return createLogger('debug', new Writable({
    write (chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') logs.push(JSON.parse(line) as Record<string, unknown>)
      callback()
    },
  }))
}

/** Fast timings for tests; each provisioner has its own identity and metrics. */
function testOptions (server: FakeKubeServer, identity: string, logger: Logger): KubernetesProvisionerOptions {
  return {
    config: { profilesFile: undefined },
    kubeConfig: kubeConfigFor(server),
    namespace: NS,
    logger,
    metrics: new Metrics({ defaultMetrics: false }),
    identity,
    profiles: PROFILES,
    ...FAST_PROVISIONER_TIMINGS,
  }
}

async function harness (t: Teardown, options: { before?: (server: FakeKubeServer) => void, provisioner?: Partial<KubernetesProvisionerOptions> } = {}): Promise<Harness> {
  const server = await FakeKubeServer.start({ bookmarkIntervalMs: 100 })
  options.before?.(server)
  const logs: Array<Record<string, unknown>> = []
  const sim = await SimulatedController.start(server)
  const provisionerOptions = { ...testOptions(server, 'replica-a', captureLogger(logs)), ...options.provisioner }
  const provisioner = startKubernetesProvisioner(provisionerOptions)
  t.teardown(async () => {
    await provisioner.close()
    await sim.close()
    await server.stop()
  })
  await until(() => provisioner.reconciler !== undefined, 'leadership')
  await provisioner.reconciler?.synced
  await provisioner.cache.synced
  return { server, provisioner, sim, logs, metrics: provisionerOptions.metrics }
}

async function until (condition: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

function child (server: FakeKubeServer, kind: string, name: string): KubeObject | undefined {
  return server.get(kind, NS, name)
}

function phaseOf (server: FakeKubeServer, user: string): unknown {
  return (server.get(UW, NS, `user-${user}`)?.status as { phase?: unknown } | undefined)?.phase
}

function statusOf (server: FakeKubeServer, user: string): Record<string, unknown> {
  return (server.get(UW, NS, `user-${user}`)?.status ?? {}) as Record<string, unknown>
}

function getJson (origin: string, path: string): Promise<{ status: number, body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const request = httpGet(`${origin}${path}`, { agent: false, headers: { connection: 'close' } }, (response) => {
      const chunks: Buffer[] = []
      response.on('data', (chunk: Buffer) => chunks.push(chunk))
      response.on('end', () => {
        try {
          resolve({ status: response.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown> })
        } catch (err) {
          reject(err instanceof Error ? err : new Error(String(err)))
        }
      })
    })
    request.on('error', reject)
    request.setTimeout(5_000, () => request.destroy(new Error('request timed out')))
  })
}

// ---- CRD conformance -------------------------------------------------------------------

interface Schema {
  type?: string
  properties?: Record<string, Schema>
  items?: Schema
  enum?: unknown[]
  required?: string[]
  pattern?: string
  maxLength?: number
  minimum?: number
  format?: string
}

const CRD = parseYaml(readFileSync(new URL('../../charts/podgate/crds/userworkloads.yaml', import.meta.url), 'utf8')) as {
  spec: { group: string, names: { kind: string, plural: string }, versions: Array<{ name: string, subresources?: { status?: unknown }, schema: { openAPIV3Schema: Schema } }> }
}

/** Problems of `value` against the CRD's structural schema: field names, types, enums, patterns. */
function schemaProblems (value: unknown, schema: Schema, path: string): string[] {
  if (value === undefined || value === null) return []
  const problems: string[] = []
  switch (schema.type) {
    case 'object': {
      if (typeof value !== 'object' || Array.isArray(value)) return [`${path}: expected an object`]
      const record = value as Record<string, unknown>
      for (const key of schema.required ?? []) if (record[key] === undefined) problems.push(`${path}.${key}: required`)
      if (schema.properties === undefined) return problems
      for (const [key, child] of Object.entries(record)) {
        const property = schema.properties[key]
        if (property === undefined) problems.push(`${path}.${key}: not in the CRD schema`)
        else problems.push(...schemaProblems(child, property, `${path}.${key}`))
      }
      return problems
    }
    case 'array':
      if (!Array.isArray(value)) return [`${path}: expected an array`]
      return value.flatMap((item, i) => schemaProblems(item, schema.items ?? {}, `${path}[${i}]`))
    case 'string':
      if (typeof value !== 'string') return [`${path}: expected a string`]
      if (schema.enum !== undefined && !schema.enum.includes(value)) problems.push(`${path}: ${value} is not one of ${schema.enum.join(', ')}`)
      if (schema.pattern !== undefined && !new RegExp(schema.pattern).test(value)) problems.push(`${path}: ${value} does not match ${schema.pattern}`)
      if (schema.maxLength !== undefined && value.length > schema.maxLength) problems.push(`${path}: longer than ${schema.maxLength}`)
      if (schema.format === 'date-time' && Number.isNaN(Date.parse(value))) problems.push(`${path}: not a date-time`)
      return problems
    case 'integer':
      if (!Number.isInteger(value)) return [`${path}: expected an integer`]
      if (schema.minimum !== undefined && (value as number) < schema.minimum) problems.push(`${path}: below ${schema.minimum}`)
      return problems
    case 'boolean':
      return typeof value === 'boolean' ? [] : [`${path}: expected a boolean`]
    default:
      return problems
  }
}

function crdProblems (object: KubeObject | undefined): string[] {
  const version = CRD.spec.versions[0]
  if (object === undefined || version === undefined) return ['no object']
  const { spec, status } = object
  const root = version.schema.openAPIV3Schema.properties ?? {}
  return [
    ...(object.apiVersion === `${CRD.spec.group}/${version.name}` ? [] : [`apiVersion ${String(object.apiVersion)}`]),
    ...(object.kind === CRD.spec.names.kind ? [] : [`kind ${String(object.kind)}`]),
    ...schemaProblems(spec, root.spec ?? {}, 'spec'),
    ...schemaProblems(status, root.status ?? {}, 'status'),
  ]
}

// ---- Tests -----------------------------------------------------------------------------

void t.test('a new user: children with labels and owners, a Ready status, and routing to the backend', async (t) => {
  const { server, provisioner, sim } = await harness(t)
  const { source } = await startKubernetesSource(t, server)
  await source.synced
  t.ok(provisioner.isLeader)

  const started = performance.now()
  const { workload, created } = await provisioner.workloads.put('alice', { profile: 'web' })
  t.equal(created, true)
  t.equal(workload.user, 'alice')
  const snapshot = await waitForSnapshot(source, (s) => s.has('alice'), 'alice routable', 5_000)
  const routableMs = performance.now() - started
  t.comment(`UserWorkload created → routable in the EndpointSlice source: ${routableMs.toFixed(1)} ms`)

  const owner = server.get(UW, NS, 'user-alice')
  const expectedOwner = [{ apiVersion: 'podgate.dev/v1alpha1', kind: 'UserWorkload', name: 'user-alice', uid: owner?.metadata?.uid, controller: true, blockOwnerDeletion: true }]
  for (const kind of CHILD_KINDS) {
    const object = child(server, kind, 'user-alice')
    t.ok(object !== undefined, `${kind} user-alice exists`)
    t.match(object?.metadata?.labels, { 'app.kubernetes.io/managed-by': 'podgate', 'podgate.dev/user': 'alice' }, `${kind} carries podgate's labels`)
    t.same(object?.metadata?.ownerReferences, expectedOwner, `${kind} is owned by the UserWorkload`)
    t.equal(object?.metadata?.managedFields?.[0]?.manager, 'podgate', `${kind} was applied by field manager podgate`)
    t.equal(object?.metadata?.managedFields?.[0]?.operation, 'Apply', `${kind} was server-side applied`)
  }
  t.equal(child(server, CLAIMS, 'user-alice-data'), undefined, 'no storage, no PVC')

  const backend = sim.backend('alice')
  t.ok(backend !== undefined, 'the simulated controller started a backend')
  t.same(originsOf(snapshot, 'alice'), [`http://127.0.0.1:${backend?.address.port ?? 0}`])
  const origin = originsOf(snapshot, 'alice')[0] ?? ''
  const response = await getJson(origin, '/')
  t.equal(response.status, 200)
  t.equal(response.body.user, 'alice', 'the routed endpoint serves alice')

  await until(() => phaseOf(server, 'alice') === 'Ready', 'phase Ready')
  const status = statusOf(server, 'alice')
  t.match(status, { phase: 'Ready', readyReplicas: 1, serviceName: 'user-alice' })
  t.equal(status.message, undefined)
  t.match(status.conditions, [{ type: 'Ready', status: 'True', reason: 'PodReady' }])
  t.same(crdProblems(server.get(UW, NS, 'user-alice')), [], 'the UserWorkload (spec and status) fits the CRD schema')
  await until(() => provisioner.cache.cached('alice')?.status.phase === 'Ready', 'the cache sees Ready')

  t.equal(await provisioner.workloads.delete('alice'), true)
  for (const kind of CHILD_KINDS) t.equal(child(server, kind, 'user-alice'), undefined, `${kind} removed with its owner`)
  await waitForSnapshot(source, (s) => !s.has('alice'), 'alice gone', 5_000)
  await until(() => sim.backend('alice') === undefined, 'the backend stopped')
  t.same(sim.errors, [])
})

void t.test('a kept volume survives its user, is adopted again, and a scratch volume goes with its user', async (t) => {
  const { server, provisioner } = await harness(t)
  await provisioner.workloads.put('bea', { profile: 'stateful' })
  await provisioner.workloads.put('carl', { profile: 'scratch' })
  await until(() => child(server, CLAIMS, 'user-bea-data') !== undefined && child(server, CLAIMS, 'user-carl-data') !== undefined, 'both PVCs')
  await until(() => phaseOf(server, 'bea') === 'Ready', 'bea Ready')
  const kept = child(server, CLAIMS, 'user-bea-data')
  t.equal(kept?.metadata?.annotations?.['podgate.dev/keep'], 'true')
  t.equal(kept?.metadata?.ownerReferences, undefined, 'a kept PVC has no owner')
  t.match(kept?.metadata?.labels, { 'app.kubernetes.io/managed-by': 'podgate', 'podgate.dev/user': 'bea' })
  t.match(kept?.spec, { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } })
  t.match(child(server, DEPLOYMENTS, 'user-bea')?.spec, { template: { spec: { volumes: [{ persistentVolumeClaim: { claimName: 'user-bea-data' } }] } } })
  t.match(child(server, CLAIMS, 'user-carl-data')?.metadata?.ownerReferences, [{ kind: 'UserWorkload', name: 'user-carl' }])

  await provisioner.workloads.delete('bea')
  await provisioner.workloads.delete('carl')
  t.equal(child(server, DEPLOYMENTS, 'user-bea'), undefined)
  t.ok(child(server, CLAIMS, 'user-bea-data') !== undefined, 'the kept PVC is still there')
  t.equal(child(server, CLAIMS, 'user-carl-data'), undefined, 'keepOnDelete: false removes it with the user')
  // A reconcile queued before the deletes may still run on the cache's last view and put a
  // child back (the sweep exists to remove those), so what is checked is the kept volume itself.
  await provisioner.reconciler?.sweep()
  t.equal(child(server, CLAIMS, 'user-bea-data')?.metadata?.uid, kept?.metadata?.uid, 'the sweep leaves a kept PVC alone')

  const uid = kept?.metadata?.uid
  await provisioner.workloads.put('bea', { profile: 'stateful' })
  await until(() => phaseOf(server, 'bea') === 'Ready', 'bea Ready again')
  t.equal(child(server, CLAIMS, 'user-bea-data')?.metadata?.uid, uid, 'the same volume is mounted again')
  t.equal(server.list(CLAIMS).length, 1)
})

void t.test('twenty concurrent puts make one of each child; putting again changes nothing', async (t) => {
  const { server, provisioner } = await harness(t)
  const results = await Promise.all(Array.from({ length: 20 }, () => provisioner.workloads.put('dora', { profile: 'web' })))
  t.equal(results.filter((r) => r.created).length, 1, 'exactly one put created it')
  await until(() => phaseOf(server, 'dora') === 'Ready', 'dora Ready')
  await provisioner.reconciler?.whenIdle()
  t.equal(server.list(UW).length, 1)
  for (const kind of CHILD_KINDS) t.equal(server.list(kind, { labelSelector: 'podgate.dev/user=dora' }).length, 1, `one ${kind}`)
  t.equal(server.list(PODS, { labelSelector: 'podgate.dev/user=dora' }).length, 1)

  const versions = (): Array<string | undefined> => [UW, ...CHILD_KINDS].map((kind) => server.get(kind, NS, 'user-dora')?.metadata?.resourceVersion)
  const before = versions()
  const patches = server.counts.patch
  const again = await provisioner.workloads.put('dora', { profile: 'web' })
  t.equal(again.created, false)
  provisioner.reconciler?.queue.add('user-dora')
  await provisioner.reconciler?.whenIdle()
  await new Promise((resolve) => setTimeout(resolve, 200))
  await provisioner.reconciler?.whenIdle()
  t.same(versions(), before, 'no resourceVersion moved')
  t.equal(server.counts.patch, patches, 'a reconcile of an unchanged workload writes nothing')
})

void t.test('the API server answers 500 to the first apply, then resets a connection: the user still converges', async (t) => {
  const { server, provisioner, metrics, logs } = await harness(t)
  const applies = (): number => server.counts.patch
  server.injectError({ method: 'PATCH', path: `/apis/apps/v1/namespaces/${NS}/deployments/`, status: 500, times: 1 })
  server.injectError({ method: 'PATCH', path: `/api/v1/namespaces/${NS}/services/`, status: 500, reset: true, times: 1 })
  const before = applies()
  await provisioner.workloads.put('erin', { profile: 'web' })
  await until(() => phaseOf(server, 'erin') === 'Ready', 'erin Ready despite the failures')
  t.ok(applies() - before >= 5, 'the failed applies were retried')
  for (const kind of CHILD_KINDS) t.ok(child(server, kind, 'user-erin') !== undefined, `${kind} exists`)
  const failed = (await metrics.registry.getSingleMetric('podgate_reconciles_total')?.get())?.values.find((v) => v.labels.result === 'error')?.value
  t.ok((failed ?? 0) >= 2, 'both failures counted in podgate_reconciles_total{result="error"}')
  t.ok(logs.some((line) => line.msg === 'reconcile failed; retrying' && line.workload === 'user-erin'), 'and logged with the retry delay')
})

void t.test('a 409 on the status write and a 429 on an apply are retried', async (t) => {
  const { server, provisioner } = await harness(t)
  server.injectError({ method: 'PATCH', path: `/apis/podgate.dev/v1alpha1/namespaces/${NS}/userworkloads/user-finn/status`, status: 409, times: 2 })
  server.injectError({ method: 'PATCH', path: `/apis/networking.k8s.io/v1/namespaces/${NS}/networkpolicies/`, status: 429, times: 2 })
  await provisioner.workloads.put('finn', { profile: 'web' })
  await until(() => phaseOf(server, 'finn') === 'Ready', 'finn Ready')
  t.ok(child(server, POLICIES, 'user-finn') !== undefined)
})

void t.test('orphans: labelled children without a UserWorkload are swept, unlabelled ones are left alone', async (t) => {
  const orphan = (kind: string, apiVersion: string, name: string, labels: Record<string, string>, extra: Record<string, unknown> = {}): KubeObject => ({
    apiVersion, kind, metadata: { name, namespace: NS, labels }, ...extra,
  })
  const podgate = (user: string): Record<string, string> => ({ 'app.kubernetes.io/managed-by': 'podgate', 'podgate.dev/user': user })
  const { server, provisioner, logs } = await harness(t, {
    before: (server) => {
      server.put(orphan('Service', 'v1', 'user-ghost', podgate('ghost'), { spec: { ports: [{ name: 'http', port: 8080 }] } }))
      server.put(orphan('Service', 'v1', 'user-stranger', { app: 'not-podgate' }, { spec: { ports: [{ port: 80 }] } }))
      server.put(orphan('Deployment', 'apps/v1', 'user-ghost', podgate('ghost'), { spec: { replicas: 0 } }))
      server.put(orphan('NetworkPolicy', 'networking.k8s.io/v1', 'user-ghost', podgate('ghost'), { spec: {} }))
      server.put(orphan('PersistentVolumeClaim', 'v1', 'user-ghost-data', podgate('ghost'), { spec: {} }))
      server.put({ ...orphan('PersistentVolumeClaim', 'v1', 'user-kept-data', podgate('kept'), { spec: {} }), metadata: { name: 'user-kept-data', namespace: NS, labels: podgate('kept'), annotations: { 'podgate.dev/keep': 'true' } } })
    },
  })
  await until(() => [DEPLOYMENTS, SERVICES, POLICIES].every((kind) => child(server, kind, 'user-ghost') === undefined) && child(server, CLAIMS, 'user-ghost-data') === undefined, 'the startup sweep')
  t.pass('the startup sweep removed the Deployment, Service, NetworkPolicy and PVC of a user without a UserWorkload')
  t.ok(child(server, CLAIMS, 'user-kept-data') !== undefined, 'a kept PVC is never swept')
  t.ok(child(server, SERVICES, 'user-stranger') !== undefined, 'an unlabelled Service is never touched')
  t.ok(logs.some((line) => line.msg === 'deleted an orphan: its UserWorkload is gone' && line.kind === 'Service'))

  server.put(orphan('Service', 'v1', 'user-late', podgate('late'), { spec: { ports: [{ name: 'http', port: 8080 }] } }))
  server.put(orphan('Service', 'v1', 'user-late-unlabelled', { 'podgate.dev/user': 'late' }, { spec: { ports: [{ port: 80 }] } }))
  await until(() => provisioner.reconciler !== undefined && child(server, SERVICES, 'user-late') !== undefined, 'the late orphan is seen')
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal(await provisioner.reconciler?.sweep(), 1)
  t.equal(child(server, SERVICES, 'user-late'), undefined)
  t.ok(child(server, SERVICES, 'user-late-unlabelled') !== undefined, 'without managed-by=podgate it is not podgate\'s')
  t.ok(child(server, SERVICES, 'user-stranger') !== undefined)

  await provisioner.workloads.put('gina', { profile: 'web' })
  await until(() => phaseOf(server, 'gina') === 'Ready', 'gina Ready')
  t.equal(await provisioner.reconciler?.sweep(), 0, 'children of a live workload are not orphans')
  t.ok(child(server, SERVICES, 'user-gina') !== undefined)
})

void t.test('a profile with a bad image fails with the pod\'s reason; fixing it recovers', async (t) => {
  const { server, provisioner, sim } = await harness(t)
  sim.failImage('registry.example.com/does-not-exist:1')
  await provisioner.workloads.put('hank', { profile: 'broken' })
  await until(() => phaseOf(server, 'hank') === 'Failed', 'phase Failed')
  const status = statusOf(server, 'hank')
  t.match(status.message, /^ImagePullBackOff: Back-off pulling image "registry.example\.com\/does-not-exist:1"$/)
  t.match(status.conditions, [{ type: 'Ready', status: 'False', reason: 'ImagePullBackOff' }])
  t.equal(status.readyReplicas, 0)
  t.same(crdProblems(server.get(UW, NS, 'user-hank')), [], 'a Failed status fits the CRD')
  await until(() => provisioner.cache.cached('hank')?.status.phase === 'Failed', 'the cache sees Failed (the spawner fails fast on it)')

  await provisioner.workloads.put('hank', { profile: 'web' })
  await until(() => phaseOf(server, 'hank') === 'Ready', 'Ready after switching to a good profile')
  t.equal(statusOf(server, 'hank').message, undefined, 'the old message is cleared')
})

void t.test('suspend scales to zero and unrouts; waking brings it back', async (t) => {
  const { server, provisioner, sim } = await harness(t)
  const { source } = await startKubernetesSource(t, server)
  await provisioner.workloads.put('ivy', { profile: 'web' })
  await waitForSnapshot(source, (s) => s.has('ivy'), 'ivy routable', 5_000)
  await provisioner.workloads.setSuspended('ivy', true)
  await until(() => phaseOf(server, 'ivy') === 'Suspended' && statusOf(server, 'ivy').readyReplicas === 0, 'Suspended with no ready pod')
  t.equal((child(server, DEPLOYMENTS, 'user-ivy')?.spec as { replicas?: number } | undefined)?.replicas, 0)
  t.ok(child(server, SERVICES, 'user-ivy') !== undefined, 'the Service stays')
  await waitForSnapshot(source, (s) => !s.has('ivy'), 'ivy unrouted', 5_000)
  t.equal(sim.backend('ivy'), undefined)
  t.same(crdProblems(server.get(UW, NS, 'user-ivy')), [])

  await provisioner.workloads.setSuspended('ivy', false)
  await waitForSnapshot(source, (s) => s.has('ivy'), 'ivy routable again', 5_000)
  await until(() => phaseOf(server, 'ivy') === 'Ready', 'Ready again')
})

void t.test('UserWorkloads made by hand that podgate cannot serve get a Failed status saying why', async (t) => {
  const { server } = await harness(t)
  const uw = (name: string, spec: Record<string, unknown>): KubeObject => ({ apiVersion: 'podgate.dev/v1alpha1', kind: 'UserWorkload', metadata: { name, namespace: NS }, spec })
  server.put(uw('jack', { user: 'jack' }))
  server.put(uw('user-kim', { user: 'kim', profile: 'gpu' }))
  server.put(uw(`user-${'l'.repeat(60)}`, { user: 'l'.repeat(60) }))
  await until(() => server.get(UW, NS, 'jack')?.status !== undefined, 'a status on jack')
  t.match(server.get(UW, NS, 'jack')?.status, { phase: 'Failed', message: 'metadata.name must be user-jack (user-<spec.user>), got jack' })
  await until(() => phaseOf(server, 'kim') === 'Failed', 'kim Failed')
  t.match(statusOf(server, 'kim').message, /^spec\.profile: unknown profile "gpu"; known: web, stateful, scratch, broken$/)
  await until(() => phaseOf(server, 'l'.repeat(60)) === 'Failed', 'the long id Failed')
  t.match(statusOf(server, 'l'.repeat(60)).message, /spec\.user: at most 58 characters/)
  t.equal(server.list(DEPLOYMENTS).length, 0, 'no children for any of them')
})

void t.test('a Service deleted by hand is re-created; a disabled NetworkPolicy is removed', async (t) => {
  const { server, provisioner } = await harness(t)
  await provisioner.workloads.put('lena', { profile: 'web' })
  await until(() => phaseOf(server, 'lena') === 'Ready', 'lena Ready')
  const uid = child(server, SERVICES, 'user-lena')?.metadata?.uid
  server.delete(SERVICES, NS, 'user-lena')
  await until(() => child(server, SERVICES, 'user-lena') !== undefined, 'the Service back')
  t.not(child(server, SERVICES, 'user-lena')?.metadata?.uid, uid, 'a new Service')
  await provisioner.close()

  const logs: Array<Record<string, unknown>> = []
  const second = startKubernetesProvisioner({ ...testOptions(server, 'replica-b', captureLogger(logs)), networkPolicy: false })
  t.teardown(() => second.close())
  await until(() => second.reconciler !== undefined, 'the second provisioner leads')
  await until(() => child(server, POLICIES, 'user-lena') === undefined, 'the NetworkPolicy removed')
  t.ok(child(server, SERVICES, 'user-lena') !== undefined)
  t.ok(child(server, DEPLOYMENTS, 'user-lena') !== undefined)
})
