// PODGATE_* environment → one frozen, typed Config. Each bad value is a ConfigError that
// names the variable; start-up prints that one line and exits.
import { hostname } from 'node:os'
import { ConfigError } from './errors.ts'
import { EnvReader, MAX_WORKERS, parseDuration, type Env } from './env-reader.ts'
import {
  readAlgorithms, readAuthUrl, readKeySource, readMaxAge, requiredKey,
  type AuthUrlConfig, type JwtAlgorithm, type KeySource,
} from './auth/credential-config.ts'
import { DNS_LABEL, DNS_SUBDOMAIN } from './kube/labels.ts'
import { checkOidcConfig, readOidcConfig, type OidcConfig } from './auth/oidc-config.ts'
import { readRateLimit, type RateLimitConfig } from './gateway/rate-limit-config.ts'
import { readIdentity, type IdentityConfig } from './auth/identity-config.ts'
import { readTracing, type TracingConfig } from './tracing/config.ts'

export const DEFAULT_PORT = 8080
export const DEFAULT_ADMIN_PORT = 9090
export const DEFAULT_HOST = '0.0.0.0'
export const DEFAULT_COOKIE_NAME = 'session'
export const DEFAULT_USER_CLAIM = 'sub'
export const DEFAULT_USER_HEADER = 'x-user-id'
export const DEFAULT_CLOCK_TOLERANCE_S = 30
export const DEFAULT_TOKEN_CACHE_SIZE = 10_000
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000
export const DEFAULT_HEADERS_TIMEOUT_MS = 60_000
export const DEFAULT_BODY_TIMEOUT_MS = 300_000
export const DEFAULT_DRAIN_TIMEOUT_MS = 20_000
export const DEFAULT_START_TIMEOUT_MS = 120_000
export const DEFAULT_MAX_TOKEN_BYTES = 8_192
/** How long a browser waits for a starting workload before it gets the self-refreshing starting page. */
export const DEFAULT_BROWSER_GRACE_MS = 2_000
/** The query parameter carrying the original URL to the sign-in page, as ingress-nginx names it. */
export const DEFAULT_SIGNIN_REDIRECT_PARAM = 'rd'
/** Time a client has to send a whole request head (slow-loris and silent connections end here). */
export const DEFAULT_CLIENT_HEADERS_TIMEOUT_MS = 30_000
/** Above the 60 s idle timeout common to cloud load balancers, so they close first. */
export const DEFAULT_KEEP_ALIVE_TIMEOUT_MS = 65_000
/** Envoy's default: far above what browsers and HTTP clients send (~20), far below a runtime's own cap. */
export const DEFAULT_MAX_REQUEST_HEADERS = 100
/** Keep-alive connections to one pod endpoint, as many requests to it in flight at once. */
export const DEFAULT_UPSTREAM_CONNECTIONS = 256
/** Labels of podgate's own pods as the Helm chart sets them; each user's NetworkPolicy admits these. */
export const DEFAULT_GATEWAY_POD_SELECTOR: Readonly<Record<string, string>> = Object.freeze({ 'app.kubernetes.io/name': 'podgate' })


export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = typeof LOG_LEVELS[number]


export interface AuthConfig {
  readonly key: KeySource
  readonly algorithms: readonly JwtAlgorithm[]
  readonly issuer: readonly string[] | undefined
  readonly audience: readonly string[] | undefined
  readonly clockToleranceS: number
  readonly userClaim: string
  /** The claim naming the user's tenant, which must equal the namespace the user is routed from; undefined: no tenant check. */
  readonly tenantClaim: string | undefined
  readonly cookieName: string
  readonly tokenCacheSize: number
  readonly maxTokenBytes: number
  /** Longest accepted token age from `iat`, in seconds; tokens must then carry `iat`. Undefined: no cap. */
  readonly maxAgeS: number | undefined
  /** PODGATE_AUTH_URL; undefined: every credential is a JWT checked in-process. */
  readonly authUrl: AuthUrlConfig | undefined
  /** Pass the bearer Authorization header and the session cookie on to the pod instead of removing them. */
  readonly forwardCredentials: boolean
  /** PODGATE_OIDC_*: podgate's own OpenID Connect login under /.podgate/; undefined: off. */
  readonly oidc: OidcConfig | undefined
}

