// podgate in front of the Django auth service podgate replaces (test/support/django), as in the
// migration guide's cut-over: opaque tokens, as a bearer header or the session cookie, reach
// their user's backend through /auth/validate (X-User-ID) or /whoami (X-Target-Service:
// user-<name>); JWTs never reach Django; remembered users are served while Django is down; a
// deleted token lasts until PODGATE_AUTH_URL_TTL; many requests of 2 users cost 2 calls; a
// bearer token beside another session cookie is judged (and remembered) as itself.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { setTimeout as delay } from 'node:timers/promises'
import { Agent, request } from 'undici'
import { startDjango, type DjangoFixture, type DjangoRequest } from '../support/django.ts'
import { startTestGateway, type TestGateway } from '../support/gateway.ts'

interface Teardown { teardown (fn: () => unknown): void }

/** What the gateway answered: the backend names its user; podgate's errors name their code. */
interface Outcome {
  readonly status: number
  readonly user?: string
  readonly error?: string
  readonly retryAfter?: string
}

type Credential = 'bearer' | 'cookie'

// The prefix: a token never starts with '-', which manage.py would take for an option.
const token = (): string => `opaque-${randomBytes(16).toString('base64url')}`

function withToken (credential: Credential, value: string): Record<string, string> {
  return credential === 'cookie' ? { cookie: `theme=dark; session=${value}` } : { authorization: `Bearer ${value}` }
}

function client (t: Teardown): Agent {
  const agent = new Agent({ connections: 32, keepAliveTimeout: 1_000 })
  t.teardown(() => agent.close())
  return agent
}

async function ask (gw: TestGateway, dispatcher: Agent, headers: Record<string, string>, path = '/'): Promise<Outcome> {
  const res = await request(`${gw.url}${path}`, { dispatcher, headers, signal: AbortSignal.timeout(5_000) })
  const body = await res.body.json() as { user?: string, error?: string }
  const retryAfter = res.headers['retry-after']
  return {
    status: res.statusCode,
    ...(body.user === undefined ? {} : { user: body.user }),
    ...(body.error === undefined ? {} : { error: body.error }),
    ...(typeof retryAfter === 'string' ? { retryAfter } : {}),
  }
}

/**
 * Django's requests from index `from` on, read once a sentinel (an unknown token, sent through
 * the gateway after everything before it was answered) has been reported: serve.py reports in
 * order, so a call still on its way cannot be missed, and no sleep is needed to see "none".
 */
async function callsSince (django: DjangoFixture, gw: TestGateway, dispatcher: Agent, from: number): Promise<DjangoRequest[]> {
  const sentinel = `Bearer ${token()}`
  const answered = await ask(gw, dispatcher, { authorization: sentinel })
  if (answered.status !== 401) throw new Error(`the sentinel was answered ${answered.status}, not 401`)
  for (let i = from; ; i++) {
    if ((await django.requestAt(i)).headers.authorization === sentinel) return django.requests.slice(from, i)
  }
}

const VIEWS: ReadonlyArray<{ path: string, env: Record<string, string> }> = [
  { path: '/auth/validate', env: {} },
  { path: '/whoami', env: { PODGATE_AUTH_URL_USER_HEADER: 'X-Target-Service', PODGATE_AUTH_URL_USER_PREFIX: 'user-' } },
]

