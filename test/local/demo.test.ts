// `podgate demo` end to end: the real CLI with per-user backend processes.
import t, { type Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { PassThrough } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { mintToken } from '../../src/auth/mint.ts'
import { loadConfig } from '../../src/config.ts'
import { demoConfig, runDemo } from '../../src/local/demo.ts'
import { ConfigError } from '../../src/errors.ts'
import { createLogger } from '../../src/log.ts'
import { isAlive } from '../support/processes.ts'

const MAIN = fileURLToPath(new URL('../../src/main.ts', import.meta.url))
const SECRET = 'a demo secret that is at least thirty-two bytes long'

interface DemoProcess {
  child: ChildProcess
  output: string
  gatewayUrl: string
  adminUrl: string
  backendPids: number[]
  aliceToken: string
  bobCookie: string
}

/** Starts `node src/main.ts demo` and parses what it prints. */
async function startDemo (t: Test, env: Record<string, string> = {}): Promise<DemoProcess> {
  const child = spawn(process.execPath, [MAIN, 'demo'], {
    env: { PATH: process.env.PATH, PODGATE_PORT: '0', PODGATE_ADMIN_PORT: '0', PODGATE_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  let output = ''
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => { stderr += String(chunk) })
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`demo printed no instructions within 20 s: ${output}${stderr}`)) }, 20_000)
    child.stdout?.on('data', (chunk: Buffer) => {
      output += String(chunk)
      if (output.includes('Ctrl-C stops')) { clearTimeout(timer); resolve() }
    })
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`demo exited (${code}) early: ${output}${stderr}`)) })
  })
  const gateway = /podgate demo: gateway (http:\/\/127\.0\.0\.1:\d+)\s+admin (http:\/\/127\.0\.0\.1:\d+)/.exec(output)
  const alice = /Authorization: Bearer ([\w-]+\.[\w-]+\.[\w-]+)'/.exec(output)
  const bob = /-b 'session=([\w-]+\.[\w-]+\.[\w-]+)'/.exec(output)
  if (gateway?.[1] === undefined || gateway[2] === undefined || alice?.[1] === undefined || bob?.[1] === undefined) throw new Error(`unexpected demo output:\n${output}`)
  const backendPids = [...output.matchAll(/\(pid (\d+)\)/g)].map((m) => Number(m[1]))
  return { child, output, gatewayUrl: gateway[1], adminUrl: gateway[2], backendPids, aliceToken: alice[1], bobCookie: bob[1] }
}


async function whoAnswers (url: string, headers: Record<string, string>): Promise<{ status: number, body: { user?: string, headers?: Record<string, string> } }> {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(5_000) })
  return { status: res.status, body: await res.json() as { user?: string, headers?: Record<string, string> } }
}

void t.test('podgate demo: each token reaches its own backend; SIGTERM exits 0 and stops every backend', async (t) => {
  const demo = await startDemo(t)
  t.not(demo.gatewayUrl, 'http://127.0.0.1:0', 'PODGATE_PORT=0 prints the real port')
  t.equal(demo.backendPids.length, 2, 'two backends, alice and bob')
  for (const pid of demo.backendPids) t.ok(isAlive(pid), `backend ${pid} runs`)

  const alice = await whoAnswers(`${demo.gatewayUrl}/`, { authorization: `Bearer ${demo.aliceToken}` })
  t.equal(alice.status, 200)
  t.equal(alice.body.user, 'alice', 'alice\'s bearer token reaches alice\'s backend')
  t.equal(alice.body.headers?.['x-user-id'], 'alice')

  const bob = await whoAnswers(`${demo.gatewayUrl}/`, { cookie: `session=${demo.bobCookie}` })
  t.equal(bob.status, 200)
  t.equal(bob.body.user, 'bob', 'bob\'s cookie reaches bob\'s backend')

  const anonymous = await fetch(`${demo.gatewayUrl}/`)
  t.equal(anonymous.status, 401)
  t.match(anonymous.headers.get('www-authenticate'), /^Bearer/)
  await anonymous.body?.cancel()

  const echo = await fetch(`${demo.gatewayUrl}/echo`, { method: 'POST', headers: { authorization: `Bearer ${demo.aliceToken}` }, body: 'hello through podgate' })
  t.equal(await echo.text(), 'hello through podgate')

  const metrics = await fetch(`${demo.adminUrl}/metrics`)
  t.match(await metrics.text(), /^podgate_requests_total\{class="2xx",source="pod"\} [1-9]/m)
  t.match(demo.output, /npm run podgate -- token alice/)

  const exited = once(demo.child, 'exit') as Promise<[number | null, string | null]>
  demo.child.kill('SIGTERM')
  t.same(await exited, [0, null], 'exit code 0')
  for (const pid of demo.backendPids) t.equal(isAlive(pid), false, `backend ${pid} is gone`)
})