/** Where browsers without a valid token are sent (PODGATE_SIGNIN_URL, like ingress-nginx auth-signin). */
export interface SignInConfig {
  /** Absolute http(s) URL; its own query is kept and the redirect parameter added to it. */
  readonly url: URL
  /** Query parameter naming the URL the browser asked for. */
  readonly redirectParam: string
}

export interface GatewayConfig {
  readonly host: string
  readonly port: number
  readonly adminPort: number
  readonly userHeader: string
  readonly trustProxy: boolean
  readonly connectTimeoutMs: number
  readonly headersTimeoutMs: number
  readonly bodyTimeoutMs: number
  readonly drainTimeoutMs: number
  readonly startTimeoutMs: number
  /** Time a client has to send a request head. */
  readonly clientHeadersTimeoutMs: number
  /** How long an idle keep-alive connection between requests is kept. */
  readonly keepAliveTimeoutMs: number
  /** Longest silence (no byte either way) on a client connection before it is closed; 0: never. WebSockets are exempt. */
  readonly clientIdleTimeoutMs: number
  /** Connections accepted at once by one process; 0: no limit. */
  readonly maxConnections: number
  /** Request header fields accepted; more is 431. */
  readonly maxRequestHeaders: number
  /** Connections one process keeps to each pod endpoint; requests beyond them wait for one to be free. */
  readonly upstreamConnections: number
  readonly spawnOnDemand: boolean
  /** How long a browser's request waits for a starting workload before the starting page; at most startTimeoutMs. */
  readonly browserGraceMs: number
  /** Browser navigations without a valid token are redirected here; undefined: they get a 401 page. */
  readonly signIn: SignInConfig | undefined
  readonly accessLog: boolean
  /** PODGATE_USAGE_INTERVAL: one usage line per active user per interval; 0: off. */
  readonly usageIntervalMs: number
  /** Per-user limits in each process (PODGATE_RATE_LIMIT, PODGATE_MAX_CONCURRENT_PER_USER); undefined: off. */
  readonly rateLimit?: RateLimitConfig | undefined
  /** The signed identity header pods can verify (PODGATE_IDENTITY_KEY); undefined: off. */
  readonly identity?: IdentityConfig | undefined
  /** PODGATE_TRACE_CONTEXT and the OTEL_* export settings; undefined: the defaults (continue, no export). */
  readonly tracing?: TracingConfig | undefined
}

export interface Config {
  readonly auth: AuthConfig
  readonly gateway: GatewayConfig
  readonly namespace: string | undefined
  /**
   * PODGATE_NAMESPACES: the namespaces podgate serves (routes from; keeps UserWorkloads in), or
   * `all` (needs PODGATE_CLUSTER_SCOPE). Undefined: the one namespace podgate resolves (see servedNamespaces).
   */
  readonly namespaces: readonly string[] | 'all' | undefined
  /** Whether `serve` runs the provisioner (UserWorkloads, admin API, spawn, culling). */
  readonly provisioner: boolean
  /** This replica's name in the leader-election Lease. */
  readonly podName: string
  /** Labels of podgate's own pods; each user's NetworkPolicy admits only them. */
  readonly gatewayPodSelector: Readonly<Record<string, string>>
  readonly adminToken: string | undefined
  readonly idleTimeoutMs: number
  readonly profilesFile: string | undefined
  /** Gateway processes `serve` runs on the port (one: the process serves it itself). */
  readonly workers: number
  /** A static user → endpoints file that replaces Kubernetes discovery (development, benchmarks). */
  readonly routesFile: string | undefined
  readonly logLevel: LogLevel
}


