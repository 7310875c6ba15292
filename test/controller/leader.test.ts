// Leader election over a coordination.k8s.io Lease on the fake API server, with short
// durations: one leader at a time, hand-over on release, take-over after a crash, stepping
// down when renewals fail; and two whole provisioners where only the leader reconciles.
import type { KubeConfig } from '@kubernetes/client-node'
import t from 'tap'
import { createLogger } from '../../src/log.ts'
import { Metrics } from '../../src/metrics.ts'
import { startKubernetesProvisioner, type KubernetesProvisioner } from '../../src/controller/provisioner.ts'
import { LeaderElector, type LeaderElectorOptions } from '../../src/controller/leader.ts'
import { parseProfiles } from '../../src/controller/profiles.ts'
import { FakeKubeServer } from '../support/fake-kube.ts'
import { kubeConfigFor } from '../support/kubeconfig.ts'
import { SimulatedController } from '../support/simulated-controller.ts'

const NS = 'default'
const LEASES = 'coordination.k8s.io/v1/leases'
const TIMING = { leaseDurationMs: 1_000, renewIntervalMs: 100, retryIntervalMs: 50, renewDeadlineMs: 600 }

interface Teardown { teardown (fn: () => unknown): void }

async function fakeServer (t: Teardown): Promise<FakeKubeServer> {
  const server = await FakeKubeServer.start({ bookmarkIntervalMs: 100 })
  t.teardown(() => server.stop())
  return server
}

function elector (t: Teardown, kubeConfig: KubeConfig, identity: string, options: Partial<LeaderElectorOptions> = {}): { elector: LeaderElector, transitions: boolean[], metrics: Metrics } {
  const metrics = new Metrics({ defaultMetrics: false })
  const created = new LeaderElector({ kubeConfig, namespace: NS, identity, logger: createLogger('silent'), metrics, ...TIMING, ...options })
  const transitions: boolean[] = []
  created.onChange((leading) => { transitions.push(leading) })
  t.teardown(() => created.close())
  return { elector: created, transitions, metrics }
}

