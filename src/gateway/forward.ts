// Streams one request to a user's pod over that endpoint's pool and the response back,
// with backpressure both ways. A connect failure of a body-less idempotent request is
// retried once on another of the user's endpoints. Each outcome is reported to the pools'
// outlier ejection, which also picks the endpoint.
import type { IncomingMessage } from 'node:http'
import type { Dispatcher } from 'undici'
import type { Endpoint } from '../discovery/source.ts'
import { UpstreamError, type UpstreamTimeoutError } from '../errors.ts'
import type { Metrics } from '../metrics.ts'
import { downstreamHeaders } from './headers.ts'
import type { EndpointPools } from './pools.ts'
import type { CloseWatcher, GatewayResponse } from './response.ts'
import { neverSent, refusedRequest, sendError, upstreamFailure } from './respond.ts'

export interface ForwardTarget {
  /** Their pools carry the per-phase timeouts (PODGATE_HEADERS_TIMEOUT, PODGATE_BODY_TIMEOUT): no request repeats them. */
  readonly pools: EndpointPools
  readonly metrics: Metrics
  /** Round-robin position, shared by every user: cheap, and spreads each user's load evenly. */
  turn: number
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'])
const CLIENT_GONE = new UpstreamError('aborted', 'client closed the connection')

export function hasBody (req: IncomingMessage): boolean {
  const length = req.headers['content-length']
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')
}

/**
 * Forwards `req` to one of `endpoints` (non-empty). `headers` are the upstream request
 * headers. Errors are answered on `res`; nothing is thrown.
 */
export function forward (req: IncomingMessage, res: GatewayResponse, endpoints: readonly Endpoint[], headers: string[], target: ForwardTarget): void {
  const first = target.pools.outliers.pick(endpoints, nextTurn(target, endpoints.length))
  const body = hasBody(req) ? req : null
  const retries = body === null && IDEMPOTENT.has(req.method ?? '') ? Math.min(1, endpoints.length - 1) : 0
  new Exchange(req, res, endpoints, first, headers, body, retries, target).dispatch()
}

/** The next round-robin index into a list of `length` (> 0) endpoints. */
export function nextTurn (target: ForwardTarget, length: number): number {
  target.turn = (target.turn + 1) & 0x3fffffff
  return target.turn % length
}

/** The gone-endpoint failure: picked from a snapshot, its pool closed before the dispatch. */
export const ENDPOINT_LEFT = new UpstreamError('connect', 'endpoint left the routing table')

class Exchange implements Dispatcher.DispatchHandler, CloseWatcher {
  readonly #req: IncomingMessage
  readonly #res: GatewayResponse
  readonly #endpoints: readonly Endpoint[]
  #index: number
  readonly #headers: string[]
  readonly #body: IncomingMessage | null
  #retries: number
  readonly #target: ForwardTarget
  #controller: Dispatcher.DispatchController | undefined
  #started = false

  constructor (req: IncomingMessage, res: GatewayResponse, endpoints: readonly Endpoint[], index: number, headers: string[], body: IncomingMessage | null, retries: number, target: ForwardTarget) {
    this.#req = req
    this.#res = res
    this.#endpoints = endpoints
    this.#index = index
    this.#headers = headers
    this.#body = body
    this.#retries = retries
    this.#target = target
    res.exchange = this
  }

  dispatch (): void {
    const endpoint = this.#endpoints[this.#index] as Endpoint
    const pool = this.#target.pools.get(endpoint.origin)
    const res = this.#res
    res.endpoint = endpoint.origin
    if (res.upstreamStart === 0) res.upstreamStart = performance.now()
    if (pool === undefined) {
      this.onResponseError(undefined, ENDPOINT_LEFT)
      return
    }
    pool.dispatch({
      path: this.#req.url ?? '/',
      method: this.#req.method ?? 'GET',
      headers: this.#headers,
      body: this.#body,
    }, this)
  }

  /** The client's response has closed: unfinished, the client left, and the pod's request is aborted. */
  responseClosed (res: GatewayResponse): void {
    if (!res.writableFinished) this.#controller?.abort(CLIENT_GONE)
  }

  /** Made on the first backpressure only: most responses never wait for a drain. */
  #resume: (() => void) | undefined

  onRequestStart (controller: Dispatcher.DispatchController): void {
    this.#controller = controller
    if (this.#res.destroyed) controller.abort(CLIENT_GONE)
  }

  onResponseStart (_controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>, statusMessage?: string): void {
    // 1xx interim responses (100 Continue, 103 Early Hints) are not relayed.
    if (statusCode < 200) return
    this.#started = true
    const origin = (this.#endpoints[this.#index] as Endpoint).origin
    if (statusCode < 500) this.#target.pools.outliers.succeeded(origin)
    else this.#target.pools.outliers.failed(origin, '5xx', this.#endpoints)
    const res = this.#res
    if (res.destroyed) return
    res.byPod = true
    res.writeHead(statusCode, statusMessage, downstreamHeaders(headers))
    // A streamed response (SSE, long poll) may wait before its first chunk; its headers should not.
    if (headers['content-length'] === undefined) res.flushHeaders()
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.#res.write(chunk)) {
      controller.pause()
      this.#resume ??= () => { this.#controller?.resume() }
      this.#res.once('drain', this.#resume)
    }
  }

  onResponseEnd (): void {
    this.#res.upstreamEnd = performance.now()
    this.#res.end()
  }

  onResponseError (_controller: Dispatcher.DispatchController | undefined, err: Error): void {
    this.#res.upstreamEnd = performance.now()
    if (this.#resume !== undefined) this.#res.off('drain', this.#resume)
    // The client went away: its request is counted as a 499, not as the pod's failure.
    if (err === CLIENT_GONE) return
    const refused = this.#controller === undefined ? refusedRequest(err) : undefined
    if (refused !== undefined) {
      this.#res.setHeader('connection', 'close')
      sendError(this.#res, refused)
      return
    }
    const failure: UpstreamError | UpstreamTimeoutError = upstreamFailure(err)
    const connectFailed = !this.#started && neverSent(failure)
    const outliers = this.#target.pools.outliers
    if (connectFailed && err !== ENDPOINT_LEFT) outliers.failed((this.#endpoints[this.#index] as Endpoint).origin, 'connect', this.#endpoints)
    if (connectFailed && this.#retries > 0 && !this.#res.destroyed) {
      this.#retries--
      const next = (this.#index + 1) % this.#endpoints.length
      const picked = outliers.pick(this.#endpoints, next)
      this.#index = picked === this.#index ? next : picked
      this.#target.metrics.upstreamRetries.inc()
      this.dispatch()
      return
    }
    this.#target.metrics.upstreamError(failure.kind)
    sendError(this.#res, failure)
  }
}
