// PODGATE_OIDC_*: the optional built-in OpenID Connect login (docs/adr/0008-oidc-login.md).
// Read by loadConfig through readOidcConfig; checkOidcConfig then holds them against the
// token settings, since the session cookie is a JWT podgate signs with PODGATE_JWT_SECRET.
import { readFileSync } from 'node:fs'
import type { AuthConfig } from '../config.ts'
import type { EnvReader } from '../env-reader.ts'
import { ConfigError } from '../errors.ts'
import { CALLBACK_PATH } from './oidc-paths.ts'

export const DEFAULT_OIDC_SCOPES = Object.freeze(['openid', 'profile', 'email'])
export const DEFAULT_OIDC_USER_CLAIM = 'preferred_username'
/** A working day: re-login through the provider's own session is silent, but breaks XHR and WebSockets. */
export const DEFAULT_OIDC_SESSION_TTL_S = 8 * 3600
const MIN_SESSION_TTL_S = 60
const MAX_SESSION_TTL_S = 7 * 86_400

export interface OidcConfig {
  /** The provider's issuer identifier; its discovery document is fetched at the first login. */
  readonly issuer: URL
  readonly clientId: string
  /** undefined: a public client (PKCE only, token_endpoint_auth_method none). */
  readonly clientSecret: string | undefined
  /** Always includes `openid`. */
  readonly scopes: readonly string[]
  /** ID token claim holding the user id; it must be a DNS-1123 label or the login is refused. */
  readonly userClaim: string
  /** The callback's public URL (`…/.podgate/callback`); undefined: derived from each login request. */
  readonly redirectUrl: URL | undefined
  /** Lifetime of the session token (and its cookie) podgate mints after a login, in seconds. */
  readonly sessionTtlS: number
}

const OPTIONS = [
  'PODGATE_OIDC_CLIENT_ID', 'PODGATE_OIDC_CLIENT_SECRET', 'PODGATE_OIDC_CLIENT_SECRET_FILE', 'PODGATE_OIDC_SCOPES',
  'PODGATE_OIDC_USER_CLAIM', 'PODGATE_OIDC_REDIRECT_URL', 'PODGATE_OIDC_SESSION_TTL',
] as const
const CLAIM_NAME = /^[A-Za-z0-9_.:/-]{1,128}$/
const CLIENT_ID = /^[!-~]{1,255}$/
// RFC 6749 §3.3 scope-token.
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/

/** PODGATE_OIDC_ISSUER and its options, or undefined when login is off; any option alone is refused. */
export function readOidcConfig (read: EnvReader): OidcConfig | undefined {
  const issuerText = read.optional('PODGATE_OIDC_ISSUER', /^\S+$/, 'a URL without spaces')
  if (issuerText === undefined) {
    const stray = OPTIONS.find((name) => read.has(name))
    if (stray !== undefined) throw new ConfigError(stray, 'has no effect without PODGATE_OIDC_ISSUER')
    return undefined
  }
  const issuer = readUrl('PODGATE_OIDC_ISSUER', issuerText)
  const clientId = read.optional('PODGATE_OIDC_CLIENT_ID', CLIENT_ID, 'the client id registered at the provider (visible ASCII, no spaces)')
  if (clientId === undefined) throw new ConfigError('PODGATE_OIDC_CLIENT_ID', 'required with PODGATE_OIDC_ISSUER: the client id registered at the provider')
  const redirectText = read.optional('PODGATE_OIDC_REDIRECT_URL', /^\S+$/, 'a URL without spaces')
  const redirectUrl = redirectText === undefined ? undefined : readUrl('PODGATE_OIDC_REDIRECT_URL', redirectText)
  if (redirectUrl !== undefined && redirectUrl.pathname !== CALLBACK_PATH) {
    throw new ConfigError('PODGATE_OIDC_REDIRECT_URL', `the path must be ${CALLBACK_PATH} (podgate serves the callback there on the gateway port), got ${JSON.stringify(redirectUrl.pathname)}`)
  }
  const sessionTtlMs = read.duration('PODGATE_OIDC_SESSION_TTL', DEFAULT_OIDC_SESSION_TTL_S * 1000)
  if (sessionTtlMs < MIN_SESSION_TTL_S * 1000 || sessionTtlMs > MAX_SESSION_TTL_S * 1000) {
    throw new ConfigError('PODGATE_OIDC_SESSION_TTL', `expected 1m to 7 days (168h), got ${sessionTtlMs} ms`)
  }
  return {
    issuer,
    clientId,
    clientSecret: readClientSecret(read),
    scopes: readScopes(read),
    userClaim: read.string('PODGATE_OIDC_USER_CLAIM', DEFAULT_OIDC_USER_CLAIM, CLAIM_NAME),
    redirectUrl,
    sessionTtlS: Math.floor(sessionTtlMs / 1000),
  }
}

