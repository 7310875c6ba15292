// Idle culling: activity recorded by the gateway, throttled into the workload status; the
// culler suspends idle workloads and the next request wakes them.
import t, { type Test } from 'tap'
import { LocalEndpointSource } from '../../src/local/endpoint-source.ts'
import { createLogger } from '../../src/log.ts'
import { LocalDriver } from '../../src/local/driver.ts'
import { ActivityRecorder, DEFAULT_TOUCH_INTERVAL_MS } from '../../src/workloads/activity.ts'
import { Culler } from '../../src/workloads/culler.ts'
import { LocalWorkloads } from '../../src/local/workloads.ts'
import { createSpawner } from '../../src/workloads/spawner.ts'
import type { Workload, WorkloadStatus, Workloads } from '../../src/workloads/workloads.ts'
import { startTestGateway } from '../support/gateway.ts'
import { ManualClock } from '../support/manual-clock.ts'
import { isAlive } from '../support/processes.ts'

const logger = createLogger('silent')

/** A recorder on a ManualClock, touching a list. */
function recorder (options: { idleTimeoutMs: number, touchIntervalMs?: number, clock?: ManualClock }): { recorder: ActivityRecorder, touches: Array<[string, string]> } {
  const touches: Array<[string, string]> = []
  const r = new ActivityRecorder({
    ...options,
    clock: options.clock ?? new ManualClock(),
    logger,
    workloads: { touch: (user, at) => { touches.push([user, at.toISOString()]) } },
  })
  return { recorder: r, touches }
}

void t.test('ActivityRecorder writes at once, then at most once per interval, with a trailing write', async (t) => {
  const clock = new ManualClock()
  const { recorder: r, touches } = recorder({ idleTimeoutMs: 60_000, clock })
  t.equal(r.intervalMs, 15_000, 'idleTimeout / 4 when that is under 30 s')
  t.same(clock.timers(), [{ delayMs: 15_000, unref: true, everyMs: 15_000 }], 'one unref\'d flush timer: recording activity keeps no process alive')
  const iso = (offset: number): string => new Date(clock.now() + offset).toISOString()
  const t0 = iso(0)
  r.record('alice')
  t.same(touches, [['alice', t0]], 'the first request is written at once')
  for (let i = 0; i < 1000; i++) {
    await clock.advance(10)
    r.record('alice')
  }
  t.equal(touches.length, 1, '1000 more requests within the interval: no write')
  t.equal(r.requests('alice'), 1001)
  const last = iso(0)
  await clock.advance(4_999)
  t.equal(touches.length, 1, 'nothing before the interval ends')
  await clock.advance(1)
  t.same(touches[1], ['alice', last], 'the flush at the end of the interval writes the latest activity of the burst')
  await clock.advance(15_000)
  t.equal(touches.length, 2, 'nothing new, nothing written')

  r.record('alice')
  t.equal(touches.length, 3, 'a request a full interval after the last write is written at once')
  r.record('bob')
  t.equal(touches.length, 4, 'users are throttled independently')

  await clock.advance(10 * 15_000)
  t.equal(r.requests('alice'), 0, 'users silent for ten intervals are forgotten')
  r.record('alice')
  t.equal(touches.length, 5, 'and written at once when they come back')
  await clock.advance(5)
  r.record('alice')
  r.close()
  t.same(clock.timers(), [], 'close stops the timer')
  t.equal(touches.length, 6, 'close writes what is pending')
  r.close()
})

void t.test('ActivityRecorder interval and validation', (t) => {
  t.equal(recorder({ idleTimeoutMs: 3_600_000 }).recorder.intervalMs, DEFAULT_TOUCH_INTERVAL_MS, '30 s when idleTimeout / 4 is longer')
  t.equal(recorder({ idleTimeoutMs: 0 }).recorder.intervalMs, DEFAULT_TOUCH_INTERVAL_MS, '30 s with culling off')
  t.equal(recorder({ idleTimeoutMs: 60_000, touchIntervalMs: 500 }).recorder.intervalMs, 500)
  t.throws(() => new ActivityRecorder({ workloads: { touch: () => {} }, logger, idleTimeoutMs: -1 }), /idleTimeoutMs/)
  t.throws(() => new ActivityRecorder({ workloads: { touch: () => {} }, logger, idleTimeoutMs: 1000, touchIntervalMs: 0 }), /touchIntervalMs/)
  const throwing = new ActivityRecorder({ workloads: { touch: () => { throw new Error('api down') } }, logger, idleTimeoutMs: 1000 })
  t.doesNotThrow(() => { throwing.record('alice') }, 'a failing write never reaches the request path')
  throwing.close()
  t.end()
})