for (const view of VIEWS) {
  void t.test(`through ${view.path}: each user's opaque token reaches their backend, an unknown one is 401, a JWT never reaches Django`, async (t) => {
    // One token per user and credential, so every one of them is a call to Django.
    const tokens = { alice: { bearer: token(), cookie: token() }, bob: { bearer: token(), cookie: token() } }
    const django = await startDjango(t, {
      tokens: Object.fromEntries(Object.entries(tokens).flatMap(([user, held]) => [[held.bearer, user], [held.cookie, user]])),
    })
    const gw = await startTestGateway(t, { PODGATE_AUTH_URL: `${django.url}${view.path}`, ...view.env })
    await gw.backend('alice')
    await gw.backend('bob')
    const dispatcher = client(t)

    for (const [user, held] of Object.entries(tokens)) {
      for (const credential of ['bearer', 'cookie'] as const) {
        const at = django.requests.length
        t.same(await ask(gw, dispatcher, withToken(credential, held[credential]), `/?as=${user}`), { status: 200, user }, `${user}'s token as ${credential}`)
        t.match(await django.requestAt(at), {
          method: 'GET',
          path: view.path,
          status: 200,
          headers: {
            // Only the credential podgate took, not the client's other cookies.
            ...(credential === 'cookie' ? { cookie: `session=${held[credential]}` } : withToken(credential, held[credential])),
            // The pool's own Host (the auth URL's), which Django's ALLOWED_HOSTS accepts; not the client's.
            'host': new URL(django.url).host,
            'x-original-url': `${gw.url}/?as=${user}`,
            'x-original-method': 'GET',
          },
        }, `Django was asked about ${user}'s ${credential} alone, with what the client asked for`)
      }
    }

    for (const credential of ['bearer', 'cookie'] as const) {
      t.same(await ask(gw, dispatcher, withToken(credential, token())), { status: 401, error: 'PODGATE_AUTH' }, `an unknown token as ${credential}`)
    }

    const before = django.requests.length
    t.same(await ask(gw, dispatcher, { authorization: `Bearer ${await gw.token('alice')}` }), { status: 200, user: 'alice' }, 'a JWT podgate minted for alice')
    t.same(await callsSince(django, gw, dispatcher, before), [], 'fallback mode: the JWT was verified in-process, with no call to Django')
  })
}

void t.test('Django stopped: remembered users are served, a new token is 503 with Retry-After; started again, it works', async (t) => {
  const alice = token()
  const bob = token()
  const carol = token()
  const django = await startDjango(t, { tokens: { [alice]: 'alice', [bob]: 'bob', [carol]: 'carol' } })
  const gw = await startTestGateway(t, { PODGATE_AUTH_URL: `${django.url}/auth/validate` })
  for (const user of ['alice', 'bob', 'carol']) await gw.backend(user)
  const dispatcher = client(t)

  t.same(await ask(gw, dispatcher, withToken('bearer', alice)), { status: 200, user: 'alice' })
  t.same(await ask(gw, dispatcher, withToken('cookie', bob)), { status: 200, user: 'bob' })
  await django.stop()

  t.same(await ask(gw, dispatcher, withToken('bearer', alice)), { status: 200, user: 'alice' }, 'alice, remembered, while Django is down')
  t.same(await ask(gw, dispatcher, withToken('cookie', bob)), { status: 200, user: 'bob' }, 'bob, remembered, while Django is down')
  const down = { status: 503, error: 'PODGATE_NOT_READY', retryAfter: '5' }
  t.same(await ask(gw, dispatcher, withToken('bearer', carol)), down, 'carol\'s token, never asked about: 503, not 401 or 500')
  t.same(await ask(gw, dispatcher, withToken('cookie', carol)), down, 'and again: an outage is not remembered as a refusal')

  await django.start()
  t.same(await ask(gw, dispatcher, withToken('bearer', carol)), { status: 200, user: 'carol' }, 'carol\'s token once Django is back')
})

void t.test('a token deleted in Django is served from memory until PODGATE_AUTH_URL_TTL, then refused', async (t) => {
  // Long enough for manage.py's delete (~250 ms, more on a loaded machine) to finish inside it.
  const TTL_MS = 2_000
  const alice = token()
  const bob = token()
  const django = await startDjango(t, { tokens: { [alice]: 'alice', [bob]: 'bob' } })
  const gw = await startTestGateway(t, { PODGATE_AUTH_URL: `${django.url}/auth/validate`, PODGATE_AUTH_URL_TTL: `${TTL_MS}ms` })
  await gw.backend('alice')
  await gw.backend('bob')
  const dispatcher = client(t)

  // The verdict is remembered no earlier than this, so it expires no earlier than TTL_MS after it.
  const asked = Date.now()
  t.same(await ask(gw, dispatcher, withToken('bearer', alice)), { status: 200, user: 'alice' })
  t.same(await ask(gw, dispatcher, withToken('bearer', bob)), { status: 200, user: 'bob' })
  // Bob's verdict expires no later than TTL_MS after this.
  const bobAnswered = Date.now()
  await django.deleteToken(alice)
  const deleted = Date.now()
  const early = await ask(gw, dispatcher, withToken('bearer', alice))
  const checkedAfter = Date.now() - asked
  // A machine so loaded that the delete took the whole TTL cannot show the cache: say so rather than pass.
  if (checkedAfter >= TTL_MS) t.fail(`the delete took until ${checkedAfter} ms after the first answer, past the ${TTL_MS} ms TTL`)
  t.same(early, { status: 200, user: 'alice' }, `right after the delete (${checkedAfter} ms into the TTL): still served from memory`)

  const deadline = asked + TTL_MS + 5_000
  let last = early
  while (last.status === 200 && Date.now() < deadline) {
    await delay(25)
    last = await ask(gw, dispatcher, withToken('bearer', alice))
  }
  const refused = Date.now()
  t.same(last, { status: 401, error: 'PODGATE_AUTH' }, 'refused once the TTL has passed')
  t.ok(refused - asked >= TTL_MS, 'not before the TTL')
  t.comment(`deleted token refused ${refused - asked} ms after the first answer (TTL ${TTL_MS} ms), ${refused - deleted} ms after the delete`)
  await delay(Math.max(0, bobAnswered + TTL_MS + 1 - Date.now()))
  t.same(await ask(gw, dispatcher, withToken('bearer', bob)), { status: 200, user: 'bob' }, 'bob, asked again after the TTL, is still allowed')

  const calls = await callsSince(django, gw, dispatcher, 0)
  t.same(calls.map((call) => `${call.headers.authorization === `Bearer ${alice}` ? 'alice' : 'bob'} ${call.status}`),
    ['alice 200', 'bob 200', 'alice 401', 'bob 200'], 'Django was asked once per token and TTL: the polls in between were answered from memory')
})

