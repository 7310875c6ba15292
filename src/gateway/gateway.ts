// The request path: token → user → per-user limits → ready endpoints → forward. Works on node's raw
// request/response so the same code serves plain HTTP and upgrades.
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { extractToken } from '../auth/extract.ts'
import { isReservedPath } from '../auth/oidc-paths.ts'
import { RESERVED_UPGRADE, reservedRoutes, type ReservedRoutes } from '../auth/oidc-routes.ts'
import type { Identity, TokenVerifier } from '../auth/identity.ts'
import { createIdentitySigner } from '../auth/identity-token.ts'
import type { AuthConfig, GatewayConfig } from '../config.ts'
import { systemClock, type Clock } from '../clock.ts'
import type { Endpoint, EndpointSource } from '../discovery/source.ts'
import { AuthError, DrainingError, ForbiddenError, NotReadyError, PodgateError, WorkloadNotFoundError } from '../errors.ts'
import type { Logger } from '../log.ts'
import { isServed, type ServedNamespaces } from '../kube/namespaces.ts'
import type { Metrics } from '../metrics.ts'
import { TraceContextPropagator } from '../tracing/context.ts'
import type { GatewayTracer, RequestSpans } from '../tracing/tracer.ts'
import { forward, type ForwardTarget } from './forward.ts'
import { upstreamHeaders, type ForwardingOptions } from './headers.ts'
import type { EndpointPools } from './pools.ts'
import { createRateLimiter, type UserRateLimiter } from './rate-limit.ts'
import { checkRequest } from './request-check.ts'
import { sendError, type ErrorContext } from './respond.ts'
import { ExchangeLog } from './exchange-log.ts'
import type { CloseWatcher, GatewayResponse } from './response.ts'
import { UsageMeter } from './usage.ts'
import { forwardUpgrade, rejectUpgrade, type UpgradeTarget } from './upgrade.ts'

/**
 * What to do for a verified user with no ready endpoint. The default answers 404; the
 * provisioner plugs in spawn-on-demand (create the workload, wait for an endpoint).
 */
/** `namespace`: where a new workload must be created (the token's tenant); undefined: the provisioner's default. */
export type MissingWorkload = (user: string, accept: string | undefined, namespace?: string) => Promise<readonly Endpoint[]>

/** Observes verified, routed traffic (idle culling counts it as activity). */
export type ActivityListener = (user: string) => void

export interface GatewayOptions {
  readonly auth: AuthConfig
  readonly gateway: GatewayConfig
  readonly source: EndpointSource
  readonly verifier: TokenVerifier
  readonly pools: EndpointPools
  readonly metrics: Metrics
  readonly logger: Logger
  readonly onMissing?: MissingWorkload
  /** The namespaces onMissing may create workloads in; with PODGATE_TENANT_CLAIM, a spawn for a tenant outside them is 403. */
  readonly spawnNamespaces?: ServedNamespaces | undefined
  readonly onActivity?: ActivityListener
  /** How often open WebSockets that carried client traffic are reported as activity. */
  readonly activityIntervalMs?: number
  /** What per-user rate limits refill and usage intervals run on (default: the system clock). */
  readonly clock?: Clock | undefined
  /** Exports a SERVER and a CLIENT span per request (loadTracer); undefined: podgate has no spans. */
  readonly tracer?: GatewayTracer | undefined
}

const MISSING = new AuthError('missing', 'no token: send a bearer token or the session cookie')
const NO_NAMESPACE = new ForbiddenError('the tenant cannot be checked: this gateway\'s routes carry no namespace (PODGATE_TENANT_CLAIM is set)')
const OTHER_TENANT = new ForbiddenError('the token\'s tenant is not the namespace this user\'s workload is in')
const NOT_PROVISIONED = new ForbiddenError('the token\'s tenant is not a namespace this gateway creates workloads in (PODGATE_NAMESPACES)')
const NOT_SYNCED = new NotReadyError('the routing table is still loading (waiting for the first sync with the Kubernetes API)', 5)

