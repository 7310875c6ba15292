// PODGATE_SIGNIN_URL: a browser navigation without a valid token is sent to sign in, with the
// URL it asked for in the redirect parameter; programs, other methods and upgrades keep the 401.
import { SignJWT } from 'jose'
import t from 'tap'
import { request } from 'undici'
import WebSocket from 'ws'
import { loadConfig } from '../../src/config.ts'
import { ConfigError } from '../../src/errors.ts'
import { isNavigation, prefersHtml } from '../../src/gateway/navigation.ts'
import { withQueryParam } from '../../src/gateway/sign-in.ts'
import { startTestGateway, type TestGateway } from '../support/gateway.ts'

const SIGNIN = 'https://accounts.example.com/login?next=app&lang=de%20CH'
const CHROME = 'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7'
const NAVIGATE = { accept: CHROME, 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' }

interface Answer { status: number, headers: Record<string, string | string[] | undefined>, text: string }

// undici's request, not fetch(): fetch always sends Sec-Fetch-Mode: cors, which is never a navigation.
async function ask (gw: TestGateway, path: string, headers: Record<string, string>, method: 'GET' | 'HEAD' | 'POST' = 'GET'): Promise<Answer> {
  const res = await request(`${gw.url}${path}`, { method, headers })
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() }
}

function expiredToken (gw: TestGateway, user: string): Promise<string> {
  const now = Math.floor(Date.now() / 1000)
  return new SignJWT({ sub: user }).setProtectedHeader({ alg: 'HS256' }).setIssuedAt(now - 7200).setExpirationTime(now - 3600).sign(new TextEncoder().encode(gw.secret))
}

/** The Location podgate should send for `url`: the sign-in URL, its query as configured, then rd. */
function expectedLocation (url: string, base = SIGNIN, param = 'rd'): string {
  return `${base}&${param}=${encodeURIComponent(url)}`
}

void t.test('a browser navigation without a valid token is redirected to sign in; anything else keeps the 401', async (t) => {
  const gw = await startTestGateway(t, { PODGATE_SIGNIN_URL: SIGNIN })
  await gw.backend('alice')
  const host = new URL(gw.url).host
  const original = `http://${host}/notebooks/a%26b?tab=1&path=%2Fhome`
  const badSignature = `${(await gw.token('alice')).slice(0, -4)}AAAA`
  const cases: Array<[string, Record<string, string>, 'GET' | 'HEAD' | 'POST', number]> = [
    ['a navigation, no token', NAVIGATE, 'GET', 302],
    ['a navigation, expired token', { ...NAVIGATE, authorization: `Bearer ${await expiredToken(gw, 'alice')}` }, 'GET', 302],
    ['a navigation, bad signature (cookie)', { ...NAVIGATE, cookie: `session=${badSignature}` }, 'GET', 302],
    ['a HEAD navigation', NAVIGATE, 'HEAD', 302],
    ['Accept text/html without Sec-Fetch (an older browser)', { accept: 'text/html' }, 'GET', 302],
    ['Sec-Fetch-Dest empty', { ...NAVIGATE, 'sec-fetch-dest': 'empty' }, 'GET', 302],
    ['curl (*/*)', { accept: '*/*' }, 'GET', 401],
    ['no Accept', {}, 'GET', 401],
    ['an API client', { accept: 'application/json' }, 'GET', 401],
    ['JSON as high as HTML', { accept: 'application/json, text/html' }, 'GET', 401],
    ['HTML below JSON', { accept: 'text/html;q=0.5, application/json' }, 'GET', 401],
    ['text/* only', { accept: 'text/*' }, 'GET', 401],
    ['an XMLHttpRequest', { ...NAVIGATE, 'x-requested-with': 'XMLHttpRequest' }, 'GET', 401],
    ['a CORS fetch', { ...NAVIGATE, 'sec-fetch-mode': 'cors' }, 'GET', 401],
    ['an image', { ...NAVIGATE, 'sec-fetch-dest': 'image' }, 'GET', 401],
    ['an iframe', { ...NAVIGATE, 'sec-fetch-dest': 'iframe' }, 'GET', 401],
    ['a POST from a browser form', NAVIGATE, 'POST', 401],
  ]
  for (const [name, headers, method, status] of cases) {
    const res = await ask(gw, '/notebooks/a%26b?tab=1&path=%2Fhome', headers, method)
    t.equal(res.status, status, `${name}: ${status}`)
    t.equal(res.headers['cache-control'], 'no-store', `${name}: not cached`)
    if (status === 302) {
      t.equal(res.headers.location, expectedLocation(original), `${name}: to the sign-in URL, its own query kept, the original URL in rd`)
      t.equal(res.headers['www-authenticate'], undefined, `${name}: no challenge on a redirect`)
      t.match(res.headers.vary, /\bAccept\b/, `${name}: Vary: Accept`)
      t.equal(res.text, '')
    } else {
      t.equal(res.headers.location, undefined, `${name}: no redirect`)
      t.match(res.headers['www-authenticate'], /^Bearer realm="podgate"/, `${name}: the challenge`)
      if (method !== 'HEAD') t.match(JSON.parse(res.text), { error: 'PODGATE_AUTH' }, `${name}: the JSON as before`)
    }
  }
  const ok = await ask(gw, '/', { ...NAVIGATE, authorization: `Bearer ${await gw.token('alice')}` })
  t.equal(ok.status, 200, 'a valid token goes to the pod, as always')
  t.equal((JSON.parse(ok.text) as { user: string }).user, 'alice')
})

