// The Django auth fixture on its own (test/support/django.ts): the original /auth/validate and
// /whoami answer each user's tokens from the cookie or a bearer header, 401 otherwise; tokens
// come and go while it runs; it stops and comes back on the same port.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { request, type IncomingMessage } from 'node:http'
import { startDjango, type DjangoFixture } from '../support/django.ts'

const token = (): string => randomBytes(16).toString('base64url')
const alice = { browser: token(), api: token() }
const bob = token()
const TOKENS = { [alice.browser]: 'alice', [alice.api]: 'alice', [bob]: 'bob' }

type Credential = 'cookie' | 'bearer'
const credentials: Credential[] = ['cookie', 'bearer']

function withToken (credential: Credential, value: string): Record<string, string> {
  return credential === 'cookie' ? { cookie: `theme=dark; session=${value}` } : { authorization: `Bearer ${value}` }
}

async function get (django: DjangoFixture, path: string, headers: Record<string, string> = {}): Promise<Response> {
  const response = await fetch(`${django.url}${path}`, { headers, signal: AbortSignal.timeout(5_000) })
  await response.arrayBuffer()
  return response
}

async function identity (django: DjangoFixture, headers: Record<string, string>): Promise<{ validate: number, user: string | null, whoami: number, target: string | null }> {
  const validate = await get(django, '/auth/validate', headers)
  const whoami = await get(django, '/whoami', headers)
  return { validate: validate.status, user: validate.headers.get('x-user-id'), whoami: whoami.status, target: whoami.headers.get('x-target-service') }
}

const refused = { validate: 401, user: null, whoami: 401, target: null }

void t.test('each token answers its own user, from the session cookie or a bearer header', async (t) => {
  const django = await startDjango(t, { tokens: TOKENS })
  const cases = [
    { user: 'alice', value: alice.browser },
    { user: 'alice', value: alice.api },
    { user: 'bob', value: bob },
  ]
  for (const { user, value } of cases) {
    for (const credential of credentials) {
      t.same(await identity(django, withToken(credential, value)),
        { validate: 200, user, whoami: 200, target: `user-${user}` }, `${user}'s token as ${credential}`)
    }
  }
})

void t.test('no token, an unknown one or another scheme: 401 from both views', async (t) => {
  const django = await startDjango(t, { tokens: TOKENS })
  const cases: Array<{ name: string, headers: Record<string, string> }> = [
    { name: 'no credentials', headers: {} },
    { name: 'an unknown cookie', headers: { cookie: `session=${token()}` } },
    { name: 'an unknown bearer token', headers: { authorization: `Bearer ${token()}` } },
    { name: 'a known token under Basic', headers: { authorization: `Basic ${bob}` } },
    { name: 'a known token in another cookie', headers: { cookie: `sid=${bob}` } },
  ]
  for (const c of cases) t.same(await identity(django, c.headers), refused, c.name)
})

void t.test('the cookie is read first, as in the original service: a bearer token behind it is not consulted', async (t) => {
  const django = await startDjango(t, { tokens: TOKENS })
  t.same(await identity(django, { cookie: `session=${bob}`, authorization: `Bearer ${alice.api}` }),
    { validate: 200, user: 'bob', whoami: 200, target: 'user-bob' })
  t.same(await identity(django, { cookie: `session=${token()}`, authorization: `Bearer ${alice.api}` }), refused)
})

void t.test('tokens added and deleted while it runs take effect at once; the user keeps the others', async (t) => {
  const django = await startDjango(t, { tokens: TOKENS })
  const carol = token()
  t.same(await identity(django, { authorization: `Bearer ${carol}` }), refused, 'before it is added')
  await django.addToken('carol', carol)
  t.same(await identity(django, { authorization: `Bearer ${carol}` }), { validate: 200, user: 'carol', whoami: 200, target: 'user-carol' })

  await django.deleteToken(alice.browser)
  t.same(await identity(django, withToken('cookie', alice.browser)), refused, 'the deleted token')
  t.equal((await identity(django, withToken('bearer', alice.api))).user, 'alice', 'alice\'s other token')
  await t.rejects(django.deleteToken(alice.browser), /no such token/, 'deleting it again says so')
})

void t.test('stopped, its port refuses connections; started again, the same URL answers with the same tokens', async (t) => {
  const django = await startDjango(t, { tokens: TOKENS })
  await django.stop()
  const err = await get(django, '/auth/validate').then(() => undefined, (e: unknown) => e as Error & { cause?: { code?: string } })
  t.equal(err?.cause?.code, 'ECONNREFUSED', 'connection refused while stopped')

  await django.addToken('dave', 'dave-token')
  await django.start()
  t.same(await identity(django, withToken('cookie', bob)), { validate: 200, user: 'bob', whoami: 200, target: 'user-bob' })
  t.equal((await identity(django, withToken('bearer', 'dave-token'))).user, 'dave', 'a token added while stopped')
})

void t.test('it reports the headers a gateway forwards, and refuses a Host outside ALLOWED_HOSTS', async (t) => {
  const django = await startDjango(t, { tokens: TOKENS })
  const forwarded = { 'authorization': `Bearer ${bob}`, 'cookie': 'theme=dark', 'x-original-url': 'https://app.example/notebooks?x=1', 'x-original-method': 'POST' }
  t.equal((await get(django, '/auth/validate', forwarded)).status, 200)
  t.match(await django.requestAt(0), { method: 'GET', path: '/auth/validate', status: 200, headers: forwarded })
  // A verifier behind a real Django needs its own Host, not the client's (ingress-nginx sends the auth-url's).
  // fetch sends the URL's Host whatever the headers say; node:http sends the one given.
  const req = request(`${django.url}/auth/validate`, { headers: { ...forwarded, host: 'app.example' } }).end()
  const [response] = await once(req, 'response') as [IncomingMessage]
  response.resume()
  t.equal(response.statusCode, 400)
})