/** Parses the environment. Throws ConfigError naming the first bad variable. */
export function loadConfig (env: Env = process.env, options: { requireKey?: boolean } = {}): Config {
  const read = new EnvReader(env)
  const tenantClaim = read.optional('PODGATE_TENANT_CLAIM', CLAIM_NAME)
  const authUrl = readAuthUrl(read, tenantClaim)
  const key = readKeySource(read, (options.requireKey ?? true) ? requiredKey(authUrl) : 'optional')
  const auth: AuthConfig = {
    key,
    algorithms: readAlgorithms(read, key),
    issuer: read.list('PODGATE_JWT_ISSUER'),
    audience: read.list('PODGATE_JWT_AUDIENCE'),
    clockToleranceS: read.duration('PODGATE_JWT_CLOCK_TOLERANCE', DEFAULT_CLOCK_TOLERANCE_S * 1000) / 1000,
    userClaim: read.string('PODGATE_USER_CLAIM', DEFAULT_USER_CLAIM, CLAIM_NAME),
    tenantClaim,
    cookieName: read.string('PODGATE_COOKIE_NAME', DEFAULT_COOKIE_NAME, /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/),
    tokenCacheSize: read.integer('PODGATE_TOKEN_CACHE_SIZE', DEFAULT_TOKEN_CACHE_SIZE, 0, 10_000_000),
    maxTokenBytes: read.integer('PODGATE_MAX_TOKEN_BYTES', DEFAULT_MAX_TOKEN_BYTES, 256, 1_048_576),
    maxAgeS: readMaxAge(read),
    authUrl,
    forwardCredentials: read.boolean('PODGATE_FORWARD_CREDENTIALS', false),
    oidc: readOidcConfig(read),
  }
  checkOidcConfig(auth)
  const upstream = {
    headersTimeoutMs: read.duration('PODGATE_HEADERS_TIMEOUT', DEFAULT_HEADERS_TIMEOUT_MS),
    bodyTimeoutMs: read.duration('PODGATE_BODY_TIMEOUT', DEFAULT_BODY_TIMEOUT_MS),
    startTimeoutMs: read.duration('PODGATE_START_TIMEOUT', DEFAULT_START_TIMEOUT_MS),
  }
  const userHeader = read.string('PODGATE_USER_HEADER', DEFAULT_USER_HEADER, /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/).toLowerCase()
  const gateway: GatewayConfig = {
    ...upstream,
    ...readClientTimeouts(read, upstream),
    host: read.string('PODGATE_HOST', DEFAULT_HOST, /^[0-9A-Za-z.:[\]-]+$/),
    port: read.integer('PODGATE_PORT', DEFAULT_PORT, 0, 65535),
    adminPort: read.integer('PODGATE_ADMIN_PORT', DEFAULT_ADMIN_PORT, 0, 65535),
    userHeader,
    trustProxy: read.boolean('PODGATE_TRUST_PROXY', false),
    connectTimeoutMs: read.duration('PODGATE_CONNECT_TIMEOUT', DEFAULT_CONNECT_TIMEOUT_MS),
    drainTimeoutMs: read.duration('PODGATE_DRAIN_TIMEOUT', DEFAULT_DRAIN_TIMEOUT_MS),
    spawnOnDemand: read.boolean('PODGATE_SPAWN_ON_DEMAND', false),
    browserGraceMs: readBrowserGrace(read, upstream.startTimeoutMs),
    signIn: readSignIn(read),
    accessLog: read.boolean('PODGATE_ACCESS_LOG', true),
    usageIntervalMs: readUsageInterval(read),
    maxConnections: read.integer('PODGATE_MAX_CONNECTIONS', 0, 0, 10_000_000),
    maxRequestHeaders: read.integer('PODGATE_MAX_REQUEST_HEADERS', DEFAULT_MAX_REQUEST_HEADERS, 16, 1000),
    upstreamConnections: read.integer('PODGATE_UPSTREAM_CONNECTIONS', DEFAULT_UPSTREAM_CONNECTIONS, 1, 65_535),
    rateLimit: readRateLimit(read),
    identity: readIdentity(read, userHeader),
    tracing: readTracing(read),
  }
  if (gateway.port !== 0 && gateway.port === gateway.adminPort) {
    throw new ConfigError('PODGATE_ADMIN_PORT', `must differ from PODGATE_PORT (${gateway.port})`)
  }
  const namespace = read.optional('PODGATE_NAMESPACE', DNS_LABEL)
  const provisioner = read.boolean('PODGATE_PROVISIONER', true)
  const namespaces = readNamespaces(read)
  if (gateway.signIn !== undefined && auth.oidc !== undefined) {
    throw new ConfigError('PODGATE_SIGNIN_URL', 'podgate logs people in itself with PODGATE_OIDC_ISSUER (browsers go to /.podgate/login): set one of the two')
  }
  return deepFreeze({
    auth,
    gateway,
    namespace,
    namespaces,
    provisioner,
    podName: read.string('PODGATE_POD_NAME', hostname(), new RegExp(DNS_SUBDOMAIN.source, 'i')),
    gatewayPodSelector: read.labels('PODGATE_GATEWAY_POD_SELECTOR', { ...DEFAULT_GATEWAY_POD_SELECTOR }),
    adminToken: read.optional('PODGATE_ADMIN_TOKEN', /^\S{16,}$/, 'at least 16 characters without spaces'),
    idleTimeoutMs: read.duration('PODGATE_IDLE_TIMEOUT', 0),
    profilesFile: read.optional('PODGATE_PROFILES', /^.+$/),
    routesFile: readRoutesFile(read, auth),
    workers: read.workers('PODGATE_WORKERS'),
    logLevel: read.oneOf('PODGATE_LOG_LEVEL', LOG_LEVELS, 'info'),
  })
}

