// The billing view (PODGATE_USAGE_INTERVAL): per interval, one JSON line per user who was
// active in it, with requests, bytes each way and WebSocket time. Kept in one map of the
// interval's active users, emptied at every flush, so memory follows recent activity, and no
// user id ever becomes a metric label.
import type { Duplex } from 'node:stream'
import { systemClock, type Clock, type TimerHandle } from '../clock.ts'
import type { Logger } from '../log.ts'

/** What a user did in one interval. */
interface Tally {
  requests: number
  bytesIn: number
  bytesOut: number
  websockets: number
  websocketMs: number
}

/** An open WebSocket: whose, and what of it has been counted already. */
interface OpenSocket {
  readonly user: string
  /** Epoch ms up to which its time is counted. */
  countedTo: number
  /** Its socket's byte counters when last counted. */
  read: number
  written: number
}

/** Bytes a socket has read and written so far (a net.Socket's counters; a Duplex in general may have none). */
export interface SocketBytes {
  readonly bytesRead?: number
  readonly bytesWritten?: number
}

export class UsageMeter {
  readonly #logger: Logger
  readonly #clock: Clock
  readonly #tallies = new Map<string, Tally>()
  readonly #sockets = new Map<Duplex, OpenSocket>()
  readonly #timer: TimerHandle
  #from: number

  constructor (intervalMs: number, logger: Logger, clock: Clock = systemClock) {
    this.#logger = logger
    this.#clock = clock
    this.#from = clock.now()
    this.#timer = clock.setInterval(() => { this.flush() }, intervalMs, { unref: true })
  }

  /** One HTTP request of `user` (an upgrade that was refused included), its bytes from and to the client. */
  request (user: string, bytesIn: number, bytesOut: number): void {
    const tally = this.#tally(user)
    tally.requests++
    tally.bytesIn += bytesIn
    tally.bytesOut += bytesOut
  }

  /**
   * A WebSocket of `user` is open on `socket`. Its handshake counts as a request; `readBefore`
   * and `writtenBefore` are the socket's counters before the handshake (a keep-alive connection
   * may have carried other requests first), so the handshake's bytes are counted too.
   */
  socketOpened (socket: Duplex, user: string, readBefore: number, writtenBefore: number): void {
    const tally = this.#tally(user)
    tally.websockets++
    tally.requests++
    this.#sockets.set(socket, { user, countedTo: this.#clock.now(), read: readBefore, written: writtenBefore })
  }

  /** Counts what is left of a WebSocket; a socket already counted as closed is ignored. */
  socketClosed (socket: Duplex): void {
    const open = this.#sockets.get(socket)
    if (open === undefined) return
    this.#count(socket, open, this.#clock.now())
    this.#sockets.delete(socket)
  }

  /** Writes the interval's lines and starts the next interval. */
  flush (): void {
    const now = this.#clock.now()
    for (const [socket, open] of this.#sockets) this.#count(socket, open, now)
    if (this.#tallies.size > 0) {
      const from = new Date(this.#from).toISOString()
      const to = new Date(now).toISOString()
      for (const [user, tally] of this.#tallies) {
        this.#logger.info({
          user,
          from,
          to,
          requests: tally.requests,
          bytesIn: tally.bytesIn,
          bytesOut: tally.bytesOut,
          websockets: tally.websockets,
          websocketSeconds: Math.round(tally.websocketMs) / 1000,
        }, 'usage')
      }
      this.#tallies.clear()
    }
    this.#from = now
  }

  /** Stops the interval and writes what the last, partial one counted: nothing counted is lost at shutdown. */
  close (): void {
    this.#clock.clearInterval(this.#timer)
    for (const socket of [...this.#sockets.keys()]) this.socketClosed(socket)
    this.flush()
  }

  #count (socket: Duplex, open: OpenSocket, now: number): void {
    const tally = this.#tally(open.user)
    const read = (socket as SocketBytes).bytesRead ?? open.read
    const written = (socket as SocketBytes).bytesWritten ?? open.written
    tally.websocketMs += Math.max(0, now - open.countedTo)
    tally.bytesIn += read - open.read
    tally.bytesOut += written - open.written
    open.countedTo = now
    open.read = read
    open.written = written
  }

  #tally (user: string): Tally {
    let tally = this.#tallies.get(user)
    if (tally === undefined) {
      tally = { requests: 0, bytesIn: 0, bytesOut: 0, websockets: 0, websocketMs: 0 }
      this.#tallies.set(user, tally)
    }
    return tally
  }
}
