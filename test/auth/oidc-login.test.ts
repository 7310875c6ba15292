// podgate's own OpenID Connect login against a real provider (oidc-provider on 127.0.0.1),
// driven like a browser with plain HTTP: login → provider's password form → callback → the
// session cookie, which routes to the user's backend through a real gateway. Then everything
// that must not log anyone in: a bad state, a replayed code, a wrong nonce, an altered flow
// cookie, a user id that is no DNS label; open redirects in rd; two tabs at once; logout; and
// an expired session followed by a silent re-login through the provider's own session.
import t from 'tap'
import { decodeJwt } from 'jose'
import { mintToken } from '../../src/auth/mint.ts'
import { flowKey, openFlow, sealFlow } from '../../src/auth/oidc-flow.ts'
import { startTestGateway, type TestGateway } from '../support/gateway.ts'
import { TestBrowser, type Hop } from '../support/oidc-browser.ts'
import { PROVIDER_USERS, startTestProvider, type TestProvider, type TestProviderOptions } from '../support/oidc-provider.ts'

interface Teardown { teardown (fn: () => unknown): void }

interface Echoed { user: string, url: string, headers: Record<string, string> }

const PROXY_ORIGIN = 'https://podgate.example'

async function setup (t: Teardown, env: Record<string, string> = {}, options: TestProviderOptions = {}): Promise<{ idp: TestProvider, gw: TestGateway }> {
  const idp = await startTestProvider(t, options)
  const gw = await startTestGateway(t, {
    PODGATE_OIDC_ISSUER: idp.issuer,
    PODGATE_OIDC_CLIENT_ID: idp.clientId,
    PODGATE_OIDC_CLIENT_SECRET: idp.clientSecret,
    ...env,
  })
  idp.register([gw.url, PROXY_ORIGIN])
  await gw.backend('alice')
  await gw.backend('bob')
  return { idp, gw }
}

/**
 * Goes from `start` through the provider (filling in the password form for `user` when it
 * shows one) until the provider sends the browser to podgate's callback, which is returned
 * unrequested, with every hop before it.
 */
async function toCallback (browser: TestBrowser, start: string, user?: string): Promise<{ hops: Hop[], callback: string }> {
  const hops: Hop[] = []
  let next: string | undefined = start
  while (next !== undefined && !new URL(next).pathname.startsWith('/.podgate/callback')) {
    const hop = await browser.request(next)
    hops.push(hop)
    next = hop.location
    if (hop.status === 200 && new URL(hop.url).pathname.startsWith('/interaction/')) {
      if (user === undefined) throw new Error('the provider asks for a password')
      const action = /action="([^"]+)"/.exec(hop.body)?.[1] ?? ''
      const password = PROVIDER_USERS[user]?.password ?? ''
      const posted = await browser.request(new URL(action, hop.url).href, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ login: user, password }).toString(),
      })
      hops.push(posted)
      next = posted.location
    }
    if (hops.length > 12) throw new Error('too many hops')
  }
  if (next === undefined) throw new Error(`the login ended before the callback: ${JSON.stringify(hops.at(-1)?.body.slice(0, 300))}`)
  return { hops, callback: next }
}

/** A whole login: the callback hop is requested at the gateway. */
async function signIn (browser: TestBrowser, gw: TestGateway, rd: string | undefined, user?: string): Promise<Hop> {
  const start = rd === undefined ? `${gw.url}/.podgate/login` : `${gw.url}/.podgate/login?rd=${encodeURIComponent(rd)}`
  const { callback } = await toCallback(browser, start, user)
  return await browser.request(callback)
}

function sessionCookieLine (hop: Hop): string | undefined {
  return hop.setCookies.find((line) => line.startsWith('session='))
}

async function json (hop: Hop): Promise<unknown> {
  return await Promise.resolve(JSON.parse(hop.body) as unknown)
}

