// Per-user limits (PODGATE_RATE_LIMIT, PODGATE_RATE_BURST, PODGATE_MAX_CONCURRENT_PER_USER):
// 429 PODGATE_RATE_LIMITED with a Retry-After from the bucket, on real servers and a ManualClock.
import { once } from 'node:events'
import { get as httpGet, type IncomingMessage } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import WebSocket from 'ws'
import { loadConfig } from '../../src/config.ts'
import { ConfigError } from '../../src/errors.ts'
import { createRateLimiter, UserRateLimiter } from '../../src/gateway/rate-limit.ts'
import { startTestGateway, type TestGateway } from '../support/gateway.ts'
import { ManualClock } from '../support/manual-clock.ts'

async function get (gw: TestGateway, token: string, path = '/', headers: Record<string, string> = {}): Promise<Response> {
  const res = await fetch(`${gw.url}${path}`, { headers: { authorization: `Bearer ${token}`, ...headers } })
  await res.arrayBuffer()
  return res
}

async function limitedCount (gw: TestGateway, limit: 'rate' | 'concurrency'): Promise<number> {
  const text = await gw.metrics.registry.getSingleMetricAsString('podgate_rate_limited_total')
  const match = new RegExp(`limit="${limit}"\\} (\\d+)`).exec(text)
  if (match === null) throw new Error(`no ${limit} series in ${text}`)
  return Number(match[1])
}

/** Polls until `check` passes: the gateway sees a client's close a moment after the client does. */
async function eventually (check: () => Promise<boolean>): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    if (await check()) return true
    await sleep(20)
  }
  return false
}

void t.test('exactly the burst passes, then 429 with the bucket\'s Retry-After; refill on the clock; other users unaffected', async (t) => {
  const clock = new ManualClock()
  // 6/m: one token every 10 s.
  const gw = await startTestGateway(t, { PODGATE_RATE_LIMIT: '6/m', PODGATE_RATE_BURST: '3' }, { clock })
  await gw.backend('alice')
  await gw.backend('bob')
  const alice = await gw.token('alice')
  t.equal(await limitedCount(gw, 'rate'), 0, 'the metric is present at zero from the start')
  t.equal(await limitedCount(gw, 'concurrency'), 0)
  for (let i = 0; i < 3; i++) t.equal((await get(gw, alice)).status, 200, `request ${i + 1} of the burst`)
  const res = await fetch(gw.url, { headers: { authorization: `Bearer ${alice}` } })
  t.equal(res.status, 429)
  t.equal(res.headers.get('retry-after'), '10', 'seconds until one token is back')
  t.match(res.headers.get('content-type'), /application\/json/)
  t.match(await res.json(), { error: 'PODGATE_RATE_LIMITED' })
  t.equal(await limitedCount(gw, 'rate'), 1)

  t.equal((await get(gw, await gw.token('bob'))).status, 200, 'bob has his own bucket')

  await clock.advance(9_000)
  const early = await get(gw, alice)
  t.equal(early.status, 429, '0.9 of a token is not one')
  t.equal(early.headers.get('retry-after'), '1', 'at least 1 s')
  // node:http, not fetch: fetch sends Sec-Fetch-Mode: cors, which no navigation carries.
  const [page] = await once(httpGet(gw.url, { headers: { authorization: `Bearer ${alice}`, accept: 'text/html,application/xhtml+xml;q=0.9,*/*;q=0.8' } }), 'response') as [IncomingMessage]
  page.resume()
  t.equal(page.statusCode, 429, 'a browser gets the same status')
  t.match(page.headers['content-type'], /text\/html/, 'as the error page')
  t.equal(page.headers['retry-after'], '1')

  await clock.advance(1_000)
  t.equal((await get(gw, alice)).status, 200, 'one token refilled')
  t.equal((await get(gw, alice)).status, 429, 'and only one')
  await clock.advance(60_000)
  for (let i = 0; i < 3; i++) t.equal((await get(gw, alice)).status, 200, 'a full bucket again after a quiet minute, never more')
  t.equal((await get(gw, alice)).status, 429)
  t.equal(await limitedCount(gw, 'rate'), 5)
})

void t.test('the concurrency cap with a slow backend: beyond it 429, after one finishes a new one passes', async (t) => {
  const gw = await startTestGateway(t, { PODGATE_MAX_CONCURRENT_PER_USER: '2' })
  await gw.backend('alice')
  await gw.backend('bob')
  const alice = await gw.token('alice')
  const first = get(gw, alice, '/slow?ms=300')
  const second = get(gw, alice, '/slow?ms=2000')
  await sleep(100)
  const third = await get(gw, alice)
  t.equal(third.status, 429, 'a third request while two are in flight')
  t.equal(third.headers.get('retry-after'), '1')
  t.equal((await get(gw, await gw.token('bob'))).status, 200, 'bob is not capped by alice')
  t.equal((await first).status, 200)
  t.ok(await eventually(async () => (await get(gw, alice)).status === 200), 'a slot is free once the first finished')
  t.equal((await second).status, 200)
  t.equal(await limitedCount(gw, 'concurrency'), 1)
})