const CLAIM_NAME = /^[A-Za-z0-9_.:/-]{1,128}$/

/** A routes file has no namespaces, so no tenant could ever match: refused rather than a 403 for everyone. */
function readRoutesFile (read: EnvReader, auth: AuthConfig): string | undefined {
  const file = read.optional('PODGATE_LOCAL_ROUTES', /^.+$/)
  if (file !== undefined && auth.tenantClaim !== undefined) throw new ConfigError('PODGATE_TENANT_CLAIM', 'PODGATE_LOCAL_ROUTES has no namespaces, so no tenant could ever match: unset PODGATE_TENANT_CLAIM or route from Kubernetes')
  return file
}

function readNamespaces (read: EnvReader): readonly string[] | 'all' | undefined {
  const items = read.list('PODGATE_NAMESPACES')
  if (items === undefined) return undefined
  if (items.includes('*')) {
    if (items.length > 1) throw new ConfigError('PODGATE_NAMESPACES', 'either * (every namespace) or a list of namespaces, not both')
    if (!read.boolean('PODGATE_CLUSTER_SCOPE', false)) {
      throw new ConfigError('PODGATE_NAMESPACES', '* watches EndpointSlices in every namespace and needs cluster-wide list/watch rights: set PODGATE_CLUSTER_SCOPE=true to opt in, or list the namespaces')
    }
    return 'all'
  }
  for (const item of items) {
    if (!DNS_LABEL.test(item)) throw new ConfigError('PODGATE_NAMESPACES', `${JSON.stringify(item.slice(0, 64))} is not a namespace name (a DNS-1123 label)`)
  }
  return [...new Set(items)]
}

/**
 * The namespaces podgate serves, once the one namespace it runs in is resolved (PODGATE_NAMESPACE,
 * else the pod's own): PODGATE_NAMESPACES, else that namespace. The gateway routes from them and
 * the provisioner keeps UserWorkloads there (new ones, unless a namespace is named, in the first
 * listed; in podgate's own namespace for `*`).
 */
export function servedNamespaces (config: Pick<Config, 'namespaces'>, resolved: string): readonly string[] | 'all' {
  return config.namespaces ?? [resolved]
}


/** Longer than PODGATE_START_TIMEOUT would mean no page before the 503: refused when set, clamped when defaulted. */
function readBrowserGrace (read: EnvReader, startTimeoutMs: number): number {
  const ms = read.duration('PODGATE_BROWSER_GRACE', DEFAULT_BROWSER_GRACE_MS)
  if (read.has('PODGATE_BROWSER_GRACE') && ms > startTimeoutMs) {
    throw new ConfigError('PODGATE_BROWSER_GRACE', `must not exceed PODGATE_START_TIMEOUT (${startTimeoutMs} ms), got ${ms} ms`)
  }
  return Math.min(ms, startTimeoutMs)
}

/** A query parameter name that needs no encoding. */
const QUERY_NAME = /^[A-Za-z0-9._~-]{1,64}$/

