// The admin port: liveness, readiness and metrics, plus whatever admin routes the
// provisioner registers. It outlives the gateway port during a drain.
import { LogController, fastify } from 'fastify'
import type { Registry } from 'prom-client'
import type { Logger } from '../log.ts'
import type { Metrics } from '../metrics.ts'

export interface Readiness {
  /** Undefined when ready, else why not. */
  notReady (): string | undefined
}

export type AdminApp = ReturnType<typeof createAdminServer>

/**
 * `collect` gives the registry a scrape renders; by default this process's own (the primary
 * of gateway workers merges theirs into it).
 */
export function createAdminServer (readiness: Readiness, metrics: Metrics, logger: Logger, collect: () => Promise<Registry> = () => Promise.resolve(metrics.registry)) {
  const app = fastify({ loggerInstance: logger, logController: new LogController({ disableRequestLogging: true }), return503OnClosing: false })
  app.get('/healthz', (_request, reply) => reply.send({ status: 'ok' }))
  app.get('/readyz', (_request, reply) => {
    const reason = readiness.notReady()
    if (reason === undefined) return reply.send({ status: 'ready' })
    return reply.code(503).header('retry-after', '1').send({ status: 'not ready', reason })
  })
  app.get('/metrics', async (_request, reply) => {
    const registry = await collect()
    return reply.type(registry.contentType).send(await registry.metrics())
  })
  return app
}