export class Gateway {
  readonly #auth: AuthConfig
  readonly #source: EndpointSource
  readonly #verifier: TokenVerifier
  readonly #metrics: Metrics
  readonly #logger: Logger
  readonly #forwarding: ForwardingOptions
  readonly #target: UpgradeTarget & ForwardTarget
  /** How errors are answered: where browsers sign in, and whether forwarded headers say where they were. */
  readonly #errors: Pick<ErrorContext, 'signIn' | 'trustProxy' | 'oidc'>
  readonly #onMissing: MissingWorkload
  readonly #onActivity: ActivityListener | undefined
  readonly #maxHeaders: number
  /** PODGATE_TENANT_CLAIM is set: every routed request is checked against its user's namespace. */
  readonly #checkTenant: boolean
  readonly #spawnNamespaces: ServedNamespaces | undefined
  /** onMissing was plugged in (it may create a workload), not the default 404/503. */
  readonly #spawns: boolean
  /** What podgate answers itself under /.podgate/ (its login), before any token is looked at. */
  readonly #reserved: ReservedRoutes
  /** Per-user limits; undefined (nothing allocated, nothing checked) unless configured. */
  readonly #limiter: UserRateLimiter | undefined
  /** The access log and the usage lines; undefined (nothing recorded per exchange) when both are off. */
  readonly #exchanges: ExchangeLog | undefined
  /** Spans per request; undefined unless exported. */
  readonly #tracer: GatewayTracer | undefined
  /** Trace context for the pod without spans of podgate's own; undefined when exporting or PODGATE_TRACE_CONTEXT=off. */
  readonly #propagator: TraceContextPropagator | undefined
  #inFlight = 0
  #draining = false
  #idle: (() => void) | undefined
  /** Upgraded connections: whose they are, and how many bytes the client had sent at the last look. */
  readonly #sockets = new Map<Duplex, { user: string | undefined, bytesRead: number }>()
  #activityTimer: NodeJS.Timeout | undefined
  /** Counts and logs a request once its response has closed (GatewayResponse's one `close` listener). */
  readonly #accounting: CloseWatcher = { responseClosed: (res) => { this.#finished(res) } }