void t.test('ActivityRecorder hot path cost', (t) => {
  let writes = 0
  const r = new ActivityRecorder({ workloads: { touch: () => { writes++ } }, logger, idleTimeoutMs: 600_000 })
  t.teardown(() => { r.close() })
  const users = Array.from({ length: 1000 }, (_, i) => `user-${i}`)
  for (const user of users) r.record(user)
  const calls = 2_000_000
  const started = process.hrtime.bigint()
  for (let i = 0; i < calls; i++) r.record(users[i % 1000] as string)
  const ns = Number(process.hrtime.bigint() - started) / calls
  t.comment(`ActivityRecorder.record: ${ns.toFixed(0)} ns per request (1000 users, ${calls} requests)`)
  t.equal(writes, 1000, 'one write per user within the interval')
  t.ok(ns < 2_000, `well under the cost of proxying a request (${ns.toFixed(0)} ns)`)
  t.end()
})

/** Workloads held in a map: the culler's decisions tested without processes. */
function memoryWorkloads (items: Array<Omit<Workload, 'status'> & { status?: Partial<WorkloadStatus> }>, failFor?: string): Workloads & { suspendedUsers: () => string[] } {
  const byUser = new Map(items.map((w) => [w.user, { ...w, status: { phase: 'Ready' as const, readyReplicas: 1, ...w.status } }]))
  return {
    put: () => Promise.reject(new Error('not used')),
    get: (user) => Promise.resolve(byUser.get(user)),
    list: () => Promise.resolve([...byUser.values()]),
    delete: () => Promise.reject(new Error('not used')),
    revoke: () => Promise.reject(new Error('not used')),
    setSuspended: (user, suspended) => {
      if (user === failFor) return Promise.reject(new Error('conflict'))
      const w = byUser.get(user)
      if (w !== undefined) byUser.set(user, { ...w, suspended })
      return Promise.resolve()
    },
    touch: () => {},
    suspendedUsers: () => [...byUser.values()].filter((w) => w.suspended).map((w) => w.user).sort(),
  }
}

void t.test('Culler suspends what is idle past the timeout, counting from activity or creation', async (t) => {
  const clock = new ManualClock()
  const at = (offsetMs: number): string => new Date(clock.now() + offsetMs).toISOString()
  const workloads = memoryWorkloads([
    { user: 'active', profile: 'default', suspended: false, createdAt: at(-3_600_000), status: { lastActivity: at(-59_000) } },
    { user: 'idle', profile: 'default', suspended: false, createdAt: at(-3_600_000), status: { lastActivity: at(-60_000) } },
    { user: 'new', profile: 'default', suspended: false, createdAt: at(-1_000) },
    { user: 'unused', profile: 'default', suspended: false, createdAt: at(-61_000) },
    { user: 'asleep', profile: 'default', suspended: true, createdAt: at(-3_600_000), status: { phase: 'Suspended' } },
    { user: 'broken', profile: 'default', suspended: false, createdAt: at(-3_600_000), status: { phase: 'Failed', message: 'ImagePullBackOff' } },
    { user: 'stuck', profile: 'default', suspended: false, createdAt: at(-3_600_000) },
    { user: 'pulling', profile: 'default', suspended: false, createdAt: at(-3_600_000), status: { phase: 'Starting', readyReplicas: 0 } },
    { user: 'pending', profile: 'default', suspended: false, createdAt: at(-3_600_000), status: { phase: 'Pending', readyReplicas: 0 } },
    { user: 'timeless', profile: 'default', suspended: false },
  ], 'stuck')
  const culler = new Culler({ workloads, logger, idleTimeoutMs: 60_000, clock })
  t.equal(culler.intervalMs, 15_000)
  t.same((await culler.sweep()).sort(), ['broken', 'idle', 'unused'], 'a failure to suspend one (stuck) does not stop the others; starts in progress are left alone')
  t.same(workloads.suspendedUsers(), ['asleep', 'broken', 'idle', 'unused'])

  await clock.advance(59_000)
  t.same((await culler.sweep()).sort(), ['active', 'new'])
  await clock.advance(1_000)
  t.same(await culler.sweep(), ['timeless'], 'without any timestamp, idle time counts from when the culler first saw it')
})

