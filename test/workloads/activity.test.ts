// The one activity pipeline: the gateway reports a user only once their workload was found,
// and the ActivityRecorder is its one throttle (per user per interval, a bounded tracked set).
import { Writable } from 'node:stream'
import t from 'tap'
import { endpoint } from '../../src/discovery/source.ts'
import { createBackend } from '../../src/local/backend.ts'
import { LocalEndpointSource } from '../../src/local/endpoint-source.ts'
import { createLogger } from '../../src/log.ts'
import { ActivityRecorder } from '../../src/workloads/activity.ts'
import { createSpawner } from '../../src/workloads/spawner.ts'
import type { Workload, Workloads } from '../../src/workloads/workloads.ts'
import { startTestGateway, type TestGateway } from '../support/gateway.ts'
import { ManualClock } from '../support/manual-clock.ts'

const START = Date.parse('2030-01-01T00:00:00Z')

interface Recorded {
  readonly recorder: ActivityRecorder
  /** Every touch, as [user, ms after START]. */
  readonly touches: Array<[string, number]>
  readonly clock: ManualClock
  /** Milliseconds since START. */
  readonly now: () => number
  /** Moves the clock to the end of the current interval, where the recorder flushes. */
  readonly tick: () => Promise<void>
  readonly warnings: string[]
}

/** A recorder on a ManualClock, touching a list. */
function recorded (options: { touchIntervalMs: number, maxTrackedUsers?: number }): Recorded {
  const clock = new ManualClock(START)
  const touches: Array<[string, number]> = []
  const warnings: string[] = []
  const lines = new Writable({
    write (chunk: Buffer, _encoding, done) {
      const line = JSON.parse(String(chunk)) as { level: number, msg: string }
      if (line.level === 40) warnings.push(line.msg)
      done()
    },
  })
  const recorder = new ActivityRecorder({
    ...options,
    idleTimeoutMs: 0,
    logger: createLogger('warn', lines),
    workloads: { touch: (user, at) => { touches.push([user, at.getTime() - START]) } },
    clock,
  })
  const tick = (): Promise<void> => clock.advance(clock.timers()[0]?.delayMs ?? 0)
  return { recorder, touches, clock, now: () => clock.now() - START, tick, warnings }
}

void t.test('one throttle: N reports of a user within an interval are one touch; two users, two', async (t) => {
  const r = recorded({ touchIntervalMs: 10_000 })
  r.recorder.record('alice')
  for (let i = 0; i < 99; i++) {
    await r.clock.advance(50)
    r.recorder.record('alice')
  }
  t.same(r.touches, [['alice', 0]], '100 reports of alice within one interval: one touch, at once')
  t.equal(r.recorder.requests('alice'), 100)
  r.recorder.record('bob')
  for (let i = 0; i < 99; i++) {
    await r.clock.advance(10)
    r.recorder.record('bob')
  }
  t.same(r.touches, [['alice', 0], ['bob', 4_950]], 'two users: two touches')

  await r.tick()
  t.equal(r.now(), 10_000)
  t.same(r.touches.slice(2), [['alice', 4_950], ['bob', 5_940]], 'the interval ends: one trailing touch each, with the latest report')
  await r.tick()
  t.equal(r.touches.length, 4, 'nothing reported since: nothing touched')

  r.recorder.record('alice')
  t.same(r.touches.at(-1), ['alice', 20_000], 'a report a full interval after the last touch is touched at once')
})

void t.test('bounded memory: at most maxTrackedUsers are tracked; past the cap pending activity is written early and tracking starts over', async (t) => {
  const r = recorded({ touchIntervalMs: 10_000, maxTrackedUsers: 3 })
  for (const user of ['a', 'b', 'c']) r.recorder.record(user)
  t.equal(r.recorder.tracked, 3)
  await r.clock.advance(1_000)
  r.recorder.record('a')
  r.recorder.record('b')
  t.equal(r.touches.length, 3, 'a and b are within their interval: pending')

  r.recorder.record('d')
  t.same(r.touches.slice(3), [['a', 1_000], ['b', 1_000], ['d', 1_000]], 'the cap: a and b written now, ahead of the flush, then d at once')
  t.equal(r.recorder.tracked, 1, 'everyone else forgotten')
  t.equal(r.recorder.requests('a'), 0)
  t.same(r.warnings, ['too many active users to track; writing pending activity early and starting over'], 'said once')
  r.recorder.record('a')
  t.same(r.touches.at(-1), ['a', 1_000], 'a forgotten user is touched at once, like a new one')

  // Many more users than the cap, each reporting twice in a row: memory stays bounded, and
  // the second report, pending when the cap is hit, is written then: nothing is lost.
  const last = new Map<string, number>()
  let most = 0
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < 1_000; i++) {
      const user = `u${round}-${i}`
      r.recorder.record(user)
      await r.clock.advance(1)
      r.recorder.record(user)
      last.set(user, r.now())
      most = Math.max(most, r.recorder.tracked)
    }
    await r.tick()
  }
  r.recorder.close()
  t.equal(most, 3, 'never more than the cap tracked')
  const touched = new Map<string, number>()
  for (const [user, at] of r.touches) touched.set(user, Math.max(at, touched.get(user) ?? 0))
  t.ok([...last].every(([user, at]) => touched.get(user) === at), 'every user\'s latest report was touched')
  t.equal(r.warnings.length, 2, 'one warning per interval in which the cap was reached')
})

