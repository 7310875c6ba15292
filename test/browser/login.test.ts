// A real browser through `podgate demo --login`: headless Chromium (the Debian package, which
// scripts/install-chromium.sh installs; puppeteer-core never downloads one) signs in at the
// demo's OpenID provider, lands in its workspace, opens a WebSocket, signs out, and sees
// podgate's pages for a user without a workspace and for one whose workspace is starting.
import t, { type Test } from 'tap'
import { existsSync } from 'node:fs'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import puppeteer, { type Browser, type HTTPResponse, type Page } from 'puppeteer-core'
import { loadConfig } from '../../src/config.ts'
import { runDemo, type RunningDemo } from '../../src/local/demo.ts'
import { createLogger } from '../../src/log.ts'

const CHROMIUM = process.env.PODGATE_CHROMIUM ?? '/usr/bin/chromium'
/** Every wait in a page: navigations, selectors, the WebSocket. */
const WAIT_MS = 15_000
const started = performance.now()
// What the functions run inside the page see (this program has no DOM library).
declare const document: { body: { innerText: string } }

// Like every suite here, it never skips: a machine without the browser fails, saying what to do.
if (!existsSync(CHROMIUM)) {
  t.fail(`no Chromium at ${CHROMIUM}: run bash scripts/install-chromium.sh (npm test's pretest does), or set PODGATE_CHROMIUM to a Chromium binary`)
} else {
  await browserTests()
}

async function browserTests (): Promise<void> {
  const shots = await mkdtemp(join(tmpdir(), 'podgate-browser-'))
  t.comment(`screenshots in ${shots}`)
  const browser = await launch(t)
  const screenshot = async (t: Test, page: Page, name: string): Promise<void> => {
    const path = join(shots, `${name}.png`)
    await page.screenshot({ path })
    t.comment(`screenshot ${path}`)
  }

  void t.test('alice signs in, lands in her workspace, opens a WebSocket, signs out', async (t) => {
    const demo = await loginDemo(t)
    const page = await newPage(t, browser)
    const password = demo.login?.password ?? ''
    const loginStarted = performance.now()
    await page.goto(`${demo.gatewayUrl}/`, { timeout: WAIT_MS })
    t.ok(page.url().startsWith(`${demo.login?.issuer ?? ''}/interaction/`), 'redirected to the provider\'s login form')
    await screenshot(t, page, '1-login-form')
    const landing = await signIn(page, 'alice', password)
    const roundTripMs = performance.now() - loginStarted
    t.comment(`login round trip in the browser: ${roundTripMs.toFixed(0)} ms`)
    t.equal(page.url(), `${demo.gatewayUrl}/`, 'back at the gateway')
    t.equal(landing?.status(), 200)
    t.match(await bodyText(page), '"greeting":"Hello, alice!"', 'alice\'s backend answers')
    await screenshot(t, page, '2-alice-workspace')

    const ws = await page.evaluate(webSocketRoundTrip, `${demo.gatewayUrl.replace(/^http/, 'ws')}/ws?greet`, WAIT_MS)
    t.match(JSON.parse(ws.greeting), { user: 'alice', headers: { 'x-user-id': 'alice' } }, 'the WebSocket reaches alice\'s backend with her cookie')
    t.equal(ws.echo, 'hello from the page', 'and echoes')

    await page.goto(`${demo.gatewayUrl}/.podgate/logout`, { timeout: WAIT_MS })
    t.ok(page.url().startsWith(demo.login?.issuer ?? '?'), 'the provider asks to confirm signing out')
    await screenshot(t, page, '3-logout-confirm')
    await Promise.all([page.waitForNavigation({ timeout: WAIT_MS }), page.click('button[name="logout"]')])
    await page.goto(`${demo.gatewayUrl}/`, { timeout: WAIT_MS })
    t.ok(page.url().startsWith(`${demo.login?.issuer ?? ''}/interaction/`), 'the next visit is at the login form again')
    t.ok(await page.$('input[name="password"]'), 'with a password field')
    await screenshot(t, page, '4-after-logout')
  })

  void t.test('carol has no workspace: podgate\'s page, not JSON', async (t) => {
    const demo = await loginDemo(t)
    const page = await newPage(t, browser)
    await page.goto(`${demo.gatewayUrl}/`, { timeout: WAIT_MS })
    const landing = await signIn(page, 'carol', demo.login?.password ?? '')
    t.equal(landing?.status(), 404)
    t.match(landing?.headers()['content-type'], /^text\/html/)
    t.equal(await page.title(), 'No workspace for you')
    t.match(await bodyText(page), 'There is no workspace for carol')
    await screenshot(t, page, '5-carol-no-workspace')
  })

  void t.test('with spawn on demand carol sees the starting page, then her workspace', async (t) => {
    const demo = await loginDemo(t, { PODGATE_SPAWN_ON_DEMAND: 'true', PODGATE_BROWSER_GRACE: '1s' })
    const page = await newPage(t, browser)
    await page.goto(`${demo.gatewayUrl}/`, { timeout: WAIT_MS })
    const landing = await signIn(page, 'carol', demo.login?.password ?? '')
    t.equal(landing?.status(), 503)
    t.equal(await page.title(), 'Starting your workspace')
    await screenshot(t, page, '6-carol-starting')
    // The page reloads itself (meta refresh) until her backend answers, 1 s + 2 s after the start.
    await page.waitForFunction(() => document.body.innerText.includes('Hello, carol!'), { timeout: WAIT_MS, polling: 200 })
    t.pass('the starting page turned into her workspace')
    await screenshot(t, page, '7-carol-workspace')
  })

  t.teardown(() => { t.comment(`browser test file: ${((performance.now() - started) / 1000).toFixed(1)} s`) })
}

