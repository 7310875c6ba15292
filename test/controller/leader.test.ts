// Leader election over a coordination.k8s.io Lease on the fake API server: one leader at a
// time, hand-over on release, take-over after a crash, stepping down when renewals fail — each
// replica on a ManualClock the test moves, so "nothing happened for a second" costs no second;
// and two whole provisioners, in real time, where only the leader reconciles.
import type { KubeConfig } from '@kubernetes/client-node'
import t from 'tap'
import { createLogger } from '../../src/log.ts'
import { Metrics } from '../../src/metrics.ts'
import { startKubernetesProvisioner, type KubernetesProvisioner } from '../../src/controller/provisioner.ts'
import { LeaderElector, type LeaderElectorOptions } from '../../src/controller/leader.ts'
import { parseProfiles } from '../../src/controller/profiles.ts'
import { FakeKubeServer } from '../support/fake-kube.ts'
import { kubeConfigFor } from '../support/kubeconfig.ts'
import { ManualClock } from '../support/manual-clock.ts'
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

/**
 * The replicas' clocks, moved together. A Lease request is real I/O, so after each due timer the
 * test waits (in real time) until every replica has scheduled its next attempt. A replica that
 * is closed, or crashed, leaves the group: its time no longer matters.
 */
class Replicas {
  readonly #clocks = new Set<ManualClock>()
  #now: number

  constructor (start = Date.parse('2030-01-01T00:00:00Z')) {
    this.#now = start
  }

