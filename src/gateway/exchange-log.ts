// The audit trail of the request path: one access-log line per exchange (a WebSocket's when it
// ends) and the usage meter's counts, both from what the exchange left on its response and
// connection. Made only when the access log or the usage lines are on.
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Logger } from '../log.ts'
import { endpointAddress } from './response.ts'
import type { SocketBytes, UsageMeter } from './usage.ts'

/** How an exchange ended, for the access log and the usage meter. */
export interface Exchanged {
  readonly status: number
  /** Until the response ended (a WebSocket: until it closed). */
  readonly seconds: number
  readonly aborted: boolean
  readonly user: string | undefined
  /** The endpoint last asked (its origin); undefined when no pod was. */
  readonly origin: string | undefined
  /** From the first dispatch to the pod until its answer ended or failed. */
  readonly upstreamMs: number | undefined
}

type Bytes = { readonly bytesIn: number, readonly bytesOut: number }

export class ExchangeLog {
  readonly #logger: Logger | undefined
  readonly #usage: UsageMeter | undefined
  readonly #bytes = new ExchangeBytes()

  /** `logger`: where access-log lines go, undefined when the access log is off. */
  constructor (logger: Logger | undefined, usage: UsageMeter | undefined) {
    this.#logger = logger
    this.#usage = usage
  }

  /** An exchange that is over (a WebSocket's only when it was refused). */
  ended (req: IncomingMessage, socket: Duplex, exchange: Exchanged): void {
    // Taken whoever's it is: the connection's next exchange starts where this one ended.
    const bytes = this.#bytes.take(socket)
    if (this.#usage !== undefined && exchange.user !== undefined) this.#usage.request(exchange.user, bytes.bytesIn, bytes.bytesOut)
    this.#write(req, exchange, bytes)
  }

  /** A WebSocket is open: its line is written, and its usage counted, when it ends. */
  upgraded (req: IncomingMessage, socket: Duplex, user: string, origin: string | undefined, started: number): void {
    const usage = this.#usage
    if (usage !== undefined) {
      const before = this.#bytes.before(socket)
      usage.socketOpened(socket, user, before.read, before.written)
    }
    socket.once('close', () => {
      usage?.socketClosed(socket)
      const seconds = (performance.now() - started) / 1000
      this.#write(req, { status: 101, seconds, aborted: false, user, origin, upstreamMs: undefined }, this.#bytes.take(socket))
    })
  }

  /** At the end of the drain, before the WebSockets are ended: their usage so far, then the last interval. */
  close (open: Iterable<Duplex>): void {
    if (this.#usage === undefined) return
    for (const socket of open) this.#usage.socketClosed(socket)
    this.#usage.close()
  }

  /**
   * One access-log line. The query string is left out (some apps carry tokens in it), and so
   * is every header: a line names the user, never a credential.
   */
  #write (req: IncomingMessage, exchange: Exchanged, bytes: Bytes): void {
    if (this.#logger === undefined) return
    const url = req.url ?? ''
    const query = url.indexOf('?')
    const { status, seconds, aborted, user, origin, upstreamMs } = exchange
    this.#logger.info({
      user,
      method: req.method,
      path: query === -1 ? url : url.slice(0, query),
      status,
      ms: Math.round(seconds * 1e6) / 1e3,
      upstreamMs: upstreamMs === undefined ? undefined : Math.round(upstreamMs * 1e3) / 1e3,
      endpoint: origin === undefined ? undefined : endpointAddress(origin),
      bytesIn: bytes.bytesIn,
      bytesOut: bytes.bytesOut,
      aborted,
    }, 'request')
  }
}

/** Where a connection's byte counters stood when its previous exchange ended. */
interface Mark { read: number, written: number }

/**
 * Bytes of one exchange each way, from the connection's own counters (the request line and
 * headers included, like nginx's $request_length and $bytes_sent): what the socket read and
 * wrote since the previous exchange on it ended. Nothing is counted per chunk.
 */
export class ExchangeBytes {
  readonly #marks = new WeakMap<object, Mark>()

  /** The counters when the exchange now on `socket` began (zero on a new connection). */
  before (socket: object): Readonly<Mark> {
    return this.#marks.get(socket) ?? ZERO
  }

  /** The bytes of the exchange ending now on `socket`; the next one starts here. */
  take (socket: object): Bytes {
    const read = (socket as SocketBytes).bytesRead ?? 0
    const written = (socket as SocketBytes).bytesWritten ?? 0
    let mark = this.#marks.get(socket)
    const bytes = { bytesIn: read - (mark?.read ?? 0), bytesOut: written - (mark?.written ?? 0) }
    if (mark === undefined) {
      mark = { read, written }
      this.#marks.set(socket, mark)
    } else {
      mark.read = read
      mark.written = written
    }
    return bytes
  }
}

const ZERO: Readonly<Mark> = Object.freeze({ read: 0, written: 0 })
