// Credentials checked by an external auth service (PODGATE_AUTH_URL, like ingress-nginx
// auth-url or Traefik forwardAuth): one GET over one long-lived pool, the verdict remembered
// per credential hash, concurrent misses for one credential sharing one call. A refusal is a
// 401; no usable answer is a 503 that is never remembered.
import { hash } from 'node:crypto'
import type { Readable } from 'node:stream'
import { LRUCache } from 'lru-cache'
import { Pool, type Dispatcher } from 'undici'
import { systemClock, type Clock } from '../clock.ts'
import type { AuthConfig, AuthUrlConfig } from '../config.ts'
import { AuthError, ConfigError, NotReadyError } from '../errors.ts'
import { requestOrigin } from '../gateway/headers.ts'
import { isDnsLabel } from '../kube/labels.ts'
import { componentLogger, type Logger } from '../log.ts'
import type { Metrics } from '../metrics.ts'
import { bearerToken } from './extract.ts'
import type { CredentialRequest, Identity, TokenVerifier } from './identity.ts'

/** A body longer than this is no answer an auth service should give: the call fails (503). */
export const MAX_AUTH_URL_BODY_BYTES = 65_536
/** Connections to the auth service at most; more concurrent calls queue (within the timeout). */
const MAX_CONNECTIONS = 64
const RETRY_AFTER_S = 5
const REFUSED = new AuthError('refused', 'the auth service refused the credential')

export type DispatcherFactory = (origin: string, options: Pool.Options) => Dispatcher

export interface ExternalVerifierOptions {
  readonly metrics?: Metrics | undefined
  readonly logger?: Logger | undefined
  /** Drives cache expiry and the call timeout. */
  readonly clock?: Clock | undefined
  /** Believe X-Forwarded-Proto/-Host for X-Original-URL (PODGATE_TRUST_PROXY). */
  readonly trustProxy?: boolean | undefined
  /** Builds the one dispatcher for the auth service's origin (default: an undici Pool). */
  readonly dispatcher?: DispatcherFactory | undefined
}

/** What the service said, once its whole (bounded) body was read. */
interface Answer {
  readonly status: number
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
}

/** The sha256 of a credential: the cache key, so no raw token is kept as one. */
export function credentialKey (token: string): string {
  return hash('sha256', token, 'base64url')
}

/**
 * Builds the verifier for PODGATE_AUTH_URL. Throws ConfigError when `auth.authUrl` is unset.
 * Owns one dispatcher for the service's origin, created here and destroyed by close().
 */
export function createExternalVerifier (auth: AuthConfig, options: ExternalVerifierOptions = {}): ExternalVerifier {
  if (auth.authUrl === undefined) throw new ConfigError('PODGATE_AUTH_URL', 'not set')
  return new ExternalVerifier(auth, auth.authUrl, options)
}

export class ExternalVerifier implements TokenVerifier {
  readonly #config: AuthUrlConfig
  readonly #path: string
  /** Origin and path only, for logs: a query string may carry a key. */
  readonly #where: string
  readonly #pool: Dispatcher
  readonly #clock: Clock
  readonly #metrics: Metrics | undefined
  readonly #logger: Logger | undefined
  readonly #trustProxy: boolean
  readonly #tenantRequired: boolean
  readonly #maxTokenBytes: number
  readonly #cookieName: string
  /** Allowed credentials by hash; undefined when nothing is remembered (TTL or cache size 0). */
  readonly #allowed: LRUCache<string, Identity> | undefined
  /** Refused credentials by hash, until when: a separate LRU, so a flood of bad tokens cannot push out good ones. */
  readonly #refused: LRUCache<string, number> | undefined
  /** Calls in flight by credential hash: concurrent misses for one credential share one. */
  readonly #flights = new Map<string, Promise<Identity>>()
  /** Bumped by revoke(): a call that started before a revocation does not fill the cache. */
  #revocations = 0
  /** Kinds of unusable 2xx answers already logged at warn (each once). */
  readonly #warned = new Set<string>()
  /** Calls that got no usable answer since the last one that did (0: the service is answering). */
  #failures = 0

