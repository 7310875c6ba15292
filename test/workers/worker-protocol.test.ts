// A real gateway worker process with the test as its primary: what it does with messages that
// arrive right behind the snapshot, with a drain before it started, and without a primary.
import { fork, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { randomBytes } from 'node:crypto'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { mintToken } from '../../src/auth/mint.ts'
import { createBackend } from '../../src/local/backend.ts'
import type { FromWorker, ToWorker, WorkerInit } from '../../src/workers/messages.ts'
import { WORKER_SCRIPT } from '../../src/workers/supervisor.ts'

const secret = randomBytes(32).toString('hex')
const INIT: WorkerInit = { type: 'init', routes: [], synced: true, missing: false, activity: false, activityIntervalMs: undefined }

function startWorker (t: Test): ChildProcess {
  const child = fork(WORKER_SCRIPT, ['0'], {
    env: { PATH: process.env.PATH, PODGATE_JWT_SECRET: secret, PODGATE_HOST: '127.0.0.1', PODGATE_PORT: '0', PODGATE_LOG_LEVEL: 'warn', PODGATE_ACCESS_LOG: 'false' },
    execArgv: [],
    serialization: 'advanced',
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  return child
}

function next (child: ChildProcess, type: FromWorker['type']): Promise<FromWorker> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: FromWorker): void => {
      if (message.type !== type) return
      child.off('message', onMessage)
      resolve(message)
    }
    child.on('message', onMessage)
    child.once('exit', (code) => { reject(new Error(`worker exited (${String(code)}) before "${type}"`)) })
  })
}

function send (child: ChildProcess, message: ToWorker): void {
  child.send(message)
}

void t.test('routes sent in the same breath as the snapshot are applied, not dropped', async (t) => {
  const backend = await createBackend({ user: 'alice' })
  t.teardown(() => backend.close())
  const child = startWorker(t)
  await next(child, 'hello')
  // A change right behind the snapshot, before the worker has set anything up.
  send(child, INIT)
  send(child, { type: 'routes', routes: [['alice', [['127.0.0.1', backend.address.port]]]] })
  const listening = await next(child, 'listening') as Extract<FromWorker, { type: 'listening' }>
  const token = await mintToken({ secret: new TextEncoder().encode(secret), user: 'alice', ttlSeconds: 600 })
  const response = await request(`http://127.0.0.1:${listening.port}/`, { headers: { authorization: `Bearer ${token}` } })
  t.equal(response.statusCode, 200)
  t.equal((await response.body.json() as { user: string }).user, 'alice')

  const exited = once(child, 'exit', { signal: AbortSignal.timeout(10_000) })
  send(child, { type: 'drain' })
  const [code] = await exited as [number | null]
  t.equal(code, 0, 'drains and exits 0')
})

void t.test('a worker told to drain before its snapshot exits at once', async (t) => {
  const child = startWorker(t)
  await next(child, 'hello')
  const exited = once(child, 'exit', { signal: AbortSignal.timeout(10_000) })
  send(child, { type: 'drain' })
  const [code] = await exited as [number | null]
  t.equal(code, 0)
})

void t.test('a worker whose primary goes away before its snapshot exits', async (t) => {
  const child = startWorker(t)
  await next(child, 'hello')
  const exited = once(child, 'exit', { signal: AbortSignal.timeout(10_000) })
  child.disconnect()
  const [code] = await exited as [number | null]
  t.equal(code, 0)
})

void t.test('started outside podgate serve, it says so and exits 2', async (t) => {
  const child = spawn(process.execPath, [WORKER_SCRIPT], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => { stderr += String(chunk) })
  const [code] = await once(child, 'exit', { signal: AbortSignal.timeout(10_000) }) as [number | null]
  t.equal(code, 2)
  t.match(stderr, /gateway worker; `podgate serve` starts it/)
})
