// Every error podgate raises on purpose: a stable `code`, the HTTP status it maps to,
// and the original failure kept as `cause`.

export interface PodgateErrorOptions {
  readonly cause?: unknown
  /** An HTML page to answer a browser with instead of JSON (the "workspace is starting" page). */
  readonly page?: string
}

export class PodgateError extends Error {
  readonly code: string = 'PODGATE_ERROR'
  readonly status: number = 500
  readonly page: string | undefined

  constructor (message: string, options?: PodgateErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this.name = new.target.name
    this.page = options?.page
  }
}

/** Why a token was refused; the closed set used as the `reason` metric label. */
export const AUTH_FAILURE_REASONS = [
  'missing', 'malformed', 'signature', 'algorithm', 'expired', 'not_yet_valid',
  'issuer', 'audience', 'claim', 'user', 'key', 'too_large', 'ambiguous', 'revoked', 'refused',
] as const
export type AuthFailureReason = typeof AUTH_FAILURE_REASONS[number]

export class AuthError extends PodgateError {
  override readonly code = 'PODGATE_AUTH'
  override readonly status = 401
  readonly reason: AuthFailureReason

  constructor (reason: AuthFailureReason, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.reason = reason
  }
}

/** Authenticated, but not allowed here: the token's tenant is not the namespace the user is served from. */
export class ForbiddenError extends PodgateError {
  override readonly code = 'PODGATE_FORBIDDEN'
  override readonly status = 403
}

export class WorkloadNotFoundError extends PodgateError {
  override readonly code = 'PODGATE_NO_WORKLOAD'
  override readonly status = 404
}

export class BadRequestError extends PodgateError {
  override readonly code = 'PODGATE_BAD_REQUEST'
  override readonly status = 400
}

/** A path podgate serves itself (under /.podgate/) that does not exist, or whose feature is not configured. */
export class NotFoundError extends PodgateError {
  override readonly code = 'PODGATE_NOT_FOUND'
  override readonly status = 404
}

/** An OpenID Connect login the provider refused, or whose answer podgate refused (a used code, a wrong nonce). */
export class LoginFailedError extends PodgateError {
  override readonly code = 'PODGATE_LOGIN_FAILED'
  override readonly status = 401
}

/** The request contradicts what exists: a user whose workload is in another namespace. */
export class ConflictError extends PodgateError {
  override readonly code = 'PODGATE_CONFLICT'
  override readonly status = 409
}

/** More request header fields than PODGATE_MAX_REQUEST_HEADERS: refused whole, never truncated. */
export class TooManyHeadersError extends PodgateError {
  override readonly code = 'PODGATE_TOO_MANY_HEADERS'
  override readonly status = 431
}

export const RATE_LIMITS = ['rate', 'concurrency'] as const
export type RateLimitKind = typeof RATE_LIMITS[number]

/** A user over PODGATE_RATE_LIMIT (rate) or PODGATE_MAX_CONCURRENT_PER_USER (concurrency), in this process. */
export class RateLimitedError extends PodgateError {
  override readonly code = 'PODGATE_RATE_LIMITED'
  override readonly status = 429
  readonly limit: RateLimitKind
  readonly retryAfterSeconds: number

  constructor (limit: RateLimitKind, message: string, retryAfterSeconds: number) {
    super(message)
    this.limit = limit
    this.retryAfterSeconds = retryAfterSeconds
  }
}

/** The workload exists but has no ready endpoint yet (starting, suspended, scaling). */
export class NotReadyError extends PodgateError {
  override readonly code = 'PODGATE_NOT_READY'
  override readonly status = 503
  readonly retryAfterSeconds: number

  constructor (message: string, retryAfterSeconds = 5, options?: PodgateErrorOptions) {
    super(message, options)
    this.retryAfterSeconds = retryAfterSeconds
  }
}

/** The workload cannot start (ImagePullBackOff, Unschedulable, …): waiting will not help. */
export class WorkloadFailedError extends PodgateError {
  override readonly code = 'PODGATE_WORKLOAD_FAILED'
  override readonly status = 503
  readonly retryAfterSeconds = 30
}

export const UPSTREAM_ERROR_KINDS = ['connect', 'reset', 'protocol', 'timeout', 'aborted'] as const
export type UpstreamErrorKind = typeof UPSTREAM_ERROR_KINDS[number]

export class UpstreamError extends PodgateError {
  override readonly code = 'PODGATE_UPSTREAM'
  override readonly status = 502
  readonly kind: UpstreamErrorKind

  constructor (kind: UpstreamErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.kind = kind
  }
}

export class UpstreamTimeoutError extends PodgateError {
  override readonly code = 'PODGATE_UPSTREAM_TIMEOUT'
  override readonly status = 504
  readonly kind = 'timeout' as const
}

export class DrainingError extends PodgateError {
  override readonly code = 'PODGATE_DRAINING'
  override readonly status = 503
  readonly retryAfterSeconds = 1
}

/** Bad configuration: start-up stops with this one line. */
export class ConfigError extends PodgateError {
  override readonly code = 'PODGATE_CONFIG'
  readonly variable: string

  constructor (variable: string, problem: string) {
    super(`${variable}: ${problem}`)
    this.variable = variable
  }
}

/** Seconds a client should wait before trying again, for the errors that say (Retry-After); undefined for the rest. */
export function retryAfterOf (error: PodgateError): number | undefined {
  const seconds = (error as { retryAfterSeconds?: unknown }).retryAfterSeconds
  return typeof seconds === 'number' ? seconds : undefined
}