void t.test('a login sets the session cookie, which routes to the user\'s backend', async (t) => {
  const { idp, gw } = await setup(t)
  const browser = new TestBrowser()

  const started = performance.now()
  const { hops, callback } = await toCallback(browser, `${gw.url}/.podgate/login?rd=${encodeURIComponent('/notebooks/a?kernel=1')}`, 'alice')
  const done = await browser.request(callback)
  const firstMs = performance.now() - started

  const login = hops[0]
  t.equal(login?.status, 303, 'the login redirects')
  const authorize = new URL(login?.location ?? '')
  t.equal(authorize.origin, idp.issuer, 'to the provider')
  t.equal(authorize.searchParams.get('response_type'), 'code')
  t.equal(authorize.searchParams.get('code_challenge_method'), 'S256', 'with PKCE')
  t.ok(authorize.searchParams.get('nonce'), 'a nonce')
  t.equal(authorize.searchParams.get('scope'), 'openid profile email', 'the default scopes')
  t.equal(authorize.searchParams.get('redirect_uri'), `${gw.url}/.podgate/callback`, 'the callback derived from the request')
  const flowLine = login?.setCookies.find((line) => line.startsWith(`podgate-oidc-${authorize.searchParams.get('state') ?? ''}=`))
  t.ok(flowLine, 'the flow cookie is named after the state')
  t.match(flowLine, /; Path=\/\.podgate\/callback; Max-Age=600; HttpOnly; SameSite=Lax$/, 'sent only to the callback, for 10 minutes, not Secure over http')
  t.equal(idp.passwordLogins, 1, 'the password form was filled in')

  t.equal(done.status, 303, 'the callback redirects')
  t.equal(done.location, `${gw.url}/notebooks/a?kernel=1`, 'to where the login started')
  t.equal(done.headers.get('cache-control'), 'no-store')
  const line = sessionCookieLine(done)
  t.match(line, /^session=[\w-]+\.[\w-]+\.[\w-]+; Path=\/; Max-Age=28800; HttpOnly; SameSite=Lax$/, 'session cookie: HttpOnly, Lax, Path=/, 8 h, no Secure over http')
  t.ok(done.setCookies.some((l) => /^podgate-oidc-[\w-]+=; Path=\/\.podgate\/callback; Max-Age=0;/.test(l)), 'the flow cookie is spent')
  t.match(done.setCookies.find((l) => l.startsWith('podgate-oidc-id=')), /; Path=\/\.podgate\/; Max-Age=28800; HttpOnly; SameSite=Lax$/, 'the ID token is kept for logout, for /.podgate/ only')
  t.equal(browser.cookies(gw.url).filter((c) => c.name.startsWith('podgate-oidc-') && c.name !== 'podgate-oidc-id').length, 0, 'no flow cookie is left')

  const session = decodeJwt(browser.cookie(gw.url, 'session')?.value ?? '')
  t.equal(session.sub, 'alice', 'the user id from preferred_username, in PODGATE_USER_CLAIM')
  t.equal((session.exp ?? 0) - (session.iat ?? 0), 28800, 'valid for PODGATE_OIDC_SESSION_TTL')

  const page = await browser.request(`${gw.url}/`)
  t.equal(page.status, 200, 'the cookie is accepted')
  const echoed = await json(page) as Echoed
  t.equal(echoed.user, 'alice', 'alice\'s backend answers')
  t.equal(echoed.headers['x-user-id'], 'alice')
  t.notMatch(echoed.headers.cookie ?? '', /(^|; )session=/, 'the session cookie does not reach the pod')

  // The provider remembers alice: a second login needs no password.
  const again = performance.now()
  const quiet = await toCallback(browser, `${gw.url}/.podgate/login?rd=/b`)
  const silent = await browser.request(quiet.callback)
  const silentMs = performance.now() - again
  t.equal(silent.location, `${gw.url}/b`)
  t.equal(idp.passwordLogins, 1, 'no password the second time')
  t.comment(`login round trip: ${firstMs.toFixed(1)} ms with the password form and the first discovery (${hops.length + 1} browser requests), ${silentMs.toFixed(1)} ms through the provider's session (${quiet.hops.length + 1})`)
})

void t.test('a callback URL set by PODGATE_OIDC_REDIRECT_URL is https: every cookie is Secure', async (t) => {
  const { gw } = await setup(t, { PODGATE_OIDC_REDIRECT_URL: `${PROXY_ORIGIN}/.podgate/callback` })
  const browser = new TestBrowser()
  const { hops, callback } = await toCallback(browser, `${gw.url}/.podgate/login?rd=/x`, 'bob')
  t.equal(new URL(hops[0]?.location ?? '').searchParams.get('redirect_uri'), `${PROXY_ORIGIN}/.podgate/callback`)
  t.match(hops[0]?.setCookies[0], /; Secure$/, 'the flow cookie')
  t.equal(new URL(callback).origin, PROXY_ORIGIN, 'the provider sends the browser to the public URL')
  // What the Ingress in front would pass on: the same path and query, to the gateway.
  const url = new URL(callback)
  const done = await browser.request(`${gw.url}${url.pathname}${url.search}`)
  t.equal(done.status, 303)
  t.match(sessionCookieLine(done), /; Path=\/; Max-Age=28800; HttpOnly; SameSite=Lax; Secure$/, 'the session cookie')
  t.equal(done.location, `${gw.url}/x`, 'a relative redirect, on the host the browser is on')
})

