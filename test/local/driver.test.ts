import t, { type Test } from 'tap'
import type { ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { LocalEndpointSource } from '../../src/local/endpoint-source.ts'
import type { EndpointChange } from '../../src/discovery/source.ts'
import { DrainingError, WorkloadFailedError, WorkloadNotFoundError } from '../../src/errors.ts'
import { createLogger } from '../../src/log.ts'
import { DEFAULT_BACKEND_START_TIMEOUT_MS, LocalDriver, type LocalDriverOptions } from '../../src/local/driver.ts'
import { ManualClock } from '../support/manual-clock.ts'
import { isAlive, recordingSpawn } from '../support/processes.ts'

// Stand-ins for a backend that misbehaves in one specific way.
const SCRIPTS = {
  'exits.mjs': "process.stderr.write('boom: cannot open the data directory\\n'); process.exit(3)\n",
  'silent.mjs': 'setInterval(() => {}, 1000)\n',
  'garbage.mjs': "process.stdout.write('hello there\\n'); setInterval(() => {}, 1000)\n",
  'stubborn.mjs': [
    "import { createServer } from 'node:http'",
    "process.on('SIGTERM', () => {})",
    "const server = createServer((req, res) => res.end('stubborn'))",
    "server.listen(0, '127.0.0.1', () => process.stdout.write(JSON.stringify({ listening: server.address() }) + '\\n'))",
  ].join('\n'),
  'crashes.mjs': [
    "import { createServer } from 'node:http'",
    "const server = createServer((req, res) => res.end('short-lived'))",
    "server.listen(0, '127.0.0.1', () => { process.stdout.write(JSON.stringify({ listening: server.address() }) + '\\n'); setTimeout(() => process.exit(1), 50) })",
  ].join('\n'),
}

interface Harness {
  source: LocalEndpointSource
  driver: LocalDriver
  /** Every child the driver spawned, to check none outlives it. */
  children: ChildProcess[]
  changes: EndpointChange[]
}

function harness (t: Test, options: Partial<LocalDriverOptions> = {}): Harness {
  const source = new LocalEndpointSource()
  const children: ChildProcess[] = []
  const changes: EndpointChange[] = []
  source.onChange((change) => { changes.push(change) })
  const driver = new LocalDriver({
    source,
    logger: createLogger('silent'),
    spawn: recordingSpawn(children),
    ...options,
  })
  t.teardown(async () => {
    await driver.close()
    for (const child of children) if (isAlive(child.pid)) child.kill('SIGKILL')
  })
  return { source, driver, children, changes }
}


/** Resolves with the first change (already seen or future) that satisfies `match`, or rejects after `ms`. */
function waitForChange (h: Harness, match: (change: EndpointChange) => boolean, ms = 10_000): Promise<EndpointChange> {
  const seen = h.changes.find(match)
  if (seen !== undefined) return Promise.resolve(seen)
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { unsubscribe(); reject(new Error(`no matching endpoint change within ${ms} ms`)) }, ms)
    const unsubscribe = h.source.onChange((change) => {
      if (!match(change)) return
      clearTimeout(timer)
      unsubscribe()
      resolve(change)
    })
  })
}

async function whoAnswers (origin: string): Promise<string> {
  const res = await fetch(`${origin}/`, { signal: AbortSignal.timeout(5_000) })
  return ((await res.json()) as { user: string }).user
}

void t.test('two users get their own backends, each reachable at its registered endpoint', async (t) => {
  const h = harness(t)
  await h.source.start()
  const [alice, bob] = await Promise.all([h.driver.ensureUser('alice'), h.driver.ensureUser('bob')])
  t.not(alice.origin, bob.origin)
  t.equal(alice.address, '127.0.0.1')
  t.same(h.source.snapshot.get('alice'), [alice])
  t.same(h.source.snapshot.get('bob'), [bob])
  t.equal(await whoAnswers(alice.origin), 'alice')
  t.equal(await whoAnswers(bob.origin), 'bob')
  t.same(h.driver.users(), ['alice', 'bob'])
  t.match(h.driver.status('alice'), { user: 'alice', state: 'running', endpoint: alice, crashes: 0 })
  t.equal(h.driver.status('nobody'), undefined)

  t.equal(await h.driver.ensureUser('alice'), alice, 'ensureUser on a running user returns its endpoint')
  t.equal(h.children.length, 2, 'and starts nothing new')
})

void t.test('concurrent ensureUser calls share one start', async (t) => {
  const h = harness(t)
  const starts = await Promise.all([h.driver.ensureUser('alice'), h.driver.ensureUser('alice'), h.driver.ensureUser('alice')])
  t.equal(h.children.length, 1, 'one process spawned')
  t.equal(starts[1], starts[0])
  t.equal(starts[2], starts[0])
})

