// The gateway's listening server: fastify owns the socket and connection handling; every
// request, whatever its method and path, goes to Gateway.handle untouched (no body parsing).
import type { IncomingMessage, ServerResponse } from 'node:http'
import { LogController, fastify } from 'fastify'
import type { Logger } from '../log.ts'
import type { Metrics } from '../metrics.ts'
import type { Gateway } from './gateway.ts'

/** Above the 60 s idle timeout common to cloud load balancers, so they close first. */
const KEEP_ALIVE_TIMEOUT_MS = 65_000
/**
 * Node's 16 KB default answers an oversized cookie or token with a bare 431; with room to
 * read it, podgate refuses it itself (401, PODGATE_MAX_TOKEN_BYTES) and says why.
 */
const MAX_HEADER_BYTES = 96 * 1024

export type GatewayApp = ReturnType<typeof createGatewayServer>

export function createGatewayServer (gateway: Gateway, metrics: Metrics, logger: Logger) {
  const app = fastify({
    loggerInstance: logger,
    logController: new LogController({ disableRequestLogging: true }),
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    http: { maxHeaderSize: MAX_HEADER_BYTES },
    requestTimeout: 0,
    return503OnClosing: false,
    forceCloseConnections: false,
    routerOptions: { ignoreDuplicateSlashes: false, maxParamLength: 2048 },
  })
  // Bodies stream through to the pod: no parser may read them.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request, _payload, done) => { done(null) })
  const handler = (request: { raw: IncomingMessage }, reply: { hijack: () => void, raw: ServerResponse }): void => {
    reply.hijack()
    gateway.handle(request.raw, reply.raw)
  }
  app.all('/*', handler)
  app.all('/', handler)
  app.setNotFoundHandler(handler)
  app.server.on('upgrade', (req, socket, head) => { gateway.upgrade(req, socket, head) })
  app.server.on('connection', (socket) => {
    metrics.openConnections.inc()
    socket.once('close', () => { metrics.openConnections.dec() })
  })
  return app
}