async function until (condition: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

function lease (server: FakeKubeServer): { holderIdentity?: string, renewTime?: string, acquireTime?: string, leaseDurationSeconds?: number, leaseTransitions?: number } {
  return (server.get(LEASES, NS, 'podgate-provisioner')?.spec ?? {})
}

async function gauge (metrics: Metrics): Promise<number | undefined> {
  return (await metrics.registry.getSingleMetric('podgate_leader')?.get())?.values[0]?.value
}

void t.test('one replica takes the Lease, renews it, and clears it on close', async (t) => {
  const server = await fakeServer(t)
  const { elector: a, transitions, metrics } = elector(t, kubeConfigFor(server), 'replica-a')
  t.equal(a.isLeader, false)
  t.equal(await gauge(metrics), 0)
  a.start()
  await until(() => a.isLeader, 'leadership')
  t.equal(await gauge(metrics), 1, 'podgate_leader is 1')
  const first = lease(server)
  t.equal(first.holderIdentity, 'replica-a')
  t.equal(first.leaseDurationSeconds, 1)
  t.equal(first.leaseTransitions, 0)
  t.match(first.renewTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'renewTime is a MicroTime (six fractional digits), as the API server requires')
  t.match(first.acquireTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/)
  await until(() => lease(server).renewTime !== first.renewTime, 'a renewal')
  t.equal(lease(server).acquireTime, first.acquireTime, 'renewing keeps acquireTime')
  await a.close()
  t.equal(a.isLeader, false)
  t.equal(await gauge(metrics), 0)
  t.equal(lease(server).holderIdentity ?? '', '', 'released: no holder')
  t.same(transitions, [true, false])
})

void t.test('of two replicas exactly one leads; when it closes the other takes over at once', async (t) => {
  const server = await fakeServer(t)
  for (let round = 0; round < 5; round++) {
    server.delete(LEASES, NS, 'podgate-provisioner')
    const a = elector(t, kubeConfigFor(server), `a-${round}`).elector
    const b = elector(t, kubeConfigFor(server), `b-${round}`).elector
    a.start()
    b.start()
    await until(() => a.isLeader || b.isLeader, 'a leader')
    await new Promise((resolve) => setTimeout(resolve, 150))
    t.ok(a.isLeader !== b.isLeader, `round ${round}: exactly one leader`)
    const [leader, follower] = a.isLeader ? [a, b] : [b, a]
    t.equal(lease(server).holderIdentity, leader.identity)
    const stopped = performance.now()
    await leader.close()
    await until(() => follower.isLeader, 'the follower takes over')
    const handoverMs = performance.now() - stopped
    t.ok(handoverMs < TIMING.leaseDurationMs, `round ${round}: taken over before the lease would have expired`)
    if (round === 0) t.comment(`hand-over after a clean close: ${handoverMs.toFixed(0)} ms (lease ${TIMING.leaseDurationMs} ms, retry ${TIMING.retryIntervalMs} ms)`)
    t.equal(lease(server).holderIdentity, follower.identity)
    t.equal(lease(server).leaseTransitions, 1)
    await follower.close()
  }
})

void t.test('a leader that stops renewing (a crash) is replaced once its lease expires', async (t) => {
  const server = await fakeServer(t)
  let frozen = false
  const a = elector(t, kubeConfigFor(server), 'replica-a', {
    setTimeout: (callback, ms) => setTimeout(() => { if (!frozen) callback() }, ms),
  }).elector
  const b = elector(t, kubeConfigFor(server), 'replica-b').elector
  a.start()
  await until(() => a.isLeader, 'a leads')
  b.start()
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(b.isLeader, false, 'b waits while a renews')
  frozen = true
  const crashed = performance.now()
  await until(() => b.isLeader, 'b takes over', 5_000)
  const takeoverMs = performance.now() - crashed
  t.comment(`take-over after the leader stopped renewing: ${takeoverMs.toFixed(0)} ms (lease ${TIMING.leaseDurationMs} ms)`)
  t.ok(takeoverMs >= TIMING.leaseDurationMs - TIMING.renewIntervalMs - 50, 'not before the lease could have expired')
  // Generous on purpose: a loaded test machine delays timers; the lower bound is the safety property.
  t.ok(takeoverMs < TIMING.leaseDurationMs + 1_500, 'soon after the lease expired')
  t.equal(lease(server).holderIdentity, 'replica-b')
})

void t.test('a leader whose renewals fail steps down before the lease expires, and campaigns again', async (t) => {
  const server = await fakeServer(t)
  let stepDownAt = 0
  // A longer lease than the deadline leaves room to show the step-down comes before expiry.
  const leaseDurationMs = 2_000
  const { elector: a, transitions } = elector(t, kubeConfigFor(server), 'replica-a', { leaseDurationMs })
  a.onChange(async (leading) => {
    if (leading) return
    stepDownAt = performance.now()
    // The elector waits for this before campaigning again: no reconcile outlives leadership.
    await new Promise((resolve) => setTimeout(resolve, 100))
  })
  a.start()
  await until(() => a.isLeader, 'a leads')
  const lift = server.refuse(({ path }) => path.startsWith('/apis/coordination.k8s.io/'), { status: 503 })
  const refusedAt = performance.now()
  await until(() => !a.isLeader, 'a steps down', 3_000)
  const afterMs = stepDownAt - refusedAt
  t.ok(afterMs < leaseDurationMs, `stepped down ${afterMs.toFixed(0)} ms after renewals began failing, before the ${leaseDurationMs} ms lease ran out`)
  t.ok(afterMs >= TIMING.renewDeadlineMs - TIMING.renewIntervalMs - 50, 'not at the first failed renewal')
  lift()
  await until(() => a.isLeader, 'a leads again')
  t.same(transitions, [true, false, true])
})

void t.test('a Lease someone else holds and renews is respected', async (t) => {
  const server = await fakeServer(t)
  const renew = (): void => {
    server.put({
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: 'podgate-provisioner', namespace: NS },
      spec: { holderIdentity: 'elsewhere', leaseDurationSeconds: 1, renewTime: new Date().toISOString().replace('Z', '000Z') },
    })
  }
  renew()
  const timer = setInterval(renew, 100)
  t.teardown(() => { clearInterval(timer) })
  const a = elector(t, kubeConfigFor(server), 'replica-a').elector
  a.start()
  await new Promise((resolve) => setTimeout(resolve, 1_500))
  t.equal(a.isLeader, false, 'never leads while the holder renews')
  clearInterval(timer)
  await until(() => a.isLeader, 'a takes over once renewals stop', 3_000)
})