void t.test('Culler runs every interval until stopped, one sweep at a time', async (t) => {
  const clock = new ManualClock()
  let lists = 0
  let gated = false
  const gate = Promise.withResolvers<void>()
  const base = memoryWorkloads([{ user: 'alice', profile: 'default', suspended: false, createdAt: new Date(clock.now()).toISOString() }])
  const workloads: Workloads = { ...base, list: async () => { lists++; if (gated) await gate.promise; return base.list() } }
  const culler = new Culler({ workloads, logger, idleTimeoutMs: 1_000, intervalMs: 100, clock })
  culler.start()
  culler.start()
  t.same(clock.timers(), [{ delayMs: 100, unref: true, everyMs: undefined }], 'start twice schedules once, unref\'d: sweeping alone keeps no process alive')
  const [a, b] = [culler.sweep(), culler.sweep()]
  t.equal(a, b, 'a sweep in progress is shared, never overlapped')
  await a
  t.equal(lists, 1)
  await clock.advance(99)
  t.equal(lists, 1, 'no sweep before the interval')
  await clock.advance(901)
  t.equal(lists, 11, 'one sweep per interval')
  t.same(base.suspendedUsers(), ['alice'], 'suspended once idle for the timeout')
  t.equal(clock.timers().length, 1, 'the next sweep is scheduled after this one')

  gated = true
  await clock.advance(100)
  t.equal(lists, 12, 'a sweep started by the timer is in progress')
  t.equal(clock.timers().length, 0, 'the next one is scheduled only once it ends')
  const stopping = culler.stop()
  gate.resolve()
  await stopping
  t.equal(culler.running, false)
  t.equal(clock.timers().length, 0, 'a sweep that ends after stop schedules nothing more')
  await clock.advance(1_000)
  t.equal(lists, 12, 'and no sweep runs after stop')
  t.throws(() => new Culler({ workloads, logger, idleTimeoutMs: 0 }), /idleTimeoutMs: expected a positive number/)
})

interface Culled {
  url: string
  workloads: LocalWorkloads
  driver: LocalDriver
  token (user: string): Promise<string>
}

/** Real backend processes behind a real gateway; activity, culling and waiting on `clock`. */
async function startCulled (t: Test, options: { idleTimeoutMs: number, cullIntervalMs: number, clock: ManualClock }): Promise<Culled> {
  const { clock } = options
  const source = new LocalEndpointSource()
  const driver = new LocalDriver({ source, logger })
  t.teardown(() => driver.close())
  const workloads = new LocalWorkloads({ driver, source, logger, clock })
  t.teardown(() => { workloads.close() })
  const activity = new ActivityRecorder({ workloads, logger, idleTimeoutMs: options.idleTimeoutMs, clock })
  t.teardown(() => { activity.close() })
  const culler = new Culler({ workloads, logger, idleTimeoutMs: options.idleTimeoutMs, intervalMs: options.cullIntervalMs, clock })
  t.teardown(() => culler.stop())
  const spawner = createSpawner({ workloads, source, spawnOnDemand: false, startTimeoutMs: 15_000, logger, clock })
  const gw = await startTestGateway(t, {}, { source, onMissing: spawner.onMissing, onActivity: activity.record })
  culler.start()
  return { url: gw.url, workloads, driver, token: (user) => gw.token(user) }
}


void t.test('end to end: requests keep a workload up; idle past the timeout it is suspended; the next request wakes it', async (t) => {
  const idleTimeoutMs = 800
  const clock = new ManualClock()
  const c = await startCulled(t, { idleTimeoutMs, cullIntervalMs: 50, clock })
  const token = await c.token('alice')
  const get = async (): Promise<number> => {
    const res = await fetch(`${c.url}/`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(20_000) })
    await res.body?.cancel()
    return res.status
  }
  await c.workloads.put('alice', {})
  t.equal(await get(), 200)
  const firstPid = c.driver.status('alice')?.pid

  // Busy for twice the idle timeout, a request every 100 ms of the clock, sweeps every 50: never culled.
  let requests = 0
  let lastRequest = clock.now()
  while (requests < 2 * idleTimeoutMs / 100) {
    t.equal(await get(), 200)
    requests++
    lastRequest = clock.now()
    await clock.advance(100)
  }
  t.equal((await c.workloads.get('alice'))?.suspended, false, `${requests} requests over ${2 * idleTimeoutMs} ms kept it up`)
  t.equal(c.driver.status('alice')?.pid, firstPid, 'the same process throughout')

  while ((await c.workloads.get('alice'))?.suspended !== true && clock.now() - lastRequest < 10_000) await clock.advance(50)
  const idleFor = clock.now() - lastRequest
  t.equal((await c.workloads.get('alice'))?.status.phase, 'Suspended', `suspended ${idleFor} ms after the last request`)
  t.ok(idleFor >= idleTimeoutMs - 200, 'not before the idle timeout (less the activity write interval)')
  const stopDeadline = Date.now() + 10_000
  while (c.driver.status('alice') !== undefined && Date.now() < stopDeadline) await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(isAlive(firstPid), false, 'its process was stopped')
  t.equal(c.driver.status('alice'), undefined, 'and the driver no longer runs it')

  t.equal(await get(), 200, 'the next request wakes it and gets through')
  const woken = await c.workloads.get('alice')
  t.match(woken, { suspended: false, status: { phase: 'Ready' } })
  t.ok(isAlive(c.driver.status('alice')?.pid))
  t.not(c.driver.status('alice')?.pid, firstPid, 'a new process')
})
