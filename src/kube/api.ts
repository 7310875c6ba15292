// The conventions every podgate Kubernetes API call shares: pooled connections, request options, the field manager, and how a failed call is read.
import { ApiException, Observable, setHeaderMiddleware, type ConfigurationOptions, type ObservableMiddleware, type PatchStrategy } from '@kubernetes/client-node'
import type { Dispatcher } from 'undici'

export const FIELD_MANAGER = 'podgate'
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000

function timeoutMiddleware (timeoutMs: number, stop: AbortSignal): ObservableMiddleware {
  return {
    pre: (context) => {
      context.setSignal(AbortSignal.any([AbortSignal.timeout(timeoutMs), stop]))
      return new Observable(Promise.resolve(context))
    },
    post: (response) => new Observable(Promise.resolve(response)),
  }
}

/**
 * client-node 2.0.1 builds a new undici Agent for every request, so no connection is reused: a
 * TCP and TLS handshake per call, and idle sockets piling up on the API server under load. This
 * keeps the first Agent and sends every later request through it; its owner closes it.
 */
export class ApiConnections {
  readonly #stop = new AbortController()
  #dispatcher: Dispatcher | undefined
  #closed = false

  /** Aborted by abort(): every request made with these connections ends at once. */
  get signal (): AbortSignal { return this.#stop.signal }

  /** Cancels the requests in flight (a replica that stopped leading must stop writing). */
  abort (): void {
    this.#stop.abort(new Error('the provisioner stopped'))
  }

  readonly middleware: ObservableMiddleware = {
    pre: (context) => {
      const fresh = context.getDispatcher()
      if (fresh !== undefined && !this.#closed) {
        this.#dispatcher ??= fresh
        context.setDispatcher(this.#dispatcher)
      }
      return new Observable(Promise.resolve(context))
    },
    post: (response) => new Observable(Promise.resolve(response)),
  }

  /** Closes the pooled connections once the requests in flight have finished. */
  async close (): Promise<void> {
    this.#closed = true
    const dispatcher = this.#dispatcher
    this.#dispatcher = undefined
    await dispatcher?.close().catch(() => {})
  }
}

/** Per-call client options: pooled connections, a timeout on every request and, for patches, the content type. */
export function requestOptions (timeoutMs: number, connections: ApiConnections, contentType?: PatchStrategy): ConfigurationOptions {
  const middleware = [connections.middleware, timeoutMiddleware(timeoutMs, connections.signal)]
  if (contentType !== undefined) middleware.push(setHeaderMiddleware('Content-Type', contentType))
  return { middleware, middlewareMergeStrategy: 'append' }
}

/** The HTTP status of a failed API call; undefined for a network failure or a timeout. */
export function apiStatus (err: unknown): number | undefined {
  return err instanceof ApiException ? err.code : undefined
}

/** The API server's own message (from the Status body) when there is one, in one short line: the client's error message repeats the whole body and every header. */
export function apiErrorMessage (err: unknown): string {
  if (err instanceof ApiException) {
    const body = statusBody(err.body)
    const message = typeof body === 'object' && body !== null && 'message' in body ? String(body.message) : undefined
    return `${err.code}${message === undefined ? '' : ` ${message}`}`
  }
  if (err instanceof Error) {
    const cause = (err.cause as { code?: unknown } | undefined)?.code
    return `${err.name === 'TimeoutError' ? 'timed out' : err.message}${typeof cause === 'string' ? ` (${cause})` : ''}`
  }
  return String(err)
}

/** Worth retrying with backoff: conflicts, throttling, server errors, timeouts and broken connections. */
export function isRetryable (err: unknown): boolean {
  const status = apiStatus(err)
  if (status === undefined) return true
  return status === 409 || status === 429 || status >= 500
}

/** Retry-After of a 429/503, in milliseconds (delta-seconds or an HTTP date). */
export function retryAfterMs (err: unknown, now: () => number = Date.now): number | undefined {
  if (!(err instanceof ApiException)) return undefined
  const headers = (err.headers ?? {}) as Record<string, string | undefined>
  const value = headers['retry-after'] ?? headers['Retry-After']
  if (value === undefined || value.trim() === '') return undefined
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000
  const date = Date.parse(value)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now())
}

/** The Status object of an error response, which the client leaves as text for some calls (lists). */
function statusBody (body: unknown): unknown {
  if (typeof body !== 'string') return body
  try {
    return JSON.parse(body)
  } catch {
    return undefined
  }
}
