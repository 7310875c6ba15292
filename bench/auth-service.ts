// The auth service the auth-url paths ask (podgate's PODGATE_AUTH_URL, nginx's auth_request):
// an nginx of its own answering 200 + X-User-ID for the benchmark's opaque tokens and 401 to
// anything else, from a map: no code on its side, so it is never the bottleneck. Its
// stub_status counts the calls it answered, so each path can show how often it asked.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { freePort, probe, waitUntilReady } from './http-probe.ts'
import type { PathContext } from './paths/types.ts'
import { clockTicksPerSecond, sampleGroup } from './proc-stats.ts'

/** Where the auth service answers: any path but this one, which is its call counter. */
export const CALLS_PATH = '/bench-auth-calls'
/** The path the proxies are configured to ask (any other but CALLS_PATH answers the same). */
export const AUTH_PATH = '/auth'
/** A warm cache asks once; this many calls still count as "about once" for a whole run. */
export const MAX_WARM_CACHE_CALLS = 2

const START_TIMEOUT_MS = 10_000
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{16,512}$/
const USER_PATTERN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/

/** How a path promises to use the auth service: once for the whole run (a warm cache), or on every request. */
export type AuthCallExpectation = 'once' | 'per-request'

export interface AuthServiceUsage {
  /** Calls the service answered since the path started (the counter's own reads excluded). */
  readonly calls: number
  /** The service's CPU time over those calls, in µs. */
  readonly cpuUs: number
}

/** What a path that asks an auth service hands the runner, read once after its last run. */
export interface AuthServiceProbe {
  readonly expect: AuthCallExpectation
  readonly usage: () => Promise<AuthServiceUsage>
}

export interface AuthServiceConfigOptions {
  /** Scratch directory for pid, logs and temp files. */
  readonly dir: string
  readonly port: number
  /** Opaque bearer token → the user id it stands for. */
  readonly users: Readonly<Record<string, string>>
}

export function authServiceConfig (options: AuthServiceConfigOptions): string {
  const entries = Object.entries(options.users)
  if (entries.length === 0) throw new Error('the auth service needs at least one token')
  for (const [token, user] of entries) {
    if (!TOKEN_PATTERN.test(token)) throw new Error('auth service tokens must be 16–512 base64url characters')
    if (!USER_PATTERN.test(user)) throw new Error(`auth service user ${JSON.stringify(user)} is not a DNS-1123 label`)
  }
  return [
    'worker_processes 1;',
    `pid ${options.dir}/nginx.pid;`,
    `error_log ${options.dir}/error.log warn;`,
    'events { worker_connections 4096; }',
    'http {',
    '  access_log off;',
    '  keepalive_requests 1000000;',
    '  keepalive_timeout 60s;',
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((kind) => `  ${kind}_temp_path ${options.dir}/${kind}_temp;`),
    // Regex keys: map's plain string keys match case-insensitively, and a token is not.
    '  map $http_authorization $bench_user {',
    '    default "";',
    ...entries.map(([token, user]) => `    "~^Bearer ${token}$" ${user};`),
    '  }',
    '  server {',
    `    listen 127.0.0.1:${options.port};`,
    `    location = ${CALLS_PATH} { stub_status; }`,
    '    location / {',
    '      if ($bench_user = "") { return 401; }',
    '      add_header X-User-ID $bench_user;',
    '      return 200;',
    '    }',
    '  }',
    '}',
    '',
  ].join('\n')
}

/** The request count of an nginx stub_status page ("server accepts handled requests\n 1 1 5"). */
export function parseStubStatusRequests (text: string): number {
  const match = /server accepts handled requests\s+(\d+)\s+(\d+)\s+(\d+)/.exec(text)
  if (match === null) throw new Error(`not a stub_status page: ${JSON.stringify(text.slice(0, 120))}`)
  return Number(match[3])
}

/** Why the calls a path made break its promise, or undefined when they keep it. */
export function authCallsProblem (expect: AuthCallExpectation, calls: number, served: number): string | undefined {
  if (expect === 'once') {
    return calls >= 1 && calls <= MAX_WARM_CACHE_CALLS
      ? undefined
      : `the auth service answered ${calls} calls for ${served} requests; a warm cache asks 1 to ${MAX_WARM_CACHE_CALLS} times in a whole run`
  }
  // Requests still in flight when a load run ends were asked about but not counted as served.
  return calls >= served ? undefined : `the auth service answered ${calls} calls for ${served} requests; every request should have asked it`
}

export interface RunningAuthService {
  /** The URL to configure as PODGATE_AUTH_URL. */
  readonly url: string
  /** host:port, for an nginx upstream block. */
  readonly address: string
  readonly probe: (expect: AuthCallExpectation) => AuthServiceProbe
}

/** Starts the auth service in the path's process group (frozen and stopped with it), on the upstream's CPUs. */
export async function startAuthService (context: PathContext, binary: string, name: string, users: Readonly<Record<string, string>>): Promise<RunningAuthService> {
  const dir = join(context.workDir, name)
  mkdirSync(dir, { recursive: true })
  const port = await freePort()
  writeFileSync(join(dir, 'nginx.conf'), authServiceConfig({ dir, port, users }))
  const service = context.processes.spawn(name, binary, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'], { cpus: context.cpus.upstream })
  const address = `127.0.0.1:${port}`
  const callsUrl = `http://${address}${CALLS_PATH}`
  await waitUntilReady(callsUrl, { process: service, timeoutMs: START_TIMEOUT_MS })
  // Each read of the counter is a request it counts, itself included: reads after the first are subtracted.
  let reads = 0
  const readCounter = async (): Promise<number> => {
    const response = await probe(callsUrl)
    reads++
    if (response.status !== 200) throw new Error(`${name}: ${CALLS_PATH} answered HTTP ${response.status}`)
    return parseStubStatusRequests(response.body.toString())
  }
  const before = { requests: await readCounter(), reads, cpuTicks: sampleGroup(service.pid).cpuTicks }
  const ticksToUs = 1e6 / clockTicksPerSecond()
  return {
    url: `http://${address}${AUTH_PATH}`,
    address,
    probe: (expect) => ({
      expect,
      usage: async () => {
        const requests = await readCounter()
        const cpuTicks = sampleGroup(service.pid).cpuTicks
        return { calls: requests - before.requests - (reads - before.reads), cpuUs: (cpuTicks - before.cpuTicks) * ticksToUs }
      },
    }),
  }
}
