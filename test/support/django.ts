// Runs the Django auth service podgate replaces (test/support/django: a user table of opaque tokens,
// /auth/validate answering X-User-ID and /whoami answering X-Target-Service) as a real
// external verifier, on the Django that scripts/install-django.sh installs, with sqlite in a
// per-fixture temporary directory. Stopped and cleaned up with the test.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { EventEmitter, once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { setTimeout as delay } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

export const DJANGO_PROJECT = fileURLToPath(new URL('./django/', import.meta.url))
const INSTALL_SCRIPT = fileURLToPath(new URL('../../scripts/install-django.sh', import.meta.url))

const START_TIMEOUT_MS = 20_000
const STOP_TIMEOUT_MS = 5_000
const REQUEST_REPORT_TIMEOUT_MS = 5_000
// serve.py's exit code when its port is taken; a restart on the same port tries again.
const EXIT_PORT_IN_USE = 98
const PORT_RETRIES = 20
const PORT_RETRY_DELAY_MS = 100

interface Teardown { teardown (fn: () => unknown): void }

/** The request headers the fixture reports: those a gateway forwards to an external verifier, and Host. */
export type ReportedHeader = 'cookie' | 'authorization' | 'x-original-url' | 'x-original-method' | 'host'

/** One request the fixture answered, as serve.py reports it (before the response is sent). */
export interface DjangoRequest {
  readonly method: string
  readonly path: string
  readonly status: number
  readonly headers: Readonly<Partial<Record<ReportedHeader, string>>>
}

export interface DjangoOptions {
  /** Token → user name, added before the first start; a user may hold several tokens. */
  readonly tokens?: Readonly<Record<string, string>>
}

export interface DjangoFixture {
  /** `http://127.0.0.1:<port>`; the same after stop() and start(). */
  readonly url: string
  /** Every request reported so far, in order, across restarts. */
  readonly requests: readonly DjangoRequest[]
  /**
   * The `index`-th request (from 0) once reported: its line comes on serve.py's stdout, which
   * can arrive just after the response, so read a request just answered through this.
   */
  requestAt (index: number): Promise<DjangoRequest>
  /** Gives `user` (created when new) the token; works whether the server runs or not. */
  addToken (user: string, token: string): Promise<void>
  /** Deletes the token (its user stays); rejects when there is no such token. */
  deleteToken (token: string): Promise<void>
  /** Stops the server: its port refuses connections until start(). The tokens are kept. */
  stop (): Promise<void>
  /** Starts the stopped server again on the same port. */
  start (): Promise<void>
}

/**
 * The python of the virtual environment scripts/install-django.sh made (its --check mode:
 * the same cache path, never an install). Throws the script's one line naming the command to
 * run when Django is not installed.
 */
