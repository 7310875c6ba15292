// Error responses, in one place: every failure becomes exactly one of the statuses the
// contract names, as JSON for programs, a page (or the sign-in redirect) for browsers, on
// plain requests and WebSocket upgrades alike.
import type { IncomingMessage, ServerResponse } from 'node:http'
import {
  AuthError, BadRequestError, PodgateError, retryAfterOf, UpstreamError, UpstreamTimeoutError, type UpstreamErrorKind,
} from '../errors.ts'
import { isNavigation } from './navigation.ts'
import { CONTENT_SECURITY_POLICY, errorPage } from './pages.ts'
import { signInLocation, type SignInOptions } from './sign-in.ts'

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

/** What a response varies on when a GET or HEAD could be answered as a page or as JSON. */
const VARY = 'Accept, Sec-Fetch-Mode, Sec-Fetch-Dest, X-Requested-With'

/** How an error is answered: one status, its headers, one body. */
export interface ErrorResponse {
  readonly status: number
  readonly headers: Record<string, string>
  readonly body: string
}

export interface ErrorContext extends Partial<SignInOptions> {
  /** The request answered; without one (or for an upgrade) the answer is JSON. */
  readonly req?: Pick<IncomingMessage, 'method' | 'url' | 'headers' | 'socket'> | undefined
  /** A WebSocket (or other Upgrade) request: JSON and the same headers, never a page or a redirect. */
  readonly upgrade?: boolean
  /** The verified user, once the token named one: pages say whose workspace it is. */
  readonly user?: string | undefined
}

/**
 * The one answer to an error, for plain requests and upgrades alike. A browser navigation
 * (isNavigation) gets a page, or a 302 to the sign-in URL when its token is missing or refused
 * and one is configured; everything else gets `{"error", "message"}` JSON. Both carry
 * Cache-Control: no-store, Retry-After where waiting helps, and WWW-Authenticate on a 401;
 * pages a strict Content-Security-Policy. Anything that is not a PodgateError is a 500.
 */
export function errorResponse (err: unknown, context: ErrorContext = {}): ErrorResponse {
  const error = err instanceof PodgateError ? err : GENERIC
  const headers: Record<string, string> = { 'cache-control': 'no-store' }
  const req = context.upgrade === true ? undefined : context.req
  const pageable = req !== undefined && (req.method === 'GET' || req.method === 'HEAD')
  if (pageable) headers.vary = VARY
  const navigation = pageable && isNavigation(req)
  if (navigation && error instanceof AuthError) {
    const location = signInLocation(req, { signIn: context.signIn, trustProxy: context.trustProxy ?? false, oidc: context.oidc })
    if (location !== undefined) {
      headers.location = location
      headers['content-length'] = '0'
      return { status: 302, headers, body: '' }
    }
  }
  if (error instanceof AuthError) {
    headers['www-authenticate'] = error.reason === 'missing'
      ? 'Bearer realm="podgate"'
      : 'Bearer realm="podgate", error="invalid_token"'
  }
  const retryAfter = retryAfterOf(error)
  if (retryAfter !== undefined) headers['retry-after'] = String(retryAfter)
  let body: string
  if (navigation) {
    headers['content-type'] = 'text/html; charset=utf-8'
    headers['content-security-policy'] = CONTENT_SECURITY_POLICY
    headers['x-content-type-options'] = 'nosniff'
    body = error.page ?? errorPage(error, context.user)
  } else {
    headers['content-type'] = 'application/json; charset=utf-8'
    body = JSON.stringify({ error: error.code, message: error.message })
  }
  headers['content-length'] = String(Buffer.byteLength(body))
  return { status: error.status, headers, body }
}

/**
 * Answers `err` on `res` (errorResponse for `res.req`); returns the status sent. Once the
 * status line is out, the only honest signal left is a broken stream: the socket is destroyed.
 */
export function sendError (res: ServerResponse, err: unknown, context: Omit<ErrorContext, 'req' | 'upgrade'> = {}): number {
  if (res.headersSent) {
    res.destroy()
    return err instanceof PodgateError ? err.status : GENERIC.status
  }
  const answer = errorResponse(err, { ...context, req: res.req })
  res.writeHead(answer.status, answer.headers)
  res.end(answer.body)
  return answer.status
}
