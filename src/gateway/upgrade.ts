// WebSocket (and any HTTP/1.1 Upgrade) proxying: the upgrade request goes to the user's
// pod over its pool; on 101 the two sockets are spliced, so frames flow both ways untouched
// and a close or reset on either side ends the other.
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders } from 'node:http'
import { STATUS_CODES } from './node-http.ts'
import type { Duplex } from 'node:stream'
import type { Dispatcher } from 'undici'
import type { Endpoint } from '../discovery/source.ts'
import { UpstreamError } from '../errors.ts'
import { downstreamHeaders } from './headers.ts'
import { ENDPOINT_LEFT, nextTurn, type ForwardTarget } from './forward.ts'
import { errorResponse, refusedRequest, upstreamFailure } from './respond.ts'

export interface UpgradeTarget extends ForwardTarget {
  /** Called once per spliced connection with a function that reports its traffic. */
  readonly onOpen?: () => void
  readonly onClose?: () => void
}

/**
 * Answers an Upgrade request that will not be upgraded, on its raw socket, with the same
 * status, headers and JSON body errorResponse gives any request (an upgrade never gets a page
 * or a redirect), then closes the connection. Returns the status.
 */
export function rejectUpgrade (socket: Duplex, err: unknown): number {
  const answer = errorResponse(err, { upgrade: true })
  if (socket.writable) {
    socket.end(`${statusLine(answer.status)}connection: close\r\n${headerLines(answer.headers)}\r\n${answer.body}`)
  }
  closeAfterWrite(socket)
  return answer.status
}

/** Ends a socket and destroys it once what was written has been flushed. */
function closeAfterWrite (socket: Duplex): void {
  if (socket.writableFinished || socket.destroyed) {
    socket.destroy()
    return
  }
  socket.once('finish', () => socket.destroy())
  socket.end()
}

/**
 * Status of an upgrade's answer, reported once: 101, the pod's other status, or podgate's
 * error; `origin` is the endpoint's when the pod answered.
 */
export type UpgradeAnswered = (status: number, origin?: string) => void

export function forwardUpgrade (req: IncomingMessage, socket: Duplex, head: Buffer, endpoints: readonly Endpoint[], headers: string[], target: UpgradeTarget, answered: UpgradeAnswered = () => {}): void {
  // Ejected endpoints are skipped, but never probed with an upgrade, whose outcome is not reported.
  const endpoint = endpoints[target.pools.outliers.pick(endpoints, nextTurn(target, endpoints.length), false)] as Endpoint
  const pool = target.pools.get(endpoint.origin)
  if (pool === undefined) {
    answered(rejectUpgrade(socket, ENDPOINT_LEFT))
    return
  }
  const upgrade = String(req.headers.upgrade ?? 'websocket')
  socket.on('error', () => { socket.destroy() })
  pool.dispatch({
    path: req.url ?? '/',
    method: req.method ?? 'GET',
    headers,
    upgrade,
  }, new UpgradeExchange(socket, head, upgrade, endpoint.origin, target, answered))
}

const CLIENT_GONE = new UpstreamError('aborted', 'client closed the connection')

class UpgradeExchange implements Dispatcher.DispatchHandler {
  readonly #client: Duplex
  readonly #head: Buffer
  readonly #upgrade: string
  readonly #origin: string
  readonly #target: UpgradeTarget
  readonly #answered: UpgradeAnswered
  #started = false
  #controller: Dispatcher.DispatchController | undefined
  /**
   * Until the pod answers, a client that goes away ends the upstream request too. The
   * server keeps upgrade sockets half-open, so a client's FIN shows as 'end', not 'close'.
   */
  readonly #onClientClose = (): void => {
    this.#client.destroy()
    this.#controller?.abort(CLIENT_GONE)
  }

  constructor (client: Duplex, head: Buffer, upgrade: string, origin: string, target: UpgradeTarget, answered: UpgradeAnswered) {
    this.#client = client
    this.#head = head
    this.#upgrade = upgrade
    this.#origin = origin
    this.#target = target
    this.#answered = answered
    client.once('close', this.#onClientClose)
    client.once('end', this.#onClientClose)
  }

  #clientAnswered (): void {
    this.#client.off('close', this.#onClientClose)
    this.#client.off('end', this.#onClientClose)
  }

  onRequestStart (controller: Dispatcher.DispatchController): void {
    this.#started = true
    this.#controller = controller
    if (this.#client.destroyed) controller.abort(CLIENT_GONE)
  }

  onRequestUpgrade (_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders, upstream: Duplex): void {
    this.#clientAnswered()
    const client = this.#client
    if (client.destroyed) {
      upstream.destroy()
      return
    }
    client.write(statusLine(statusCode) + `connection: Upgrade\r\nupgrade: ${this.#upgrade}\r\n` + headerLines(downstreamHeaders(headers)) + '\r\n')
    this.#answered(statusCode, this.#origin)
    if (this.#head.length > 0) upstream.write(this.#head)
    this.#target.onOpen?.()
    let closed = false
    const close = (): void => {
      if (closed) return
      closed = true
      this.#target.onClose?.()
    }
    // pipe() ends the other side when one side ends (a WebSocket close frame has already
    // passed through by then); an error or abrupt close destroys both.
    upstream.pipe(client)
    client.pipe(upstream)
    const destroyBoth = (): void => {
      upstream.destroy()
      client.destroy()
    }
    upstream.on('error', destroyBoth)
    client.on('error', destroyBoth)
    upstream.on('close', () => { closeAfterWrite(client); close() })
    client.on('close', () => { upstream.destroy(); close() })
  }

  // The pod answered the upgrade with an ordinary response (401, 404, …): relay it.
  onResponseStart (_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    this.#clientAnswered()
    const out = downstreamHeaders(headers)
    delete out['content-length']
    this.#client.write(statusLine(statusCode) + 'connection: close\r\ntransfer-encoding: chunked\r\n' + headerLines(out) + '\r\n')
    this.#answered(statusCode, this.#origin)
  }

  onResponseData (_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#client.write(`${chunk.length.toString(16)}\r\n`)
    this.#client.write(chunk)
    this.#client.write('\r\n')
  }

  onResponseEnd (): void {
    this.#client.end('0\r\n\r\n')
  }

  onResponseError (_controller: Dispatcher.DispatchController, err: Error): void {
    // The client went away before the upgrade: nothing to answer, and not the pod's failure.
    if (this.#client.destroyed) return
    const refused = this.#started ? undefined : refusedRequest(err)
    if (refused !== undefined) {
      this.#answered(rejectUpgrade(this.#client, refused))
      return
    }
    const failure = upstreamFailure(err)
    this.#target.metrics.upstreamError(failure.kind)
    this.#answered(rejectUpgrade(this.#client, failure))
  }
}

function statusLine (status: number): string {
  return `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n`
}

function headerLines (headers: OutgoingHttpHeaders): string {
  let text = ''
  for (const name in headers) {
    const value = headers[name]
    if (value === undefined) continue
    if (Array.isArray(value)) for (const v of value) text += `${name}: ${v}\r\n`
    else text += `${name}: ${value}\r\n`
  }
  return text
}