export function djangoPython (): string {
  try {
    return execFileSync('bash', [INSTALL_SCRIPT, '--check'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim()
  } catch (err) {
    const stderr = (err as { stderr?: string | Buffer }).stderr?.toString().trim() ?? ''
    throw new Error(stderr !== '' ? stderr : 'Django is not installed: run bash scripts/install-django.sh', { cause: err })
  }
}

export async function startDjango (t: Teardown, options: DjangoOptions = {}): Promise<DjangoFixture> {
  const python = djangoPython()
  const dir = await mkdtemp(join(tmpdir(), 'podgate-django-'))
  const env = {
    PATH: process.env.PATH,
    PODGATE_DJANGO_DB: join(dir, 'db.sqlite3'),
    // The project directory is in the repository: no __pycache__ there.
    PYTHONDONTWRITEBYTECODE: '1',
    PYTHONUNBUFFERED: '1',
  }
  const requests: DjangoRequest[] = []
  const reported = new EventEmitter()
  const onRequest = (request: DjangoRequest): void => {
    requests.push(request)
    reported.emit('request')
  }
  let server: ChildProcess | undefined
  let port = 0

  t.teardown(async () => {
    if (server !== undefined) await stopServer(server)
    server = undefined
    await rm(dir, { recursive: true, force: true })
  })

  const launch = async (seed: Readonly<Record<string, string>> | undefined): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      const started = await spawnServer(python, env, port, seed, onRequest)
      if ('child' in started) {
        server = started.child
        port = Number(new URL(started.url).port)
        return
      }
      if (started.code !== EXIT_PORT_IN_USE || port === 0 || attempt >= PORT_RETRIES) {
        throw new Error(`the Django fixture did not start (exit ${started.code}): ${started.stderr}`)
      }
      await delay(PORT_RETRY_DELAY_MS)
    }
  }
  await launch(options.tokens ?? {})

  const manage = (args: readonly string[]): Promise<void> => new Promise((resolve, reject) => {
    execFile(python, ['manage.py', ...args], { cwd: DJANGO_PROJECT, env, timeout: START_TIMEOUT_MS }, (err, _stdout, stderr) => {
      if (err === null) resolve()
      else reject(new Error(`manage.py ${args.join(' ')} failed: ${stderr.trim() || err.message}`, { cause: err }))
    })
  })

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    requestAt: async (index) => {
      const signal = AbortSignal.timeout(REQUEST_REPORT_TIMEOUT_MS)
      while (requests.length <= index) {
        await once(reported, 'request', { signal }).catch((err: unknown) => {
          throw new Error(`the Django fixture reported ${requests.length} requests, not ${index + 1}, within ${REQUEST_REPORT_TIMEOUT_MS} ms`, { cause: err })
        })
      }
      return requests[index] as DjangoRequest
    },
    addToken: (user, token) => manage(['addtoken', '--', user, token]),
    deleteToken: (token) => manage(['deltoken', '--', token]),
    stop: async () => {
      if (server === undefined) return
      const stopping = server
      server = undefined
      await stopServer(stopping)
    },
    start: async () => {
      if (server !== undefined && server.exitCode === null && server.signalCode === null) throw new Error('the Django fixture is already running')
      await launch(undefined)
    },
  }
}

type Spawned = { child: ChildProcess, url: string } | { code: number | null, stderr: string }

/** Starts serve.py in a process group of its own; resolves once it listens, or with how it exited. */
async function spawnServer (python: string, env: Record<string, string | undefined>, port: number,
  seed: Readonly<Record<string, string>> | undefined, onRequest: (request: DjangoRequest) => void): Promise<Spawned> {
  const child = spawn(python, ['serve.py', String(port)], {
    cwd: DJANGO_PROJECT,
    env: seed === undefined ? env : { ...env, PODGATE_DJANGO_TOKENS: JSON.stringify(seed) },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => { stderr = (stderr + String(chunk)).slice(-4_000) })
  const exited = once(child, 'exit').then(([code]) => ({ code: typeof code === 'number' ? code : null }))
  const listening = new Promise<{ url: string }>((resolve) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      const entry = parseLine(line)
      if (entry?.listening !== undefined) resolve({ url: entry.listening })
      else if (entry?.request !== undefined) onRequest(entry.request)
    })
  })
  let timer: NodeJS.Timeout | undefined
  const timedOut = new Promise<{ timeout: true }>((resolve) => { timer = setTimeout(() => { resolve({ timeout: true }) }, START_TIMEOUT_MS) })
  const first = await Promise.race([listening, exited, timedOut]).finally(() => { clearTimeout(timer) })
  if ('url' in first) return { child, url: first.url }
  if ('code' in first) return { code: first.code, stderr }
  signalGroup(child, 'SIGKILL')
  await exited
  return { code: null, stderr: `no answer within ${START_TIMEOUT_MS} ms; ${stderr}` }
}

function parseLine (line: string): { listening?: string, request?: DjangoRequest } | undefined {
  try {
    return JSON.parse(line) as { listening?: string, request?: DjangoRequest }
  } catch {
    return undefined
  }
}

function signalGroup (child: ChildProcess, signal: NodeJS.Signals): void {
  try { process.kill(-(child.pid as number), signal) } catch { /* already gone */ }
}

/** SIGTERM to the server's process group, SIGKILL if it lingers; resolves once it has exited. */
async function stopServer (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  signalGroup(child, 'SIGTERM')
  const timer = setTimeout(() => { signalGroup(child, 'SIGKILL') }, STOP_TIMEOUT_MS)
  await exited
  clearTimeout(timer)
}