void t.test('with PODGATE_TRUST_PROXY the callback is derived from X-Forwarded-Proto and -Host', async (t) => {
  const { gw } = await setup(t, { PODGATE_TRUST_PROXY: 'true' })
  const browser = new TestBrowser()
  const login = await browser.request(`${gw.url}/.podgate/login`, { headers: { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'podgate.example' } })
  t.equal(new URL(login.location ?? '').searchParams.get('redirect_uri'), `${PROXY_ORIGIN}/.podgate/callback`)
  t.match(login.setCookies[0], /; Secure$/)
})

void t.test('a bad state, an altered or planted flow cookie: 400, no session', async (t) => {
  const { gw } = await setup(t)
  const browser = new TestBrowser()

  const noState = await browser.request(`${gw.url}/.podgate/callback?code=abc`)
  t.equal(noState.status, 400)
  t.match(await json(noState), { error: 'PODGATE_BAD_REQUEST', message: /no valid state/ })

  const unknown = await browser.request(`${gw.url}/.podgate/callback?code=abc&state=${'A'.repeat(43)}`)
  t.equal(unknown.status, 400)
  t.match(await json(unknown), { error: 'PODGATE_BAD_REQUEST', message: /unknown here.*start again at \/\.podgate\/login/ })

  const { callback } = await toCallback(browser, `${gw.url}/.podgate/login`, 'alice')
  const state = new URL(callback).searchParams.get('state') ?? ''
  const flowName = `podgate-oidc-${state}`
  const sealed = browser.cookie(gw.url, flowName)?.value ?? ''

  // Another state's name on this flow's sealed value: the state inside does not match.
  const other = 'B'.repeat(43)
  browser.store(new URL(gw.url), `podgate-oidc-${other}=${sealed}; Path=/.podgate/callback`)
  const swapped = await browser.request(`${gw.url}/.podgate/callback?code=abc&state=${other}`)
  t.equal(swapped.status, 400)
  t.match(await json(swapped), { message: /state cookie is not valid/ })

  const altered = `${sealed.slice(0, -4)}${sealed.endsWith('AAAA') ? 'BBBB' : 'AAAA'}`
  browser.store(new URL(gw.url), `${flowName}=${altered}; Path=/.podgate/callback`)
  const tampered = await browser.request(callback)
  t.equal(tampered.status, 400, 'an altered flow cookie')
  t.match(await json(tampered), { message: /state cookie is not valid/ })
  t.notOk(sessionCookieLine(tampered) ?? sessionCookieLine(swapped) ?? sessionCookieLine(unknown), 'no session cookie was set')
  t.ok(tampered.setCookies.some((l) => l.startsWith(`${flowName}=; `)), 'the flow is spent even so')
  t.notOk(browser.cookie(gw.url, 'session'))
})

