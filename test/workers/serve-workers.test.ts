// `podgate serve` with PODGATE_WORKERS=2 as a real process tree: both workers take
// connections on the one port, a killed worker is replaced, SIGTERM ends every process, a
// taken port stops start-up with the reason, a second podgate on the same port fails instead
// of sharing the first one's traffic, and workers restarted after all died never join another
// process's SO_REUSEPORT group.
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { once } from 'node:events'
import { createServer, type AddressInfo, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { WebSocket } from 'ws'
import { mintToken } from '../../src/auth/mint.ts'
import { createBackend } from '../../src/local/backend.ts'
import { isAlive } from '../support/processes.ts'
import { runCli, startServe, type ServeProcess } from '../support/serve.ts'

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
  t.equal(await metric(serve, 'podgate_requests_total{class="2xx",source="pod"}'), 40)
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

async function holdPort (t: Test, options: { reusePort: boolean, port?: number }): Promise<Server> {
  const holder = createServer((socket) => { socket.end('HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\nholder') })
  holder.listen({ host: '127.0.0.1', port: options.port ?? 0, reusePort: options.reusePort })
  await once(holder, 'listening')
  t.teardown(() => { holder.close() })
  return holder
}

for (const reusePort of [false, true]) {
  void t.test(`a port held by another process ${reusePort ? 'with' : 'without'} SO_REUSEPORT stops start-up with one line naming it`, async (t) => {
    const { env } = await setup(t)
    const holder = await holdPort(t, { reusePort })
    const port = (holder.address() as AddressInfo).port
    const run = await runCli(['serve'], { ...env, PODGATE_HOST: '127.0.0.1', PODGATE_PORT: String(port), PODGATE_ADMIN_PORT: '0' })
    t.equal(run.code, 1)
    t.ok(run.stderr.startsWith(`podgate: cannot listen on 127.0.0.1:${port} (PODGATE_PORT): address already in use by pid ${process.pid} (node `), run.stderr)
    t.match(run.stderr, /^podgate: [^\n]+\n$/, 'one line')
    t.notOk(run.leftBehind, 'no worker was left running')
  })
}

void t.test('a second podgate serve on the port of a running one fails; the first keeps all the traffic', async (t) => {
  const { env, token } = await setup(t)
  const first = await startServe(t, env)
  const port = new URL(first.gatewayUrl).port
  const second = await runCli(['serve'], { ...env, PODGATE_HOST: '127.0.0.1', PODGATE_PORT: port, PODGATE_ADMIN_PORT: '0' })
  t.equal(second.code, 1)
  const holders = [...second.stderr.matchAll(/pid (\d+) \(node \S+\/worker\.ts \d\)/g)].map((m) => Number(m[1])).sort((a, b) => a - b)
  t.ok(second.stderr.startsWith(`podgate: cannot listen on 127.0.0.1:${port} (PODGATE_PORT): address already in use by pid `), second.stderr)
  t.match(second.stderr, /^podgate: [^\n]+\n$/, 'one line')
  t.same(holders, workerPids(first).sort((a, b) => a - b), 'it names the first podgate\'s workers as the holders')
  t.notOk(second.leftBehind)
  for (let i = 0; i < 40; i++) t.equal(await status(`${first.gatewayUrl}/fixed`, token), 200)
  t.equal(await metric(first, 'podgate_requests_total{class="2xx",source="pod"}'), 40, 'every request reached the first podgate')
})

function isZombie (pid: number): boolean {
  // /proc/<pid>/stat: "pid (comm) state ..."; comm may hold spaces, the state follows the last ')'.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z'
}

void t.test('workers restarted after all died do not join a process that took the port meanwhile; they serve once it is gone', async (t) => {
  const { env, token } = await setup(t)
  const serve = await startServe(t, env)
  const port = Number(new URL(serve.gatewayUrl).port)
  const primary = serve.child.pid as number
  const workers = workerPids(serve)
  // The primary frozen, both workers killed: the port is free and nobody restarts them yet.
  process.kill(primary, 'SIGSTOP')
  t.teardown(() => { process.kill(primary, 'SIGCONT') })
  for (const pid of workers) process.kill(pid, 'SIGKILL')
  await until('both workers dead', () => Promise.resolve(workers.every(isZombie)))
  // Something of the same user binds it with SO_REUSEPORT, as the workers do: they could join it.
  const holder = await holdPort(t, { reusePort: true, port })
  process.kill(primary, 'SIGCONT')

  const refusals = (): Array<{ worker?: number, attempt?: number, error?: string }> => serve.lines
    .map((line) => JSON.parse(line) as { msg?: string, worker?: number, attempt?: number, error?: string })
    .filter((entry) => entry.msg === 'gateway worker down; restarting it' && entry.error?.startsWith('cannot listen') === true)
  await until('a restart refused', () => Promise.resolve(refusals().length > 0))
  const refusal = refusals()[0]?.error ?? ''
  t.ok(refusal.startsWith(`cannot listen on 127.0.0.1:${port} (PODGATE_PORT): address already in use by pid ${process.pid} (node `), refusal)
  const ready = await request(`${serve.adminUrl}/readyz`)
  t.equal(ready.statusCode, 503)
  t.match(await ready.body.json(), { reason: 'no gateway worker is serving' })
  for (let i = 0; i < 10; i++) {
    const response = await request(`${serve.gatewayUrl}/fixed`, { headers: { connection: 'close', authorization: `Bearer ${token}` } })
    t.equal(await response.body.text(), 'holder', 'every connection reaches the holder alone: no worker joined it')
  }

  // Its listening socket closes at once; connections it answered may linger, and do not matter.
  holder.close()
  await until('workers serving again', async () => (await request(`${serve.adminUrl}/readyz`).then(async (r) => { await r.body.dump(); return r.statusCode })) === 200, 15_000)
  t.equal(await status(`${serve.gatewayUrl}/fixed`, token), 200)
  // Each worker's recovery line counts its failed attempts: its death, then every refused restart.
  const parsed = (): Array<{ msg?: string, worker?: number, attempts?: number }> => serve.lines.map((line) => JSON.parse(line) as { msg?: string, worker?: number, attempts?: number })
  await until('both workers serving again', () => Promise.resolve(parsed().filter((entry) => entry.msg === 'gateway worker serving again').length === 2), 15_000)
  const entries = parsed()
  const refused = refusals()[0]?.worker
  for (const worker of [0, 1]) {
    const failures = entries.filter((entry) => entry.msg === 'gateway worker down; restarting it' && entry.worker === worker).length
    t.match(entries.filter((entry) => entry.msg === 'gateway worker serving again' && entry.worker === worker), [{ attempts: failures }], `worker ${worker}: serving again after ${failures} attempts`)
    if (worker === refused) t.ok(failures >= 2, 'the refused one counted its refusals')
  }
})
