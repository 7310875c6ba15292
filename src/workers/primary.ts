// `podgate serve` with PODGATE_WORKERS > 1: this process keeps the endpoint source (one
// watch), the provisioner hooks and the admin port; N forked workers serve the gateway port.
// Its /metrics merges the workers' registries into its own; /readyz waits for the workers.
import { AggregatorRegistry, type Registry } from 'prom-client'
import { serverUrl, type PodgateOptions, type RunningPodgate } from '../app.ts'
import { registerIdentityKeys } from '../auth/identity-jwks.ts'
import { createAdminServer } from '../gateway/admin.ts'
import { toListenError } from '../listen.ts'
import { Metrics } from '../metrics.ts'
import { WorkerSupervisor } from './supervisor.ts'

export interface PrimaryOptions extends PodgateOptions {
  readonly workers: number
  /** Where the workers read their configuration (default: this process's environment). */
  readonly workerEnv?: NodeJS.ProcessEnv
  /** Node options for the workers (default: this process's). */
  readonly workerExecArgv?: readonly string[]
}

export async function startPrimary (options: PrimaryOptions): Promise<RunningPodgate> {
  const { config, source, verifier, logger } = options
  const metrics = options.metrics ?? new Metrics()
  const supervisor = new WorkerSupervisor({
    count: options.workers,
    host: config.gateway.host,
    port: config.gateway.port,
    source,
    metrics,
    logger,
    onMissing: options.onMissing,
    spawnNamespaces: options.spawnNamespaces,
    revocations: options.revocations,
    onActivity: options.onActivity,
    activityIntervalMs: options.activityIntervalMs,
    drainTimeoutMs: config.gateway.drainTimeoutMs,
    env: options.workerEnv,
    execArgv: options.workerExecArgv,
  })
  const unfollow = metrics.follow(source)
  const collect = async (): Promise<Registry> => {
    const [own, workers] = await Promise.all([metrics.registry.getMetricsAsJSON(), supervisor.scrape()])
    return AggregatorRegistry.aggregate([own, ...workers])
  }
  // The supervisor says 'draining' from the moment the drain starts.
  const admin = createAdminServer({
    notReady: () => supervisor.notReady() ?? (source.isSynced ? undefined : 'endpoint source not synced'),
  }, metrics, logger, collect)
  registerIdentityKeys(admin, config.gateway.identity)
  await options.adminRoutes?.(admin)
  const { host, adminPort } = config.gateway
  let port: number
  try {
    await source.start()
    // The gateway port first, as in one process: a taken port fails before the admin port logs.
    port = await supervisor.start()
    await admin.listen({ host, port: adminPort }).catch((err: unknown) => {
      throw toListenError(err, { host, port: adminPort, portVariable: 'PODGATE_ADMIN_PORT' })
    })
  } catch (err) {
    // Nothing this call opened, no worker included, may outlive a failed start.
    await supervisor.drain()
    unfollow()
    await admin.close()
    await source.close()
    verifier.close()
    throw err
  }
  logger.info({ workers: options.workers, port }, 'gateway workers serving')

  let drained: Promise<void> | undefined
  const drain = (): Promise<void> => {
    drained ??= (async () => {
      metrics.draining.set(1)
      logger.info({ workers: supervisor.serving, timeoutMs: config.gateway.drainTimeoutMs }, 'draining gateway workers')
      await supervisor.drain()
    })()
    return drained
  }
  let closed: Promise<void> | undefined
  const close = (): Promise<void> => {
    closed ??= (async () => {
      await drain()
      unfollow()
      await admin.close()
      await source.close()
      verifier.close()
    })()
    return closed
  }
  const gatewayUrl = serverUrl({ address: () => ({ address: host, family: '', port }) })
  return { gatewayUrl, adminUrl: serverUrl(admin.server), metrics, drain, close }
}
