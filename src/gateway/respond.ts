// Error responses, in one place: every failure becomes exactly one of the statuses the
// contract names, as JSON (or a small page for browsers waiting on a workload).
import type { ServerResponse } from 'node:http'
import {
  AuthError, BadRequestError, DrainingError, NotReadyError, PodgateError, UpstreamError, UpstreamTimeoutError, WorkloadFailedError,
  type UpstreamErrorKind,
} from '../errors.ts'

const CONNECT_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EADDRNOTAVAIL', 'UND_ERR_CLOSED', 'UND_ERR_DESTROYED'])
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'ECONNABORTED'])
const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT'])

/** Maps a failure talking to a user pod onto a 502 or 504, keeping the original as cause. */
export function upstreamFailure (err: unknown): UpstreamError | UpstreamTimeoutError {
  if (err instanceof UpstreamError || err instanceof UpstreamTimeoutError) return err
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code === 'string' && TIMEOUT_CODES.has(code)) {
    return new UpstreamTimeoutError(`upstream timed out (${code})`, { cause: err })
  }
  let kind: UpstreamErrorKind = 'protocol'
  if (typeof code === 'string') {
    if (CONNECT_CODES.has(code)) kind = 'connect'
    else if (RESET_CODES.has(code)) kind = 'reset'
    else if (code === 'UND_ERR_ABORTED' || code === 'ABORT_ERR') kind = 'aborted'
  }
  return new UpstreamError(kind, `upstream ${kind === 'connect' ? 'unreachable' : 'failed'} (${typeof code === 'string' ? code : 'error'})`, { cause: err })
}

/**
 * undici refuses to *build* a request it judges invalid (a header, the target, the method)
 * before any connection is used: that is the client's request at fault, a 400, never an
 * upstream failure. undefined for any other error.
 */
export function refusedRequest (err: unknown): BadRequestError | undefined {
  const code = (err as { code?: unknown } | null)?.code
  if (code !== 'UND_ERR_INVALID_ARG' && code !== 'UND_ERR_NOT_SUPPORTED') return undefined
  return new BadRequestError(`request cannot be forwarded: ${(err as Error).message}`, { cause: err })
}

/** True when the request never reached the upstream, so another endpoint may take it. */
export function neverSent (err: UpstreamError | UpstreamTimeoutError): boolean {
  if (err instanceof UpstreamError) return err.kind === 'connect'
  return (err.cause as { code?: unknown } | undefined)?.code === 'UND_ERR_CONNECT_TIMEOUT'
}

const GENERIC = new PodgateError('internal error')

/** Writes the error response for `err`; anything that is not a PodgateError is a 500. */
export function sendError (res: ServerResponse, err: unknown): number {
  const error = err instanceof PodgateError ? err : GENERIC
  const status = error.status
  if (res.headersSent) {
    // The status line is gone already: the only honest signal left is a broken stream.
    res.destroy()
    return status
  }
  const headers: Record<string, string> = {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
  }
  if (error instanceof AuthError) {
    headers['www-authenticate'] = error.reason === 'missing'
      ? 'Bearer realm="podgate"'
      : 'Bearer realm="podgate", error="invalid_token"'
  }
  if (error instanceof NotReadyError || error instanceof WorkloadFailedError || error instanceof DrainingError) {
    headers['retry-after'] = String(error.retryAfterSeconds)
  }
  const page = error.page
  if (page !== undefined) headers['content-type'] = 'text/html; charset=utf-8'
  const body = page ?? JSON.stringify({ error: error.code, message: error.message })
  headers['content-length'] = String(Buffer.byteLength(body))
  res.writeHead(status, headers)
  res.end(body)
  return status
}