/** Chromium headless (puppeteer's headless: true is --headless=new) without the sandbox, which root needs. */
async function launch (t: Test): Promise<Browser> {
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
    timeout: WAIT_MS,
  })
  const pid = browser.process()?.pid
  t.teardown(async () => {
    await Promise.race([browser.close(), new Promise((resolve) => setTimeout(resolve, 5_000))])
    // Chromium runs in its own process group; whatever is left of it goes too.
    if (pid !== undefined) try { process.kill(-pid, 'SIGKILL') } catch { /* already gone */ }
  })
  return browser
}

/** A page in a fresh browser context: its own cookies, closed in teardown. */
async function newPage (t: Test, browser: Browser): Promise<Page> {
  const context = await browser.createBrowserContext()
  t.teardown(() => context.close())
  const page = await context.newPage()
  page.setDefaultTimeout(WAIT_MS)
  return page
}

async function loginDemo (t: Test, env: Record<string, string> = {}): Promise<RunningDemo> {
  const fullEnv = { PODGATE_PORT: '0', PODGATE_ADMIN_PORT: '0', PODGATE_ACCESS_LOG: 'false', ...env }
  const demo = await runDemo({ config: loadConfig(fullEnv, { requireKey: false }), env: fullEnv, logger: createLogger('silent'), out: new PassThrough().resume(), login: true })
  t.teardown(() => demo.close())
  return demo
}

/** Fills in the provider's form and waits for the navigation back; the last response of its redirects. */
async function signIn (page: Page, user: string, password: string): Promise<HTTPResponse | null> {
  await page.type('input[name="login"]', user)
  await page.type('input[name="password"]', password)
  const [response] = await Promise.all([page.waitForNavigation({ timeout: WAIT_MS }), page.click('button[type="submit"]')])
  return response
}

function bodyText (page: Page): Promise<string> {
  return page.evaluate(() => document.body.innerText)
}

/** Runs in the page: opens `url`, takes the greeting, sends a message and takes its echo. */
function webSocketRoundTrip (url: string, timeoutMs: number): Promise<{ greeting: string, echo: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url)
    const received: string[] = []
    const timer = setTimeout(() => { ws.close(); reject(new Error(`WebSocket: ${received.length} messages after ${timeoutMs} ms`)) }, timeoutMs)
    ws.onerror = () => { clearTimeout(timer); reject(new Error('WebSocket error')) }
    ws.onmessage = (event) => {
      received.push(String(event.data))
      if (received.length === 1) ws.send('hello from the page')
      if (received.length === 2) {
        clearTimeout(timer)
        ws.close()
        resolve({ greeting: received[0] ?? '', echo: received[1] ?? '' })
      }
    }
  })
}
