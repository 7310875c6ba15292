// podgate itself, started as `node src/main.ts serve` with a static route file
// (PODGATE_LOCAL_ROUTES) instead of Kubernetes, so any machine can run it.
import { generateKeyPairSync } from 'node:crypto'
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { forkEnv } from '../../src/workers/worker-options.ts'
import { startAuthService } from '../auth-service.ts'
import type { RunningAuthService } from '../auth-service.ts'
import { freePort, waitUntilReady } from '../http-probe.ts'
import { spreadSample, userIds, writeRouteFile } from '../route-file.ts'
import { bearer, es256Key, hs256Key, opaqueToken } from '../tokens.ts'
import type { BenchPath, Measure, PathContext } from './types.ts'

export interface PodgateVariant {
  readonly id: string
  readonly title: string
  readonly measures: readonly Measure[]
  readonly alg: 'HS256' | 'ES256'
  readonly tokenCache: boolean
  /** Users in the route table (all sent to the one upstream). */
  readonly users: number
  /** Tokens the load cycles through, for distinct users where the table has them. */
  readonly tokens: number
  /** PODGATE_WORKERS; with more than one, `serve` is a primary and that many gateway processes. */
  readonly workers: number
  /** Pinned to the proxy's CPU like every other proxy, or free to use every CPU (worker scaling). */
  readonly pinned: boolean
  /**
   * Opaque tokens checked by an auth service (PODGATE_AUTH_URL, bench/auth-service.ts)
   * instead of JWTs; the service runs on nginx, so the path needs it installed.
   */
  readonly authUrl?: boolean
  /** Request-path features turned on beyond the defaults (the cost-per-feature rows). */
  readonly features?: readonly Feature[]
}

/**
 * What a feature row sets: per-user limits high enough never to refuse, a signed identity
 * header (Ed25519), usage lines, the access log, span export to an OTLP sink, or the trace
 * context turned off (with the other features off too: podgate with nothing of them).
 */
export type Feature = 'limits' | 'identity' | 'usage' | 'access-log' | 'tracing' | 'trace-off'

const START_TIMEOUT_MS = 30_000
/**
 * Longer than any run, so the first request's verdict serves the whole run (cache warm); with
 * the default 60 s it would be one call a minute per token, too few to measure.
 */
const AUTH_URL_TTL = '1h'

export function podgatePath (variant: PodgateVariant): BenchPath {
  return {
    id: variant.id,
    title: variant.title,
    measures: variant.measures,
    async unavailable (context) {
      const main = join(context.repoDir, 'src', 'main.ts')
      if (!existsSync(main)) return `${main} does not exist yet`
      if (variant.authUrl !== true) return undefined
      const nginx = await context.prerequisites.nginx()
      return nginx.ok ? undefined : `the auth service runs on nginx: ${nginx.reason}`
    },
    async start (context) {
      const users = userIds(variant.users)
      const routesFile = join(context.workDir, `routes-${variant.id}.json`)
      writeRouteFile(routesFile, users, context.upstream.address)
      const key = variant.alg === 'HS256' ? hs256Key() : es256Key()
      const loadUsers = spreadSample(users, variant.tokens)
      let authService: RunningAuthService | undefined
      let tokens: string[]
      if (variant.authUrl === true) {
        const nginx = await context.prerequisites.nginx()
        if (!nginx.ok) throw new Error(nginx.reason)
        tokens = Array.from({ length: variant.tokens }, () => opaqueToken())
        authService = await startAuthService(context, nginx.value.binary, `auth-service-${variant.id}`,
          Object.fromEntries(tokens.map((token, index) => [token, loadUsers[index % loadUsers.length]!])))
      } else {
        tokens = await Promise.all(Array.from({ length: variant.tokens }, async (_, index) =>
          await key.sign(loadUsers[index % loadUsers.length]!, `${variant.id}-${index}`)))
      }
      const [port, adminPort] = [await freePort(), await freePort()]
      // The Node options and malloc arenas the image gives `serve` (Dockerfile), so the numbers are the product's as it ships.
      const env: NodeJS.ProcessEnv = {
        ...forkEnv(withoutOwnVariables(process.env), []),
        PODGATE_HOST: '127.0.0.1',
        PODGATE_PORT: String(port),
        PODGATE_ADMIN_PORT: String(adminPort),
        [variant.alg === 'HS256' ? 'PODGATE_JWT_SECRET' : 'PODGATE_JWT_PUBLIC_KEY']: key.verifier,
        PODGATE_LOCAL_ROUTES: routesFile,
        PODGATE_LOG_LEVEL: 'warn',
        PODGATE_ACCESS_LOG: 'false',
        PODGATE_WORKERS: String(variant.workers),
        ...(variant.tokenCache ? {} : { PODGATE_TOKEN_CACHE_SIZE: '0' }),
        ...(authService === undefined ? {} : { PODGATE_AUTH_URL: authService.url, PODGATE_AUTH_URL_TTL: AUTH_URL_TTL }),
        ...await featureVariables(variant, context),
      }
      const cpus = variant.pinned ? context.cpus.proxy : undefined
      const proxy = context.processes.spawn(variant.id, process.execPath, [join(context.repoDir, 'src', 'main.ts'), 'serve'], { cpus, env, cwd: context.repoDir })
      await waitUntilReady(`http://127.0.0.1:${adminPort}/readyz`, { process: proxy, timeoutMs: START_TIMEOUT_MS })
      return { baseUrl: `http://127.0.0.1:${port}`, headerSets: tokens.map(bearer), proxyPgid: proxy.pid, authService: authService?.probe('once') }
    },
  }
}

/** The benchmark sets every podgate and OpenTelemetry variable itself; none leak in from the caller's shell. */
function withoutOwnVariables (env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([name]) => !name.startsWith('PODGATE_') && !name.startsWith('OTEL_')))
}

async function featureVariables (variant: PodgateVariant, context: PathContext): Promise<NodeJS.ProcessEnv> {
  const env: NodeJS.ProcessEnv = {}
  for (const feature of variant.features ?? []) {
    switch (feature) {
      case 'limits':
        Object.assign(env, { PODGATE_RATE_LIMIT: '1000000/s', PODGATE_MAX_CONCURRENT_PER_USER: '100000' })
        break
      case 'identity': {
        const file = join(context.workDir, `identity-${variant.id}.pem`)
        writeFileSync(file, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 })
        env.PODGATE_IDENTITY_KEY = file
        break
      }
      case 'usage':
        env.PODGATE_USAGE_INTERVAL = '60s'
        break
      case 'access-log':
        env.PODGATE_ACCESS_LOG = 'true'
        break
      case 'tracing': {
        // A second fixed responder as the collector (POST /v1/traces → 200), on the upstream's CPUs.
        const sink = context.processes.spawn(`otlp-sink-${variant.id}`, process.execPath, [join(context.benchDir, 'fixed-responder.ts'), '--port', '0'], { cwd: context.repoDir })
        const listening = await sink.jsonLine<{ port?: unknown }>('listening', START_TIMEOUT_MS)
        if (typeof listening.port !== 'number') throw new Error(`the OTLP sink printed no port: ${JSON.stringify(listening)}`)
        env.OTEL_EXPORTER_OTLP_ENDPOINT = `http://127.0.0.1:${listening.port}`
        break
      }
      case 'trace-off':
        env.PODGATE_TRACE_CONTEXT = 'off'
        break
    }
  }
  return env
}
