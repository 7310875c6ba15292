// How podgate checks credentials, as PODGATE_* variables say: the JWT key source and
// algorithms, the token age cap, and an external auth service (PODGATE_AUTH_URL). Read by
// loadConfig (src/config.ts), which re-exports the names.
import { readFileSync } from 'node:fs'
import type { EnvReader } from '../env-reader.ts'
import { ConfigError } from '../errors.ts'

export const DEFAULT_JWKS_COOLDOWN_MS = 30_000
export const DEFAULT_AUTH_URL_TIMEOUT_MS = 5_000
export const DEFAULT_AUTH_URL_TTL_MS = 60_000
export const DEFAULT_AUTH_URL_NEGATIVE_TTL_MS = 5_000
export const DEFAULT_AUTH_URL_USER_HEADER = 'x-user-id'

export const HMAC_ALGORITHMS = ['HS256', 'HS384', 'HS512'] as const
export const ASYMMETRIC_ALGORITHMS = [
  'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519',
] as const
export type JwtAlgorithm = typeof HMAC_ALGORITHMS[number] | typeof ASYMMETRIC_ALGORITHMS[number]

/**
 * How tokens are checked: exactly one key source is configured, or none (`kind: 'none'`) only
 * when PODGATE_AUTH_URL_MODE=always sends every credential to the auth service.
 */
export type KeySource =
  | { readonly kind: 'secret', readonly secret: Uint8Array }
  | { readonly kind: 'public-key', readonly pem: string }
  | { readonly kind: 'jwks', readonly url: URL, readonly cooldownMs: number }
  | { readonly kind: 'none' }

/** fallback: credentials not shaped like a JWT go to PODGATE_AUTH_URL; always: every credential does. */
export const AUTH_URL_MODES = ['fallback', 'always'] as const
export type AuthUrlMode = typeof AUTH_URL_MODES[number]

/** An external auth service asked about credentials (PODGATE_AUTH_URL, like ingress-nginx auth-url). */
export interface AuthUrlConfig {
  readonly url: URL
  readonly mode: AuthUrlMode
  readonly timeoutMs: number
  /** Lower-case name of the response header carrying the user id. */
  readonly userHeader: string
  /** Removed from the front of the header's value (`user-` turns `user-alice` into `alice`); '' for none. */
  readonly userPrefix: string
  /** Lower-case name of the response header carrying the tenant; set exactly when PODGATE_TENANT_CLAIM is. */
  readonly tenantHeader: string | undefined
  /** How long an allowed credential is remembered; 0: asked on every request. */
  readonly ttlMs: number
  /** How long a refused (401/403) credential is remembered; 0: not remembered. */
  readonly negativeTtlMs: number
}

const AUTH_URL_OPTIONS = [
  'PODGATE_AUTH_URL_MODE', 'PODGATE_AUTH_URL_TIMEOUT', 'PODGATE_AUTH_URL_USER_HEADER', 'PODGATE_AUTH_URL_USER_PREFIX',
  'PODGATE_AUTH_URL_TENANT_HEADER', 'PODGATE_AUTH_URL_TTL', 'PODGATE_AUTH_URL_NEGATIVE_TTL',
] as const
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/
const MAX_AUTH_URL_TTL_MS = 86_400_000

