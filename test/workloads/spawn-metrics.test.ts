// The spawn metrics: every spawn is counted when its create or wake call is made and ends
// exactly once, ready (time to ready observed from the call, across a browser's reloads, even
// with nobody waiting at that moment) or with a failure reason; starting pages and start
// timeouts are counted per answer. Time moves only on a ManualClock; the last test goes
// through a real gateway and its /metrics.
import t, { type Test } from 'tap'
import { request } from 'undici'
import { endpoint } from '../../src/discovery/source.ts'
import { BadRequestError } from '../../src/errors.ts'
import { LocalEndpointSource } from '../../src/local/endpoint-source.ts'
import { createLogger } from '../../src/log.ts'
import { Metrics, SPAWN_FAILURES } from '../../src/metrics.ts'
import { createSpawner, type Spawner, type SpawnerOptions } from '../../src/workloads/spawner.ts'
import type { Workload, WorkloadListener, WorkloadPhase, Workloads } from '../../src/workloads/workloads.ts'
import { startTestGateway } from '../support/gateway.ts'
import { ManualClock, settle } from '../support/manual-clock.ts'
import { parseExposition, valueOf, type Exposition } from '../support/metrics.ts'

/** Workloads in memory, with change events; `refuse` makes the next put fail with that error. */
class MemoryWorkloads implements Workloads {
  readonly #workloads = new Map<string, Workload>()
  readonly #listeners = new Set<WorkloadListener>()
  refuse: Error | undefined

  put (user: string): Promise<{ workload: Workload, created: boolean }> {
    const refused = this.refuse
    if (refused !== undefined) {
      this.refuse = undefined
      return Promise.reject(refused)
    }
    const workload: Workload = this.#workloads.get(user) ?? { user, profile: 'default', suspended: false, status: { phase: 'Pending', readyReplicas: 0 } }
    this.#set(workload)
    return Promise.resolve({ workload, created: true })
  }

