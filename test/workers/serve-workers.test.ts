// `podgate serve` with PODGATE_WORKERS=2 as a real process tree: both workers take
// connections on the one port, a killed worker is replaced, SIGTERM ends every process, and
// a worker that cannot listen stops start-up with the reason.
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { WebSocket } from 'ws'
import { mintToken } from '../../src/auth/mint.ts'
import { createBackend } from '../../src/local/backend.ts'
import { isAlive } from '../support/processes.ts'
import { startServe, type ServeProcess } from '../support/serve.ts'

interface Setup {
  readonly env: Record<string, string>
  readonly token: string
}

async function setup (t: Test): Promise<Setup> {
  const backend = await createBackend({ user: 'alice' })
  t.teardown(() => backend.close())
  const dir = mkdtempSync(join(tmpdir(), 'podgate-workers-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const routes = join(dir, 'routes.json')
  writeFileSync(routes, JSON.stringify({ alice: [`127.0.0.1:${backend.address.port}`], bob: [] }))
  const secret = randomBytes(32).toString('hex')
  const token = await mintToken({ secret: new TextEncoder().encode(secret), user: 'alice', ttlSeconds: 600 })
  return { env: { PODGATE_JWT_SECRET: secret, PODGATE_LOCAL_ROUTES: routes, PODGATE_WORKERS: '2' }, token }
}

function workerPids (serve: ServeProcess): number[] {
  const pid = serve.child.pid as number
  return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
}

async function metric (serve: ServeProcess, name: string): Promise<number | undefined> {
  const text = await (await request(`${serve.adminUrl}/metrics`)).body.text()
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  return line === undefined ? undefined : Number(line.slice(name.length + 1))
}

async function status (url: string, token: string | undefined): Promise<number> {
  const response = await request(url, { headers: { connection: 'close', ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) } })
  await response.body.dump()
  return response.statusCode
}

async function until (what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

void t.test('two workers share the port: both serve, 503/404/401 as in one process, WebSockets pass', async (t) => {
  const { env, token } = await setup(t)
  const serve = await startServe(t, { ...env, PODGATE_ACCESS_LOG: 'true' })
  t.equal(workerPids(serve).length, 2)
  for (let i = 0; i < 40; i++) t.equal(await status(`${serve.gatewayUrl}/fixed`, token), 200)
  const servedBy = new Set(serve.lines.map((line) => JSON.parse(line) as { msg?: string, worker?: number })
    .filter((entry) => entry.msg === 'request').map((entry) => entry.worker))
  t.same([...servedBy].sort(), [0, 1], 'the kernel spread 40 connections over both workers')

  const bobToken = await mintToken({ secret: new TextEncoder().encode(env.PODGATE_JWT_SECRET), user: 'bob', ttlSeconds: 600 })
  const zedToken = await mintToken({ secret: new TextEncoder().encode(env.PODGATE_JWT_SECRET), user: 'zed', ttlSeconds: 600 })
  t.equal(await status(`${serve.gatewayUrl}/`, bobToken), 503, 'known user without ready endpoints')
  t.equal(await status(`${serve.gatewayUrl}/`, zedToken), 404, 'unknown user')
  t.equal(await status(`${serve.gatewayUrl}/`, undefined), 401)

  const socket = new WebSocket(`${serve.gatewayUrl.replace('http', 'ws')}/ws`, { headers: { authorization: `Bearer ${token}` } })
  t.teardown(() => { socket.terminate() })
  await new Promise((resolve, reject) => { socket.once('open', resolve); socket.once('error', reject) })
  socket.send('ping through a worker')
  const [echo] = await new Promise<[Buffer]>((resolve) => { socket.once('message', (data: Buffer) => { resolve([data]) }) })
  t.equal(String(echo), 'ping through a worker')
  t.equal(await metric(serve, 'podgate_open_websockets'), 1)
  t.equal(await metric(serve, 'podgate_requests_total{class="2xx"}'), 40)
})

void t.test('a killed worker is replaced and counted; SIGTERM stops the primary and every worker', async (t) => {
  const { env, token } = await setup(t)
  const serve = await startServe(t, env)
  const [first, second] = workerPids(serve) as [number, number]
  process.kill(first, 'SIGKILL')
  await until('a replacement worker', async () => {
    const pids = workerPids(serve)
    return pids.length === 2 && !pids.includes(first) && await metric(serve, 'podgate_workers') === 2
  })
  t.equal(await metric(serve, 'podgate_worker_restarts_total'), 1)
  for (let i = 0; i < 10; i++) t.equal(await status(`${serve.gatewayUrl}/fixed`, token), 200)

  const pids = workerPids(serve)
  t.ok(pids.includes(second))
  t.equal(await serve.stop(), 0, 'the primary exits 0')
  t.same(pids.filter(isAlive), [], 'no worker outlives it')
})

void t.test('a worker that cannot listen stops start-up with the reason', async (t) => {
  const { env } = await setup(t)
  // A listener without SO_REUSEPORT holds the port: the workers' bind fails.
  const holder = createServer()
  await new Promise<void>((resolve) => holder.listen({ host: '127.0.0.1', port: 0 }, resolve))
  t.teardown(() => { holder.close() })
  const port = (holder.address() as { port: number }).port
  await t.rejects(startServe(t, { ...env, PODGATE_PORT: String(port) }), /gateway worker 0 exited \(code 1\) before listening/)
})
