// Starts a podgate gateway in the test process against real local backends, with a
// LocalEndpointSource the test drives, and tears everything down with the test.
import { randomBytes } from 'node:crypto'
import { startPodgate, type PodgateOptions, type RunningPodgate } from '../../src/app.ts'
import { mintToken } from '../../src/auth/mint.ts'
import { createCredentialVerifier } from '../../src/auth/credential-verifier.ts'
import { loadConfig, type Config } from '../../src/config.ts'
import { LocalEndpointSource } from '../../src/local/endpoint-source.ts'
import { endpoint, type EndpointSource } from '../../src/discovery/source.ts'
import { createLogger } from '../../src/log.ts'
import { createBackend, type LocalBackend } from '../../src/local/backend.ts'
import { Metrics } from '../../src/metrics.ts'

interface Teardown { teardown (fn: () => unknown): void }

export interface TestGateway {
  readonly url: string
  readonly adminUrl: string
  readonly config: Config
  /** The endpoint source the gateway routes from (`local` unless the test passed its own). */
  readonly source: EndpointSource
  /** A local source the test drives directly; routed from only when no other was passed. */
  readonly local: LocalEndpointSource
  readonly metrics: Metrics
  readonly podgate: RunningPodgate
  readonly secret: string
  token (user: string, ttlSeconds?: number): Promise<string>
  /** Starts a backend for `user` and routes to it (adding to the user's endpoints). */
  backend (user: string): Promise<LocalBackend>
}

export async function startTestGateway (t: Teardown, env: Record<string, string> = {}, extra: Partial<PodgateOptions> = {}): Promise<TestGateway> {
  const secret = randomBytes(32).toString('hex')
  const ownKey = env.PODGATE_JWT_PUBLIC_KEY !== undefined || env.PODGATE_JWKS_URL !== undefined
  const config = loadConfig({
    PODGATE_JWT_SECRET: ownKey ? undefined : secret,
    PODGATE_HOST: '127.0.0.1',
    PODGATE_PORT: '0',
    PODGATE_ADMIN_PORT: '0',
    PODGATE_ACCESS_LOG: 'false',
    ...env,
  })
  const logger = createLogger('silent')
  const metrics = new Metrics({ defaultMetrics: false })
  const local = new LocalEndpointSource()
  const source = extra.source ?? local
  const verifier = createCredentialVerifier(config, { metrics, logger })
  const podgate = await startPodgate({ config, verifier, logger, metrics, ...extra, source })
  t.teardown(() => podgate.close())
  const key = config.auth.key
  return {
    url: podgate.gatewayUrl,
    adminUrl: podgate.adminUrl,
    config,
    source,
    local,
    metrics,
    podgate,
    secret,
    token: (user, ttlSeconds = 600) => {
      if (key.kind !== 'secret') throw new Error('token(): this gateway verifies with a public key; sign with its private key instead')
      return mintToken({ secret: key.secret, user, ttlSeconds })
    },
    backend: async (user) => {
      const backend = await createBackend({ user })
      t.teardown(() => backend.close())
      local.set(user, [...(local.snapshot.get(user) ?? []), endpoint('127.0.0.1', backend.address.port)])
      return backend
    },
  }
}