  constructor (auth: AuthConfig, config: AuthUrlConfig, options: ExternalVerifierOptions) {
    if (!Number.isInteger(auth.tokenCacheSize) || auth.tokenCacheSize < 0) throw new ConfigError('PODGATE_TOKEN_CACHE_SIZE', `expected a non-negative integer, got ${auth.tokenCacheSize}`)
    if (!(config.timeoutMs > 0)) throw new ConfigError('PODGATE_AUTH_URL_TIMEOUT', `expected a positive duration, got ${config.timeoutMs}`)
    if (!(config.ttlMs >= 0)) throw new ConfigError('PODGATE_AUTH_URL_TTL', `expected a duration, got ${config.ttlMs}`)
    if (!(config.negativeTtlMs >= 0)) throw new ConfigError('PODGATE_AUTH_URL_NEGATIVE_TTL', `expected a duration, got ${config.negativeTtlMs}`)
    if (auth.tenantClaim !== undefined && config.tenantHeader === undefined) throw new ConfigError('PODGATE_AUTH_URL_TENANT_HEADER', 'required with PODGATE_TENANT_CLAIM')
    const clock = options.clock ?? systemClock
    const now = (): number => clock.now()
    this.#config = config
    this.#path = `${config.url.pathname}${config.url.search}`
    this.#where = `${config.url.origin}${config.url.pathname}`
    this.#clock = clock
    this.#metrics = options.metrics
    this.#logger = options.logger === undefined ? undefined : componentLogger(options.logger, 'auth-url')
    this.#trustProxy = options.trustProxy ?? false
    this.#tenantRequired = auth.tenantClaim !== undefined
    this.#maxTokenBytes = auth.maxTokenBytes
    this.#cookieName = auth.cookieName
    const size = auth.tokenCacheSize
    // Expiry runs on the injected clock; ttlResolution 0 stops lru-cache from caching it behind a timer.
    this.#allowed = size === 0 || config.ttlMs === 0 ? undefined : new LRUCache({ max: size, ttl: config.ttlMs, ttlResolution: 0, perf: { now } })
    this.#refused = size === 0 || config.negativeTtlMs === 0 ? undefined : new LRUCache({ max: size, ttl: config.negativeTtlMs, ttlResolution: 0, perf: { now } })
    const factory = options.dispatcher ?? ((origin, opts) => new Pool(origin, opts))
    this.#pool = factory(config.url.origin, {
      connections: MAX_CONNECTIONS,
      pipelining: 1,
      // Backstops on undici's own timers; the deadline on the clock ends the whole call.
      headersTimeout: config.timeoutMs,
      bodyTimeout: config.timeoutMs,
      connect: { timeout: config.timeoutMs },
    })
  }

  cached (token: string): Identity | undefined {
    const cache = this.#allowed
    if (cache === undefined) return undefined
    const identity = cache.get(credentialKey(token))
    if (identity === undefined || identity.expiresAt <= this.#clock.now()) return undefined
    this.#metrics?.authUrlCache.inc('hit')
    return identity
  }

  async verify (token: string, request?: CredentialRequest): Promise<Identity> {
    try {
      if (typeof token !== 'string' || token.length === 0) throw new AuthError('missing', 'no token')
      if (token.length > this.#maxTokenBytes) throw new AuthError('too_large', `token is ${token.length} bytes, more than the ${this.#maxTokenBytes} allowed`)
      const key = credentialKey(token)
      const allowed = this.#allowed?.get(key)
      if (allowed !== undefined && allowed.expiresAt > this.#clock.now()) {
        this.#metrics?.authUrlCache.inc('hit')
        return allowed
      }
      const refusedUntil = this.#refused?.get(key)
      if (refusedUntil !== undefined && refusedUntil > this.#clock.now()) {
        this.#metrics?.authUrlCache.inc('hit')
        throw REFUSED
      }
      this.#metrics?.authUrlCache.inc('miss')
      let flight = this.#flights.get(key)
      if (flight === undefined) {
        flight = this.#ask(key, token, request)
        this.#flights.set(key, flight)
        const done = (): void => { this.#flights.delete(key) }
        flight.then(done, done)
      }
      return await flight
    } catch (err) {
      if (err instanceof AuthError) this.#metrics?.authFailure(err.reason)
      throw err
    }
  }

  /** Drops every remembered allowance of `user`: their next request asks the service again. */
  revoke (user: string, _notBeforeS: number): void {
    this.#revocations++
    const cache = this.#allowed
    if (cache === undefined) return
    for (const [key, identity] of cache.entries()) {
      if (identity.user === user) cache.delete(key)
    }
  }

  close (): void {
    this.#allowed?.clear()
    this.#refused?.clear()
    this.#pool.destroy().catch(() => {})
  }

  /** One call to the service and its verdict; fills the cache with allowances and refusals only. */
  async #ask (key: string, token: string, request: CredentialRequest | undefined): Promise<Identity> {
    const revocations = this.#revocations
    const started = performance.now()
    let answer: Answer
    try {
      answer = await this.#call(token, request)
    } catch (err) {
      this.#metrics?.authUrlDuration.observe((performance.now() - started) / 1000)
      throw this.#unavailable(err)
    }
    this.#metrics?.authUrlDuration.observe((performance.now() - started) / 1000)
    const { status } = answer
    if (status === 401 || status === 403) {
      this.#answering()
      this.#metrics?.authUrlRequests.inc('refused')
      this.#refused?.set(key, this.#clock.now() + this.#config.negativeTtlMs)
      throw REFUSED
    }
    if (status < 200 || status > 299) throw this.#unavailable(new UnusableAnswer(`answered ${status}`), status)
    this.#answering()
    const identity = this.#identity(answer)
    this.#metrics?.authUrlRequests.inc('allowed')
    if (revocations === this.#revocations) this.#allowed?.set(key, identity)
    return identity
  }

  /** GETs the URL with the request's credentials; resolves once the whole body was read and dropped. */
  async #call (token: string, request: CredentialRequest | undefined): Promise<Answer> {
    const controller = new AbortController()
    const deadline = this.#clock.setTimeout(() => { controller.abort(new CallTimeout(this.#config.timeoutMs)) }, this.#config.timeoutMs, { unref: true })
    try {
      const response = await this.#pool.request({ path: this.#path, method: 'GET', headers: this.#headers(token, request), signal: controller.signal })
      if (!await discard(response.body, response.headers['content-length'])) throw new UnusableAnswer(`sent a body of more than ${MAX_AUTH_URL_BODY_BYTES} bytes`)
      return { status: response.statusCode, headers: response.headers }
    } catch (err) {
      // undici rejects an aborted call with the signal's reason, or with its own abort error.
      throw controller.signal.aborted ? controller.signal.reason as Error : err
    } finally {
      this.#clock.clearTimeout(deadline)
    }
  }

  /**
   * What ingress-nginx's auth-url sends — the credential and what the client asked for — but
   * only the one credential podgate took (a bearer token, else the session cookie), where the
   * client put it: the answer is remembered for that credential, so the service must not judge
   * another one (a cookie beside a bearer token, say, which a view may read first).
   */
  #headers (token: string, request: CredentialRequest | undefined): Record<string, string> {
    const authorization = request?.headers.authorization
    const fromCookie = request !== undefined && !(typeof authorization === 'string' && bearerToken(authorization) === token)
    const credential: Record<string, string> = fromCookie ? { cookie: `${this.#cookieName}=${token}` } : { authorization: `Bearer ${token}` }
    if (request === undefined) return credential
    return {
      'x-original-url': `${requestOrigin(request, this.#trustProxy)}${request.url ?? '/'}`,
      'x-original-method': request.method ?? 'GET',
      ...credential,
    }
  }

  /** The identity a 2xx names; an unusable one is the service's misconfiguration, refused and logged once. */
  #identity (answer: Answer): Identity {
    const config = this.#config
    const user = this.#headerValue(answer, config.userHeader, 'user', 'PODGATE_AUTH_URL_USER_HEADER')
    let id = user
    if (config.userPrefix !== '') {
      if (!user.startsWith(config.userPrefix)) this.#misconfigured('user', 'prefix', `the ${config.userHeader} header does not start with PODGATE_AUTH_URL_USER_PREFIX`)
      id = user.slice(config.userPrefix.length)
    }
    if (!isDnsLabel(id)) this.#misconfigured('user', 'label', `the user id in the ${config.userHeader} header is not a DNS-1123 label`)
    const expiresAt = this.#clock.now() + config.ttlMs
    const tenantHeader = config.tenantHeader
    if (!this.#tenantRequired || tenantHeader === undefined) return Object.freeze({ user: id, expiresAt })
    const tenant = this.#headerValue(answer, tenantHeader, 'claim', 'PODGATE_AUTH_URL_TENANT_HEADER')
    if (!isDnsLabel(tenant)) this.#misconfigured('claim', 'tenant label', `the tenant in the ${tenantHeader} header is not a DNS-1123 label (a namespace name)`)
    return Object.freeze({ user: id, expiresAt, tenant })
  }

  /** The one value of response header `name`; missing or several is the service's misconfiguration. */
  #headerValue (answer: Answer, name: string, reason: 'user' | 'claim', variable: string): string {
    const value = answer.headers[name]
    if (value === undefined) this.#misconfigured(reason, `${reason} missing`, `the answer has no ${name} header (${variable})`)
    if (typeof value !== 'string') this.#misconfigured(reason, `${reason} repeated`, `the answer has ${value.length} ${name} headers`)
    return value
  }

  /** Refuses the credential (401, never remembered) and warns once per kind of problem: no secrets, no values. */
  #misconfigured (reason: 'user' | 'claim', kind: string, problem: string): never {
    this.#metrics?.authUrlRequests.inc('error')
    const fields = { authUrl: this.#where, problem }
    if (this.#warned.has(kind)) {
      this.#logger?.debug(fields, 'auth service answered 2xx without a usable identity')
    } else {
      this.#warned.add(kind)
      this.#logger?.warn(fields, 'auth service answered 2xx without a usable identity: it looks misconfigured (PODGATE_AUTH_URL_USER_HEADER, PODGATE_AUTH_URL_USER_PREFIX, PODGATE_AUTH_URL_TENANT_HEADER); later answers like this are logged at debug')
    }
    throw new AuthError(reason, `the auth service allowed the credential but ${problem}`)
  }

  /** The 503 for a call without a usable answer; logs the first of a streak at warn. */
  #unavailable (err: unknown, status?: number): NotReadyError {
    this.#metrics?.authUrlRequests.inc('error')
    const why = err instanceof CallTimeout
      ? 'did not answer in time'
      : err instanceof UnusableAnswer ? err.message : `could not be reached (${errorCode(err)})`
    const fields = { authUrl: this.#where, status, error: describe(err), failures: ++this.#failures }
    if (this.#failures === 1) this.#logger?.warn(fields, `auth service ${why}; answering 503 until it answers again`)
    else this.#logger?.debug(fields, `auth service ${why}`)
    return new NotReadyError(`the authentication service ${why}; try again shortly`, RETRY_AFTER_S, { cause: err })
  }

  /** The service answered usably: ends a streak of failures. */
  #answering (): void {
    if (this.#failures === 0) return
    this.#logger?.info({ authUrl: this.#where, failures: this.#failures }, 'auth service answering again')
    this.#failures = 0
  }
}