void t.test('many requests of 2 users make 2 calls to Django', async (t) => {
  const N = 400
  const tokens: Record<string, string> = { [token()]: 'alice', [token()]: 'bob' }
  const django = await startDjango(t, { tokens })
  const gw = await startTestGateway(t, { PODGATE_AUTH_URL: `${django.url}/auth/validate` })
  await gw.backend('alice')
  await gw.backend('bob')
  const dispatcher = client(t)
  const held = Object.keys(tokens)

  let next = 0
  const wrong: string[] = []
  const started = performance.now()
  // 20 in flight at a time, the users interleaved and the credential alternating between bearer and cookie.
  await Promise.all(Array.from({ length: 20 }, async () => {
    while (next < N) {
      const i = next++
      const value = held[i % held.length] ?? ''
      const outcome = await ask(gw, dispatcher, withToken(Math.floor(i / 2) % 2 === 0 ? 'bearer' : 'cookie', value))
      if (outcome.status !== 200 || outcome.user !== tokens[value]) wrong.push(`${i}: ${outcome.status} ${outcome.user ?? outcome.error}`)
    }
  }))
  const elapsed = performance.now() - started
  t.same(wrong, [], 'every request reached its user')
  const calls = await callsSince(django, gw, dispatcher, 0)
  t.same(calls.map((call) => call.status).sort(), [200, 200], 'one call per user')
  t.comment(`${N} requests of 2 users: ${calls.length} calls to Django (1 per ${N / Math.max(calls.length, 1)} requests), in ${Math.round(elapsed)} ms`)
})

// The original views read the session cookie first; podgate takes the bearer token first and
// remembers the answer under it, so it sends the service that token alone (it once sent the
// whole Cookie header too, and Django's verdict on bob's cookie was remembered for alice's token).
void t.test('a bearer token beside another session cookie: the verdict remembered for the bearer token is about it', async (t) => {
  const alice = token()
  const bob = token()
  const django = await startDjango(t, { tokens: { [alice]: 'alice', [bob]: 'bob' } })
  const gw = await startTestGateway(t, { PODGATE_AUTH_URL: `${django.url}/auth/validate` })
  await gw.backend('alice')
  await gw.backend('bob')
  const dispatcher = client(t)

  // README: "A bearer token beside a session cookie is not ambiguous: the bearer token is used."
  t.same(await ask(gw, dispatcher, { authorization: `Bearer ${alice}`, cookie: `session=${bob}` }), { status: 200, user: 'alice' },
    'alice\'s bearer token beside bob\'s cookie reaches alice')
  t.same(await ask(gw, dispatcher, { authorization: `Bearer ${alice}` }), { status: 200, user: 'alice' },
    'afterwards, alice\'s bearer token alone reaches alice')
  t.same(await ask(gw, dispatcher, { authorization: `Bearer ${bob}`, cookie: `session=${token()}` }), { status: 200, user: 'bob' },
    'bob\'s bearer token beside a stale cookie reaches bob')
  t.same(await ask(gw, dispatcher, { authorization: `Bearer ${bob}` }), { status: 200, user: 'bob' },
    'afterwards, bob\'s bearer token alone is allowed')
})
