// The gateway's listening server: a plain node:http server whose every request, whatever
// its method and path, goes to Gateway.handle untouched (no routing, no body parsing).
// docs/adr/0003-gateway-port-without-fastify.md says why fastify serves only the admin port.
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { listenOn } from '../listen.ts'
import type { GatewayConfig } from '../config.ts'
import type { Metrics } from '../metrics.ts'
import { BadRequestError } from '../errors.ts'
import type { Gateway } from './gateway.ts'
import { createServer } from './node-http.ts'
import { GatewayResponse } from './response.ts'
import { rejectUpgrade } from './upgrade.ts'

/**
 * Node's 16 KB default answers an oversized cookie or token with a bare 431; with room to
 * read it, podgate refuses it itself (401, PODGATE_MAX_TOKEN_BYTES) and says why.
 */
const MAX_HEADER_BYTES = 96 * 1024
/**
 * Connections the kernel may hold for podgate to accept. Node asks for 511; a burst of new
 * clients beyond it (after a rollout, or a load balancer opening connections as answers
 * slow) has SYNs dropped and retried a second later. The kernel caps it at net.core.somaxconn.
 */
const LISTEN_BACKLOG = 4096
/** How often Node looks for connections past the headers timeout (its default, 30 s, would double it). */
const MAX_CHECK_INTERVAL_MS = 1_000

const CONNECT_REFUSED = new BadRequestError('CONNECT is not supported: podgate is not a forward proxy')

export type ServerLimits = Pick<GatewayConfig, 'clientHeadersTimeoutMs' | 'keepAliveTimeoutMs' | 'clientIdleTimeoutMs' | 'maxConnections' | 'maxRequestHeaders'>

export interface GatewayServer {
  readonly server: Server
  listen (options: { host: string, port: number, reusePort?: boolean }): Promise<AddressInfo>
  /** Stops accepting connections and resolves once every connection has closed. */
  close (): Promise<void>
}

export function createGatewayServer (gateway: Gateway, metrics: Metrics, limits: ServerLimits): GatewayServer {
  const server = createServer({
    // Carries what the request path learns to the end of the request, on the object node allocates anyway.
    ServerResponse: GatewayResponse,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    maxHeaderSize: MAX_HEADER_BYTES,
    // Uploads to a user's pod may legitimately stream for hours: no limit on the whole
    // request, but one on its head, set explicitly (requestTimeout 0 alone turns it off too).
    requestTimeout: 0,
    headersTimeout: limits.clientHeadersTimeoutMs,
    connectionsCheckingInterval: Math.min(MAX_CHECK_INTERVAL_MS, limits.clientHeadersTimeoutMs),
  }, (req, res) => { gateway.handle(req, res) })
  // One more than accepted, so that a request over the limit is seen (431), not truncated.
  server.maxHeadersCount = limits.maxRequestHeaders + 1
  // Silence on a connection (no byte either way) past this closes it; an upgraded socket
  // is exempt (Gateway.upgrade clears it): a quiet WebSocket is the application's business.
  server.timeout = limits.clientIdleTimeoutMs
  if (limits.maxConnections > 0) server.maxConnections = limits.maxConnections
  // Without this listener Node answers `100 Continue` itself, before podgate has checked the token.
  server.on('checkContinue', (req, res) => { gateway.handle(req, res, true) })
  server.on('upgrade', (req, socket, head) => { gateway.upgrade(req, socket, head) })
  // podgate is no forward proxy; without a listener Node would drop the socket unanswered.
  server.on('connect', (_req, socket) => { rejectUpgrade(socket, CONNECT_REFUSED) })
  server.on('connection', (socket) => {
    metrics.openConnections.inc()
    socket.once('close', () => { metrics.openConnections.dec() })
  })
  return {
    server,
    listen: ({ host, port, reusePort = false }) => listenOn(server, { host, port, reusePort, backlog: LISTEN_BACKLOG }),
    close: () => new Promise((resolve) => {
      if (!server.listening) {
        server.closeAllConnections()
        resolve()
        return
      }
      server.close(() => { resolve() })
      server.closeAllConnections()
    }),
  }
}
