// The provisioner across tenant namespaces, against the fake API server: UserWorkloads and
// their children in their own namespaces, a NetworkPolicy admitting the gateway from podgate's
// namespace, one user id across namespaces (the oldest claim is served, a later one is refused
// with a status message and no children), the Workloads API with and without a namespace,
// the orphan sweep per namespace, and a cluster-wide (`all`) provisioner.
import t from 'tap'
import { ConflictError, BadRequestError } from '../../src/errors.ts'
import { createLogger } from '../../src/log.ts'
import { Metrics } from '../../src/metrics.ts'
import { startKubernetesProvisioner, type KubernetesProvisioner, type KubernetesProvisionerOptions } from '../../src/controller/provisioner.ts'
import { parseProfiles } from '../../src/controller/profiles.ts'
import { Culler } from '../../src/workloads/culler.ts'
import { FakeKubeServer, type KubeObject } from '../support/fake-kube.ts'
import { startKubernetesSource, waitForSnapshot } from '../support/fake-kube-source.ts'
import { kubeConfigFor } from '../support/kubeconfig.ts'
import { FAST_PROVISIONER_TIMINGS } from '../support/provisioner.ts'
import { SimulatedController } from '../support/simulated-controller.ts'

const UW = 'podgate.dev/v1alpha1/userworkloads'
const DEPLOYMENTS = 'apps/v1/deployments'
const SERVICES = 'v1/services'
const POLICIES = 'networking.k8s.io/v1/networkpolicies'
const CHILD_KINDS = [DEPLOYMENTS, SERVICES, POLICIES] as const
const PROFILES = parseProfiles('web:\n  image: podgate-backend:test\n')

interface Teardown { teardown (fn: () => unknown): void }

interface Cluster {
  readonly server: FakeKubeServer
  readonly provisioner: KubernetesProvisioner
  /** The fake API server's clock (creationTimestamp): tests move it to order claims. */
  readonly clock: { now: Date }
}

async function startCluster (t: Teardown, provisioner: Partial<KubernetesProvisionerOptions> = {}, simulated: readonly string[] = ['team-a', 'team-b']): Promise<Cluster> {
  const clock = { now: new Date('2026-01-01T00:00:00Z') }
  const server = await FakeKubeServer.start({ bookmarkIntervalMs: 100, now: () => clock.now })
  const sims = await Promise.all(simulated.map((namespace) => SimulatedController.start(server, { namespace })))
  const started = startKubernetesProvisioner({
    config: { profilesFile: undefined },
    kubeConfig: kubeConfigFor(server),
    namespace: 'podgate',
    namespaces: ['team-a', 'team-b'],
    logger: createLogger('silent'),
    metrics: new Metrics({ defaultMetrics: false }),
    identity: 'replica-a',
    profiles: PROFILES,
    ...FAST_PROVISIONER_TIMINGS,
    ...provisioner,
  })
  t.teardown(async () => {
    await started.close()
    for (const sim of sims) await sim.close()
    await server.stop()
  })
  await until(() => started.reconciler !== undefined, 'leadership')
  await started.reconciler?.synced
  await started.cache.synced
  return { server, provisioner: started, clock }
}

async function until (condition: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

function statusOf (server: FakeKubeServer, namespace: string, user: string): Record<string, unknown> {
  return (server.get(UW, namespace, `user-${user}`)?.status ?? {}) as Record<string, unknown>
}

function childrenOf (server: FakeKubeServer, namespace: string, user: string): Array<KubeObject | undefined> {
  return CHILD_KINDS.map((kind) => server.get(kind, namespace, `user-${user}`))
}

/** A UserWorkload written straight into the API, as kubectl apply would. */
function putWorkload (server: FakeKubeServer, namespace: string, user: string): KubeObject {
  return server.put({ apiVersion: 'podgate.dev/v1alpha1', kind: 'UserWorkload', metadata: { name: `user-${user}`, namespace }, spec: { user } })
}

void t.test('users in two tenant namespaces: children in their own namespace, routed from there', async (t) => {
  const { server, provisioner } = await startCluster(t)
  const { source } = await startKubernetesSource(t, server, { namespaces: ['team-a', 'team-b'] })
  await provisioner.workloads.put('ann', {}, 'team-a')
  await provisioner.workloads.put('bea', {}, 'team-b')
  const snapshot = await waitForSnapshot(source, (s) => s.has('ann') && s.has('bea'), 'both routable', 5_000)
  t.ok(snapshot.get('ann')?.length === 1 && snapshot.get('bea')?.length === 1)
  t.equal(source.namespaceOf?.('ann'), 'team-a')
  t.equal(source.namespaceOf?.('bea'), 'team-b')
  for (const [namespace, user, other] of [['team-a', 'ann', 'team-b'], ['team-b', 'bea', 'team-a']] as const) {
    const owner = server.get(UW, namespace, `user-${user}`)
    for (const [i, object] of childrenOf(server, namespace, user).entries()) {
      t.ok(object !== undefined, `${CHILD_KINDS[i] ?? ''} of ${user} in ${namespace}`)
      t.equal(object?.metadata?.ownerReferences?.[0]?.uid, owner?.metadata?.uid, 'owned by the UserWorkload next to it')
    }
    t.same(childrenOf(server, other, user), [undefined, undefined, undefined], `nothing of ${user} in ${other}`)
    await until(() => statusOf(server, namespace, user).phase === 'Ready', `${user} Ready`)
  }
  const policy = server.get(POLICIES, 'team-a', 'user-ann')
  t.same((policy?.spec as { ingress?: Array<{ from?: unknown }> } | undefined)?.ingress?.[0]?.from, [{
    podSelector: { matchLabels: { 'app.kubernetes.io/name': 'podgate' } },
    namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'podgate' } },
  }], 'the NetworkPolicy admits the gateway\'s pods from podgate\'s namespace only')
  t.same(provisioner.cache.workloads().map((w) => [w.user, w.namespace]).sort(), [['ann', 'team-a'], ['bea', 'team-b']])
  t.same((await provisioner.workloads.list()).map((w) => [w.user, w.namespace]), [['ann', 'team-a'], ['bea', 'team-b']], 'the admin list spans the namespaces')
})