void t.test('an upgrade counts as a request, and an open WebSocket holds a slot until it closes', async (t) => {
  const clock = new ManualClock()
  const gw = await startTestGateway(t, { PODGATE_RATE_LIMIT: '2/s', PODGATE_MAX_CONCURRENT_PER_USER: '1' }, { clock })
  await gw.backend('alice')
  const alice = await gw.token('alice')
  const wsUrl = `${gw.url.replace('http', 'ws')}/ws`
  const ws = new WebSocket(wsUrl, { headers: { authorization: `Bearer ${alice}` } })
  t.teardown(() => { ws.terminate() })
  await once(ws, 'open')
  t.equal((await get(gw, alice)).status, 429, 'the open socket holds the one slot')

  const second = new WebSocket(wsUrl, { headers: { authorization: `Bearer ${alice}` } })
  const [, refused] = await once(second, 'unexpected-response') as [unknown, IncomingMessage]
  t.equal(refused.statusCode, 429, 'a second upgrade is refused')
  t.equal(refused.headers['retry-after'], '1')
  let body = ''
  for await (const chunk of refused) body += String(chunk)
  t.match(JSON.parse(body), { error: 'PODGATE_RATE_LIMITED' }, 'as JSON')
  t.equal(await limitedCount(gw, 'concurrency'), 2)

  ws.close()
  await once(ws, 'close')
  // Refusals on concurrency take no token, so the request that passes takes the burst's second.
  t.ok(await eventually(async () => (await get(gw, alice)).status === 200), 'the slot is freed when the socket closes')
  t.equal(await limitedCount(gw, 'rate'), 0)
  t.equal((await get(gw, alice)).status, 429, 'the upgrade took one token of the burst of 2, the request the other')
  t.equal(await limitedCount(gw, 'rate'), 1)
})

void t.test('off by default: nothing allocated, nothing refused', async (t) => {
  const config = loadConfig({ PODGATE_JWT_SECRET: 'x'.repeat(32) })
  t.equal(config.gateway.rateLimit, undefined)
  t.equal(createRateLimiter(config.gateway.rateLimit), undefined, 'no limiter')
  const gw = await startTestGateway(t)
  await gw.backend('alice')
  const alice = await gw.token('alice')
  const statuses = await Promise.all(Array.from({ length: 50 }, () => get(gw, alice).then((res) => res.status)))
  t.same(new Set(statuses), new Set([200]))
  t.equal(await limitedCount(gw, 'rate'), 0)
  t.equal(await limitedCount(gw, 'concurrency'), 0)
})

void t.test('the settings, and bad values naming their variable', (t) => {
  const base = { PODGATE_JWT_SECRET: 'x'.repeat(32) }
  t.same(loadConfig({ ...base, PODGATE_RATE_LIMIT: '50/s' }).gateway.rateLimit, { perSecond: 50, burst: 50, maxConcurrent: 0 })
  t.same(loadConfig({ ...base, PODGATE_RATE_LIMIT: '600/m' }).gateway.rateLimit, { perSecond: 10, burst: 10, maxConcurrent: 0 })
  t.same(loadConfig({ ...base, PODGATE_RATE_LIMIT: '1/h' }).gateway.rateLimit, { perSecond: 1 / 3600, burst: 1, maxConcurrent: 0 }, 'burst at least 1')
  t.same(loadConfig({ ...base, PODGATE_RATE_LIMIT: '5/s', PODGATE_RATE_BURST: '20' }).gateway.rateLimit, { perSecond: 5, burst: 20, maxConcurrent: 0 })
  t.same(loadConfig({ ...base, PODGATE_MAX_CONCURRENT_PER_USER: '8' }).gateway.rateLimit, { perSecond: undefined, burst: 1, maxConcurrent: 8 })
  const cases: Array<[Record<string, string>, string]> = [
    [{ PODGATE_RATE_LIMIT: '50/x' }, 'PODGATE_RATE_LIMIT'],
    [{ PODGATE_RATE_LIMIT: '0/s' }, 'PODGATE_RATE_LIMIT'],
    [{ PODGATE_RATE_LIMIT: '50' }, 'PODGATE_RATE_LIMIT'],
    [{ PODGATE_RATE_LIMIT: '-5/s' }, 'PODGATE_RATE_LIMIT'],
    [{ PODGATE_RATE_BURST: '10' }, 'PODGATE_RATE_BURST'],
    [{ PODGATE_RATE_LIMIT: '5/s', PODGATE_RATE_BURST: '0' }, 'PODGATE_RATE_BURST'],
    [{ PODGATE_MAX_CONCURRENT_PER_USER: '-1' }, 'PODGATE_MAX_CONCURRENT_PER_USER'],
  ]
  for (const [env, variable] of cases) {
    let thrown: unknown
    try {
      loadConfig({ ...base, ...env })
    } catch (err) {
      thrown = err
    }
    t.ok(thrown instanceof ConfigError && thrown.variable === variable, `${JSON.stringify(env)} names ${variable}`)
  }
  t.end()
})

void t.test('100,000 distinct users leave no buckets behind once idle', async (t) => {
  const clock = new ManualClock()
  const limiter = new UserRateLimiter({ perSecond: 10, burst: 10, maxConcurrent: 4 }, clock)
  let refused = 0
  for (let i = 0; i < 100_000; i++) {
    const user = `user-${i}`
    if (limiter.admit(user) !== undefined) refused++
    limiter.release(user)
  }
  t.equal(refused, 0, 'each user\'s first request passes')
  t.equal(limiter.buckets, 100_000, 'one bucket per user while they refill')
  t.equal(limiter.activeUsers, 0, 'no user holds a slot once released')
  t.equal(clock.timers().length, 1, 'one sweep timer')
  t.ok(clock.timers()[0]?.unref, 'which keeps no process alive')
  await clock.advance(1_000)
  t.equal(limiter.buckets, 0, 'full buckets are forgotten')
  t.equal(clock.timers().length, 0, 'and the sweep stops with nothing to sweep')
  t.equal(limiter.admit('user-1'), undefined, 'a forgotten user starts with a full bucket')
  t.equal(clock.timers().length, 1, 'the sweep starts again')
  limiter.close()
  t.equal(clock.timers().length, 0)
})