  constructor (options: GatewayOptions) {
    this.#auth = options.auth
    this.#source = options.source
    this.#verifier = options.verifier
    this.#metrics = options.metrics
    this.#logger = options.logger
    this.#maxHeaders = options.gateway.maxRequestHeaders
    this.#forwarding = {
      userHeader: options.gateway.userHeader,
      trustProxy: options.gateway.trustProxy,
      cookieName: options.auth.cookieName,
      forwardCredentials: options.auth.forwardCredentials,
      identity: createIdentitySigner(options.gateway.identity, options.clock),
    }
    // Without a provisioner: a known user whose pods are not ready waits (503), anyone else is 404.
    this.#onMissing = options.onMissing ?? ((user) => Promise.reject(this.#source.snapshot.has(user)
      ? new NotReadyError('workload is not ready yet', 5)
      : new WorkloadNotFoundError('no workload for this user')))
    this.#onActivity = options.onActivity
    this.#errors = { signIn: options.gateway.signIn, trustProxy: options.gateway.trustProxy, oidc: options.auth.oidc }
    this.#checkTenant = options.auth.tenantClaim !== undefined
    this.#spawnNamespaces = options.spawnNamespaces
    this.#spawns = options.onMissing !== undefined
    this.#reserved = reservedRoutes(options)
    this.#limiter = createRateLimiter(options.gateway.rateLimit, options.clock)
    const usageIntervalMs = options.gateway.usageIntervalMs
    const usage = usageIntervalMs > 0 ? new UsageMeter(usageIntervalMs, options.logger, options.clock ?? systemClock) : undefined
    const accessLog = options.gateway.accessLog ? options.logger : undefined
    this.#exchanges = accessLog !== undefined || usage !== undefined ? new ExchangeLog(accessLog, usage) : undefined
    this.#tracer = options.tracer
    const traceContext = options.gateway.tracing?.context ?? 'continue'
    this.#propagator = options.tracer === undefined && traceContext !== 'off' ? new TraceContextPropagator(traceContext) : undefined
    if (options.onActivity !== undefined) {
      // One timer for all sockets, reading the byte counts the sockets keep anyway: no cost per frame.
      this.#activityTimer = setInterval(() => { this.#reportSocketActivity() }, options.activityIntervalMs ?? 30_000)
      this.#activityTimer.unref()
    }
    const metrics = options.metrics
    this.#target = {
      pools: options.pools,
      metrics,
      turn: 0,
      onOpen: () => { metrics.openWebSockets.inc() },
      onClose: () => { metrics.openWebSockets.dec() },
    }
  }

  get inFlight (): number { return this.#inFlight }
  get draining (): boolean { return this.#draining }

  /**
   * Serves one HTTP request. Never throws; every failure is answered on `res`. With
   * `expectsContinue` (the client sent `Expect: 100-continue` and holds its body back),
   * `100 Continue` goes out only once the request is authenticated and routed.
   */
  handle (req: IncomingMessage, res: GatewayResponse, expectsContinue = false): void {
    const started = performance.now()
    this.#inFlight++
    const spans = this.#tracer?.begin(req, started)
    res.started = started
    res.clientSocket = req.socket
    res.spans = spans
    res.accounting = this.#accounting
    if (this.#draining || expectsContinue) res.setHeader('connection', 'close')
    const refused = this.#refusal(req)
    if (refused !== undefined) {
      res.setHeader('connection', 'close')
      this.#fail(res, refused, undefined)
      return
    }
    if (isReservedPath(req.url)) {
      this.#reserved.handle(req, res)
      return
    }
    const identity = this.#identify(req)
    if (identity instanceof Promise) {
      identity.then((id) => { this.#route(req, res, id, expectsContinue, spans) }, (err: unknown) => { this.#fail(res, err, undefined) })
    } else if (identity instanceof AuthError) {
      this.#fail(res, identity, undefined)
    } else {
      this.#route(req, res, identity, expectsContinue, spans)
    }
  }

  /**
   * Serves one Upgrade request (WebSocket). Never throws. Counted and logged like a request,
   * once: 101 when upgraded, the status of any other answer, 499 when the client left first.
   */
  upgrade (req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const started = performance.now()
    let counted = false
    let named: string | undefined
    const spans = this.#tracer?.begin(req, started)
    // `origin`: the endpoint whose answer it is, when the pod answered (101 or another status).
    const answered = (status: number, origin?: string): void => {
      if (counted) return
      counted = true
      const now = performance.now()
      spans?.end(status, { byPod: origin !== undefined, endpoint: origin, upstreamStart: 0, upstreamEnd: now }, now)
      const seconds = (now - started) / 1000
      this.#metrics.requests.record(status, seconds, origin !== undefined)
      if (status === 101 && named !== undefined) this.#exchanges?.upgraded(req, socket, named, origin, started)
      else this.#exchanges?.ended(req, socket, { status, seconds, aborted: status === 499, user: named, origin, upstreamMs: undefined })
    }
    socket.once('close', () => { answered(499) })
    const reject = (err: unknown): void => {
      if (!(err instanceof PodgateError)) this.#logger.error({ err }, 'unexpected failure on the upgrade path')
      answered(rejectUpgrade(socket, err))
    }
    if (this.#draining) {
      reject(new DrainingError('draining'))
      return
    }
    // The idle timeout is for HTTP exchanges; a quiet WebSocket is the application's business.
    ;(socket as Duplex & { setTimeout?: (ms: number) => void }).setTimeout?.(0)
    const refused = this.#refusal(req)
    if (refused !== undefined) {
      reject(refused)
      return
    }
    if (isReservedPath(req.url)) {
      reject(RESERVED_UPGRADE)
      return
    }
    const entry = { user: undefined as string | undefined, bytesRead: 0 }
    this.#sockets.set(socket, entry)
    socket.once('close', () => { this.#sockets.delete(socket) })
    const go = (identity: Identity): void => {
      const user = identity.user
      named = user
      spans?.authenticated(user)
      // Counts as a request, and holds its concurrency slot for as long as the socket is open.
      const limiter = this.#limiter
      if (limiter !== undefined) {
        if (socket.destroyed) return
        const limited = limiter.admit(user, this.#source.profileOf?.(user))
        if (limited !== undefined) {
          this.#metrics.rateLimit(limited.limit)
          reject(limited)
          return
        }
        socket.once('close', () => { limiter.release(user) })
      }
      Promise.resolve(this.#endpointsFor(identity, req)).then((endpoints) => {
        if (socket.destroyed) return
        this.#onActivity?.(user)
        entry.user = user
        entry.bytesRead = bytesRead(socket)
        forwardUpgrade(req, socket, head, endpoints, this.#upstreamHeaders(req, user, spans), this.#target, answered)
      }, reject)
    }
    const identity = this.#identify(req)
    if (identity instanceof Promise) identity.then(go, reject)
    else if (identity instanceof AuthError) reject(identity)
    else go(identity)
  }

  /** Stops taking work: responses carry `connection: close`, new upgrades are refused. */
  startDraining (): void {
    this.#draining = true
  }

  /** Resolves when no request is in flight (WebSockets are not waited for). */
  idle (): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve()
    return new Promise((resolve) => { this.#idle = resolve })
  }

  /** Ends every proxied WebSocket (at the end of the drain). */
  closeUpgraded (): void {
    clearInterval(this.#activityTimer)
    this.#limiter?.close()
    this.#exchanges?.close(this.#sockets.keys())
    for (const socket of this.#sockets.keys()) socket.destroy()
    this.#sockets.clear()
  }

  /** A WebSocket the client keeps talking on is activity, however long ago it connected. */
  #reportSocketActivity (): void {
    for (const [socket, entry] of this.#sockets) {
      const read = bytesRead(socket)
      if (entry.user === undefined || read === entry.bytesRead) continue
      entry.bytesRead = read
      this.#onActivity?.(entry.user)
    }
  }

  /** What checkRequest refuses, with an ambiguous credential counted as an auth failure. */
  #refusal (req: IncomingMessage): PodgateError | undefined {
    const refused = checkRequest(req, this.#maxHeaders)
    if (refused instanceof AuthError) this.#metrics.authFailure(refused.reason)
    return refused
  }

  // Synchronous on a verified-token cache hit; a promise only when jose must run (the
  // verifier counts its own refusals; the ones decided here are counted here).
  #identify (req: IncomingMessage): Identity | AuthError | Promise<Identity> {
    let token: string | undefined
    try {
      token = extractToken(req.headers, this.#auth.cookieName, this.#auth.maxTokenBytes)
    } catch (err) {
      const refused = err instanceof AuthError ? err : new AuthError('malformed', 'unreadable credentials')
      this.#metrics.authFailure(refused.reason)
      return refused
    }
    if (token === undefined) {
      this.#metrics.authFailure('missing')
      return MISSING
    }
    return this.#verifier.cached(token) ?? this.#verifier.verify(token, req)
  }

  #route (req: IncomingMessage, res: GatewayResponse, identity: Identity, expectsContinue: boolean, spans: RequestSpans | undefined): void {
    const user = identity.user
    res.user = user
    spans?.authenticated(user)
    const limiter = this.#limiter
    if (limiter !== undefined) {
      if (res.destroyed) return // the client left while its token was verified: its 'close' has fired
      const limited = limiter.admit(user, this.#source.profileOf?.(user))
      if (limited !== undefined) {
        this.#metrics.rateLimit(limited.limit)
        this.#fail(res, limited, user)
        return
      }
      res.once('close', () => { limiter.release(user) })
    }
    const endpoints = this.#endpointsFor(identity, req)
    if (!(endpoints instanceof Promise)) {
      this.#onActivity?.(user)
      this.#forward(req, res, user, endpoints, expectsContinue, spans)
      return
    }
    // Activity only once there is a workload to keep: a 404 or 503 keeps nothing up.
    endpoints.then((found) => {
      if (res.destroyed) return
      this.#onActivity?.(user)
      this.#forward(req, res, user, found, expectsContinue, spans)
    }, (err: unknown) => { this.#fail(res, err, user) })
  }

  #forward (req: IncomingMessage, res: GatewayResponse, user: string, endpoints: readonly Endpoint[], expectsContinue: boolean, spans: RequestSpans | undefined): void {
    if (expectsContinue) {
      // Authenticated and routed: the client may send its body now, and keep the connection.
      res.removeHeader('connection')
      if (this.#draining) res.setHeader('connection', 'close')
      res.writeContinue()
    }
    forward(req, res, endpoints, this.#upstreamHeaders(req, user, spans), this.#target)
  }

  /** The pod's request headers, with the trace context it gets: the CLIENT span's when exporting. */
  #upstreamHeaders (req: IncomingMessage, user: string, spans: RequestSpans | undefined): string[] {
    const headers = upstreamHeaders(req, user, this.#forwarding)
    if (spans !== undefined) spans.forwarding(headers)
    else this.#propagator?.apply(req, headers)
    return headers
  }

  /**
   * The snapshot's ready endpoints, synchronously; a promise only when the user has none
   * yet. Until the source has loaded its first complete view, a user it does not list may
   * simply not be loaded yet: 503 and come back, never a 404 or a spawn on a guess.
   */
  #endpointsFor (identity: Identity, req: IncomingMessage): readonly Endpoint[] | Promise<readonly Endpoint[]> {
    const source = this.#source
    const user = identity.user
    const endpoints = source.snapshot.get(user)
    if (endpoints !== undefined && endpoints.length > 0) {
      if (!this.#checkTenant) return endpoints
      const refused = this.#tenantRefusal(identity, source.namespaceOf?.(user))
      return refused === undefined ? endpoints : Promise.reject(refused)
    }
    if (!source.isSynced) return Promise.reject(NOT_SYNCED)
    if (this.#checkTenant) {
      // Before any spawn: a known user is checked against its namespace, a new one against where the spawn would put it.
      const known = source.namespaceOf?.(user)
      if (known !== undefined) {
        const refused = this.#tenantRefusal(identity, known)
        if (refused !== undefined) return Promise.reject(refused)
      } else if (this.#spawns) {
        const tenant = identity.tenant
        if (tenant === undefined || this.#spawnNamespaces === undefined || !isServed(this.#spawnNamespaces, tenant)) return Promise.reject(NOT_PROVISIONED)
        // The spawner refuses a workload found in another namespace; this re-check covers any way one got routed meanwhile.
        return this.#onMissing(user, req.headers.accept, tenant).then((found) => {
          const refused = this.#tenantRefusal(identity, source.namespaceOf?.(user))
          if (refused !== undefined) throw refused
          return found
        })
      }
      // Without a provisioner and without a namespace, the default answer (404/503) forwards nothing.
    }
    return this.#onMissing(user, req.headers.accept)
  }

  /** Why a token's tenant may not reach the user's workload in `namespace`; undefined when it may. */
  #tenantRefusal (identity: Identity, namespace: string | undefined): ForbiddenError | undefined {
    if (namespace === undefined) return NO_NAMESPACE
    return identity.tenant === namespace ? undefined : OTHER_TENANT
  }

  /** Answers `err`; `user` once the token named one (pages say whose workspace it is). */
  #fail (res: GatewayResponse, err: unknown, user: string | undefined): void {
    if (!(err instanceof PodgateError)) this.#logger.error({ err }, 'unexpected failure on the request path')
    sendError(res, err, { ...this.#errors, user })
  }

  #finished (res: GatewayResponse): void {
    const now = performance.now()
    const status = res.headersSent ? res.statusCode : 499
    res.spans?.end(status, res, now)
    const seconds = (now - res.started) / 1000
    this.#metrics.requests.record(status, seconds, res.byPod)
    if (this.#exchanges !== undefined) {
      const upstreamMs = res.upstreamStart === 0 ? undefined : (res.upstreamEnd === 0 ? now : res.upstreamEnd) - res.upstreamStart
      this.#exchanges.ended(res.req, res.clientSocket!, { status, seconds, aborted: !res.writableFinished, user: res.user, origin: res.endpoint, upstreamMs })
    }
    if (--this.#inFlight === 0 && this.#idle !== undefined) {
      const resolve = this.#idle
      this.#idle = undefined
      resolve()
    }
  }
}

function bytesRead (socket: Duplex): number {
  return (socket as Duplex & { bytesRead?: number }).bytesRead ?? 0
}
