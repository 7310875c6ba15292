// The gateway's listening server: a plain node:http server whose every request, whatever
// its method and path, goes to Gateway.handle untouched (no routing, no body parsing).
// docs/adr/0003-gateway-port-without-fastify.md says why fastify serves only the admin port.
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Metrics } from '../metrics.ts'
import type { Gateway } from './gateway.ts'

/** Above the 60 s idle timeout common to cloud load balancers, so they close first. */
const KEEP_ALIVE_TIMEOUT_MS = 65_000
/**
 * Node's 16 KB default answers an oversized cookie or token with a bare 431; with room to
 * read it, podgate refuses it itself (401, PODGATE_MAX_TOKEN_BYTES) and says why.
 */
const MAX_HEADER_BYTES = 96 * 1024

export interface GatewayServer {
  readonly server: Server
  listen (options: { host: string, port: number, reusePort?: boolean }): Promise<AddressInfo>
  /** Stops accepting connections and resolves once every connection has closed. */
  close (): Promise<void>
}

export function createGatewayServer (gateway: Gateway, metrics: Metrics): GatewayServer {
  const server = createServer({
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    maxHeaderSize: MAX_HEADER_BYTES,
    // Uploads to a user's pod may legitimately stream for hours; per-phase timeouts apply upstream.
    requestTimeout: 0,
  }, (req, res) => { gateway.handle(req, res) })
  server.on('upgrade', (req, socket, head) => { gateway.upgrade(req, socket, head) })
  server.on('connection', (socket) => {
    metrics.openConnections.inc()
    socket.once('close', () => { metrics.openConnections.dec() })
  })
  return {
    server,
    listen: ({ host, port, reusePort = false }) => new Promise((resolve, reject) => {
      server.once('error', reject)
      server.listen({ host, port, reusePort }, () => {
        server.off('error', reject)
        resolve(server.address() as AddressInfo)
      })
    }),
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
