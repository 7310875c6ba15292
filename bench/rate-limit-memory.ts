// Per-user limits and memory: 100,000 distinct users, one request each, through a real gateway
// (HTTP on loopback, every token verified) with the limits on, and the same with them off as
// the control, each gateway in a fresh process of its own (this one drives the load). It
// reports what each user's bucket costs in heap and RSS, checks the RSS against the per-user
// budget the routing table is held to (goals.ts), and checks that every bucket is dropped once
// it has filled up again (on the limiter alone, where the bucket count can be read). The
// gateway's limits run on a ManualClock, so no run waits out a refill. Prints markdown; exit
// code 1 when a check fails.
//
//   node bench/rate-limit-memory.ts        (~1 minute on 2 CPUs; its children run with --expose-gc)
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Pool } from 'undici'
import { startPodgate } from '../src/app.ts'
import { createCredentialVerifier } from '../src/auth/credential-verifier.ts'
import { loadConfig } from '../src/config.ts'
import { createRateLimiter } from '../src/gateway/rate-limit.ts'
import { LocalEndpointSource } from '../src/local/endpoint-source.ts'
import { createLogger } from '../src/log.ts'
import { Metrics } from '../src/metrics.ts'
import { ManualClock } from '../test/support/manual-clock.ts'
import { MAX_BYTES_PER_USER } from './goals.ts'
import { bearer, hs256Key, type SigningKey } from './tokens.ts'

const USERS = 100_000
/** Where the run's markdown goes besides stdout: RESULTS.md (rewritten by `npm run bench`) links to it. */
const RESULTS_FILE = fileURLToPath(new URL('results/rate-limit-memory.md', import.meta.url))
const WARM_UP_USERS = 2_000
const IN_FLIGHT = 64
/** 1/m with a burst of 2: nobody is refused, and a bucket takes 120 s to fill again. */
const LIMITS = { PODGATE_RATE_LIMIT: '1/m', PODGATE_RATE_BURST: '2', PODGATE_MAX_CONCURRENT_PER_USER: '8' }
const REFILL_MS = 120_000
/** After the sweep, what the gateway may still hold per user (heap noise, not buckets). */
const MAX_RETAINED_BYTES_PER_USER = 16

interface Sample {
  readonly heapBytes: number
  readonly rssBytes: number
}

interface GatewayRun {
  readonly mode: 'off' | 'on'
  readonly seconds: number
  readonly statuses: Record<string, number>
  readonly before: Sample
  readonly after: Sample
  /** After the gateway's clock has moved past the refill time (the sweep has run). */
  readonly swept: Sample
}

interface LimiterRun {
  readonly bucketsAfter: number
  readonly bucketsSwept: number
  readonly heapBytesPerBucket: number
  readonly retainedBytesPerUser: number
}

/** What this script asks of a gateway process, and what it answers. */
type Ask = 'sample' | 'refill' | 'stop'
type Answer = { readonly url: string } | Sample | null

function sample (): Sample {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error('run with node --expose-gc')
  gc()
  gc()
  const { heapUsed, rss } = process.memoryUsage()
  return { heapBytes: heapUsed, rssBytes: rss }
}

/** `count` users named `<prefix>-<i>`, one request each, IN_FLIGHT at a time. */
async function drive (pool: Pool, key: SigningKey, prefix: string, count: number, statuses: Record<string, number>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++
      const token = await key.sign(`${prefix}-${i}`, String(i))
      const res = await pool.request({ path: '/', method: 'GET', headers: bearer(token) })
      await res.body.dump()
      statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1
    }
  }
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker))
}

/** The environment of a gateway process. */
function gatewayEnv (mode: 'off' | 'on', secret: string): Record<string, string> {
  return {
    PODGATE_JWT_SECRET: secret,
    PODGATE_HOST: '127.0.0.1',
    PODGATE_PORT: '0',
    PODGATE_ADMIN_PORT: '0',
    PODGATE_ACCESS_LOG: 'false',
    // Every token verified: the verified-token cache (bounded, on by default) would add its own entries.
    PODGATE_TOKEN_CACHE_SIZE: '0',
    ...(mode === 'on' ? LIMITS : {}),
  }
}

/** The gateway process: starts, tells its URL, then samples its memory and moves its clock when asked. */
async function serveGateway (): Promise<void> {
  const clock = new ManualClock()
  const config = loadConfig(process.env)
  const logger = createLogger('silent')
  const metrics = new Metrics({ defaultMetrics: false })
  // No routes: the limits are checked before routing, so every admitted request is a 404 that kept its bucket.
  const source = new LocalEndpointSource()
  const podgate = await startPodgate({ config, source, verifier: createCredentialVerifier(config, { metrics, logger }), logger, metrics, clock })
  const send = (answer: Answer): void => { process.send?.(answer) }
  process.on('message', (ask: Ask) => {
    if (ask === 'sample') send(sample())
    else if (ask === 'refill') void clock.advance(REFILL_MS).then(() => { send(sample()) })
    else void podgate.close().then(() => { process.disconnect() })
  })
  send({ url: podgate.gatewayUrl })
}