void t.test('the redirect parameter is encoded whole and named by PODGATE_SIGNIN_REDIRECT_PARAM', async (t) => {
  const gw = await startTestGateway(t, { PODGATE_SIGNIN_URL: 'https://id.example/signin?client=podgate', PODGATE_SIGNIN_REDIRECT_PARAM: 'return_to' })
  const host = new URL(gw.url).host
  const path = '/lab/tree/%C3%A9t%C3%A9.ipynb?token=x&next=%2Fa%3Fb%3Dc&x=%23y'
  const res = await ask(gw, path, NAVIGATE)
  t.equal(res.status, 302)
  const location = String(res.headers.location)
  t.equal(location, `https://id.example/signin?client=podgate&return_to=${encodeURIComponent(`http://${host}${path}`)}`)
  t.equal(new URL(location).searchParams.get('return_to'), `http://${host}${path}`, 'the sign-in page reads back exactly the URL asked for')
  t.equal(new URL(location).searchParams.get('client'), 'podgate')
  t.notMatch(location.slice(location.indexOf('return_to=')), /[&?#/:]/, 'nothing of the original URL escapes the parameter')
})

void t.test('the original URL follows X-Forwarded-Proto/-Host only with PODGATE_TRUST_PROXY', async (t) => {
  const forwarded = { ...NAVIGATE, 'x-forwarded-proto': 'https', 'x-forwarded-host': 'notebooks.example.com' }
  const untrusted = await startTestGateway(t, { PODGATE_SIGNIN_URL: SIGNIN })
  const direct = await ask(untrusted, '/x', forwarded)
  t.equal(direct.headers.location, expectedLocation(`http://${new URL(untrusted.url).host}/x`), 'without trust: the connection and Host')

  const trusted = await startTestGateway(t, { PODGATE_SIGNIN_URL: SIGNIN, PODGATE_TRUST_PROXY: 'true' })
  const proxied = await ask(trusted, '/x', forwarded)
  t.equal(proxied.headers.location, expectedLocation('https://notebooks.example.com/x'), 'behind a trusted proxy: what the client asked the proxy for')
  const chained = await ask(trusted, '/x', { ...NAVIGATE, 'x-forwarded-proto': 'https, http', 'x-forwarded-host': 'outer.example, inner.example' })
  t.equal(chained.headers.location, expectedLocation('https://outer.example/x'), 'the first of several proxies')
})

void t.test('a WebSocket upgrade never gets the redirect: 401 JSON with the challenge', async (t) => {
  const gw = await startTestGateway(t, { PODGATE_SIGNIN_URL: SIGNIN })
  const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/ws`, { headers: NAVIGATE })
  ws.on('error', () => {})
  const [status, headers, body] = await new Promise<[number, Record<string, unknown>, string]>((resolve, reject) => {
    ws.once('unexpected-response', (_req, res) => {
      let text = ''
      res.on('data', (chunk: Buffer) => { text += String(chunk) })
      res.on('end', () => { resolve([res.statusCode ?? 0, res.headers, text]) })
    })
    ws.once('upgrade', () => { reject(new Error('upgraded')) })
  })
  ws.terminate()
  t.equal(status, 401)
  t.equal(headers.location, undefined)
  t.equal(headers['www-authenticate'], 'Bearer realm="podgate"')
  t.match(JSON.parse(body), { error: 'PODGATE_AUTH' })
})

void t.test('without PODGATE_SIGNIN_URL a navigation gets the 401 page, never a redirect', async (t) => {
  const gw = await startTestGateway(t)
  const res = await ask(gw, '/', NAVIGATE)
  t.equal(res.status, 401)
  t.equal(res.headers.location, undefined)
  t.equal(res.headers['content-type'], 'text/html; charset=utf-8')
  t.match(res.text, 'Sign in to continue')
})

const OIDC = { PODGATE_OIDC_ISSUER: 'https://idp.example.com/realms/main', PODGATE_OIDC_CLIENT_ID: 'podgate' }

void t.test('with podgate\'s own login (PODGATE_OIDC_ISSUER) a navigation goes to /.podgate/login with its path', async (t) => {
  const gw = await startTestGateway(t, OIDC)
  const res = await ask(gw, '/lab/tree?file=a%2Fb', NAVIGATE)
  t.equal(res.status, 302)
  t.equal(res.headers.location, `/.podgate/login?rd=${encodeURIComponent('/lab/tree?file=a%2Fb')}`, 'a path on this host, never a URL')
  const expired = await ask(gw, '/', { ...NAVIGATE, cookie: `session=${await expiredToken(gw, 'alice')}` })
  t.equal(expired.headers.location, '/.podgate/login?rd=%2F', 'an expired session signs in again')
  t.equal((await ask(gw, '/', { accept: 'application/json' })).status, 401, 'an API client keeps the 401')
})

void t.test('PODGATE_SIGNIN_URL must be an absolute http(s) URL; its options need it', (t) => {
  const key = { PODGATE_JWT_SECRET: 'x'.repeat(32) }
  t.equal(loadConfig(key).gateway.signIn, undefined, 'off by default')
  const on = loadConfig({ ...key, PODGATE_SIGNIN_URL: SIGNIN }).gateway.signIn
  t.equal(on?.url.href, SIGNIN)
  t.equal(on?.redirectParam, 'rd', 'rd by default, as ingress-nginx')
  t.equal(loadConfig({ ...key, PODGATE_SIGNIN_URL: SIGNIN, PODGATE_SIGNIN_REDIRECT_PARAM: 'next' }).gateway.signIn?.redirectParam, 'next')
  const refused: Array<[Record<string, string>, string, RegExp]> = [
    [{ PODGATE_SIGNIN_URL: '/login' }, 'PODGATE_SIGNIN_URL', /not an absolute URL/],
    [{ PODGATE_SIGNIN_URL: 'accounts.example.com/login' }, 'PODGATE_SIGNIN_URL', /not an absolute URL/],
    [{ PODGATE_SIGNIN_URL: 'ftp://accounts.example.com/' }, 'PODGATE_SIGNIN_URL', /http\(s\)/],
    [{ PODGATE_SIGNIN_URL: 'javascript:alert(1)' }, 'PODGATE_SIGNIN_URL', /http\(s\)/],
    [{ PODGATE_SIGNIN_URL: 'https://user:pw@accounts.example.com/' }, 'PODGATE_SIGNIN_URL', /user name or password/],
    [{ PODGATE_SIGNIN_REDIRECT_PARAM: 'rd' }, 'PODGATE_SIGNIN_REDIRECT_PARAM', /no effect without PODGATE_SIGNIN_URL/],
    [{ PODGATE_SIGNIN_URL: SIGNIN, PODGATE_SIGNIN_REDIRECT_PARAM: 'r&d' }, 'PODGATE_SIGNIN_REDIRECT_PARAM', /query parameter name/],
    [{ PODGATE_SIGNIN_URL: SIGNIN, ...OIDC }, 'PODGATE_SIGNIN_URL', /set one of the two/],
  ]
  for (const [env, variable, message] of refused) {
    t.throws(() => loadConfig({ ...key, ...env }), ConfigError, JSON.stringify(env))
    try {
      loadConfig({ ...key, ...env })
    } catch (err) {
      t.equal((err as ConfigError).variable, variable, `${JSON.stringify(env)}: names ${variable}`)
      t.match((err as Error).message, message)
    }
  }
  t.end()
})

void t.test('withQueryParam keeps the sign-in URL\'s query and fragment as written', (t) => {
  t.equal(withQueryParam(new URL('https://id.example/login'), 'rd', 'http://a/b?c=d'), 'https://id.example/login?rd=http%3A%2F%2Fa%2Fb%3Fc%3Dd')
  t.equal(withQueryParam(new URL('https://id.example/login?'), 'rd', 'x'), 'https://id.example/login?rd=x')
  t.equal(withQueryParam(new URL('https://id.example/login?a=b+c&e=%20'), 'rd', 'x'), 'https://id.example/login?a=b+c&e=%20&rd=x', 'no re-encoding of what is there')
  t.equal(withQueryParam(new URL('https://id.example/#/login'), 'rd', 'x y'), 'https://id.example/?rd=x%20y#/login', 'before the fragment')
  t.end()
})

void t.test('the navigation test', (t) => {
  const table: Array<[string, string | undefined, Record<string, string>, boolean]> = [
    ['Chrome', 'GET', { accept: CHROME, 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' }, true],
    ['Firefox', 'GET', { accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8' }, true],
    ['Safari, case and spaces', 'GET', { accept: 'TEXT/HTML , application/xml;q=0.9, */*;q=0.8' }, true],
    ['xhtml only', 'HEAD', { accept: 'application/xhtml+xml' }, true],
    ['HTML refused (q=0)', 'GET', { accept: 'text/html;q=0, */*' }, false],
    ['HTML below an image type', 'GET', { accept: 'text/html;q=0.5, image/png' }, false],
    ['problem+json as high', 'GET', { accept: 'application/problem+json, text/html' }, false],
    ['PUT', 'PUT', { accept: CHROME }, false],
    ['XHR in any case', 'GET', { accept: CHROME, 'x-requested-with': 'xmlhttprequest' }, false],
    ['CORS in any case', 'GET', { accept: CHROME, 'sec-fetch-mode': 'CORS' }, false],
    ['a script', 'GET', { accept: CHROME, 'sec-fetch-dest': 'script' }, false],
  ]
  for (const [name, method, headers, expected] of table) t.equal(isNavigation({ method, headers }), expected, name)
  t.notOk(prefersHtml(undefined))
  t.notOk(prefersHtml('*/*'))
  t.end()
})