void t.test('one user id in two namespaces: the older is served, the later refused with a message and no children, and takes over when the first goes', async (t) => {
  const { server, provisioner, clock } = await startCluster(t)
  putWorkload(server, 'team-b', 'cid')
  await until(() => statusOf(server, 'team-b', 'cid').phase === 'Ready', 'team-b\'s cid Ready')
  clock.now = new Date('2026-01-01T00:00:05Z')
  putWorkload(server, 'team-a', 'cid')
  await until(() => statusOf(server, 'team-a', 'cid').phase === 'Failed', 'team-a\'s cid refused')
  const refused = statusOf(server, 'team-a', 'cid')
  t.match(refused.message, /^user cid already has a workload in namespace team-b, created earlier/)
  t.match(refused.conditions, [{ type: 'Ready', status: 'False', reason: 'UserInAnotherNamespace' }])
  await provisioner.reconciler?.whenIdle()
  t.same(childrenOf(server, 'team-a', 'cid'), [undefined, undefined, undefined], 'the refused claim gets no children')
  t.equal(statusOf(server, 'team-b', 'cid').phase, 'Ready', 'the first keeps working')
  t.equal(provisioner.cache.cached('cid')?.namespace, 'team-b', 'the spawner and admin API see the served one')
  t.same(provisioner.cache.claims('cid'), ['team-b', 'team-a'])

  // An equal creationTimestamp (one-second resolution) is ordered by namespace name, the same on every replica.
  putWorkload(server, 'team-b', 'dot')
  putWorkload(server, 'team-a', 'dot')
  await until(() => statusOf(server, 'team-b', 'dot').phase === 'Failed' && statusOf(server, 'team-a', 'dot').phase === 'Ready', 'team-a\'s dot served on a tie')

  t.equal(await provisioner.workloads.delete('cid', 'team-b'), true)
  await until(() => statusOf(server, 'team-a', 'cid').phase === 'Ready', 'team-a\'s cid takes over')
  t.equal(childrenOf(server, 'team-a', 'cid').filter((object) => object !== undefined).length, 3)
  t.equal(statusOf(server, 'team-a', 'cid').message, undefined, 'the refusal message is gone')
})

void t.test('the Workloads API: a namespace named or not, conflicts, unserved namespaces', async (t) => {
  const { server, provisioner } = await startCluster(t)
  const { workloads } = provisioner
  t.equal((await workloads.put('eve', {})).workload.namespace, 'team-a', 'no namespace named: the first listed')
  t.equal((await workloads.put('dan', {}, 'team-b')).workload.namespace, 'team-b')
  await until(() => provisioner.cache.cached('dan') !== undefined, 'dan cached')
  await t.rejects(workloads.put('dan', {}, 'team-a'), ConflictError, 'naming another namespace than the user\'s is a conflict')
  await t.rejects(workloads.put('dan', {}, 'team-a'), { status: 409, message: /already has a workload in namespace team-b/ })
  t.equal(server.get(UW, 'team-a', 'user-dan'), undefined, 'and creates nothing')
  const again = await workloads.put('dan', {})
  t.equal(again.created, false)
  t.equal(again.workload.namespace, 'team-b', 'no namespace named: the user\'s workload wherever it is')
  await t.rejects(workloads.put('fay', {}, 'team-z'), BadRequestError, 'a namespace podgate does not serve')
  await t.rejects(workloads.put('fay', {}, 'Team_Z'), { status: 400, message: /not a namespace name/ })
  t.equal((await workloads.get('dan'))?.namespace, 'team-b')
  t.equal(await workloads.get('dan', 'team-a'), undefined, 'not in team-a')
  await workloads.setSuspended('dan', true)
  await until(() => (server.get(UW, 'team-b', 'user-dan')?.spec as { suspended?: boolean } | undefined)?.suspended === true, 'suspended where it is')
  t.equal(await workloads.delete('dan', 'team-a'), false, 'nothing to delete in team-a')
  t.ok(server.get(UW, 'team-b', 'user-dan'), 'and team-b\'s is untouched')
  t.equal(await workloads.delete('dan'), true, 'no namespace named: where it is')
  t.equal(server.get(UW, 'team-b', 'user-dan'), undefined)
})