/** PODGATE_AUTH_URL and its options; each option alone (a typo, a leftover) is refused rather than ignored. */
export function readAuthUrl (read: EnvReader, tenantClaim: string | undefined): AuthUrlConfig | undefined {
  const text = read.optional('PODGATE_AUTH_URL', /^\S+$/, 'a URL without spaces')
  if (text === undefined) {
    const stray = AUTH_URL_OPTIONS.find((name) => read.has(name))
    if (stray !== undefined) throw new ConfigError(stray, 'has no effect without PODGATE_AUTH_URL')
    return undefined
  }
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw new ConfigError('PODGATE_AUTH_URL', `not a URL: ${JSON.stringify(text.slice(0, 64))}`)
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new ConfigError('PODGATE_AUTH_URL', 'must be an http(s) URL')
  // Credentials in the URL would end up in logs and error messages.
  if (url.username !== '' || url.password !== '') throw new ConfigError('PODGATE_AUTH_URL', 'must not carry a user name or password')
  url.hash = ''
  const timeoutMs = read.duration('PODGATE_AUTH_URL_TIMEOUT', DEFAULT_AUTH_URL_TIMEOUT_MS)
  if (timeoutMs < 10 || timeoutMs > 60_000) throw new ConfigError('PODGATE_AUTH_URL_TIMEOUT', `expected 10ms to 60s, got ${timeoutMs} ms`)
  const tenantHeader = read.optional('PODGATE_AUTH_URL_TENANT_HEADER', HEADER_NAME, 'a header name')?.toLowerCase()
  if (tenantClaim !== undefined && tenantHeader === undefined) {
    throw new ConfigError('PODGATE_AUTH_URL_TENANT_HEADER', 'required with PODGATE_TENANT_CLAIM and PODGATE_AUTH_URL: name the response header of the auth service that carries the tenant')
  }
  if (tenantClaim === undefined && tenantHeader !== undefined) throw new ConfigError('PODGATE_AUTH_URL_TENANT_HEADER', 'has no effect without PODGATE_TENANT_CLAIM')
  const ttlMs = read.duration('PODGATE_AUTH_URL_TTL', DEFAULT_AUTH_URL_TTL_MS)
  if (ttlMs > MAX_AUTH_URL_TTL_MS) throw new ConfigError('PODGATE_AUTH_URL_TTL', `expected at most 24h, got ${ttlMs} ms`)
  const negativeTtlMs = read.duration('PODGATE_AUTH_URL_NEGATIVE_TTL', DEFAULT_AUTH_URL_NEGATIVE_TTL_MS)
  if (negativeTtlMs > MAX_AUTH_URL_TTL_MS) throw new ConfigError('PODGATE_AUTH_URL_NEGATIVE_TTL', `expected at most 24h, got ${negativeTtlMs} ms`)
  return {
    url,
    mode: read.oneOf('PODGATE_AUTH_URL_MODE', AUTH_URL_MODES, 'fallback'),
    timeoutMs,
    userHeader: read.string('PODGATE_AUTH_URL_USER_HEADER', DEFAULT_AUTH_URL_USER_HEADER, HEADER_NAME).toLowerCase(),
    userPrefix: read.optional('PODGATE_AUTH_URL_USER_PREFIX', /^[!-~]{1,64}$/, 'up to 64 visible ASCII characters, e.g. user-') ?? '',
    tenantHeader,
    ttlMs,
    negativeTtlMs,
  }
}

export function readMaxAge (read: EnvReader): number | undefined {
  const ms = read.duration('PODGATE_JWT_MAX_AGE', 0)
  if (ms === 0) return undefined
  if (ms < 1000) throw new ConfigError('PODGATE_JWT_MAX_AGE', `expected at least 1s, got ${ms} ms`)
  return Math.floor(ms / 1000)
}

/** Whether start-up needs a JWT key: `absent-ok` only when every credential goes to PODGATE_AUTH_URL. */
export type KeyRequirement = 'required' | 'absent-ok' | 'optional'

export function requiredKey (authUrl: AuthUrlConfig | undefined): KeyRequirement {
  return authUrl?.mode === 'always' ? 'absent-ok' : 'required'
}

