// A primary in this process with two real forked gateway workers: routing changes reach the
// workers, spawn requests and activity come back, errors keep their status, metrics add up.
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { mintToken } from '../../src/auth/mint.ts'
import { createTokenVerifier } from '../../src/auth/verifier.ts'
import { RevocationMarks } from '../../src/auth/revocations.ts'
import { loadConfig } from '../../src/config.ts'
import { LocalEndpointSource } from '../../src/local/endpoint-source.ts'
import { endpoint, type Endpoint } from '../../src/discovery/source.ts'
import { NotReadyError } from '../../src/errors.ts'
import { createBackend } from '../../src/local/backend.ts'
import { createLogger } from '../../src/log.ts'
import { Metrics } from '../../src/metrics.ts'
import { startPrimary } from '../../src/workers/primary.ts'
import { isAlive } from '../support/processes.ts'
import { primaryEnv } from '../support/serve.ts'

interface Primary {
  readonly url: string
  readonly adminUrl: string
  readonly source: LocalEndpointSource
  readonly missing: string[]
  readonly active: string[]
  token (user: string): Promise<string>
  drain (): Promise<void>
  close (): Promise<void>
  workerPids (): number[]
}

async function startTestPrimary (t: Test, onMissing: (user: string, source: LocalEndpointSource) => Promise<readonly Endpoint[]>, revocations?: RevocationMarks): Promise<Primary> {
  const secret = randomBytes(32).toString('hex')
  const env = primaryEnv(secret)
  const config = loadConfig(env)
  const logger = createLogger('silent')
  const metrics = new Metrics({ defaultMetrics: false })
  const source = new LocalEndpointSource()
  const missing: string[] = []
  const active: string[] = []
  const podgate = await startPrimary({
    config,
    source,
    verifier: createTokenVerifier(config.auth, { metrics, logger }),
    logger,
    metrics,
    workers: 2,
    workerEnv: env,
    // Not the test runner's loaders: workers start as `podgate serve` starts them.
    workerExecArgv: [],
    onMissing: async (user) => {
      missing.push(user)
      return await onMissing(user, source)
    },
    onActivity: (user) => { active.push(user) },
    revocations,
  })
  t.teardown(() => podgate.close())
  return {
    url: podgate.gatewayUrl,
    adminUrl: podgate.adminUrl,
    source,
    missing,
    active,
    token: (user) => mintToken({ secret: new TextEncoder().encode(secret), user, ttlSeconds: 600 }),
    drain: () => podgate.drain(),
    close: () => podgate.close(),
    workerPids: () => childPids(process.pid),
  }
}

function childPids (pid: number): number[] {
  // The test runner may have other children; workers are the ones running worker.ts.
  return readChildren(pid).filter((child) => {
    try {
      return readFileSync(`/proc/${child}/cmdline`, 'utf8').includes('workers/worker.ts')
    } catch {
      return false
    }
  })
}

function readChildren (pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
  } catch {
    return []
  }
}

async function get (url: string, token: string, headers: Record<string, string> = {}): Promise<{ status: number, headers: Record<string, unknown>, body: string }> {
  const response = await request(url, { headers: { authorization: `Bearer ${token}`, ...headers } })
  return { status: response.statusCode, headers: response.headers, body: await response.body.text() }
}

