// A real gateway worker process with the test as its primary: what it does with messages that
// arrive right behind the snapshot, with a drain before it started, without a primary, and
// when it may not or cannot bind the gateway port.
import { fork, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { randomBytes } from 'node:crypto'
import { createServer, type AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { mintToken } from '../../src/auth/mint.ts'
import { createBackend } from '../../src/local/backend.ts'
import type { FromWorker, ToWorker, WorkerInit } from '../../src/workers/messages.ts'
import { WORKER_SCRIPT } from '../../src/workers/supervisor.ts'

const secret = randomBytes(32).toString('hex')
const INIT: WorkerInit = { type: 'init', routes: [], synced: true, missing: false, activity: false, activityIntervalMs: undefined }

interface WorkerOptions {
  readonly port?: number
  /** What the test, as primary, answers when the worker asks to bind (default: go ahead). */
  readonly refuse?: string
}

function startWorker (t: Test, options: WorkerOptions = {}): ChildProcess & { output: () => string } {
  const child = fork(WORKER_SCRIPT, ['0'], {
    env: { PATH: process.env.PATH, PODGATE_JWT_SECRET: secret, PODGATE_HOST: '127.0.0.1', PODGATE_PORT: String(options.port ?? 0), PODGATE_LOG_LEVEL: 'warn', PODGATE_ACCESS_LOG: 'false' },
    execArgv: [],
    serialization: 'advanced',
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  })
  let output = ''
  child.stdout?.on('data', (chunk: Buffer) => { output += String(chunk) })
  child.stderr?.on('data', (chunk: Buffer) => { output += String(chunk) })
  child.on('message', (message: FromWorker) => {
    if (message.type === 'bind') send(child, options.refuse === undefined ? { type: 'bind' } : { type: 'bind', refused: options.refuse })
  })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  return Object.assign(child, { output: () => output })
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

void t.test('a worker sends the users routed to their workload, each once per send, and no user it answered 404 or 503', async (t) => {
  const backend = await createBackend({ user: 'alice' })
  t.teardown(() => backend.close())
  const child = startWorker(t)
  const reports: string[][] = []
  child.on('message', (message: FromWorker) => { if (message.type === 'activity') reports.push([...message.users]) })
  await next(child, 'hello')
  // A throttle interval shorter than the 1 s send period: the worker sends that often.
  send(child, { ...INIT, activity: true, activityIntervalMs: 100, routes: [['alice', [['127.0.0.1', backend.address.port]]], ['waiting', []]] })
  const listening = await next(child, 'listening') as Extract<FromWorker, { type: 'listening' }>
  const status = async (user: string): Promise<number> => {
    const token = await mintToken({ secret: new TextEncoder().encode(secret), user, ttlSeconds: 600 })
    const response = await request(`http://127.0.0.1:${listening.port}/`, { headers: { authorization: `Bearer ${token}` } })
    await response.body.dump()
    return response.statusCode
  }
  t.equal(await status('nobody'), 404)
  t.equal(await status('waiting'), 503)
  for (let i = 0; i < 5; i++) t.equal(await status('alice'), 200)
  while (!reports.some((users) => users.includes('alice'))) await next(child, 'activity')
  t.ok(reports.every((users) => new Set(users).size === users.length), 'each user at most once per send')
  t.notOk(reports.flat().some((user) => user === 'nobody' || user === 'waiting'), 'users without a routed workload are never sent')

  const exited = once(child, 'exit', { signal: AbortSignal.timeout(10_000) })
  send(child, { type: 'drain' })
  await exited
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

void t.test('refused the port by its primary, a worker exits 1 without binding it or printing anything', async (t) => {
  const child = startWorker(t, { refuse: 'cannot listen on 127.0.0.1:1 (PODGATE_PORT): address already in use' })
  await next(child, 'hello')
  const exited = once(child, 'exit', { signal: AbortSignal.timeout(10_000) })
  send(child, INIT)
  const [code] = await exited as [number | null]
  t.equal(code, 1)
  t.equal(child.output(), '', 'the primary reports it; the worker says nothing')
})

void t.test('a worker that cannot bind tells its primary why in one line, exits 1, and prints no stack', async (t) => {
  // A listener without SO_REUSEPORT that appeared after the primary's check.
  const holder = createServer()
  holder.listen({ host: '127.0.0.1', port: 0 })
  await once(holder, 'listening')
  t.teardown(() => { holder.close() })
  const port = (holder.address() as AddressInfo).port
  const child = startWorker(t, { port })
  await next(child, 'hello')
  const exited = once(child, 'exit', { signal: AbortSignal.timeout(10_000) })
  const reason = next(child, 'cannot-listen')
  send(child, INIT)
  const message = await reason as Extract<FromWorker, { type: 'cannot-listen' }>
  t.match(message.message, new RegExp(`^cannot listen on 127\\.0\\.0\\.1:${port} \\(PODGATE_PORT\\): address already in use by pid ${process.pid} `))
  const [code] = await exited as [number | null]
  t.equal(code, 1)
  t.notMatch(child.output(), /^\s+at /m)
})

void t.test('told to drain while it waits for leave to bind, a worker exits 0', async (t) => {
  const child = fork(WORKER_SCRIPT, ['0'], {
    env: { PATH: process.env.PATH, PODGATE_JWT_SECRET: secret, PODGATE_HOST: '127.0.0.1', PODGATE_PORT: '0', PODGATE_LOG_LEVEL: 'warn' },
    execArgv: [],
    serialization: 'advanced',
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  await next(child, 'hello')
  const asking = next(child, 'bind')
  send(child, INIT)
  await asking
  const exited = once(child, 'exit', { signal: AbortSignal.timeout(10_000) })
  send(child, { type: 'drain' })
  const [code] = await exited as [number | null]
  t.equal(code, 0)
})
