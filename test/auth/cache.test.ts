import t, { type Test } from 'tap'
import { createTokenVerifier } from '../../src/auth/verifier.ts'
import type { TokenVerifier } from '../../src/auth/identity.ts'
import { Metrics } from '../../src/metrics.ts'
import { authConfig, signToken, testSecret } from '../support/keys.ts'
import { ManualClock } from '../support/manual-clock.ts'

const START = Date.UTC(2030, 0, 1)

/** A verifier on a clock the test moves by hand. */
function setup (t: Test, tokenCacheSize: number): { verifier: TokenVerifier, clock: ManualClock, metrics: Metrics } {
  const clock = new ManualClock(START)
  const metrics = new Metrics({ defaultMetrics: false })
  const verifier = createTokenVerifier(authConfig({ kind: 'secret', secret: testSecret() }, { tokenCacheSize }), { clock, metrics })
  t.teardown(() => verifier.close())
  return { verifier, clock, metrics }
}

async function lookups (metrics: Metrics): Promise<{ hit: number, miss: number }> {
  const metric = metrics.registry.getSingleMetric('podgate_token_cache_total')
  if (metric === undefined) throw new Error('podgate_token_cache_total is not registered')
  const values = (await metric.get()).values
  const count = (result: string): number => values.find((v) => v.labels.result === result)?.value ?? 0
  return { hit: count('hit'), miss: count('miss') }
}

function token (user: string, ttlSeconds = 600): Promise<string> {
  return signToken(testSecret(), 'HS256', { sub: user }, { now: START, ttlSeconds })
}

void t.test('a verified token is served from the cache', async (t) => {
  const { verifier, metrics } = setup(t, 100)
  const alice = await token('alice')
  t.equal(verifier.cached(alice), undefined, 'nothing cached before verification')
  const verified = await verifier.verify(alice)
  const cached = verifier.cached(alice)
  t.equal(cached, verified, 'the same identity comes back')
  t.same(cached, { user: 'alice', expiresAt: START + 600_000, issuedAt: START })
  t.same(await lookups(metrics), { hit: 1, miss: 1 })
})

void t.test('an entry is never returned at or after the token expires', async (t) => {
  const { verifier, clock, metrics } = setup(t, 100)
  const alice = await token('alice', 60)
  await verifier.verify(alice)
  await clock.advanceTo(START + 59_999)
  t.equal(verifier.cached(alice)?.user, 'alice', 'still valid 1 ms before exp')
  await clock.advanceTo(START + 60_000)
  t.equal(verifier.cached(alice), undefined, 'gone at exp')
  await clock.advanceTo(START + 3_600_000)
  t.equal(verifier.cached(alice), undefined, 'gone long after exp')
  t.same(await lookups(metrics), { hit: 1, miss: 2 })
})

void t.test('a token accepted within the clock tolerance after exp is not cached', async (t) => {
  const { verifier, clock } = setup(t, 100)
  const alice = await token('alice', 60)
  await clock.advanceTo(START + 70_000)
  t.equal((await verifier.verify(alice)).user, 'alice', 'accepted: 10 s past exp, within the 30 s tolerance')
  t.equal(verifier.cached(alice), undefined)
})

void t.test('the cache holds at most tokenCacheSize entries, least recently used out first', async (t) => {
  const { verifier } = setup(t, 3)
  const tokens = await Promise.all(['u1', 'u2', 'u3', 'u4', 'u5'].map((user) => token(user)))
  for (const [i, tok] of tokens.entries()) {
    await verifier.verify(tok)
    if (i === 2) t.ok(verifier.cached(tokens[0] as string), 'u1 used again before u4 and u5 arrive')
  }
  const present = tokens.map((tok) => verifier.cached(tok)?.user ?? null)
  t.same(present, ['u1', null, null, 'u4', 'u5'])
})

void t.test('tokenCacheSize 0 disables the cache', async (t) => {
  const { verifier, metrics } = setup(t, 0)
  const alice = await token('alice')
  t.equal((await verifier.verify(alice)).user, 'alice')
  t.equal(verifier.cached(alice), undefined)
  t.same(await lookups(metrics), { hit: 0, miss: 0 }, 'no cache, no lookups counted')
})

void t.test('refused tokens are not cached', async (t) => {
  const { verifier } = setup(t, 100)
  const bad = await signToken(testSecret(), 'HS256', { sub: 'Alice' }, { now: START })
  await t.rejects(verifier.verify(bad), { name: 'AuthError', reason: 'user' })
  t.equal(verifier.cached(bad), undefined)
})

void t.test('close() empties the cache', async (t) => {
  const { verifier } = setup(t, 100)
  const alice = await token('alice')
  await verifier.verify(alice)
  verifier.close()
  t.equal(verifier.cached(alice), undefined)
})