void t.test('a replayed code: 401 at the provider, no session', async (t) => {
  const { gw } = await setup(t)
  const browser = new TestBrowser()
  const { callback } = await toCallback(browser, `${gw.url}/.podgate/login`, 'alice')
  const flowName = `podgate-oidc-${new URL(callback).searchParams.get('state') ?? ''}`
  const flow = browser.cookie(gw.url, flowName)?.value ?? ''
  const first = await browser.request(callback)
  t.equal(first.status, 303, 'the first use logs in')

  const thief = new TestBrowser()
  const withoutFlow = await thief.request(callback)
  t.equal(withoutFlow.status, 400, 'the code alone, from another browser')
  t.match(await json(withoutFlow), { message: /unknown here/ })

  thief.store(new URL(gw.url), `${flowName}=${flow}; Path=/.podgate/callback`)
  const replayed = await thief.request(callback)
  t.equal(replayed.status, 401, 'the code with its flow cookie, again')
  t.match(await json(replayed), { error: 'PODGATE_LOGIN_FAILED', message: /refused the authorization code \(invalid_grant.*used already or has expired/ })
  t.notOk(sessionCookieLine(replayed), 'no session cookie')
  t.notOk(thief.cookie(gw.url, 'session'))
})

void t.test('a wrong nonce: the ID token is refused, no session', async (t) => {
  const { gw } = await setup(t)
  const browser = new TestBrowser()
  const { callback } = await toCallback(browser, `${gw.url}/.podgate/login`, 'alice')
  const flowName = `podgate-oidc-${new URL(callback).searchParams.get('state') ?? ''}`
  // Resealed with the gateway's own key: only the nonce differs from what the provider signed.
  const key = flowKey(new TextEncoder().encode(gw.secret))
  const flow = await openFlow(browser.cookie(gw.url, flowName)?.value ?? '', key, Date.now())
  if (flow === undefined) throw new Error('the flow cookie does not open with the gateway\'s key')
  browser.store(new URL(gw.url), `${flowName}=${await sealFlow({ ...flow, nonce: 'not-the-nonce-sent' }, key, Date.now())}; Path=/.podgate/callback`)
  const refused = await browser.request(callback)
  t.equal(refused.status, 401)
  t.match(await json(refused), { error: 'PODGATE_LOGIN_FAILED', message: /"nonce"/ })
  t.notOk(sessionCookieLine(refused))
})

void t.test('rd that points anywhere but a path on this host ends on /', async (t) => {
  const { gw } = await setup(t)
  const browser = new TestBrowser()
  await signIn(browser, gw, '/', 'alice')
  const attempts = [
    '//evil.example', 'https://evil', '/\\evil', '%2F%2Fevil', '/%2F%2Fevil', '/%5Cevil', '/..//evil.example', '/\t/evil.example',
    'javascript:alert(1)', '/.podgate/logout', '', 'evil',
  ]
  for (const rd of attempts) {
    const done = await signIn(browser, gw, rd)
    t.equal(done.location, `${gw.url}/`, `rd=${JSON.stringify(rd)}`)
  }
  const kept = await signIn(browser, gw, '/lab/tree/a%20b.ipynb?x=1&y=%2F#cell-3')
  t.equal(kept.location, `${gw.url}/lab/tree/a%20b.ipynb?x=1&y=%2F#cell-3`, 'a path on this host is kept')
  const normalised = await signIn(browser, gw, '/lab/./tree/../files/é')
  t.equal(normalised.location, `${gw.url}/lab/files/%C3%A9`, 'normalised as a browser would')
  const none = await signIn(browser, gw, undefined)
  t.equal(none.location, `${gw.url}/`, 'no rd')
})

void t.test('two logins in two tabs do not break each other', async (t) => {
  const { gw } = await setup(t)
  const browser = new TestBrowser()
  const first = await toCallback(browser, `${gw.url}/.podgate/login?rd=/tab-a`, 'alice')
  const second = await toCallback(browser, `${gw.url}/.podgate/login?rd=/tab-b`)
  t.not(first.callback, second.callback)
  // The second finishes first; the first, started earlier, still can.
  const b = await browser.request(second.callback)
  const a = await browser.request(first.callback)
  t.equal(b.location, `${gw.url}/tab-b`)
  t.equal(a.location, `${gw.url}/tab-a`)
  t.ok(sessionCookieLine(a) && sessionCookieLine(b), 'both set the session')
})

void t.test('logout clears the session and ends the provider\'s session too', async (t) => {
  const { idp, gw } = await setup(t)
  const browser = new TestBrowser()
  await signIn(browser, gw, '/', 'alice')
  const idToken = browser.cookie(gw.url, 'podgate-oidc-id')?.value

  const out = await browser.request(`${gw.url}/.podgate/logout`)
  t.equal(out.status, 303)
  const end = new URL(out.location ?? '')
  t.equal(`${end.origin}${end.pathname}`, `${idp.issuer}/session/end`, 'to the provider\'s end_session_endpoint')
  t.equal(end.searchParams.get('id_token_hint'), idToken, 'with the ID token as a hint')
  t.equal(end.searchParams.get('post_logout_redirect_uri'), `${gw.url}/`)
  t.equal(end.searchParams.get('client_id'), idp.clientId)
  t.ok(out.setCookies.includes('session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax'), 'the session cookie is cleared')
  t.ok(out.setCookies.includes('podgate-oidc-id=; Path=/.podgate/; Max-Age=0; HttpOnly; SameSite=Lax'))
  const after = await browser.request(`${gw.url}/`)
  t.equal(after.status, 401, 'signed out of podgate')

  const confirm = await browser.request(out.location ?? '')
  t.equal(confirm.status, 200, 'the provider accepts the request and asks to confirm')
  const xsrf = /name="xsrf" value="([^"]+)"/.exec(confirm.body)?.[1] ?? ''
  const action = /action="([^"]+)"/.exec(confirm.body)?.[1] ?? ''
  const ended = await browser.request(new URL(action, confirm.url).href, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ xsrf, logout: 'yes' }).toString(),
  })
  const back = ended.location === undefined ? undefined : (await browser.follow(ended.location)).at(0)
  t.equal(back?.url, `${gw.url}/`, 'and sends the browser back to podgate')
  await signIn(browser, gw, '/', 'alice')
  t.equal(idp.passwordLogins, 2, 'the next login asks for the password again')

  const plain = new TestBrowser()
  const nothing = await plain.request(`${gw.url}/.podgate/logout`, { method: 'POST' })
  t.equal(nothing.status, 303, 'a logout without a session (POST works too)')
  t.equal(new URL(nothing.location ?? '').searchParams.get('id_token_hint'), null, 'no hint to give')
})