void t.test('a user without endpoints is spawned through the primary and routed by the worker that asked', async (t) => {
  const primary = await startTestPrimary(t, async (user, source) => {
    const backend = await createBackend({ user })
    t.teardown(() => backend.close())
    const endpoints = [endpoint('127.0.0.1', backend.address.port)]
    // The change reaches the workers before this answer does, so the worker has a pool for it.
    source.set(user, endpoints)
    return endpoints
  })
  t.equal(primary.workerPids().length, 2, 'two worker processes')
  const carol = await get(`${primary.url}/`, await primary.token('carol'))
  t.equal(carol.status, 200)
  t.equal((JSON.parse(carol.body) as { user: string }).user, 'carol')
  t.same(primary.missing, ['carol'], 'the primary was asked once')
  const again = await get(`${primary.url}/`, await primary.token('carol'))
  t.equal(again.status, 200)
  t.same(primary.missing, ['carol'], 'the next request is routed from the worker\'s own snapshot')

  // Activity comes back in batches, at most a second late.
  const deadline = Date.now() + 5000
  while (!primary.active.includes('carol') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
  t.ok(primary.active.includes('carol'), 'routed users reach the primary as activity')

  // A user whose endpoints go away is asked about again (and here, spawned again).
  primary.source.delete('carol')
  const after = await get(`${primary.url}/`, await primary.token('carol'))
  t.equal(after.status, 200)
  t.same(primary.missing, ['carol', 'carol'])
})

void t.test('spawn failures reach the client with their status, page and Retry-After; unknown failures as a bare 500', async (t) => {
  const primary = await startTestPrimary(t, (user) => {
    if (user === 'slow') return Promise.reject(new NotReadyError('workspace is starting', 4, { page: '<html>starting</html>' }))
    return Promise.reject(new Error('kube API said something internal'))
  })
  const slow = await get(`${primary.url}/`, await primary.token('slow'), { accept: 'text/html' })
  t.equal(slow.status, 503)
  t.equal(slow.headers['retry-after'], '4')
  t.equal(slow.body, '<html>starting</html>')
  const broken = await get(`${primary.url}/`, await primary.token('broken'))
  t.equal(broken.status, 500)
  t.notMatch(broken.body, /kube API/, 'internal details stay in the primary')
})

void t.test('/metrics adds the workers\' requests to the primary\'s own; close stops every worker', async (t) => {
  const primary = await startTestPrimary(t, (user) => Promise.reject(new NotReadyError(`${user} not ready`)))
  const backend = await createBackend({ user: 'alice' })
  t.teardown(() => backend.close())
  primary.source.set('alice', [endpoint('127.0.0.1', backend.address.port)])
  const token = await primary.token('alice')
  // Fresh connections, so the kernel spreads them over both workers.
  for (let i = 0; i < 30; i++) {
    const response = await request(`${primary.url}/fixed`, { headers: { authorization: `Bearer ${token}`, connection: 'close' } })
    t.equal(response.statusCode, 200)
    await response.body.dump()
  }
  const unauthorized = await request(`${primary.url}/`, { headers: { connection: 'close' } })
  t.equal(unauthorized.statusCode, 401)
  await unauthorized.body.dump()
  const text = await (await request(`${primary.adminUrl}/metrics`)).body.text()
  t.match(text, /^podgate_requests_total\{class="2xx",source="pod"\} 30$/m)
  t.match(text, /^podgate_requests_total\{class="4xx",source="podgate"\} 1$/m)
  t.match(text, /^podgate_workers 2$/m)
  t.match(text, /^podgate_routable_users 1$/m, 'the same view in every process is not added up')
  t.match(text, /^podgate_endpoint_source_synced 1$/m)
  const ready = await request(`${primary.adminUrl}/readyz`)
  t.equal(ready.statusCode, 200)
  await ready.body.dump()

  const pids = primary.workerPids()
  t.equal(pids.length, 2)
  await primary.drain()
  t.same(pids.filter(isAlive), [], 'every worker exited')
  const draining = await request(`${primary.adminUrl}/readyz`)
  t.equal(draining.statusCode, 503, 'the admin port outlives the workers and says why it is not ready')
  t.match(await draining.body.json(), { reason: 'draining' })
  await primary.close()
})

void t.test('revocation marks reach every worker: at start and as they come', async (t) => {
  const marks = new RevocationMarks()
  // Marks an hour ahead: every token minted during the test is older, however long start-up takes.
  marks.set('early', Math.floor(Date.now() / 1000) + 3600)
  const primary = await startTestPrimary(t, () => Promise.reject(new NotReadyError('not in this test', 1)), marks)
  const ask = async (token: string): Promise<number> => (await request(primary.url, { headers: { authorization: `Bearer ${token}`, connection: 'close' } })).statusCode
  const early = await primary.token('early')
  const late = await primary.token('late')
  // Connection: close on each request, so the kernel spreads them over both workers.
  for (let i = 0; i < 8; i++) t.equal(await ask(early), 401, `a mark set before start: request ${i + 1}`)
  t.equal(await ask(late), 503, 'late\'s token works (no workload: 503 from the primary)')
  const started = performance.now()
  marks.set('late', Math.floor(Date.now() / 1000) + 3600)
  let refusals = 0
  while (refusals < 8 && performance.now() - started < 2_000) refusals = (await ask(late)) === 401 ? refusals + 1 : 0
  t.equal(refusals, 8, 'then eight refusals in a row, on whichever worker')
  t.comment(`mark set on the primary → refused by the workers: ${(performance.now() - started).toFixed(0)} ms`)
})
