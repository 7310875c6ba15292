// podgate itself, started as `node src/main.ts serve` with a static route file
// (PODGATE_LOCAL_ROUTES) instead of Kubernetes, so any machine can run it.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { freePort, waitUntilReady } from '../http-probe.ts'
import { spreadSample, userIds, writeRouteFile } from '../route-file.ts'
import { bearer, es256Key, hs256Key } from '../tokens.ts'
import type { BenchPath, Measure } from './types.ts'

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
}

const START_TIMEOUT_MS = 30_000

export function podgatePath (variant: PodgateVariant): BenchPath {
  return {
    id: variant.id,
    title: variant.title,
    measures: variant.measures,
    unavailable (context) {
      const main = join(context.repoDir, 'src', 'main.ts')
      return Promise.resolve(existsSync(main) ? undefined : `${main} does not exist yet`)
    },
    async start (context) {
      const users = userIds(variant.users)
      const routesFile = join(context.workDir, `routes-${variant.id}.json`)
      writeRouteFile(routesFile, users, context.upstream.address)
      const key = variant.alg === 'HS256' ? hs256Key() : es256Key()
      const loadUsers = spreadSample(users, variant.tokens)
      const tokens = await Promise.all(Array.from({ length: variant.tokens }, async (_, index) =>
        await key.sign(loadUsers[index % loadUsers.length]!, `${variant.id}-${index}`)))
      const [port, adminPort] = [await freePort(), await freePort()]
      const env: NodeJS.ProcessEnv = {
        ...withoutPodgateVariables(process.env),
        PODGATE_HOST: '127.0.0.1',
        PODGATE_PORT: String(port),
        PODGATE_ADMIN_PORT: String(adminPort),
        [variant.alg === 'HS256' ? 'PODGATE_JWT_SECRET' : 'PODGATE_JWT_PUBLIC_KEY']: key.verifier,
        PODGATE_LOCAL_ROUTES: routesFile,
        PODGATE_LOG_LEVEL: 'warn',
        PODGATE_ACCESS_LOG: 'false',
        PODGATE_WORKERS: String(variant.workers),
        ...(variant.tokenCache ? {} : { PODGATE_TOKEN_CACHE_SIZE: '0' }),
      }
      const cpus = variant.pinned ? context.cpus.proxy : undefined
      const proxy = context.processes.spawn(variant.id, process.execPath, [join(context.repoDir, 'src', 'main.ts'), 'serve'], { cpus, env, cwd: context.repoDir })
      await waitUntilReady(`http://127.0.0.1:${adminPort}/readyz`, { process: proxy, timeoutMs: START_TIMEOUT_MS })
      return { baseUrl: `http://127.0.0.1:${port}`, headerSets: tokens.map(bearer), proxyPgid: proxy.pid }
    },
  }
}

/** The benchmark sets every podgate variable itself; none leak in from the caller's shell. */
function withoutPodgateVariables (env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([name]) => !name.startsWith('PODGATE_')))
}