  get (user: string): Promise<Workload | undefined> { return Promise.resolve(this.#workloads.get(user)) }
  cached (user: string): Workload | undefined { return this.#workloads.get(user) }
  list (): Promise<Workload[]> { return Promise.resolve([...this.#workloads.values()]) }
  delete (user: string): Promise<boolean> {
    const had = this.#workloads.delete(user)
    this.#emit(user, undefined)
    return Promise.resolve(had)
  }

  revoke (): Promise<Workload> { return Promise.reject(new Error('not used')) }
  touch (): void {}
  setSuspended (user: string, suspended: boolean): Promise<void> {
    const workload = this.#workloads.get(user)
    if (workload !== undefined) this.#set({ ...workload, suspended, status: { phase: suspended ? 'Suspended' : 'Pending', readyReplicas: 0 } })
    return Promise.resolve()
  }

  onChange (listener: WorkloadListener): () => void {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }

  get listeners (): number { return this.#listeners.size }

  /** Adds or changes a workload as the provisioner would. */
  seed (user: string, phase: WorkloadPhase, suspended = false): void {
    this.#set({ user, profile: 'default', suspended, status: { phase, readyReplicas: 0, ...(phase === 'Failed' ? { message: 'ImagePullBackOff: nope' } : {}) } })
  }

  #set (workload: Workload): void {
    this.#workloads.set(workload.user, workload)
    this.#emit(workload.user, workload)
  }

  #emit (user: string, workload: Workload | undefined): void {
    for (const listener of this.#listeners) listener({ user, workload })
  }
}

interface Setup {
  readonly clock: ManualClock
  readonly source: LocalEndpointSource
  readonly workloads: MemoryWorkloads
  readonly metrics: Metrics
  readonly spawner: Spawner
  scrape (): Promise<Exposition>
}

const START_TIMEOUT_MS = 30_000
const GRACE_MS = 2_000
const API = 'application/json'
const BROWSER = 'text/html,application/xhtml+xml;q=0.9,*/*;q=0.8'

async function setup (options: Partial<SpawnerOptions> = {}): Promise<Setup> {
  const clock = new ManualClock()
  const source = new LocalEndpointSource()
  await source.start()
  const workloads = new MemoryWorkloads()
  const metrics = new Metrics({ defaultMetrics: false })
  const spawner = createSpawner({
    workloads, source, metrics, clock, spawnOnDemand: true, startTimeoutMs: START_TIMEOUT_MS, browserGraceMs: GRACE_MS, logger: createLogger('silent'), ...options,
  })
  return { clock, source, workloads, metrics, spawner, scrape: async () => parseExposition(await metrics.registry.metrics()) }
}

/** A request's outcome, without an unhandled rejection while the test moves time. */
function ask (s: Setup, user: string, accept: string): Promise<{ ok: boolean, error?: Error }> {
  return s.spawner.onMissing(user, accept).then(() => ({ ok: true }), (error: Error) => ({ ok: false, error }))
}

/** Started spawns all ended: each ready (in the histogram) or failed (by reason), none in progress. */
function balanced (t: Test, m: Exposition): void {
  const started = valueOf(m, 'podgate_spawns_total')
  const ended = valueOf(m, 'podgate_spawn_duration_seconds_count') + valueOf(m, 'podgate_spawn_failures_total')
  t.equal(ended, started, `every spawn ended once (${started} started)`)
}

void t.test('an API client waits: one create, time to ready from the call to the ready endpoint', async (t) => {
  const s = await setup()
  const waiting = ask(s, 'alice', API)
  await s.clock.advance(4_000)
  s.source.set('alice', [endpoint('10.0.0.1', 8080)])
  t.same(await waiting, { ok: true })
  const m = await s.scrape()
  t.equal(valueOf(m, 'podgate_spawns_total', { action: 'create' }), 1)
  t.equal(valueOf(m, 'podgate_spawns_total', { action: 'wake' }), 0)
  t.equal(valueOf(m, 'podgate_spawn_duration_seconds_count'), 1)
  t.equal(valueOf(m, 'podgate_spawn_duration_seconds_sum'), 4)
  t.equal(valueOf(m, 'podgate_spawn_duration_seconds_bucket', { le: '2' }), 0)
  t.equal(valueOf(m, 'podgate_spawn_duration_seconds_bucket', { le: '5' }), 1)
  t.equal(valueOf(m, 'podgate_starting_pages_total'), 0)
  t.equal(valueOf(m, 'podgate_start_timeouts_total'), 0)
  balanced(t, m)
  t.equal(s.workloads.listeners, 0, 'nothing left subscribed')
})

void t.test('a browser gets the starting page and leaves; readiness between its reloads still ends the spawn', async (t) => {
  const s = await setup()
  const first = await Promise.all([ask(s, 'bob', BROWSER), s.clock.advance(GRACE_MS)]).then(([answer]) => answer)
  t.equal(first.error?.message, 'the workspace is starting')
  t.equal(s.spawner.waiting, 0, 'no request waits any more')
  // Ready while nobody waits: the reload that follows goes straight to the pod, never to the spawner.
  await s.clock.advance(7_000)
  s.source.set('bob', [endpoint('10.0.0.2', 8080)])
  const m = await s.scrape()
  t.equal(valueOf(m, 'podgate_starting_pages_total'), 1)
  t.equal(valueOf(m, 'podgate_spawn_duration_seconds_count'), 1, 'observed with nobody waiting')
  t.equal(valueOf(m, 'podgate_spawn_duration_seconds_sum'), 9, 'from the create, not from the last reload')
  balanced(t, m)
  t.equal(s.workloads.listeners, 0, 'the spawn\'s own subscription ended with it')
  await s.clock.advance(START_TIMEOUT_MS)
  t.equal(valueOf(await s.scrape(), 'podgate_spawn_failures_total', { reason: 'timeout' }), 0, 'and its timeout was cancelled')
})

void t.test('a browser that reloads joins the spawn in progress: one create, one time to ready', async (t) => {
  const s = await setup()
  await Promise.all([ask(s, 'bea', BROWSER), s.clock.advance(GRACE_MS)])
  await s.clock.advance(3_000)
  const reload = ask(s, 'bea', BROWSER)
  await s.clock.advance(1_000)
  s.source.set('bea', [endpoint('10.0.0.3', 8080)])
  t.same(await reload, { ok: true }, 'the reload got the workspace')
  const m = await s.scrape()
  t.equal(valueOf(m, 'podgate_spawns_total'), 1, 'the reload did not create again')
  t.equal(valueOf(m, 'podgate_spawn_duration_seconds_sum'), 6)
  balanced(t, m)
})

void t.test('failures end a spawn with their reason, whether or not a request waits', async (t) => {
  const s = await setup()
  // Failed while an API client waits.
  const waiting = ask(s, 'carl', API)
  await s.clock.advance(1_000)
  s.workloads.seed('carl', 'Failed')
  t.equal((await waiting).error?.name, 'WorkloadFailedError')
  // Failed after the browser left with the starting page.
  await Promise.all([ask(s, 'dora', BROWSER), s.clock.advance(GRACE_MS)])
  s.workloads.seed('dora', 'Failed')
  // Deleted while starting, nobody waiting.
  await Promise.all([ask(s, 'emil', BROWSER), s.clock.advance(GRACE_MS)])
  await s.workloads.delete('emil')
  // Never ready within the start timeout.
  await Promise.all([ask(s, 'fred', BROWSER), s.clock.advance(GRACE_MS)])
  await s.clock.advance(START_TIMEOUT_MS)
  s.source.set('fred', [endpoint('10.0.0.4', 8080)])
  // Calls that never started a spawn.
  s.workloads.refuse = new BadRequestError('user id too long for a workload name')
  t.equal((await ask(s, 'gwen', API)).error?.name, 'WorkloadNotFoundError')
  s.workloads.refuse = new Error('connect ECONNREFUSED 127.0.0.1:6443')
  t.equal((await ask(s, 'hugo', API)).error?.name, 'NotReadyError')

  const m = await s.scrape()
  t.same(Object.fromEntries(SPAWN_FAILURES.map((reason) => [reason, valueOf(m, 'podgate_spawn_failures_total', { reason })])),
    { api: 1, invalid_user: 1, failed: 2, deleted: 1, timeout: 1 })
  t.equal(valueOf(m, 'podgate_spawns_total', { action: 'create' }), 6)
  t.equal(valueOf(m, 'podgate_spawn_duration_seconds_count'), 0, 'fred was ready only after his spawn timed out')
  t.equal(valueOf(m, 'podgate_starting_pages_total'), 3)
  balanced(t, m)
  t.equal(s.workloads.listeners, 0)
})

void t.test('a workload that was already failed is not a spawn; a suspended one is woken and counted', async (t) => {
  const s = await setup()
  s.workloads.seed('ida', 'Failed')
  t.equal((await ask(s, 'ida', API)).error?.name, 'WorkloadFailedError')
  s.workloads.seed('jon', 'Suspended', true)
  const waking = ask(s, 'jon', API)
  await s.clock.advance(12_000)
  s.source.set('jon', [endpoint('10.0.0.5', 8080)])
  t.same(await waking, { ok: true })
  const m = await s.scrape()
  t.equal(valueOf(m, 'podgate_spawns_total', { action: 'wake' }), 1)
  t.equal(valueOf(m, 'podgate_spawns_total', { action: 'create' }), 0)
  t.equal(valueOf(m, 'podgate_spawn_failures_total'), 0, 'the failed workload was answered, not spawned')
  t.equal(valueOf(m, 'podgate_spawn_duration_seconds_bucket', { le: '10' }), 0)
  t.equal(valueOf(m, 'podgate_spawn_duration_seconds_bucket', { le: '20' }), 1)
  balanced(t, m)
})

void t.test('an API client that waits out the start timeout is counted once, and so is its spawn', async (t) => {
  const s = await setup()
  const waiting = ask(s, 'kim', API)
  await s.clock.advance(START_TIMEOUT_MS)
  t.match((await waiting).error?.message, /not ready after 30 s/)
  const m = await s.scrape()
  t.equal(valueOf(m, 'podgate_start_timeouts_total'), 1)
  t.equal(valueOf(m, 'podgate_spawn_failures_total', { reason: 'timeout' }), 1)
  t.equal(valueOf(m, 'podgate_starting_pages_total'), 0)
  balanced(t, m)
  await settle()
  t.equal(s.workloads.listeners, 0)
})

void t.test('through a real gateway: /metrics counts the starting page and the start timeout', async (t) => {
  const source = new LocalEndpointSource()
  const workloads = new MemoryWorkloads()
  const metrics = new Metrics({ defaultMetrics: false })
  // Real timers, short: the grace and the start timeout pass while the requests wait.
  const spawner = createSpawner({ workloads, source, metrics, spawnOnDemand: true, startTimeoutMs: 300, browserGraceMs: 50, logger: createLogger('silent') })
  const gw = await startTestGateway(t, {}, { source, metrics, onMissing: spawner.onMissing })
  const get = async (user: string, accept: string): Promise<number> => {
    const res = await request(`${gw.url}/`, { headers: { authorization: `Bearer ${await gw.token(user)}`, accept, 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' } })
    await res.body.dump()
    return res.statusCode
  }
  t.equal(await get('lea', BROWSER), 503, 'the starting page')
  t.equal(await get('max', API), 503, 'the start timeout')
  const m = parseExposition(await (await request(`${gw.adminUrl}/metrics`)).body.text())
  t.equal(valueOf(m, 'podgate_starting_pages_total'), 1)
  t.equal(valueOf(m, 'podgate_start_timeouts_total'), 1)
  t.equal(valueOf(m, 'podgate_spawns_total', { action: 'create' }), 2)
  t.equal(valueOf(m, 'podgate_requests_total', { class: '5xx', source: 'podgate' }), 2, 'both answered by podgate')
})