void t.test('podgate demo killed outright: its backends exit on their own', async (t) => {
  const demo = await startDemo(t)
  const exited = once(demo.child, 'exit')
  demo.child.kill('SIGKILL')
  await exited
  const deadline = Date.now() + 10_000
  while (demo.backendPids.some(isAlive) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
  for (const pid of demo.backendPids) t.equal(isAlive(pid), false, `backend ${pid} did not outlive the demo`)
})

void t.test('podgate demo with PODGATE_JWT_SECRET accepts tokens minted with that secret', async (t) => {
  const demo = await startDemo(t, { PODGATE_JWT_SECRET: SECRET })
  const token = await mintToken({ secret: new TextEncoder().encode(SECRET), user: 'bob', ttlSeconds: 60 })
  const bob = await whoAnswers(`${demo.gatewayUrl}/`, { authorization: `Bearer ${token}` })
  t.equal(bob.body.user, 'bob')
  t.match(demo.output, /signed with PODGATE_JWT_SECRET/)
  const exited = once(demo.child, 'exit') as Promise<[number | null]>
  demo.child.kill('SIGINT')
  t.equal((await exited)[0], 0)
})

/** runDemo in this process, with everything on port 0 and output captured. */
async function demoInProcess (t: Test, env: Record<string, string>): Promise<{ gatewayUrl: string, output: () => string, close: () => Promise<void> }> {
  const fullEnv = { PODGATE_PORT: '0', PODGATE_ADMIN_PORT: '0', PODGATE_ACCESS_LOG: 'false', ...env }
  const out = new PassThrough()
  let output = ''
  out.on('data', (chunk: Buffer) => { output += String(chunk) })
  const demo = await runDemo({ config: loadConfig(fullEnv, { requireKey: false }), env: fullEnv, logger: createLogger('silent'), out })
  t.teardown(() => demo.close())
  return { gatewayUrl: demo.gatewayUrl, output: () => output, close: () => demo.close() }
}

void t.test('a user without a backend is 404, or gets one started with spawn-on-demand', async (t) => {
  const secret = new TextEncoder().encode(SECRET)
  const carol = await mintToken({ secret, user: 'carol', ttlSeconds: 60 })

  const plain = await demoInProcess(t, { PODGATE_JWT_SECRET: SECRET })
  const missing = await fetch(`${plain.gatewayUrl}/`, { headers: { authorization: `Bearer ${carol}` } })
  t.equal(missing.status, 404)
  await missing.body?.cancel()
  await plain.close()

  const spawning = await demoInProcess(t, { PODGATE_JWT_SECRET: SECRET, PODGATE_SPAWN_ON_DEMAND: 'true' })
  const spawned = await whoAnswers(`${spawning.gatewayUrl}/`, { authorization: `Bearer ${carol}` })
  t.equal(spawned.status, 200)
  t.equal(spawned.body.user, 'carol', 'carol\'s backend was started for her first request')
})

void t.test('demoConfig: a generated secret, loopback by default, and a clear error for public keys', (t) => {
  const plain = loadConfig({}, { requireKey: false })
  const a = demoConfig(plain, {})
  const b = demoConfig(plain, {})
  t.equal(a.auth.key.kind, 'secret')
  if (a.auth.key.kind === 'secret' && b.auth.key.kind === 'secret') {
    t.equal(a.auth.key.secret.length, 32)
    t.notSame(a.auth.key.secret, b.auth.key.secret, 'a fresh random secret each time')
  }
  t.equal(a.gateway.host, '127.0.0.1')
  t.equal(demoConfig(loadConfig({ PODGATE_HOST: '::1' }, { requireKey: false }), { PODGATE_HOST: '::1' }).gateway.host, '::1')

  const env = { PODGATE_JWT_SECRET: SECRET }
  const shared = demoConfig(loadConfig(env), env)
  t.same(shared.auth.key.kind === 'secret' ? new TextDecoder().decode(shared.auth.key.secret) : undefined, SECRET, 'the configured secret is kept')

  const jwks = { PODGATE_JWKS_URL: 'https://id.example/jwks.json' }
  t.throws(() => demoConfig(loadConfig(jwks), jwks), new ConfigError('PODGATE_JWKS_URL', 'podgate demo signs its own tokens and needs a shared secret: unset it, or set PODGATE_JWT_SECRET instead'))
  t.end()
})
