// LocalWorkloads: the Workloads contract over real backend processes started by the local driver.
import t, { type Test } from 'tap'
import type { ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { LocalEndpointSource } from '../../src/local/endpoint-source.ts'
import { BadRequestError, WorkloadNotFoundError } from '../../src/errors.ts'
import { createLogger } from '../../src/log.ts'
import { LocalDriver, type LocalDriverOptions } from '../../src/local/driver.ts'
import { LocalWorkloads, type LocalWorkloadsOptions } from '../../src/local/workloads.ts'
import type { Workload, WorkloadChange } from '../../src/workloads/workloads.ts'
import { isAlive, recordingSpawn } from '../support/processes.ts'

const SCRIPTS = {
  'exits.mjs': "process.stderr.write('ImagePullBackOff: registry.example/nope:1 not found\\n'); process.exit(3)\n",
  'crashes.mjs': [
    "import { createServer } from 'node:http'",
    "const server = createServer((req, res) => res.end('short-lived'))",
    "server.listen(0, '127.0.0.1', () => { process.stdout.write(JSON.stringify({ listening: server.address() }) + '\\n'); setTimeout(() => process.exit(1), 30) })",
  ].join('\n'),
}

interface Stack {
  source: LocalEndpointSource
  driver: LocalDriver
  workloads: LocalWorkloads
  children: ChildProcess[]
  changes: WorkloadChange[]
}

async function stack (t: Test, driver: Partial<LocalDriverOptions> = {}, options: Partial<LocalWorkloadsOptions> = {}): Promise<Stack> {
  const source = new LocalEndpointSource()
  await source.start()
  const logger = createLogger('silent')
  const children: ChildProcess[] = []
  const localDriver = new LocalDriver({
    source,
    logger,
    spawn: recordingSpawn(children),
    ...driver,
  })
  const workloads = new LocalWorkloads({ driver: localDriver, source, logger, ...options })
  const changes: WorkloadChange[] = []
  workloads.onChange((change) => { changes.push(change) })
  t.teardown(async () => {
    workloads.close()
    await localDriver.close()
  })
  return { source, driver: localDriver, workloads, children, changes }
}


/** Resolves with the first workload change (seen or future) matching `match`. */
function change (s: Stack, match: (c: WorkloadChange) => boolean, ms = 10_000): Promise<WorkloadChange> {
  const seen = s.changes.find(match)
  if (seen !== undefined) return Promise.resolve(seen)
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { unsubscribe(); reject(new Error(`no matching workload change within ${ms} ms`)) }, ms)
    const unsubscribe = s.workloads.onChange((c) => {
      if (!match(c)) return
      clearTimeout(timer)
      unsubscribe()
      resolve(c)
    })
  })
}

const phase = (user: string, p: Workload['status']['phase']) => (c: WorkloadChange): boolean => c.user === user && c.workload?.status.phase === p

void t.test('put starts a backend: Starting, then Ready with the endpoint registered', async (t) => {
  const s = await stack(t)
  const { workload, created } = await s.workloads.put('alice', {})
  t.equal(created, true)
  t.match(workload, { user: 'alice', profile: 'default', suspended: false })
  t.ok(['Pending', 'Starting'].includes(workload.status.phase), `not ready yet (${workload.status.phase})`)
  t.ok(Number.isFinite(Date.parse(workload.createdAt ?? '')), 'createdAt is RFC 3339')
  await change(s, phase('alice', 'Ready'))
  const ready = await s.workloads.get('alice')
  t.match(ready?.status, { phase: 'Ready', readyReplicas: 1 })
  t.equal(s.source.snapshot.get('alice')?.length, 1)
  const again = await s.workloads.put('alice', {})
  t.equal(again.created, false, 'a second put reports the existing workload')
  t.equal(s.children.length, 1, 'and starts nothing new')
  t.same((await s.workloads.list()).map((w) => w.user), ['alice'])
  t.equal(s.workloads.cached('alice')?.status.phase, 'Ready', 'cached answers without I/O')
})

void t.test('suspend stops the process but keeps the user; wake starts a new one', async (t) => {
  const s = await stack(t)
  await s.workloads.put('bob', {})
  await change(s, phase('bob', 'Ready'))
  const firstPid = s.driver.status('bob')?.pid
  t.ok(isAlive(firstPid))

  await s.workloads.setSuspended('bob', true)
  t.equal(isAlive(firstPid), false, 'the backend process is gone')
  t.equal(s.source.snapshot.has('bob'), false, 'no longer routed')
  t.match(await s.workloads.get('bob'), { suspended: true, status: { phase: 'Suspended', readyReplicas: 0 } })
  await s.workloads.setSuspended('bob', true)
  t.equal(s.children.length, 1, 'suspending twice is a no-op')

  s.changes.length = 0
  await s.workloads.setSuspended('bob', false)
  await change(s, phase('bob', 'Ready'))
  const secondPid = s.driver.status('bob')?.pid
  t.ok(isAlive(secondPid))
  t.not(secondPid, firstPid, 'a new process')
  t.equal((await s.workloads.get('bob'))?.suspended, false)
  await t.rejects(s.workloads.setSuspended('nobody', true), WorkloadNotFoundError)
})