void t.test('an expired session: 401 until a login through the provider\'s session, which is silent', async (t) => {
  const { idp, gw } = await setup(t)
  const browser = new TestBrowser()
  await signIn(browser, gw, '/', 'alice')
  // The same session, issued 9 hours ago: past its 8 hours.
  const expired = await mintToken({ secret: new TextEncoder().encode(gw.secret), user: 'alice', ttlSeconds: 8 * 3600, clock: { ...Date, now: () => Date.now() - 9 * 3600_000 } as never })
  browser.store(new URL(gw.url), `session=${expired}; Path=/`)
  const refused = await browser.request(`${gw.url}/`)
  t.equal(refused.status, 401)
  t.match(await json(refused), { error: 'PODGATE_AUTH', message: /exp/ })

  const renewed = await signIn(browser, gw, '/')
  t.equal(renewed.status, 303)
  t.equal(idp.passwordLogins, 1, 'no password: the provider still knows alice')
  const page = await browser.request(`${gw.url}/`)
  t.equal((await json(page) as Echoed).user, 'alice', 'routed again')
})

void t.test('a user id that is no DNS-1123 label is refused with a clear message', async (t) => {
  const { gw } = await setup(t)
  const browser = new TestBrowser()
  const refused = await signIn(browser, gw, '/', 'carol')
  t.equal(refused.status, 403)
  t.match(await json(refused), { error: 'PODGATE_FORBIDDEN', message: /"preferred_username" \("Carol\.Smith"\) cannot be a podgate user id: expected a DNS-1123 label/ })
  t.notOk(sessionCookieLine(refused))
})

void t.test('claims the provider keeps to UserInfo are read there', async (t) => {
  const { gw } = await setup(t, { PODGATE_OIDC_USER_CLAIM: 'preferred_username', PODGATE_USER_CLAIM: 'uid' }, { claimsInIdToken: false })
  const browser = new TestBrowser()
  const done = await signIn(browser, gw, '/', 'bob')
  t.equal(done.status, 303)
  t.equal(decodeJwt(browser.cookie(gw.url, 'session')?.value ?? '').uid, 'bob', 'from UserInfo, into PODGATE_USER_CLAIM')
  const page = await browser.request(`${gw.url}/`)
  t.equal((await json(page) as Echoed).user, 'bob')
})

void t.test('PODGATE_TENANT_CLAIM: the ID token\'s tenant goes into the session token', async (t) => {
  const { gw } = await setup(t, { PODGATE_TENANT_CLAIM: 'team', PODGATE_OIDC_SCOPES: 'openid profile' })
  const browser = new TestBrowser()
  await signIn(browser, gw, '/', 'alice')
  t.equal(decodeJwt(browser.cookie(gw.url, 'session')?.value ?? '').team, 'team-a')
  const refused = await signIn(new TestBrowser(), gw, '/', 'carol')
  t.equal(refused.status, 403, 'a login without one is refused')
})

void t.test('a provider that cannot be reached: 503, and the next login tries again', async (t) => {
  const idp = await startTestProvider(t)
  const gw = await startTestGateway(t, { PODGATE_OIDC_ISSUER: idp.issuer, PODGATE_OIDC_CLIENT_ID: idp.clientId, PODGATE_OIDC_CLIENT_SECRET: idp.clientSecret })
  const browser = new TestBrowser()
  const down = await browser.request(`${gw.url}/.podgate/login`)
  t.equal(down.status, 503, 'discovery answered 503')
  t.equal(down.headers.get('retry-after'), '5')
  t.match(await json(down), { error: 'PODGATE_NOT_READY', message: /identity provider/ })
  idp.register([gw.url])
  const up = await browser.request(`${gw.url}/.podgate/login`)
  t.equal(up.status, 303, 'discovered on the next attempt')
  const out = await browser.request(`${gw.url}/.podgate/logout`)
  t.equal(out.status, 303)
})
