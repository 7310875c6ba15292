// The verifier the gateway uses: JWTs in-process (verifier.ts) and, with PODGATE_AUTH_URL,
// other credentials at the auth service (external.ts). In fallback mode a credential goes to
// one of them by its shape; in always mode every credential goes to the service.
import type { Config } from '../config.ts'
import { createExternalVerifier, type ExternalVerifierOptions } from './external.ts'
import type { CredentialRequest, Identity, TokenVerifier } from './identity.ts'
import { createTokenVerifier, type TokenVerifierOptions } from './verifier.ts'

export type CredentialVerifierOptions = TokenVerifierOptions & Pick<ExternalVerifierOptions, 'dispatcher'>

/**
 * The verifier for `config`: the JWT verifier alone without PODGATE_AUTH_URL, the external
 * one alone with PODGATE_AUTH_URL_MODE=always (a JWT key, if set, is not used), and both
 * behind one shape check in fallback mode. Throws ConfigError like its parts.
 */
export function createCredentialVerifier (config: Pick<Config, 'auth' | 'gateway'>, options: CredentialVerifierOptions = {}): TokenVerifier {
  const { auth } = config
  if (auth.authUrl === undefined) return createTokenVerifier(auth, options)
  const external = createExternalVerifier(auth, { ...options, trustProxy: config.gateway.trustProxy })
  if (auth.authUrl.mode === 'always') return external
  try {
    return new FallbackVerifier(createTokenVerifier(auth, options), external)
  } catch (err) {
    external.close()
    throw err
  }
}

/** JWT-shaped credentials to `jwt`, every other one to `external`; both revoke and close together. */
export class FallbackVerifier implements TokenVerifier {
  readonly #jwt: TokenVerifier
  readonly #external: TokenVerifier

  constructor (jwt: TokenVerifier, external: TokenVerifier) {
    this.#jwt = jwt
    this.#external = external
  }

  // A cached JWT costs a scan for dots and one lookup, as without PODGATE_AUTH_URL; only a
  // credential that is no JWT is hashed for the external cache.
  cached (token: string): Identity | undefined {
    if (!hasTwoDots(token)) return this.#external.cached(token)
    return this.#jwt.cached(token) ?? (isJwtShaped(token) ? undefined : this.#external.cached(token))
  }

  verify (token: string, request?: CredentialRequest): Promise<Identity> {
    return isJwtShaped(token) ? this.#jwt.verify(token, request) : this.#external.verify(token, request)
  }

  revoke (user: string, notBeforeS: number): void {
    this.#jwt.revoke(user, notBeforeS)
    this.#external.revoke(user, notBeforeS)
  }

  close (): void {
    this.#jwt.close()
    this.#external.close()
  }
}

const BASE64URL = /^[A-Za-z0-9_-]+$/
const SIGNATURE = /^[A-Za-z0-9_-]*$/

/**
 * Whether `token` is shaped like a JWT (compact JWS): three base64url segments, the first
 * two non-empty, the first decoding to a JSON object. Says nothing about its validity.
 */
export function isJwtShaped (token: string): boolean {
  if (typeof token !== 'string' || !hasTwoDots(token)) return false
  const first = token.indexOf('.')
  const second = token.indexOf('.', first + 1)
  const header = token.slice(0, first)
  if (!BASE64URL.test(header) || !BASE64URL.test(token.slice(first + 1, second)) || !SIGNATURE.test(token.slice(second + 1))) return false
  try {
    const value: unknown = JSON.parse(Buffer.from(header, 'base64url').toString('utf8'))
    return typeof value === 'object' && value !== null && !Array.isArray(value)
  } catch {
    return false
  }
}

/** Exactly two '.', neither at the start nor adjacent: the cheap test that rules most opaque tokens out. */
function hasTwoDots (token: string): boolean {
  const first = token.indexOf('.')
  if (first < 1) return false
  const second = token.indexOf('.', first + 1)
  return second > first + 1 && token.indexOf('.', second + 1) === -1
}