/**
 * Refuses OIDC settings the token settings cannot honour: the session cookie is an HS256 JWT
 * signed with PODGATE_JWT_SECRET and checked by the same verifier as every other token.
 */
export function checkOidcConfig (auth: AuthConfig): void {
  const oidc = auth.oidc
  if (oidc === undefined) return
  if (auth.authUrl?.mode === 'always') {
    throw new ConfigError('PODGATE_OIDC_ISSUER', 'PODGATE_AUTH_URL_MODE=always sends every credential to PODGATE_AUTH_URL, so the session tokens podgate mints after a login would never be checked: use fallback mode')
  }
  if (auth.key.kind !== 'secret') {
    throw new ConfigError('PODGATE_OIDC_ISSUER', 'needs PODGATE_JWT_SECRET: after a login podgate signs the session cookie itself (HS256), and the verifier checks it with that secret (PODGATE_JWT_PUBLIC_KEY and PODGATE_JWKS_URL cannot check it)')
  }
  if (!auth.algorithms.includes('HS256')) {
    throw new ConfigError('PODGATE_JWT_ALGORITHMS', 'must allow HS256 with PODGATE_OIDC_ISSUER: the session tokens podgate mints after a login are HS256')
  }
  if (auth.maxAgeS !== undefined && oidc.sessionTtlS > auth.maxAgeS) {
    throw new ConfigError('PODGATE_OIDC_SESSION_TTL', `${oidc.sessionTtlS} s is longer than PODGATE_JWT_MAX_AGE (${auth.maxAgeS} s), which would end every session early: lower one or raise the other`)
  }
}

function readUrl (name: string, text: string): URL {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw new ConfigError(name, `not a URL: ${JSON.stringify(text.slice(0, 64))}`)
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new ConfigError(name, 'must be an http(s) URL')
  if (url.username !== '' || url.password !== '') throw new ConfigError(name, 'must not carry a user name or password')
  if (url.search !== '' || url.hash !== '') throw new ConfigError(name, 'must not have a query or a fragment')
  return url
}

function readClientSecret (read: EnvReader): string | undefined {
  const secret = read.optional('PODGATE_OIDC_CLIENT_SECRET', /^[\s\S]+$/)
  const file = read.optional('PODGATE_OIDC_CLIENT_SECRET_FILE', /^.+$/)
  if (secret !== undefined && file !== undefined) throw new ConfigError('PODGATE_OIDC_CLIENT_SECRET_FILE', 'set only one of PODGATE_OIDC_CLIENT_SECRET and PODGATE_OIDC_CLIENT_SECRET_FILE')
  if (file === undefined) return secret
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new ConfigError('PODGATE_OIDC_CLIENT_SECRET_FILE', `cannot read ${JSON.stringify(file)} (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
  }
  // A mounted Secret or `echo > file` ends with a newline that is no part of the secret.
  const trimmed = text.trim()
  if (trimmed === '') throw new ConfigError('PODGATE_OIDC_CLIENT_SECRET_FILE', `${JSON.stringify(file)} is empty`)
  return trimmed
}

function readScopes (read: EnvReader): readonly string[] {
  const text = read.optional('PODGATE_OIDC_SCOPES', /\S/)
  if (text === undefined) return DEFAULT_OIDC_SCOPES
  const scopes = [...new Set(text.split(/[\s,]+/).filter((scope) => scope !== ''))]
  const bad = scopes.find((scope) => !SCOPE_TOKEN.test(scope))
  if (bad !== undefined) throw new ConfigError('PODGATE_OIDC_SCOPES', `${JSON.stringify(bad.slice(0, 64))} is not a scope`)
  if (!scopes.includes('openid')) throw new ConfigError('PODGATE_OIDC_SCOPES', 'must include openid (without it the provider returns no ID token)')
  return scopes
}