void t.test('the cap is validated; reports after close are ignored', (t) => {
  const logger = createLogger('silent')
  const workloads = { touch: () => {} }
  for (const bad of [0, -1, 1.5, Number.NaN]) {
    t.throws(() => new ActivityRecorder({ workloads, logger, idleTimeoutMs: 0, maxTrackedUsers: bad }), /^maxTrackedUsers: expected a whole number ≥ 1/)
  }
  t.equal(new ActivityRecorder({ workloads, logger, idleTimeoutMs: 0, clock: new ManualClock() }).maxTrackedUsers, 100_000, 'default')
  const r = recorded({ touchIntervalMs: 10_000 })
  r.recorder.close()
  r.recorder.record('alice')
  t.same(r.touches, [], 'closed: no touch')
  t.equal(r.recorder.tracked, 0)
  t.end()
})

void t.test('a request that finds no workload is no activity; one that reaches its workload is', async (t) => {
  const logger = createLogger('silent')
  const starting: Workload = { user: 'starting', profile: 'default', suspended: false, status: { phase: 'Starting', readyReplicas: 0 } }
  const alice: Workload = { user: 'alice', profile: 'default', suspended: false, status: { phase: 'Ready', readyReplicas: 1 } }
  const byUser = new Map([['starting', starting], ['alice', alice]])
  const touched: string[] = []
  const workloads: Workloads = {
    put: () => Promise.reject(new Error('not used: spawn is off')),
    get: (user) => Promise.resolve(byUser.get(user)),
    list: () => Promise.resolve([...byUser.values()]),
    delete: () => Promise.reject(new Error('not used')),
    setSuspended: () => Promise.reject(new Error('not used')),
    revoke: () => Promise.reject(new Error('not used')),
    touch: (user) => { touched.push(user) },
  }
  const recorder = new ActivityRecorder({ workloads, logger, idleTimeoutMs: 0 })
  t.teardown(() => { recorder.close() })
  const source = new LocalEndpointSource()
  const spawner = createSpawner({ workloads, source, spawnOnDemand: false, startTimeoutMs: 200, logger })
  const gw = await startTestGateway(t, {}, { source, onMissing: spawner.onMissing, onActivity: recorder.record })
  // Without a provisioner: a user the source lists with no ready endpoint is 503.
  const plain = await startTestGateway(t, {}, { onActivity: recorder.record })
  plain.local.set('waiting', [])

  const get = async (gateway: TestGateway, user: string): Promise<number> => {
    const res = await fetch(gateway.url, { headers: { authorization: `Bearer ${await gateway.token(user)}` } })
    await res.body?.cancel()
    return res.status
  }
  t.equal(await get(gw, 'nobody'), 404, 'no workload, spawn off: 404')
  t.equal(await get(gw, 'starting'), 503, 'a workload whose pod is not ready: 503 after the start timeout')
  t.equal(await get(plain, 'waiting'), 503, 'without a provisioner, a known user with no ready endpoint: 503')
  t.same(touched, [], 'none of them is activity')
  t.equal(recorder.requests('nobody') + recorder.requests('starting') + recorder.requests('waiting'), 0, 'nor tracked')

  const backend = await createBackend({ user: 'alice' })
  t.teardown(() => backend.close())
  source.set('alice', [endpoint('127.0.0.1', backend.address.port)])
  t.equal(await get(gw, 'alice'), 200)
  t.same(touched, ['alice'], 'a request that reached its workload is')
})
