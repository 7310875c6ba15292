// Wires one podgate process: endpoint source, pools, gateway and admin servers, and the
// drain that ends them in the right order.
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { TokenVerifier } from './auth/identity.ts'
import { registerIdentityKeys } from './auth/identity-jwks.ts'
import type { Config } from './config.ts'
import type { EndpointSource } from './discovery/source.ts'
import type { AdminApp } from './gateway/admin.ts'
import type { Clock } from './clock.ts'
import { Gateway, type ActivityListener, type MissingWorkload } from './gateway/gateway.ts'
import { EndpointPools } from './gateway/pools.ts'
import { gatewayLimits } from './gateway/profile-limits.ts'
import { createGatewayServer } from './gateway/server.ts'
import { toListenError } from './listen.ts'
import type { ServedNamespaces } from './kube/namespaces.ts'
import type { RevocationMarks } from './auth/revocations.ts'
import type { Logger } from './log.ts'
import { startBufferGovernor } from './memory.ts'
import { Metrics } from './metrics.ts'
import { loadTracer } from './tracing/tracer.ts'

export interface PodgateOptions {
  readonly config: Config
  readonly source: EndpointSource
  readonly verifier: TokenVerifier
  readonly logger: Logger
  readonly metrics?: Metrics
  readonly onMissing?: MissingWorkload
  readonly onActivity?: ActivityListener
  /** The namespaces spawn on demand may create workloads in: with PODGATE_TENANT_CLAIM, only those tenants may spawn. */
  readonly spawnNamespaces?: ServedNamespaces | undefined
  /** Per-user revocation marks the verifier enforces as they come (UserWorkload spec.tokensNotBefore). */
  readonly revocations?: RevocationMarks | undefined
  /** How often open WebSockets that carried client traffic count as activity (default 30 s). */
  readonly activityIntervalMs?: number
  /** The clock per-user rate limits refill on (tests pass a ManualClock). */
  readonly clock?: Clock
  /** Registers extra routes (the admin API) on the admin server before it listens. */
  readonly adminRoutes?: (app: AdminApp) => void | Promise<void>
  /** Whether this process opens the admin port (a gateway worker leaves it to its primary). */
  readonly serveAdmin?: boolean
  /** Listen with SO_REUSEPORT, beside the other gateway workers on the same port. */
  readonly reusePort?: boolean
  /** Awaited just before the gateway port is bound (a worker asks its primary's leave here). */
  readonly beforeListen?: () => Promise<void>
}

export interface RunningPodgate {
  readonly gatewayUrl: string
  readonly adminUrl: string
  readonly metrics: Metrics
  /** Stops taking traffic and waits (bounded) for in-flight requests; idempotent. */
  drain (): Promise<void>
  /** Drains, then closes every server, pool and watch this process opened; idempotent. */
  close (): Promise<void>
}

export async function startPodgate (options: PodgateOptions): Promise<RunningPodgate> {
  const { config, source, verifier, logger } = options
  const metrics = options.metrics ?? new Metrics()
  const pools = new EndpointPools(source, { ...config.gateway, registry: metrics.registry, clock: options.clock })
  // Each gateway process (a worker too) exports its own spans; the SDK is loaded only for that.
  const tracer = await loadTracer(config.gateway.tracing, logger)
  const gateway = new Gateway({
    auth: config.auth,
    // The global limits with the overrides of PODGATE_PROFILES' profiles.
    gateway: { ...config.gateway, rateLimit: await gatewayLimits(config) },
    source,
    verifier,
    pools,
    metrics,
    logger,
    onMissing: options.onMissing,
    spawnNamespaces: options.spawnNamespaces,
    onActivity: options.onActivity,
    activityIntervalMs: options.activityIntervalMs,
    clock: options.clock,
    tracer,
  })
  const unfollowSource = metrics.follow(source)
  const unfollowRevocations = options.revocations?.enforce(verifier)
  const unsubscribe = (): void => {
    unfollowSource()
    unfollowRevocations?.()
  }

  // A gateway worker leaves the admin port to its primary, and does not even load fastify.
  let admin: AdminApp | undefined
  if (options.serveAdmin ?? true) {
    const { createAdminServer } = await import('./gateway/admin.ts')
    admin = createAdminServer({
      notReady: () => {
        if (gateway.draining) return 'draining'
        if (!source.isSynced) return 'endpoint source not synced'
        return undefined
      },
    }, metrics, logger)
    registerIdentityKeys(admin, config.gateway.identity)
    await options.adminRoutes?.(admin)
  }
  const server = createGatewayServer(gateway, metrics, config.gateway)

  const governor = startBufferGovernor()
  const { host, port, adminPort } = config.gateway
  try {
    await source.start()
    // The gateway port first: when it is taken, start-up fails before the admin port logs that it listens.
    await options.beforeListen?.()
    await server.listen({ host, port, reusePort: options.reusePort ?? false }).catch((err: unknown) => {
      throw toListenError(err, { host, port, portVariable: 'PODGATE_PORT' })
    })
    await admin?.listen({ host, port: adminPort }).catch((err: unknown) => {
      throw toListenError(err, { host, port: adminPort, portVariable: 'PODGATE_ADMIN_PORT' })
    })
  } catch (err) {
    // Nothing this call opened may keep the process alive after a failed start.
    governor.stop()
    unsubscribe()
    await server.close()
    await admin?.close()
    await pools.close()
    await source.close()
    verifier.close()
    await tracer?.shutdown()
    throw err
  }

  let drained: Promise<void> | undefined
  const drain = (): Promise<void> => {
    drained ??= (async () => {
      gateway.startDraining()
      metrics.draining.set(1)
      logger.info({ inFlight: gateway.inFlight, timeoutMs: config.gateway.drainTimeoutMs }, 'draining')
      // Stop accepting connections; idle keep-alive ones close now, busy ones after their response.
      server.server.close()
      server.server.closeIdleConnections()
      const timedOut = await Promise.race([
        gateway.idle().then(() => false),
        sleep(config.gateway.drainTimeoutMs, true, { ref: false }),
      ])
      if (timedOut) logger.warn({ inFlight: gateway.inFlight }, 'drain timed out; closing remaining connections')
      gateway.closeUpgraded()
      server.server.closeAllConnections()
      await (timedOut ? pools.destroy() : pools.close())
      // Every request has ended, and so has its span: the last ones are exported before the exit.
      await tracer?.shutdown()
    })()
    return drained
  }
  let closed: Promise<void> | undefined
  const close = (): Promise<void> => {
    closed ??= (async () => {
      await drain()
      governor.stop()
      unsubscribe()
      await server.close()
      await admin?.close()
      await source.close()
      verifier.close()
    })()
    return closed
  }
  return { gatewayUrl: serverUrl(server.server), adminUrl: admin === undefined ? '' : serverUrl(admin.server), metrics, drain, close }
}

/** `http://host:port` a client on this machine can use; '' when not listening. */
export function serverUrl (server: { address: () => AddressInfo | string | null }): string {
  const address = server.address()
  if (address === null || typeof address === 'string') return ''
  const shown = address.address === '0.0.0.0' || address.address === '::' ? '127.0.0.1' : address.address
  return `http://${shown.includes(':') ? `[${shown}]` : shown}:${address.port}`
}