/** The deadline (PODGATE_AUTH_URL_TIMEOUT) passed before the whole answer arrived. */
class CallTimeout extends Error {
  readonly code = 'PODGATE_AUTH_URL_TIMEOUT'
  constructor (timeoutMs: number) {
    super(`no whole answer within ${timeoutMs} ms`)
    this.name = 'CallTimeout'
  }
}

/** An answer that decides nothing: a redirect, a 5xx, a body over the limit. */
class UnusableAnswer extends Error {
  readonly code = 'PODGATE_AUTH_URL_UNUSABLE'
  constructor (message: string) {
    super(message)
    this.name = 'UnusableAnswer'
  }
}

/**
 * Reads and drops a response body, at most MAX_AUTH_URL_BODY_BYTES of it; false (and the
 * connection closed) when it is longer, so a huge answer is never buffered.
 */
async function discard (body: Readable, contentLength: string | string[] | undefined): Promise<boolean> {
  if (typeof contentLength === 'string' && Number(contentLength) > MAX_AUTH_URL_BODY_BYTES) {
    body.destroy()
    return false
  }
  let bytes = 0
  for await (const chunk of body) {
    bytes += (chunk as Buffer).length
    // Leaving the loop early destroys the stream, and with it the connection.
    if (bytes > MAX_AUTH_URL_BODY_BYTES) return false
  }
  return true
}

function errorCode (err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : 'error'
}

function describe (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
