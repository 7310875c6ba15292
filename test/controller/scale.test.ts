// Measurements against the fake API server (reported, not asserted as wall-clock limits):
// how long a new user takes to become routable, and how long the reconciler takes for 1,000
// users on start-up (in one namespace, and spread over 20) and for a resync of 1,000 unchanged
// users. Correctness is asserted.
import t from 'tap'
import { createLogger } from '../../src/log.ts'
import { Metrics } from '../../src/metrics.ts'
import { startKubernetesProvisioner, type KubernetesProvisioner } from '../../src/controller/provisioner.ts'
import { parseProfiles } from '../../src/controller/profiles.ts'
import { FakeKubeServer } from '../support/fake-kube.ts'
import { startKubernetesSource, waitForSnapshot } from '../support/fake-kube-source.ts'
import { kubeConfigFor } from '../support/kubeconfig.ts'
import { SimulatedController } from '../support/simulated-controller.ts'

const NS = 'default'
const UW = 'podgate.dev/v1alpha1/userworkloads'
const USERS = 1_000
const profiles = parseProfiles('web:\n  image: podgate-backend:test\n')

interface Teardown { teardown (fn: () => unknown): void }

function start (t: Teardown, server: FakeKubeServer, namespaces: readonly string[] = [NS]): KubernetesProvisioner {
  const provisioner = startKubernetesProvisioner({
    config: { profilesFile: undefined },
    kubeConfig: kubeConfigFor(server),
    namespace: NS,
    namespaces,
    logger: createLogger('silent'),
    metrics: new Metrics({ defaultMetrics: false }),
    identity: 'replica-a',
    profiles,
    leaseDurationMs: 15_000,
    renewIntervalMs: 5_000,
    retryIntervalMs: 100,
    retryBackoff: { initialMs: 10, maxMs: 500 },
    informerBackoff: { initialMs: 20, maxMs: 200 },
  })
  t.teardown(() => provisioner.close())
  return provisioner
}

async function until (condition: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

function percentile (sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? Number.NaN
}

void t.test('time from creating a UserWorkload to routable, 20 users one after another', async (t) => {
  const server = await FakeKubeServer.start({ bookmarkIntervalMs: 100 })
  t.teardown(() => server.stop())
  const sim = await SimulatedController.start(server)
  t.teardown(() => sim.close())
  const provisioner = start(t, server)
  const { source } = await startKubernetesSource(t, server)
  await source.synced
  await until(() => provisioner.reconciler !== undefined, 'leadership', 5_000)
  await provisioner.reconciler?.synced
  const samples: number[] = []
  for (let i = 0; i < 20; i++) {
    const user = `timed-${i}`
    const started = performance.now()
    await provisioner.workloads.put(user, {})
    await waitForSnapshot(source, (s) => s.has(user), user, 5_000)
    samples.push(performance.now() - started)
  }
  samples.sort((a, b) => a - b)
  t.equal(samples.length, 20)
  t.comment(`create → routable (fake API server, simulated controller): median ${percentile(samples, 0.5).toFixed(1)} ms, p95 ${percentile(samples, 0.95).toFixed(1)} ms, max ${(samples.at(-1) ?? 0).toFixed(1)} ms`)
  t.same(sim.errors, [])
})

/** Start-up to every workload converged, for the one-namespace run to compare the spread one with. */
const convergence: Record<string, number> = {}

for (const spread of [1, 20]) {
void t.test(`reconciling ${USERS} users in ${spread} namespace(s): on start-up, then a resync that changes nothing`, async (t) => {
  const namespaces = spread === 1 ? [NS] : Array.from({ length: spread }, (_, i) => `tenant-${i}`)
  const server = await FakeKubeServer.start({ bookmarkIntervalMs: 1_000 })
  t.teardown(() => server.stop())
  for (let i = 0; i < USERS; i++) {
    server.put({ apiVersion: 'podgate.dev/v1alpha1', kind: 'UserWorkload', metadata: { name: `user-u${i}`, namespace: namespaces[i % spread] }, spec: { user: `u${i}`, suspended: false } })
  }
  const patchesBefore = server.counts.patch
  const started = performance.now()
  const provisioner = start(t, server, namespaces)
  await until(() => provisioner.reconciler !== undefined, 'leadership', 5_000)
  const reconciler = provisioner.reconciler
  await reconciler?.synced
  const syncedMs = performance.now() - started
  // The cache, not server.list: cloning 1,000 objects per poll would slow the process being measured.
  const done = (): boolean => provisioner.cache.size === USERS && provisioner.cache.workloads().every((w) => w.status.phase === 'Starting')
  await until(() => done(), `${USERS} workloads Starting`, 120_000)
  await reconciler?.whenIdle()
  const convergedMs = performance.now() - started
  t.ok(server.list(UW).every((uw) => (uw.status as { phase?: string } | undefined)?.phase === 'Starting'), 'every status written')
  t.equal(server.list('apps/v1/deployments').length, USERS)
  t.equal(server.list('v1/services').length, USERS)
  t.equal(server.list('networking.k8s.io/v1/networkpolicies').length, USERS)
  const writes = server.counts.patch - patchesBefore
  t.ok(writes >= USERS * 4, 'three applies and one status write per user')
  t.comment(`${USERS} users in ${spread} namespace(s) from start-up: informers synced after ${syncedMs.toFixed(0)} ms (${namespaces.length * 6} informers); every user with its Deployment, Service, NetworkPolicy and status after ${convergedMs.toFixed(0)} ms (${(convergedMs / USERS).toFixed(2)} ms/user, ${writes} PATCH requests)`)
  convergence[String(spread)] = convergedMs
  const single = convergence['1']
  if (spread !== 1 && single !== undefined) t.comment(`over ${spread} namespaces / in one: ${(convergedMs / single).toFixed(2)}×`)
  t.same(new Set(server.list('apps/v1/deployments').map((d) => d.metadata?.namespace)).size, spread, 'each Deployment next to its UserWorkload')

  const resyncPatches = server.counts.patch
  const resyncStarted = performance.now()
  for (const key of provisioner.cache.keys()) reconciler?.queue.add(key)
  await reconciler?.whenIdle()
  const resyncMs = performance.now() - resyncStarted
  t.equal(server.counts.patch, resyncPatches, 'a resync of unchanged workloads writes nothing')
  t.comment(`resync of ${USERS} unchanged users: ${resyncMs.toFixed(0)} ms, no API writes`)
})
}