export function readKeySource (read: EnvReader, requirement: KeyRequirement): KeySource {
  const secret = read.optional('PODGATE_JWT_SECRET', /^[\s\S]+$/)
  const publicKey = read.optional('PODGATE_JWT_PUBLIC_KEY', /^[\s\S]+$/)
  const jwksUrl = read.optional('PODGATE_JWKS_URL', /^\S+$/)
  const given = [secret && 'PODGATE_JWT_SECRET', publicKey && 'PODGATE_JWT_PUBLIC_KEY', jwksUrl && 'PODGATE_JWKS_URL'].filter(Boolean)
  if (given.length > 1) {
    throw new ConfigError(String(given[1]), `set only one of PODGATE_JWT_SECRET, PODGATE_JWT_PUBLIC_KEY, PODGATE_JWKS_URL (also set: ${given[0]})`)
  }
  if (secret !== undefined) {
    const bytes = new TextEncoder().encode(secret)
    // RFC 7518 §3.2: an HMAC key must be at least as long as the hash output.
    if (bytes.length < 32) throw new ConfigError('PODGATE_JWT_SECRET', `must be at least 32 bytes, got ${bytes.length}`)
    return { kind: 'secret', secret: bytes }
  }
  if (publicKey !== undefined) {
    let pem = publicKey
    if (!pem.includes('-----BEGIN')) {
      try {
        pem = readFileSync(publicKey, 'utf8')
      } catch (err) {
        throw new ConfigError('PODGATE_JWT_PUBLIC_KEY', `neither a PEM key nor a readable file (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
      }
    }
    if (!/-----BEGIN (PUBLIC KEY|CERTIFICATE)-----/.test(pem)) {
      throw new ConfigError('PODGATE_JWT_PUBLIC_KEY', 'must be a PEM "PUBLIC KEY" or "CERTIFICATE" (never a private key)')
    }
    return { kind: 'public-key', pem }
  }
  if (jwksUrl !== undefined) {
    let url: URL
    try {
      url = new URL(jwksUrl)
    } catch {
      throw new ConfigError('PODGATE_JWKS_URL', `not a URL: ${JSON.stringify(jwksUrl)}`)
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new ConfigError('PODGATE_JWKS_URL', 'must be an http(s) URL')
    return { kind: 'jwks', url, cooldownMs: read.duration('PODGATE_JWKS_COOLDOWN', DEFAULT_JWKS_COOLDOWN_MS) }
  }
  if (requirement === 'required') {
    const hint = read.has('PODGATE_AUTH_URL') ? ' (PODGATE_AUTH_URL_MODE=fallback still checks JWT-shaped tokens in-process; set it to always to send every credential to PODGATE_AUTH_URL instead)' : ''
    throw new ConfigError('PODGATE_JWT_SECRET', `no token key configured: set PODGATE_JWT_SECRET, PODGATE_JWT_PUBLIC_KEY or PODGATE_JWKS_URL${hint}`)
  }
  // Every credential goes to PODGATE_AUTH_URL: no JWT verifier is built.
  if (requirement === 'absent-ok') return { kind: 'none' }
  // Only reachable for commands that never verify a token: an unusable random key.
  return { kind: 'secret', secret: crypto.getRandomValues(new Uint8Array(32)) }
}

export function readAlgorithms (read: EnvReader, key: KeySource): readonly JwtAlgorithm[] {
  if (key.kind === 'none') {
    if (read.has('PODGATE_JWT_ALGORITHMS')) throw new ConfigError('PODGATE_JWT_ALGORITHMS', 'no JWT key is configured (PODGATE_AUTH_URL_MODE=always without one): set a key or unset this')
    return []
  }
  const allowed: readonly JwtAlgorithm[] = key.kind === 'secret' ? HMAC_ALGORITHMS : ASYMMETRIC_ALGORITHMS
  const listed = read.list('PODGATE_JWT_ALGORITHMS')
  if (listed === undefined) return allowed
  for (const alg of listed) {
    if (!(allowed as readonly string[]).includes(alg)) {
      throw new ConfigError('PODGATE_JWT_ALGORITHMS', `${JSON.stringify(alg)} is not usable with ${key.kind === 'secret' ? 'a shared secret' : 'a public key'}; allowed: ${allowed.join(', ')}`)
    }
  }
  return listed as JwtAlgorithm[]
}