function start (args: readonly string[], env: Record<string, string> = {}): ChildProcess {
  return fork(fileURLToPath(import.meta.url), args, { env: { PATH: process.env.PATH ?? '', ...env }, execArgv: ['--expose-gc'], stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
}

async function ask<T extends Answer> (child: ChildProcess, what: Ask): Promise<T> {
  const answer = once(child, 'message') as Promise<[T]>
  child.send(what)
  return (await answer)[0]
}

/** Waits (bounded) for a child that was told to stop; kills it if it does not. */
async function stopped (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  const timer = setTimeout(() => { child.kill('SIGKILL') }, 10_000)
  await exited
  clearTimeout(timer)
}

async function gatewayRun (mode: 'off' | 'on'): Promise<GatewayRun> {
  const key = hs256Key()
  const child = start(['--gateway'], gatewayEnv(mode, key.verifier))
  try {
    const [ready] = await once(child, 'message') as [{ url: string }]
    const pool = new Pool(ready.url, { connections: 16 })
    try {
      await drive(pool, key, 'warm', WARM_UP_USERS, {})
      const before = await ask<Sample>(child, 'sample')
      const statuses: Record<string, number> = {}
      const started = performance.now()
      await drive(pool, key, 'user', USERS, statuses)
      const seconds = (performance.now() - started) / 1000
      const after = await ask<Sample>(child, 'sample')
      const swept = await ask<Sample>(child, 'refill')
      return { mode, seconds, statuses, before, after, swept }
    } finally {
      await pool.close()
    }
  } finally {
    if (child.connected) child.send('stop')
    await stopped(child)
  }
}

async function limiterRun (): Promise<LimiterRun> {
  const clock = new ManualClock()
  const limiter = createRateLimiter({ perSecond: 1 / 60, burst: 2, maxConcurrent: 8 }, clock)
  if (limiter === undefined) throw new Error('no limiter')
  const before = sample()
  for (let i = 0; i < USERS; i++) {
    const user = `user-${i}`
    if (limiter.admit(user) !== undefined) throw new Error(`${user} refused`)
    limiter.release(user)
  }
  const after = sample()
  const bucketsAfter = limiter.buckets
  await clock.advance(REFILL_MS)
  const swept = sample()
  limiter.close()
  return {
    bucketsAfter,
    bucketsSwept: limiter.buckets,
    heapBytesPerBucket: (after.heapBytes - before.heapBytes) / bucketsAfter,
    retainedBytesPerUser: (swept.heapBytes - before.heapBytes) / USERS,
  }
}

/** The limiter alone, in a process of its own. */
async function limiterChild (): Promise<LimiterRun> {
  const child = start(['--limiter'])
  try {
    const [result] = await once(child, 'message') as [LimiterRun]
    return result
  } finally {
    await stopped(child)
  }
}

const perUser = (a: number, b: number): number => (a - b) / USERS
const bytes = (n: number): string => `${Math.round(n).toLocaleString('en-US')} B`
const mib = (n: number): string => `${(n / 1024 / 1024).toFixed(1)} MiB`

function report (off: GatewayRun, on: GatewayRun, limiter: LimiterRun): boolean {
  const rows = [off, on].map((run) => `| ${run.mode} | ${Math.round(USERS / run.seconds).toLocaleString('en-US')} | ${JSON.stringify(run.statuses)} | ${mib(run.before.heapBytes)} → ${mib(run.after.heapBytes)} → ${mib(run.swept.heapBytes)} | ${bytes(perUser(run.after.heapBytes, run.before.heapBytes))} | ${mib(run.before.rssBytes)} → ${mib(run.after.rssBytes)} → ${mib(run.swept.rssBytes)} | ${bytes(perUser(run.after.rssBytes, run.before.rssBytes))} |`)
  const rssPerUser = perUser(on.after.rssBytes, on.before.rssBytes) - perUser(off.after.rssBytes, off.before.rssBytes)
  const retained = perUser(on.swept.heapBytes, on.before.heapBytes)
  const checks: Array<[string, string, string, boolean]> = [
    ['RSS growth per user from the limits (on − off)', `≤ ${MAX_BYTES_PER_USER} B`, bytes(rssPerUser), rssPerUser <= MAX_BYTES_PER_USER],
    ['gateway heap kept per user once the buckets are full again', `≤ ${MAX_RETAINED_BYTES_PER_USER} B`, bytes(retained), retained <= MAX_RETAINED_BYTES_PER_USER],
    ['limiter buckets after 100,000 users, then after the refill time', '100,000, then 0', `${limiter.bucketsAfter.toLocaleString('en-US')}, then ${limiter.bucketsSwept}`, limiter.bucketsAfter === USERS && limiter.bucketsSwept === 0],
  ]
  const lines = [
    `${USERS.toLocaleString('en-US')} users, one request each, ${IN_FLIGHT} in flight, every token verified (cache off); limits on: ${Object.entries(LIMITS).map(([k, v]) => `${k}=${v}`).join(', ')}. The gateway process's heap (after a forced GC) and RSS: before → after the users → after the refill time.`,
    '',
    '| limits | users/s | statuses | heap | heap per user | RSS | RSS per user |',
    '|---|---|---|---|---|---|---|',
    ...rows,
    '',
    `The limiter alone: ${bytes(limiter.heapBytesPerBucket)} of heap per bucket; ${bytes(limiter.retainedBytesPerUser)} per user left after the sweep.`,
    '',
    '| check | target | measured | result |',
    '|---|---|---|---|',
    ...checks.map(([check, target, measured, ok]) => `| ${check} | ${target} | ${measured} | ${ok ? 'PASS' : 'FAIL'} |`),
  ]
  const text = lines.join('\n') + '\n'
  process.stdout.write(text)
  writeFileSync(RESULTS_FILE, `# Per-user limits: memory with 100,000 users\n\nMeasured on its own by \`node bench/rate-limit-memory.ts\` (${new Date().toISOString().slice(0, 10)}), which writes this file. ${text}`)
  return checks.every(([, , , ok]) => ok)
}

if (process.argv[2] === '--gateway') {
  await serveGateway()
} else if (process.argv[2] === '--limiter') {
  process.send?.(await limiterRun())
  process.disconnect()
} else {
  const off = await gatewayRun('off')
  const on = await gatewayRun('on')
  process.exitCode = report(off, on, await limiterChild()) ? 0 : 1
}