void t.test('delete stops the process and forgets the user; deleting again reports false', async (t) => {
  const s = await stack(t)
  await s.workloads.put('carol', {})
  await change(s, phase('carol', 'Ready'))
  const pid = s.driver.status('carol')?.pid
  t.equal(await s.workloads.delete('carol'), true)
  t.equal(isAlive(pid), false)
  t.equal(await s.workloads.get('carol'), undefined)
  t.equal(s.source.snapshot.has('carol'), false)
  t.ok(s.changes.some((c) => c.user === 'carol' && c.workload === undefined), 'a change with no workload announces the delete')
  t.equal(await s.workloads.delete('carol'), false)
})

void t.test('touch records the latest activity in the status', async (t) => {
  const s = await stack(t)
  await s.workloads.put('dave', {})
  const at = new Date('2030-01-02T03:04:05.000Z')
  s.workloads.touch('dave', at)
  t.equal((await s.workloads.get('dave'))?.status.lastActivity, at.toISOString())
  s.workloads.touch('nobody', at)
  t.equal(await s.workloads.get('nobody'), undefined, 'touching an unknown user creates nothing')
})

void t.test('bad input is refused before anything is created', async (t) => {
  const s = await stack(t, {}, { profiles: ['default', 'large'] })
  const cases: Array<[string, string | undefined, RegExp]> = [
    ['Alice', undefined, /^user: expected a DNS-1123 label/],
    ['a'.repeat(59), undefined, /^user: at most 58 characters/],
    ['erin', 'huge', /^profile: unknown profile "huge"; known: default, large$/],
  ]
  for (const [user, profile, message] of cases) {
    await t.rejects(s.workloads.put(user, { profile }), { constructor: BadRequestError, message }, `${user} ${profile ?? ''}`)
  }
  t.same(await s.workloads.list(), [])
  t.equal(s.children.length, 0, 'no process was started')
  const { workload } = await s.workloads.put('erin', { profile: 'large' })
  t.equal(workload.profile, 'large')
  t.equal((await s.workloads.put('erin', { profile: 'large' })).workload.profile, 'large')
  t.equal((await s.workloads.put('erin', {})).workload.profile, 'default', 'a put without a profile sets the default one, as on Kubernetes')
  t.equal(s.children.length, 1, 'changing the profile keeps the running backend (local profiles all run the same one)')
  t.throws(() => new LocalWorkloads({ driver: s.driver, source: s.source, logger: createLogger('silent'), profiles: [] }), /profiles: expected a non-empty array/)
  t.throws(() => new LocalWorkloads({ driver: s.driver, source: s.source, logger: createLogger('silent'), defaultProfile: 'x' }), /defaultProfile: "x" is not one of profiles/)
})

void t.test('a backend that cannot start turns Failed with its reason; put retries it', async (t) => {
  const dir = t.testdir(SCRIPTS)
  const s = await stack(t, { backendPath: join(dir, 'exits.mjs') })
  await s.workloads.put('frank', {})
  const failed = await change(s, phase('frank', 'Failed'))
  t.match(failed.workload?.status.message, /exited \(code 3\) before listening; stderr: ImagePullBackOff: registry\.example\/nope:1 not found/)
  t.equal(s.children.length, 1)
  s.changes.length = 0
  await s.workloads.put('frank', {})
  t.ok(s.changes.some(phase('frank', 'Starting')) || s.changes.some(phase('frank', 'Pending')), 'the retry is announced as starting, not as the old failure')
  await change(s, phase('frank', 'Failed'))
  t.equal(s.children.length, 2, 'put started the backend again')
})

void t.test('a backend that keeps crashing turns Failed once the driver gives up restarting it', async (t) => {
  const dir = t.testdir(SCRIPTS)
  const s = await stack(t, { backendPath: join(dir, 'crashes.mjs'), maxRestarts: 1, restartInitialMs: 10 })
  await s.workloads.put('gina', {})
  const failed = await change(s, phase('gina', 'Failed'))
  t.match(failed.workload?.status.message, /crashed 2 times in a row; not restarting it/)
  t.equal(s.driver.status('gina')?.state, 'failed')
})
