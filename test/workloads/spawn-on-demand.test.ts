// Spawn on demand through the real gateway: LocalWorkloads starting real backend processes,
// the spawner waiting on endpoint events, browsers getting the starting page.
import t, { type Test } from 'tap'
import type { ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { request } from 'undici'
import { LocalEndpointSource } from '../../src/local/endpoint-source.ts'
import type { EndpointListener, EndpointSource } from '../../src/discovery/source.ts'
import { createLogger } from '../../src/log.ts'
import { LocalDriver } from '../../src/local/driver.ts'
import { LocalWorkloads } from '../../src/local/workloads.ts'
import { createSpawner, type Spawner, type SpawnerOptions } from '../../src/workloads/spawner.ts'
import { errorPage, escapeHtml, startingPage } from '../../src/gateway/pages.ts'
import { WorkloadFailedError } from '../../src/errors.ts'
import type { Workload, Workloads } from '../../src/workloads/workloads.ts'
import { startTestGateway, type TestGateway } from '../support/gateway.ts'
import { ManualClock } from '../support/manual-clock.ts'
import { recordingSpawn } from '../support/processes.ts'

const BACKEND_URL = new URL('../../src/local/backend.ts', import.meta.url).href
const SCRIPTS = {
  // The real backend, listening only after SLOW_START_MS: a pod whose image takes a while.
  'slow.mjs': [
    `import { createBackend } from ${JSON.stringify(BACKEND_URL)}`,
    "const user = process.argv[process.argv.indexOf('--user') + 1]",
    "process.on('SIGTERM', () => process.exit(0))",
    "process.stdin.on('end', () => process.exit(0)); process.stdin.resume()",
    'setTimeout(async () => {',
    '  const backend = await createBackend({ user })',
    "  process.stdout.write(JSON.stringify({ listening: { address: backend.address.address, port: backend.address.port } }) + '\\n')",
    '}, Number(process.env.SLOW_START_MS))',
  ].join('\n'),
  // A pod that can never start; its reason carries markup that must reach browsers escaped.
  'fails.mjs': "process.stderr.write('ImagePullBackOff: <img src=x onerror=alert(1)> registry.example/nope:1 not found\\n'); process.exit(3)\n",
}

interface Spawned {
  gw: TestGateway
  workloads: LocalWorkloads
  driver: LocalDriver
  spawner: Spawner
  children: ChildProcess[]
  /** What the spawner did to the endpoint source, in order: subscribe, read, event:<user>:<n>, unsubscribe. */
  sourceLog: string[]
  /** Calls the spawner made on the workloads, by method. */
  calls: Record<string, number>
  get (user: string, headers?: Record<string, string>): Promise<{ status: number, ms: number, headers: Headers, text: string }>
}

interface SpawnedOptions {
  spawnOnDemand?: boolean
  slowStartMs?: number
  failing?: boolean
  /** Hides onChange and cached from the spawner: a Workloads without change events. */
  withoutEvents?: boolean
  spawner?: Partial<SpawnerOptions>
}

/** The endpoint source as the spawner sees it, recording how the spawner uses it. */
function recordingSource (source: EndpointSource, log: string[]): EndpointSource {
  return {
    get snapshot () {
      log.push('read')
      return source.snapshot
    },
    get routableUsers () { return source.routableUsers },
    get endpointCount () { return source.endpointCount },
    synced: source.synced,
    get isSynced () { return source.isSynced },
    start: () => source.start(),
    close: () => source.close(),
    onChange: (listener: EndpointListener) => {
      log.push('subscribe')
      const unsubscribe = source.onChange((change) => {
        for (const user of change.users) log.push(`event:${user}:${change.snapshot.get(user)?.length ?? 'gone'}`)
        listener(change)
      })
      return () => {
        log.push('unsubscribe')
        unsubscribe()
      }
    },
  }
}

function countingWorkloads (workloads: LocalWorkloads, calls: Record<string, number>, withEvents: boolean): Workloads {
  const count = (name: string): void => { calls[name] = (calls[name] ?? 0) + 1 }
  const counted: Workloads = {
    put: (user, spec) => { count('put'); return workloads.put(user, spec) },
    get: (user) => { count('get'); return workloads.get(user) },
    list: () => { count('list'); return workloads.list() },
    delete: (user) => { count('delete'); return workloads.delete(user) },
    setSuspended: (user, suspended) => { count('setSuspended'); return workloads.setSuspended(user, suspended) },
    revoke: (user, at) => { count('revoke'); return workloads.revoke(user, at) },
    touch: (user, at) => { workloads.touch(user, at) },
  }
  if (!withEvents) return counted
  return {
    ...counted,
    cached: (user) => { count('cached'); return workloads.cached(user) },
    onChange: (listener) => { count('onChange'); return workloads.onChange(listener) },
  }
}

async function startSpawning (t: Test, options: SpawnedOptions = {}): Promise<Spawned> {
  const dir = t.testdir(SCRIPTS)
  const logger = createLogger('silent')
  const source = new LocalEndpointSource()
  const children: ChildProcess[] = []
  const driver = new LocalDriver({
    source,
    logger,
    backendPath: options.failing === true ? join(dir, 'fails.mjs') : join(dir, 'slow.mjs'),
    env: { SLOW_START_MS: String(options.slowStartMs ?? 0) },
    spawn: recordingSpawn(children),
  })
  t.teardown(() => driver.close())
  const workloads = new LocalWorkloads({ driver, source, logger })
  t.teardown(() => { workloads.close() })
  const sourceLog: string[] = []
  const calls: Record<string, number> = {}
  const spawner = createSpawner({
    workloads: countingWorkloads(workloads, calls, options.withoutEvents !== true),
    source: recordingSource(source, sourceLog),
    spawnOnDemand: options.spawnOnDemand ?? true,
    startTimeoutMs: 60_000,
    logger,
    ...options.spawner,
  })
  const gw = await startTestGateway(t, {}, { source, onMissing: spawner.onMissing })
  // undici's request, not fetch(): fetch always sends Sec-Fetch-Mode: cors, which is never a browser navigation.
  const get: Spawned['get'] = async (user, headers = {}) => {
    const started = performance.now()
    const res = await request(`${gw.url}/`, { headers: { authorization: `Bearer ${await gw.token(user)}`, ...headers }, signal: AbortSignal.timeout(30_000) })
    const text = await res.body.text()
    const received = new Headers()
    for (const [name, value] of Object.entries(res.headers)) if (typeof value === 'string') received.set(name, value)
    return { status: res.statusCode, ms: performance.now() - started, headers: received, text }
  }
  return { gw, workloads, driver, spawner, children, sourceLog, calls, get }
}

const BROWSER = { accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' }
const API = { accept: 'application/json' }

void t.test('the first request creates the workload, waits, and is woken by the endpoint event', async (t) => {
  const s = await startSpawning(t, { slowStartMs: 400 })
  const res = await s.get('alice', API)
  t.equal(res.status, 200)
  t.equal((JSON.parse(res.text) as { user: string }).user, 'alice', 'alice\'s new backend answered')
  t.ok(res.ms >= 400, `the request waited for the backend (${res.ms.toFixed(0)} ms)`)
  t.same(s.sourceLog, ['subscribe', 'read', 'event:alice:0', 'event:alice:1', 'unsubscribe'],
    'one subscription, one re-check read, woken by the ready event, unsubscribed at once: no polling')
  t.same(s.calls, { onChange: 1, cached: 1, get: 1, put: 1 }, 'looked the workload up once (a cache miss confirmed by get), created it once, never polled status')
  t.equal(s.children.length, 1)
  t.equal(s.spawner.waiting, 0, 'nothing left waiting')

  s.sourceLog.length = 0
  const second = await s.get('alice', API)
  t.equal(second.status, 200)
  t.same(s.sourceLog, [], 'a ready user never reaches the spawner')
})

void t.test('a workload that becomes ready is reported to the activity pipeline once, so culling does not take it at once', async (t) => {
  const reported: string[] = []
  const s = await startSpawning(t, { slowStartMs: 200, spawner: { onActivity: (user) => { reported.push(user) } } })
  const results = await Promise.all([s.get('alice', API), s.get('alice', API)])
  t.same(results.map((r) => r.status), [200, 200])
  t.same(reported, ['alice'], 'one report for the start, however many requests waited')
})

void t.test('concurrent first requests share one create and one wait', async (t) => {
  const s = await startSpawning(t, { slowStartMs: 300 })
  const results = await Promise.all(Array.from({ length: 20 }, () => s.get('erin', API)))
  t.same(results.map((r) => r.status), Array.from({ length: 20 }, () => 200))
  t.ok(results.every((r) => (JSON.parse(r.text) as { user: string }).user === 'erin'))
  t.equal(s.calls.put, 1, 'one put')
  t.equal(s.children.length, 1, 'one backend process')
  t.equal(s.sourceLog.filter((e) => e === 'subscribe').length, 1, 'one shared wait')
  t.equal(s.sourceLog.filter((e) => e === 'unsubscribe').length, 1)
})

void t.test('a browser gets the starting page, then the real page once the backend is up', async (t) => {
  const s = await startSpawning(t, { slowStartMs: 1_500, spawner: { browserGraceMs: 100 } })
  const api = s.get('frank', API)
  const page = await s.get('frank', BROWSER)
  t.equal(page.status, 503)
  t.ok(page.ms < 1_000, `the page came after the grace period, not the start (${page.ms.toFixed(0)} ms)`)
  t.equal(page.headers.get('content-type'), 'text/html; charset=utf-8')
  t.equal(page.headers.get('retry-after'), '3')
  t.equal(page.headers.get('cache-control'), 'no-store')
  t.match(page.text, /^<!doctype html>/)
  t.match(page.text, '<meta http-equiv="refresh" content="3">')
  t.match(page.text, 'Starting your workspace')
  t.match(page.text, '<strong>frank</strong>')
  t.notMatch(page.text, /<script|<link|src=|https?:\/\//, 'self-contained: no scripts, no external assets')

  const waited = await api
  t.equal(waited.status, 200, 'an API client started at the same time kept waiting and got through')
  t.ok(waited.ms >= 1_400, `after the backend was up (${waited.ms.toFixed(0)} ms)`)
  const refreshed = await s.get('frank', BROWSER)
  t.equal(refreshed.status, 200, 'the refreshed page is the workspace itself')
  t.equal((JSON.parse(refreshed.text) as { user: string }).user, 'frank')
  t.equal(s.calls.put, 1, 'the browser and the API client shared one create')
  t.equal(s.children.length, 1)
})

void t.test('a workload that cannot start fails fast with its reason', async (t) => {
  const s = await startSpawning(t, { failing: true })
  const api = await s.get('gina', API)
  t.equal(api.status, 503)
  t.ok(api.ms < 5_000, `failed in ${api.ms.toFixed(0)} ms, not after the 60 s start timeout`)
  t.equal(api.headers.get('retry-after'), '30')
  const body = JSON.parse(api.text) as { error: string, message: string }
  t.equal(body.error, 'PODGATE_WORKLOAD_FAILED')
  t.match(body.message, /exited \(code 3\) before listening; stderr: ImagePullBackOff: <img src=x onerror=alert\(1\)> registry\.example\/nope:1 not found/)

  const page = await s.get('gina', BROWSER)
  t.equal(page.status, 503)
  t.ok(page.ms < 1_000, 'an already failed workload fails at once')
  t.equal(page.headers.get('content-type'), 'text/html; charset=utf-8')
  t.match(page.text, 'Your workspace could not start')
  t.match(page.text, 'ImagePullBackOff: &lt;img src=x onerror=alert(1)&gt; registry.example/nope:1 not found')
  t.notMatch(page.text, '<img', 'the reason is escaped')
  t.notMatch(page.text, 'http-equiv="refresh"', 'a permanent failure never reloads itself')
  t.match(page.text, '<a href="">check again</a>', 'a plain link to look again once the operator has acted')
  t.equal(s.children.length, 1, 'failing fast did not start the backend again')
})

void t.test('without workload change events, a low-rate status check still fails fast', async (t) => {
  const s = await startSpawning(t, { failing: true, withoutEvents: true, spawner: { statusCheckMs: 100 } })
  const api = await s.get('hank', API)
  t.equal(api.status, 503)
  t.match(JSON.parse(api.text), { error: 'PODGATE_WORKLOAD_FAILED', message: /ImagePullBackOff/ })
  t.ok(api.ms < 5_000, `failed in ${api.ms.toFixed(0)} ms`)
  const gets = s.calls.get ?? 0
  t.ok(gets >= 2 && gets <= 50, `status was read a bounded number of times (${gets})`)
  t.equal(s.calls.onChange, undefined)
})

void t.test('with spawn on demand off: no workload is 404; a created one is waited for', async (t) => {
  const s = await startSpawning(t, { spawnOnDemand: false, slowStartMs: 200 })
  const missing = await s.get('ivy', API)
  t.equal(missing.status, 404)
  t.match(JSON.parse(missing.text), { error: 'PODGATE_NO_WORKLOAD' })
  t.equal(s.calls.put, undefined, 'nothing was created')
  t.equal(s.children.length, 0)

  await s.workloads.put('ivy', {})
  const waited = await s.get('ivy', API)
  t.equal(waited.status, 200)
  t.equal(s.calls.put, undefined, 'the spawner created nothing: the workload already existed')
})

void t.test('an API client gets 503 with Retry-After when the start timeout passes', async (t) => {
  const s = await startSpawning(t, { slowStartMs: 1_500, spawner: { startTimeoutMs: 200 } })
  const res = await s.get('jack', API)
  t.equal(res.status, 503)
  t.equal(res.headers.get('retry-after'), '5')
  t.match(JSON.parse(res.text), { error: 'PODGATE_NOT_READY', message: 'the workload is not ready after 200 ms' })
  t.ok(res.ms >= 190 && res.ms < 1_400, `answered at the timeout (${res.ms.toFixed(0)} ms)`)
  t.equal(s.spawner.waiting, 0, 'the wait ended with its last waiter')
  const deadline = Date.now() + 10_000
  let later = await s.get('jack', API)
  while (later.status !== 200 && Date.now() < deadline) later = await s.get('jack', API)
  t.equal(later.status, 200, 'the workload kept starting; a later request gets through')
  t.equal(s.calls.put, 1, 'and it was created once')
})

void t.test('a workload deleted while a request waits ends the wait with 404', async (t) => {
  const s = await startSpawning(t, { slowStartMs: 2_000 })
  const waiting = s.get('kate', API)
  const deadline = Date.now() + 5_000
  while (s.driver.status('kate') === undefined && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
  await s.workloads.delete('kate')
  const res = await waiting
  t.equal(res.status, 404)
  t.match(JSON.parse(res.text), { error: 'PODGATE_NO_WORKLOAD', message: 'the workload was deleted while starting' })
  t.ok(res.ms < 1_900, 'without waiting for the start')
})

void t.test('createSpawner validates its options', (t) => {
  const source = new LocalEndpointSource()
  const logger = createLogger('silent')
  const workloads = {} as Workloads
  t.throws(() => createSpawner({ workloads, source, logger, spawnOnDemand: true, startTimeoutMs: 0 }), /startTimeoutMs: expected a positive number/)
  t.throws(() => createSpawner({ workloads, source, logger, spawnOnDemand: true, startTimeoutMs: 10, browserGraceMs: -1 }), /browserGraceMs/)
  t.throws(() => createSpawner({ workloads, source, logger, spawnOnDemand: 'yes' as unknown as boolean, startTimeoutMs: 10 }), /spawnOnDemand/)
  t.throws(() => createSpawner({ workloads, source, logger, spawnOnDemand: true, startTimeoutMs: 10, retryAfterSeconds: 0.5 }), /retryAfterSeconds: expected a whole number/)
  t.end()
})

void t.test('the starting page escapes everything it shows', (t) => {
  t.equal(escapeHtml(`<a href="x" title='y'>&</a>`), '&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;')
  const page = errorPage(new WorkloadFailedError('</pre><script>alert("x")</script>'), 'alice')
  t.notMatch(page, '<script>')
  t.match(page, '&lt;/pre&gt;&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;')
  t.notMatch(page, 'http-equiv="refresh"')
  t.match(startingPage({ user: 'alice', refreshSeconds: 0.2 }), '<meta http-equiv="refresh" content="1">', 'at least one second between reloads')
  t.ok(Buffer.byteLength(startingPage({ user: 'a'.repeat(63), refreshSeconds: 3 })) < 2_048, 'small')
  t.end()
})

void t.test('the workload API unreachable: 503 with Retry-After, never a 500, and the next request tries again', async (t) => {
  const source = new LocalEndpointSource()
  const unreachable = (): Promise<never> => Promise.reject(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6443'), { code: 'ECONNREFUSED' }))
  let gets = 0
  const workloads: Workloads = {
    put: unreachable,
    get: () => { gets++; return unreachable() },
    list: unreachable,
    delete: unreachable,
    setSuspended: unreachable,
    revoke: unreachable,
    touch: () => {},
  }
  const spawner = createSpawner({ workloads, source, spawnOnDemand: true, startTimeoutMs: 60_000, logger: createLogger('silent') })
  const gw = await startTestGateway(t, {}, { source, onMissing: spawner.onMissing })
  const token = await gw.token('alice')
  for (const attempt of [1, 2]) {
    const res = await fetch(gw.url, { headers: { authorization: `Bearer ${token}` } })
    t.equal(res.status, 503, `attempt ${attempt}: 503`)
    t.equal(res.headers.get('retry-after'), '5', `attempt ${attempt}: Retry-After`)
    t.match(await res.text(), /PODGATE_NOT_READY.*cannot be started right now/, `attempt ${attempt}: says why`)
  }
  t.equal(gets, 2, 'each request asked the API again: no failure was cached')
})

void t.test('status checks that fail while the API is down log one stack, then one line per attempt, then the recovery', async (t) => {
  const lines: Array<Record<string, unknown>> = []
  const destination = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>)
      callback()
    },
  })
  const clock = new ManualClock()
  const source = new LocalEndpointSource()
  await source.start()
  const pending: Workload = { user: 'alice', profile: 'default', suspended: false, status: { phase: 'Pending', readyReplicas: 0 } }
  const failed: Workload = { ...pending, status: { phase: 'Failed', readyReplicas: 0, message: 'ImagePullBackOff: nope' } }
  // The first look finds the workload; the next three checks fail; the fourth sees it failed.
  const answers: Array<() => Promise<Workload>> = [
    () => Promise.resolve(pending),
    ...Array.from({ length: 3 }, () => () => Promise.reject(new Error('503 the API server is unavailable'))),
    () => Promise.resolve(failed),
  ]
  const refuse = (): Promise<never> => Promise.reject(new Error('not used'))
  const workloads: Workloads = { put: refuse, list: refuse, delete: refuse, setSuspended: refuse, revoke: refuse, touch: () => {}, get: () => (answers.shift() ?? (() => Promise.resolve(failed)))() }
  const spawner = createSpawner({ workloads, source, spawnOnDemand: true, startTimeoutMs: 60_000, statusCheckMs: 100, logger: createLogger('info', destination), clock })
  const waiting = spawner.onMissing('alice', undefined)
  waiting.catch(() => {})
  for (let i = 0; i < 4; i++) await clock.advance(100)
  await t.rejects(waiting, { name: 'WorkloadFailedError' }, 'the failure the fourth check saw ends the wait')
  const checks = lines.filter((line) => line.msg === 'workload status check failed; checking again')
  t.same(checks.map((line) => line.attempt), [1, 2, 3])
  t.match((checks[0]?.err as { stack?: string } | undefined)?.stack, /503 the API server is unavailable/, 'the first with its stack')
  t.same(checks.slice(1).map((line) => [line.err, line.error]), [[undefined, '503 the API server is unavailable'], [undefined, '503 the API server is unavailable']], 'the others one line each')
  t.same(lines.filter((line) => line.msg === 'workload status check works again').map((line) => line.attempts), [3], 'and one line when it works again')
})

void t.test('a tenant\'s spawn never creates, wakes or waits on a workload in another namespace', async (t) => {
  const calls: string[] = []
  const suspended: Workload = { user: 'gus', namespace: 'team-a', profile: 'web', suspended: true, status: { phase: 'Suspended', readyReplicas: 0 } }
  const record = (call: string) => (): Promise<never> => { calls.push(call); return Promise.reject(new Error(`${call} must not be called`)) }
  const workloads: Workloads = {
    put: (user, _spec, namespace) => { calls.push(`put ${user} ${namespace ?? '-'}`); return Promise.reject(new Error('stop here')) },
    get: () => Promise.resolve(undefined),
    cached: (user) => user === 'gus' ? suspended : undefined,
    list: record('list'),
    delete: record('delete'),
    setSuspended: record('setSuspended'),
    revoke: record('revoke'),
    touch: () => {},
  }
  const spawner = createSpawner({ workloads, source: new LocalEndpointSource(), spawnOnDemand: true, startTimeoutMs: 60_000, logger: createLogger('silent') })
  await t.rejects(spawner.onMissing('gus', undefined, 'team-b'), { status: 403, code: 'PODGATE_FORBIDDEN' })
  t.same(calls, [], 'team-a\'s suspended workload was not woken for a team-b request')
  await t.rejects(spawner.onMissing('hanna', undefined, 'team-b'), { status: 503, code: 'PODGATE_NOT_READY' })
  t.same(calls, ['put hanna team-b'], 'a new user is created in the tenant\'s namespace')
})
