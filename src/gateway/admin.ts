// The admin port: liveness, readiness and metrics, plus whatever admin routes the
// provisioner registers. It outlives the gateway port during a drain.
import { LogController, fastify } from 'fastify'
import type { Logger } from '../log.ts'
import type { Metrics } from '../metrics.ts'

export interface Readiness {
  /** Undefined when ready, else why not. */
  notReady (): string | undefined
}

export type AdminApp = ReturnType<typeof createAdminServer>

export function createAdminServer (readiness: Readiness, metrics: Metrics, logger: Logger) {
  const app = fastify({ loggerInstance: logger, logController: new LogController({ disableRequestLogging: true }), return503OnClosing: false })
  app.get('/healthz', (_request, reply) => reply.send({ status: 'ok' }))
  app.get('/readyz', (_request, reply) => {
    const reason = readiness.notReady()
    if (reason === undefined) return reply.send({ status: 'ready' })
    return reply.code(503).header('retry-after', '1').send({ status: 'not ready', reason })
  })
  app.get('/metrics', async (_request, reply) => {
    const text = await metrics.registry.metrics()
    return reply.type(metrics.registry.contentType).send(text)
  })
  return app
}
