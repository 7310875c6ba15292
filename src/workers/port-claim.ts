// The gateway port held by the primary alone (a listener without SO_REUSEPORT) while none of
// its workers listens on it. Any process of the same user may join an SO_REUSEPORT group, so
// the workers' own bind cannot tell a second podgate from a sibling: this claim can, and a
// port someone else listens on fails the claim instead of silently sharing their traffic.
import { createServer, type Server } from 'node:net'
import { listenOn, toListenError } from '../listen.ts'

export class PortClaim {
  readonly host: string
  /** The port claimed; the one the kernel picked when 0 was asked for. */
  readonly port: number
  readonly #server: Server

  private constructor (host: string, port: number, server: Server) {
    this.host = host
    this.port = port
    this.#server = server
  }

  /** Listens on host:port exclusively; rejects with a ListenError when that is not possible. */
  static async take (host: string, port: number): Promise<PortClaim> {
    // Never accepted from: a connection that reaches it before release is reset on close.
    const server = createServer({ pauseOnConnect: true }, (socket) => { socket.destroy() })
    await listenOn(server, { host, port, exclusive: true, reusePort: false, backlog: 1 }).catch((err: unknown) => { throw toListenError(err, { host, port, portVariable: 'PODGATE_PORT' }) })
    const address = server.address()
    return new PortClaim(host, typeof address === 'object' && address !== null ? address.port : port, server)
  }

  /** Lets go of the port (a worker binds it next); idempotent. */
  release (): Promise<void> {
    if (!this.#server.listening) return Promise.resolve()
    return new Promise((resolve) => { this.#server.close(() => { resolve() }) })
  }
}
