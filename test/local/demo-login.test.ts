// `podgate demo --login`: the demo's own OpenID provider and podgate's login, walked through
// with plain HTTP as a browser would (test/support/oidc-browser.ts), in process and as the CLI.
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { PassThrough } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { loadConfig } from '../../src/config.ts'
import { runDemo, type RunningDemo } from '../../src/local/demo.ts'
import { createLogger } from '../../src/log.ts'
import { TestBrowser, type Hop } from '../support/oidc-browser.ts'

const MAIN = fileURLToPath(new URL('../../src/main.ts', import.meta.url))
const HTML = { accept: 'text/html,application/xhtml+xml', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' }

async function loginDemo (t: Test, env: Record<string, string> = {}): Promise<{ demo: RunningDemo, output: string }> {
  const fullEnv = { PODGATE_PORT: '0', PODGATE_ADMIN_PORT: '0', PODGATE_ACCESS_LOG: 'false', ...env }
  const out = new PassThrough()
  let output = ''
  out.on('data', (chunk: Buffer) => { output += String(chunk) })
  const demo = await runDemo({ config: loadConfig(fullEnv, { requireKey: false }), env: fullEnv, logger: createLogger('silent'), out, login: true })
  t.teardown(() => demo.close())
  return { demo, output }
}

/** One navigation with undici's request (fetch always sends Sec-Fetch-Mode: cors), cookies from and into `browser`. */
async function visit (browser: TestBrowser, url: string): Promise<Hop> {
  const target = new URL(url)
  const cookie = browser.cookieHeader(target)
  const res = await request(target, { headers: { ...HTML, ...(cookie === '' ? {} : { cookie }) }, signal: AbortSignal.timeout(10_000) })
  const setCookie = res.headers['set-cookie']
  const setCookies = setCookie === undefined ? [] : Array.isArray(setCookie) ? setCookie : [setCookie]
  for (const line of setCookies) browser.store(target, line)
  const headers = new Headers()
  for (const [name, value] of Object.entries(res.headers)) if (typeof value === 'string') headers.set(name, value)
  const location = headers.get('location') ?? undefined
  return { url: target.href, status: res.statusCode, location: location === undefined ? undefined : new URL(location, target).href, setCookies, body: await res.body.text(), headers }
}

/** GET `url` as a navigation, following redirects; returns the hops. */
async function navigate (browser: TestBrowser, url: string): Promise<Hop[]> {
  const hops: Hop[] = []
  let next: string | undefined = url
  while (next !== undefined) {
    if (hops.length === 10) throw new Error(`more than 10 redirects from ${url}`)
    const hop = await visit(browser, next)
    hops.push(hop)
    next = hop.status >= 300 && hop.status < 400 ? hop.location : undefined
  }
  return hops
}

/** Fills in the provider's form on `page` and follows the redirects back to the gateway. */
async function signIn (browser: TestBrowser, page: Hop, user: string, password: string): Promise<Hop[]> {
  const action = /action="([^"]+)"/.exec(page.body)?.[1]
  if (action === undefined) throw new Error(`no login form in ${page.body}`)
  const posted = await browser.request(new URL(action, page.url).href, {
    method: 'POST',
    headers: { ...HTML, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ login: user, password }).toString(),
  })
  if (posted.location === undefined) return [posted]
  return [posted, ...await navigate(browser, posted.location)]
}

void t.test('demo --login: a browser is sent to the provider, signs in as alice and lands in her workspace', async (t) => {
  const { demo, output } = await loginDemo(t)
  const login = demo.login
  if (login === undefined) throw new Error('no login')
  t.match(output, `Sign in with a browser: open ${demo.gatewayUrl}/`)
  t.match(output, `password ${login.password}`)
  t.same(login.users, ['alice', 'bob', 'carol'])

  const browser = new TestBrowser()
  const toForm = await navigate(browser, `${demo.gatewayUrl}/notes?x=1`)
  t.equal(toForm[0]?.location, `${demo.gatewayUrl}/.podgate/login?rd=%2Fnotes%3Fx%3D1`, 'sent to podgate\'s own login')
  const form = toForm.at(-1)
  if (form === undefined) throw new Error('no hops')
  t.ok(form.url.startsWith(`${login.issuer}/interaction/`), 'the provider\'s login form')
  t.match(form.body, /<form method="post"/)

  const wrong = await signIn(browser, form, 'alice', 'not the password')
  t.equal(wrong[0]?.status, 401)
  t.match(wrong[0]?.body, 'Wrong user or password.')

  const hops = await signIn(browser, form, 'alice', login.password)
  const landed = hops.at(-1)
  t.equal(landed?.url, `${demo.gatewayUrl}/notes?x=1`, 'back where alice started')
  t.equal(landed?.status, 404, 'her backend answers (it has no /notes)')
  t.match(JSON.parse(landed?.body ?? '{}'), { user: 'alice', path: '/notes' })
  const session = browser.cookie(demo.gatewayUrl, 'session')
  t.ok(session, 'a session cookie')
  t.equal(session?.attributes.secure, undefined, 'not Secure over plain http, so the browser sends it back')

  const home = await browser.request(`${demo.gatewayUrl}/`, { headers: HTML })
  t.equal(home.status, 200)
  t.match(JSON.parse(home.body), { user: 'alice', greeting: 'Hello, alice!' })
})

void t.test('demo --login: the login works at http://localhost:<port> too', async (t) => {
  const { demo } = await loginDemo(t)
  const gateway = demo.gatewayUrl.replace('127.0.0.1', 'localhost')
  const browser = new TestBrowser()
  const form = (await navigate(browser, `${gateway}/`)).at(-1)
  if (form === undefined || demo.login === undefined) throw new Error('no form')
  const landed = (await signIn(browser, form, 'bob', demo.login.password)).at(-1)
  t.equal(landed?.url, `${gateway}/`)
  t.match(JSON.parse(landed?.body ?? '{}'), { user: 'bob' })
})

void t.test('demo --login: carol has no workspace without spawn on demand', async (t) => {
  const { demo } = await loginDemo(t)
  const browser = new TestBrowser()
  const form = (await navigate(browser, `${demo.gatewayUrl}/`)).at(-1)
  if (form === undefined || demo.login === undefined) throw new Error('no form')
  const landed = (await signIn(browser, form, 'carol', demo.login.password)).at(-1)
  t.equal(landed?.status, 404)
  t.match(landed?.headers.get('content-type'), /^text\/html/)
})

void t.test('podgate demo --login prints the password; SIGTERM stops the provider too', async (t) => {
  const child = spawn(process.execPath, [MAIN, 'demo', '--login'], {
    env: { PATH: process.env.PATH, PODGATE_PORT: '0', PODGATE_ADMIN_PORT: '0', PODGATE_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  let output = ''
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`no instructions within 20 s: ${output}`)) }, 20_000)
    child.stdout.on('data', (chunk: Buffer) => {
      output += String(chunk)
      if (output.includes('Ctrl-C stops')) { clearTimeout(timer); resolve() }
    })
  })
  const issuer = /the identity provider is (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1]
  t.ok(issuer)
  t.match(output, /password \S+: you land in your own workspace/)
  const discovery = await fetch(`${issuer ?? ''}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(5_000) })
  t.equal(discovery.status, 200)
  t.match(await discovery.json(), { issuer })
  const exited = once(child, 'exit') as Promise<[number | null]>
  child.kill('SIGTERM')
  t.equal((await exited)[0], 0)
  await t.rejects(fetch(`${issuer ?? ''}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(2_000) }), 'the provider is gone')
})