void t.test('bad options are refused', (t) => {
  const kubeConfig = kubeConfigFor('http://127.0.0.1:1')
  const base = { kubeConfig, namespace: NS, identity: 'x', logger: createLogger('silent') }
  t.throws(() => new LeaderElector({ ...base, identity: '' }), /identity must be a non-empty string/)
  t.throws(() => new LeaderElector({ ...base, leaseName: 'Bad_Name' }), /leaseName must be an object name/)
  t.throws(() => new LeaderElector({ ...base, leaseDurationMs: 1000, renewDeadlineMs: 1000 }), /renewDeadlineMs must be below leaseDurationMs/)
  t.throws(() => new LeaderElector({ ...base, renewIntervalMs: 20_000 }), /renewIntervalMs must be below the renew deadline/)
  t.throws(() => new LeaderElector({ ...base, retryIntervalMs: -1 }), /retryIntervalMs must be a positive number/)
  t.end()
})

void t.test('two provisioners: only the leader reconciles; stop it and the other reconciles a user created after', async (t) => {
  const server = await fakeServer(t)
  const sim = await SimulatedController.start(server)
  t.teardown(() => sim.close())
  const profiles = parseProfiles('web:\n  image: podgate-backend:test\n')
  const start = (identity: string): KubernetesProvisioner => {
    const provisioner = startKubernetesProvisioner({
      config: { profilesFile: undefined },
      kubeConfig: kubeConfigFor(server),
      namespace: NS,
      logger: createLogger('silent'),
      metrics: new Metrics({ defaultMetrics: false }),
      identity,
      profiles,
      ...TIMING,
      retryBackoff: { initialMs: 10, maxMs: 200 },
      informerBackoff: { initialMs: 20, maxMs: 200 },
    })
    t.teardown(() => provisioner.close())
    return provisioner
  }
  const a = start('replica-a')
  await until(() => a.isLeader, 'a leads')
  const b = start('replica-b')
  await b.cache.synced
  t.equal(b.isLeader, false)
  t.equal(b.reconciler, undefined, 'a follower runs no reconciler')

  await b.workloads.put('mia', {})
  await until(() => server.get('apps/v1/deployments', NS, 'user-mia') !== undefined, 'mia reconciled by the leader')
  await until(() => b.cache.cached('mia')?.status.phase === 'Ready', 'the follower\'s cache sees mia Ready')

  const stopped = performance.now()
  await a.close()
  await until(() => b.isLeader && b.reconciler !== undefined, 'b leads')
  t.comment(`provisioner hand-over: ${(performance.now() - stopped).toFixed(0)} ms`)
  await b.workloads.put('noah', {})
  await until(() => server.get('apps/v1/deployments', NS, 'user-noah') !== undefined, 'noah reconciled by the new leader')
  await until(() => (server.get('podgate.dev/v1alpha1/userworkloads', NS, 'user-noah')?.status as { phase?: string } | undefined)?.phase === 'Ready', 'noah Ready')
  t.equal(lease(server).holderIdentity, 'replica-b')
  t.same(sim.errors, [])
})