  get now (): number { return this.#now }

  /** A new replica's clock; start the replica before time moves again. */
  clock (): ManualClock {
    const clock = new ManualClock(this.#now)
    this.#clocks.add(clock)
    return clock
  }

  leave (clock: ManualClock): void {
    this.#clocks.delete(clock)
  }

  /** Moves time by `ms`, through every due timer. */
  async run (ms: number): Promise<void> {
    const end = this.#now + ms
    while (this.#nextDue() <= end) await this.#step(this.#nextDue())
    await this.#step(end)
  }

  /** Moves time until `condition` holds; resolves with how long that took, in clock time. */
  async runUntil (condition: () => boolean, what: string, maxMs = 10_000): Promise<number> {
    const started = this.#now
    while (!condition()) {
      if (this.#now - started > maxMs) throw new Error(`no ${what} within ${maxMs} ms of clock time`)
      const due = this.#nextDue()
      if (!Number.isFinite(due)) throw new Error(`waiting for ${what}, but no replica has a timer`)
      await this.#step(due)
    }
    return this.#now - started
  }

  #nextDue (): number {
    return Math.min(...[...this.#clocks].map((clock) => this.#now + (clock.timers()[0]?.delayMs ?? Infinity)))
  }

  async #step (to: number): Promise<void> {
    this.#now = to
    for (const clock of this.#clocks) await clock.advanceTo(to)
    // Polled every millisecond: a step is a local HTTP round trip or two.
    const deadline = Date.now() + 5_000
    while (![...this.#clocks].every((clock) => clock.timers().length > 0)) {
      if (Date.now() > deadline) throw new Error(`a replica scheduled no next attempt within 5 s (clock ${this.#now}: ${[...this.#clocks].map((clock) => clock.timers().length).join(', ')} timers)`)
      await new Promise((resolve) => setTimeout(resolve, 1))
    }
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
  const replicas = new Replicas()
  const { elector: a, transitions, metrics } = elector(t, kubeConfigFor(server), 'replica-a', { clock: replicas.clock() })
  t.equal(a.isLeader, false)
  t.equal(await gauge(metrics), 0)
  a.start()
  await replicas.runUntil(() => a.isLeader, 'leadership')
  t.equal(await gauge(metrics), 1, 'podgate_leader is 1')
  const first = lease(server)
  t.equal(first.holderIdentity, 'replica-a')
  t.equal(first.leaseDurationSeconds, 1)
  t.equal(first.leaseTransitions, 0)
  t.match(first.renewTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'renewTime is a MicroTime (six fractional digits), as the API server requires')
  t.match(first.acquireTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/)
  const renewedAfter = await replicas.runUntil(() => lease(server).renewTime !== first.renewTime, 'a renewal')
  t.equal(renewedAfter, TIMING.renewIntervalMs, 'renewed every renewIntervalMs')
  t.equal(lease(server).acquireTime, first.acquireTime, 'renewing keeps acquireTime')
  await a.close()
  t.equal(a.isLeader, false)
  t.equal(await gauge(metrics), 0)
  t.equal(lease(server).holderIdentity ?? '', '', 'released: no holder')
  t.same(transitions, [true, false])
})

void t.test('of two replicas exactly one leads; when it closes the other takes over at once', async (t) => {
  const server = await fakeServer(t)
  const replicas = new Replicas()
  for (let round = 0; round < 5; round++) {
    server.delete(LEASES, NS, 'podgate-provisioner')
    const clocks = new Map<LeaderElector, ManualClock>()
    for (const name of ['a', 'b']) {
      const clock = replicas.clock()
      clocks.set(elector(t, kubeConfigFor(server), `${name}-${round}`, { clock }).elector, clock)
    }
    const [a, b] = [...clocks.keys()] as [LeaderElector, LeaderElector]
    a.start()
    b.start()
    await replicas.runUntil(() => a.isLeader || b.isLeader, 'a leader')
    await replicas.run(150)
    t.ok(a.isLeader !== b.isLeader, `round ${round}: exactly one leader`)
    const [leader, follower] = a.isLeader ? [a, b] : [b, a]
    t.equal(lease(server).holderIdentity, leader.identity)
    await leader.close()
    replicas.leave(clocks.get(leader) as ManualClock)
    const handoverMs = await replicas.runUntil(() => follower.isLeader, 'the follower takes over')
    t.ok(handoverMs <= TIMING.retryIntervalMs, `round ${round}: taken over at the follower's next attempt, long before the lease would have expired`)
    if (round === 0) t.comment(`hand-over after a clean close: ${handoverMs} ms (lease ${TIMING.leaseDurationMs} ms, retry ${TIMING.retryIntervalMs} ms)`)
    t.equal(lease(server).holderIdentity, follower.identity)
    t.equal(lease(server).leaseTransitions, 1)
    await follower.close()
    replicas.leave(clocks.get(follower) as ManualClock)
  }
})

void t.test('a leader that stops renewing (a crash) is replaced once its lease expires', async (t) => {
  const server = await fakeServer(t)
  const replicas = new Replicas()
  const clockA = replicas.clock()
  const a = elector(t, kubeConfigFor(server), 'replica-a', { clock: clockA }).elector
  a.start()
  await replicas.runUntil(() => a.isLeader, 'a leads')
  const b = elector(t, kubeConfigFor(server), 'replica-b', { clock: replicas.clock() }).elector
  b.start()
  await replicas.run(3 * TIMING.leaseDurationMs)
  t.equal(b.isLeader, false, 'b waits while a renews, however long')
  // A crash: a's time stops, so it never renews again (nor releases the Lease).
  replicas.leave(clockA)
  const takeoverMs = await replicas.runUntil(() => b.isLeader, 'b takes over', 5_000)
  t.comment(`take-over after the leader stopped renewing: ${takeoverMs} ms (lease ${TIMING.leaseDurationMs} ms)`)
  t.ok(takeoverMs >= TIMING.leaseDurationMs - TIMING.renewIntervalMs, 'not before the lease could have expired')
  t.ok(takeoverMs <= TIMING.leaseDurationMs + 2 * TIMING.retryIntervalMs, 'at b\'s first attempts after the lease expired')
  t.equal(lease(server).holderIdentity, 'replica-b')
})

void t.test('a leader whose renewals fail steps down before the lease expires, and campaigns again', async (t) => {
  const server = await fakeServer(t)
  const replicas = new Replicas()
  let stepDownAt = 0
  // A longer lease than the deadline leaves room to show the step-down comes before expiry.
  const leaseDurationMs = 2_000
  const { elector: a, transitions } = elector(t, kubeConfigFor(server), 'replica-a', { leaseDurationMs, clock: replicas.clock() })
  let listenerDone = false
  a.onChange(async (leading) => {
    if (leading) return
    stepDownAt = replicas.now
    // The elector waits for this before campaigning again: no reconcile outlives leadership.
    await new Promise((resolve) => setTimeout(resolve, 100))
    listenerDone = true
  })
  a.start()
  await replicas.runUntil(() => a.isLeader, 'a leads')
  const lift = server.refuse(({ path }) => path.startsWith('/apis/coordination.k8s.io/'), { status: 503 })
  const refusedAt = replicas.now
  await replicas.runUntil(() => !a.isLeader, 'a steps down', 3_000)
  const afterMs = stepDownAt - refusedAt
  t.ok(afterMs < leaseDurationMs, `stepped down ${afterMs} ms after renewals began failing, before the ${leaseDurationMs} ms lease ran out`)
  t.ok(afterMs >= TIMING.renewDeadlineMs - TIMING.renewIntervalMs, 'not at the first failed renewal')
  lift()
  await replicas.runUntil(() => a.isLeader, 'a leads again')
  t.ok(listenerDone, 'after the step-down listener finished')
  t.same(transitions, [true, false, true])
})

void t.test('a Lease someone else holds and renews is respected', async (t) => {
  const server = await fakeServer(t)
  const replicas = new Replicas()
  // The other holder: a replica of its own that only renews, every 100 ms.
  const holder = replicas.clock()
  let lastRenewal = 0
  const renew = (): void => {
    lastRenewal = holder.now()
    server.put({
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: 'podgate-provisioner', namespace: NS },
      spec: { holderIdentity: 'elsewhere', leaseDurationSeconds: 1, renewTime: new Date(lastRenewal).toISOString().replace('Z', '000Z') },
    })
  }
  renew()
  holder.setInterval(renew, 100)
  const a = elector(t, kubeConfigFor(server), 'replica-a', { clock: replicas.clock() }).elector
  a.start()
  await replicas.run(3 * TIMING.leaseDurationMs)
  t.equal(a.isLeader, false, 'never leads while the holder renews')
  replicas.leave(holder)
  await replicas.runUntil(() => a.isLeader, 'a takes over once renewals stop', 3_000)
  t.ok(replicas.now - lastRenewal >= TIMING.leaseDurationMs, 'once the lease ran out after the last renewal')
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