function readSignIn (read: EnvReader): SignInConfig | undefined {
  const text = read.optional('PODGATE_SIGNIN_URL', /^\S+$/, 'a URL without spaces')
  if (text === undefined) {
    if (read.has('PODGATE_SIGNIN_REDIRECT_PARAM')) throw new ConfigError('PODGATE_SIGNIN_REDIRECT_PARAM', 'has no effect without PODGATE_SIGNIN_URL')
    return undefined
  }
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw new ConfigError('PODGATE_SIGNIN_URL', `not an absolute URL: ${JSON.stringify(text.slice(0, 64))} (browsers are redirected to it, e.g. https://accounts.example.com/login)`)
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new ConfigError('PODGATE_SIGNIN_URL', 'must be an http(s) URL')
  // Browsers are sent there: credentials in it would be handed to every visitor.
  if (url.username !== '' || url.password !== '') throw new ConfigError('PODGATE_SIGNIN_URL', 'must not carry a user name or password')
  return {
    url,
    redirectParam: read.optional('PODGATE_SIGNIN_REDIRECT_PARAM', QUERY_NAME, 'a query parameter name of letters, digits, ".", "_", "~" or "-", e.g. rd') ?? DEFAULT_SIGNIN_REDIRECT_PARAM,
  }
}


type ClientTimeouts = Pick<GatewayConfig, 'clientHeadersTimeoutMs' | 'keepAliveTimeoutMs' | 'clientIdleTimeoutMs'>

/**
 * Client-side connection limits. The idle timeout must outlast every wait podgate itself
 * answers (the pod's headers and body silences, a workload starting), or a socket would be
 * cut where a 503/504 with a reason was due; its default is the longest of them plus 30 s.
 */
function readClientTimeouts (read: EnvReader, upstream: Pick<GatewayConfig, 'headersTimeoutMs' | 'bodyTimeoutMs' | 'startTimeoutMs'>): ClientTimeouts {
  const headers = read.duration('PODGATE_CLIENT_HEADERS_TIMEOUT', DEFAULT_CLIENT_HEADERS_TIMEOUT_MS)
  if (headers < 1000) throw new ConfigError('PODGATE_CLIENT_HEADERS_TIMEOUT', `expected at least 1s, got ${headers} ms (a client must be able to send its request head)`)
  const keepAlive = read.duration('PODGATE_KEEP_ALIVE_TIMEOUT', DEFAULT_KEEP_ALIVE_TIMEOUT_MS)
  const longestWait = Math.max(upstream.headersTimeoutMs, upstream.bodyTimeoutMs, upstream.startTimeoutMs)
  const idle = read.duration('PODGATE_CLIENT_IDLE_TIMEOUT', longestWait + 30_000)
  if (idle !== 0 && idle <= longestWait) {
    throw new ConfigError('PODGATE_CLIENT_IDLE_TIMEOUT', `must be 0 (off) or longer than the longest wait podgate answers itself, ${longestWait} ms (PODGATE_HEADERS_TIMEOUT, PODGATE_BODY_TIMEOUT, PODGATE_START_TIMEOUT)`)
  }
  return { clientHeadersTimeoutMs: headers, keepAliveTimeoutMs: keepAlive, clientIdleTimeoutMs: idle }
}

function deepFreeze<T> (value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value) && !(value instanceof Uint8Array) && !(value instanceof URL)) {
    for (const child of Object.values(value)) deepFreeze(child)
    Object.freeze(value)
  }
  return value
}

export { MAX_WORKERS, parseDuration, type Env }
export {
  ASYMMETRIC_ALGORITHMS, AUTH_URL_MODES, DEFAULT_AUTH_URL_NEGATIVE_TTL_MS, DEFAULT_AUTH_URL_TIMEOUT_MS, DEFAULT_AUTH_URL_TTL_MS,
  DEFAULT_AUTH_URL_USER_HEADER, DEFAULT_JWKS_COOLDOWN_MS, HMAC_ALGORITHMS,
  type AuthUrlConfig, type AuthUrlMode, type JwtAlgorithm, type KeySource,
} from './auth/credential-config.ts'

/** The usage lines' interval: 0 (off) or at least a second, so the billing view cannot flood the log. */
function readUsageInterval (read: EnvReader): number {
  const ms = read.duration('PODGATE_USAGE_INTERVAL', 0)
  if (ms !== 0 && ms < 1000) throw new ConfigError('PODGATE_USAGE_INTERVAL', `must be 0 (off) or at least 1s, got ${ms}ms`)
  return ms
}