void t.test('the orphan sweep works per namespace', async (t) => {
  const { server, provisioner } = await startCluster(t)
  await provisioner.workloads.put('gil', {}, 'team-a')
  await until(() => statusOf(server, 'team-a', 'gil').phase === 'Ready', 'gil Ready')
  const labels = { 'app.kubernetes.io/managed-by': 'podgate', 'podgate.dev/user': 'gil' }
  // gil's UserWorkload is in team-a: a Service of gil's in team-b has no owner there.
  server.put({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'user-gil', namespace: 'team-b', labels }, spec: { ports: [{ port: 8888 }] } })
  server.put({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'user-hal', namespace: 'team-a', labels: { ...labels, 'podgate.dev/user': 'hal' } }, spec: { ports: [{ port: 8888 }] } })
  server.put({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'not-ours', namespace: 'team-b', labels: { 'podgate.dev/user': 'gil' } }, spec: { ports: [{ port: 80 }] } })
  await until(() => server.list(SERVICES).length === 4, 'the informers to see them')
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal(await provisioner.reconciler?.sweep(), 2, 'two orphans')
  t.equal(server.get(SERVICES, 'team-b', 'user-gil'), undefined, 'gil\'s Service in the namespace without gil\'s UserWorkload')
  t.equal(server.get(SERVICES, 'team-a', 'user-hal'), undefined)
  t.ok(server.get(SERVICES, 'team-a', 'user-gil'), 'gil\'s own Service stays')
  t.ok(server.get(SERVICES, 'team-b', 'not-ours'), 'an object without podgate\'s managed-by label stays')
})

void t.test('a cluster-wide provisioner (`all`) serves any namespace, new workloads in podgate\'s own by default', async (t) => {
  const { server, provisioner } = await startCluster(t, { namespaces: 'all' }, ['team-a', 'team-c', 'podgate'])
  putWorkload(server, 'team-c', 'ivy')
  await until(() => statusOf(server, 'team-c', 'ivy').phase === 'Ready', 'ivy Ready in a namespace nobody listed')
  t.equal(childrenOf(server, 'team-c', 'ivy').filter((object) => object !== undefined).length, 3)
  const { workload } = await provisioner.workloads.put('jo', {})
  t.equal(workload.namespace, 'podgate')
  await until(() => statusOf(server, 'podgate', 'jo').phase === 'Ready', 'jo Ready')
  t.equal((await provisioner.workloads.put('kai', {}, 'team-a')).workload.namespace, 'team-a')
  await until(() => statusOf(server, 'team-a', 'kai').phase === 'Ready', 'kai Ready')
  t.same((await provisioner.workloads.list()).map((w) => `${w.namespace ?? ''}/${w.user}`), ['team-c/ivy', 'podgate/jo', 'team-a/kai'])
})

void t.test('idle culling suspends each claim in its own namespace: a refused duplicate never suspends the served one', async (t) => {
  const { server, provisioner, clock } = await startCluster(t)
  putWorkload(server, 'team-b', 'lea')
  clock.now = new Date('2026-01-01T00:00:05Z')
  putWorkload(server, 'team-a', 'lea')
  await until(() => statusOf(server, 'team-a', 'lea').phase === 'Failed' && statusOf(server, 'team-b', 'lea').phase === 'Ready', 'team-a\'s lea refused, team-b\'s served')
  // The served one was active a moment ago; the refused one never was (its age alone makes it idle).
  provisioner.workloads.touch('lea', new Date())
  await until(() => provisioner.cache.cached('lea')?.status.lastActivity !== undefined, 'the activity recorded')
  const culler = new Culler({ workloads: provisioner.workloads, idleTimeoutMs: 60_000, logger: createLogger('silent') })
  t.same(await culler.sweep(), ['lea'], 'one suspension: the idle claim')
  const suspended = (namespace: string): unknown => (server.get(UW, namespace, 'user-lea')?.spec as { suspended?: boolean } | undefined)?.suspended
  t.equal(suspended('team-a'), true, 'the refused claim in team-a')
  t.not(suspended('team-b'), true, 'the active, served one in team-b keeps running')
})