void t.test('a user is known but not ready while its backend starts', async (t) => {
  const h = harness(t)
  const starting = h.driver.ensureUser('alice')
  t.same(h.source.snapshot.get('alice'), [], 'registered with no endpoint first')
  t.equal(h.driver.status('alice')?.state, 'starting')
  const ready = await starting
  t.same(h.source.snapshot.get('alice'), [ready])
})

void t.test('a backend killed with SIGKILL is restarted and re-registered', async (t) => {
  const h = harness(t, { restartInitialMs: 20 })
  const first = await h.driver.ensureUser('alice')
  await h.driver.ensureUser('bob')
  const firstPid = h.driver.status('alice')?.pid
  t.ok(firstPid !== undefined && isAlive(firstPid))
  h.changes.length = 0

  process.kill(firstPid!, 'SIGKILL')
  const down = await waitForChange(h, (c) => c.users.has('alice') && c.snapshot.get('alice')?.length === 0)
  t.same(down.snapshot.get('alice'), [], 'the dead endpoint is withdrawn')
  t.ok(down.snapshot.get('bob')?.length === 1, 'bob is untouched')
  const up = await waitForChange(h, (c) => c.users.has('alice') && c.snapshot.get('alice')?.length === 1)
  const second = up.snapshot.get('alice')?.[0]
  t.ok(second !== undefined)
  t.not(second?.origin, first.origin, 'the restarted backend listens on a new port')
  const secondPid = h.driver.status('alice')?.pid
  t.not(secondPid, firstPid)
  t.equal(isAlive(firstPid), false)
  t.equal(await whoAnswers(second!.origin), 'alice')
  t.match(h.driver.status('alice'), { state: 'running', crashes: 1 })
  t.equal(await h.driver.ensureUser('alice'), second)
})

void t.test('removeUser unregisters before stopping, and the process is gone when it resolves', async (t) => {
  const h = harness(t)
  await h.driver.ensureUser('alice')
  const pid = h.driver.status('alice')?.pid
  let aliveWhenUnregistered: boolean | undefined
  h.source.onChange((change) => {
    if (change.users.has('alice') && !change.snapshot.has('alice')) aliveWhenUnregistered = isAlive(pid)
  })
  const removing = h.driver.removeUser('alice')
  t.equal(h.driver.status('alice')?.state, 'stopping')
  await removing
  t.equal(aliveWhenUnregistered, true, 'traffic was withdrawn while the process still ran')
  t.equal(isAlive(pid), false)
  t.equal(h.driver.status('alice'), undefined)
  t.same(h.driver.users(), [])
  await h.driver.removeUser('alice')
  t.pass('removing an unknown user is a no-op')

  const again = await h.driver.ensureUser('alice')
  t.equal(await whoAnswers(again.origin), 'alice', 'a removed user can be started again')
})

void t.test('ensureUser during removeUser waits for the stop, then starts afresh', async (t) => {
  const h = harness(t)
  await h.driver.ensureUser('alice')
  const oldPid = h.driver.status('alice')?.pid
  const removing = h.driver.removeUser('alice')
  const restarted = await h.driver.ensureUser('alice')
  await removing
  t.equal(isAlive(oldPid), false)
  t.not(h.driver.status('alice')?.pid, oldPid)
  t.equal(await whoAnswers(restarted.origin), 'alice')
})

void t.test('removeUser while the backend is still starting stops it', async (t) => {
  const h = harness(t)
  const starting = h.driver.ensureUser('alice')
  const outcome = starting.then(() => undefined, (err: unknown) => err)
  await h.driver.removeUser('alice')
  t.type(await outcome, WorkloadNotFoundError)
  t.equal(h.source.snapshot.has('alice'), false)
  t.equal(h.children.length, 1)
  t.equal(isAlive(h.children[0]?.pid), false, 'the half-started child was stopped')
})

void t.test('close() stops every backend and leaves no process behind', async (t) => {
  const h = harness(t)
  await Promise.all(['alice', 'bob', 'carol'].map((u) => h.driver.ensureUser(u)))
  const pids = h.children.map((c) => c.pid)
  t.equal(pids.length, 3)
  for (const pid of pids) t.ok(isAlive(pid))
  await h.driver.close()
  for (const pid of pids) t.throws(() => process.kill(pid!, 0), { code: 'ESRCH' }, `pid ${pid} is gone`)
  t.same(h.driver.users(), [])
  t.equal(h.source.snapshot.size, 0)
  await t.rejects(h.driver.ensureUser('alice'), DrainingError)
  await h.driver.close()
})

void t.test('a backend that exits before listening fails with its stderr in the error', async (t) => {
  const dir = t.testdir(SCRIPTS)
  const h = harness(t, { backendPath: join(dir, 'exits.mjs') })
  const err = await h.driver.ensureUser('alice').catch((e: unknown) => e)
  t.type(err, WorkloadFailedError)
  t.match((err as Error).message, /backend for alice exited \(code 3\) before listening; stderr: boom: cannot open the data directory/)
  t.match(h.driver.status('alice'), { state: 'failed' })
  t.same(h.source.snapshot.get('alice'), [], 'known but not ready')
  t.equal(h.children.length, 1, 'a failed start is not retried on its own')
})

void t.test('a backend that never prints its address is killed after the start timeout', async (t) => {
  const dir = t.testdir(SCRIPTS)
  const h = harness(t, { backendPath: join(dir, 'silent.mjs'), startTimeoutMs: 300, stopGraceMs: 500 })
  const started = Date.now()
  await t.rejects(h.driver.ensureUser('alice'), { name: 'WorkloadFailedError', message: /did not report a listening address within 300 ms/ })
  t.ok(Date.now() - started >= 290)
  t.equal(isAlive(h.children[0]?.pid), false)
})

void t.test('an unexpected first line is refused', async (t) => {
  const dir = t.testdir(SCRIPTS)
  const h = harness(t, { backendPath: join(dir, 'garbage.mjs') })
  await t.rejects(h.driver.ensureUser('alice'), { name: 'WorkloadFailedError', message: /unexpected first line: "hello there"/ })
  t.equal(isAlive(h.children[0]?.pid), false)
})

void t.test('a missing executable is a clear error', async (t) => {
  const h = harness(t, { execPath: '/nonexistent/node' })
  await t.rejects(h.driver.ensureUser('alice'), { name: 'WorkloadFailedError', message: /could not be spawned \(spawn \/nonexistent\/node ENOENT\)/ })
})

void t.test('a backend that ignores SIGTERM is killed after the grace period', async (t) => {
  const dir = t.testdir(SCRIPTS)
  const h = harness(t, { backendPath: join(dir, 'stubborn.mjs'), stopGraceMs: 300 })
  await h.driver.ensureUser('alice')
  const pid = h.driver.status('alice')?.pid
  const started = Date.now()
  await h.driver.removeUser('alice')
  t.ok(Date.now() - started >= 290, 'waited out the grace period')
  t.equal(isAlive(pid), false)
  t.equal(h.children[0]?.signalCode, 'SIGKILL')
})

void t.test('a crash-looping backend is restarted with backoff, then marked failed', async (t) => {
  const dir = t.testdir(SCRIPTS)
  const clock = new ManualClock()
  const h = harness(t, { backendPath: join(dir, 'crashes.mjs'), maxRestarts: 2, restartInitialMs: 100, clock })
  await h.driver.ensureUser('alice')
  const waits: number[] = []
  const deadline = Date.now() + 10_000
  while (h.driver.status('alice')?.state !== 'failed' && Date.now() < deadline) {
    // The processes run in real time; the wait before a restart is the one timer shorter than a start's timeout.
    const restart = clock.timers().find((timer) => timer.delayMs < DEFAULT_BACKEND_START_TIMEOUT_MS)
    if (restart === undefined) {
      await new Promise((resolve) => setTimeout(resolve, 5))
      continue
    }
    waits.push(restart.delayMs)
    await clock.advance(restart.delayMs - 1)
    t.equal(h.children.length, waits.length, `restart ${waits.length}: not before its delay`)
    await clock.advance(1)
  }
  t.match(h.driver.status('alice'), { state: 'failed', crashes: 3 })
  t.same(waits, [100, 200], 'the delay doubles per consecutive crash')
  t.equal(h.children.length, 3, 'the first start and two restarts')
  t.same(h.source.snapshot.get('alice'), [], 'a failed user stays known but not ready')
  for (const child of h.children) t.equal(isAlive(child.pid), false)

  const retry = h.driver.ensureUser('alice')
  t.equal(h.driver.status('alice')?.state, 'starting', 'ensureUser tries a failed user again')
  await retry
  t.equal(h.children.length, 4)
})

void t.test('bad options and user ids are refused with the field named', async (t) => {
  const source = new LocalEndpointSource()
  const logger = createLogger('silent')
  t.throws(() => new LocalDriver({ source, logger, startTimeoutMs: 0 }), { name: 'TypeError', message: /^startTimeoutMs:/ })
  t.throws(() => new LocalDriver({ source, logger, stopGraceMs: Number.NaN }), { name: 'TypeError', message: /^stopGraceMs:/ })
  t.throws(() => new LocalDriver({ source, logger, maxRestarts: -1 }), { name: 'TypeError', message: /^maxRestarts:/ })
  t.throws(() => new LocalDriver({ source, logger, backendPath: '' }), { name: 'TypeError', message: /^backendPath:/ })
  t.throws(() => new LocalDriver({ logger } as never), { name: 'TypeError', message: /^source:/ })
  const driver = new LocalDriver({ source, logger })
  await t.rejects(driver.ensureUser('Alice'), { name: 'TypeError', message: /^user:/ })
  await t.rejects(driver.ensureUser('../etc'), { name: 'TypeError', message: /^user:/ })
  t.throws(() => driver.removeUser(''), { name: 'TypeError', message: /^user:/ })
  await driver.close()
})
