// Token verification with jose, behind a verified-token cache. Every refusal is an AuthError
// whose reason is one of AUTH_FAILURE_REASONS; nothing else ever leaves verify().
import { errors, jwtVerify, type CompactJWSHeaderParameters, type FlattenedJWSInput, type JWTPayload, type JWTVerifyOptions } from 'jose'
import { LRUCache } from 'lru-cache'
import { systemClock, type Clock } from '../clock.ts'
import type { AuthConfig } from '../config.ts'
import { AuthError, ConfigError } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { Metrics } from '../metrics.ts'
import { HmacTokenCheck } from './hmac.ts'
import type { Identity, TokenVerifier } from './identity.ts'
import { createVerificationKeys, type VerificationKeys } from './keys.ts'
import { isDnsLabel } from '../kube/labels.ts'

export interface TokenVerifierOptions {
  readonly metrics?: Metrics | undefined
  /** Its now() drives exp/nbf checks, cache expiry and the JWKS cooldown. */
  readonly clock?: Clock | undefined
  readonly fetch?: typeof fetch | undefined
  readonly logger?: Logger | undefined
}

// A token without a kid may match several JWKS keys; each costs one signature check.
const MAX_CANDIDATE_KEYS = 4
const REQUIRED_CLAIMS = Object.freeze(['exp'])

/**
 * Builds the verifier for the configured key source. Throws ConfigError (naming the variable)
 * when the key or the algorithm list cannot work, so a bad setup stops start-up.
 * verify() always does the full check and fills the cache; callers try cached() first.
 */
export function createTokenVerifier (auth: AuthConfig, options: TokenVerifierOptions = {}): TokenVerifier {
  return new JwtVerifier(auth, options)
}

class JwtVerifier implements TokenVerifier {
  readonly #keys: VerificationKeys
  readonly #clock: Clock
  readonly #metrics: Metrics | undefined
  readonly #logger: Logger | undefined
  readonly #cache: LRUCache<string, Identity> | undefined
  readonly #userClaim: string
  readonly #tenantClaim: string | undefined
  readonly #maxTokenBytes: number
  readonly #algorithms: string[]
  readonly #issuer: string[] | undefined
  readonly #audience: string[] | undefined
  readonly #clockToleranceS: number
  readonly #maxAgeS: number | undefined
  /** Per user: tokens issued before this (epoch seconds) are refused. */
  readonly #notBefore = new Map<string, number>()
  /** The synchronous check of plain HS* tokens under a shared secret; jose does the rest. */
  readonly #hmac: HmacTokenCheck | undefined
  readonly #resolveKey = (header: CompactJWSHeaderParameters, token: FlattenedJWSInput) => this.#keys.resolve(header, token)

  constructor (auth: AuthConfig, options: TokenVerifierOptions) {
    checkAuthConfig(auth)
    const clock = options.clock ?? systemClock
    const now = (): number => clock.now()
    this.#clock = clock
    this.#metrics = options.metrics
    this.#logger = options.logger
    this.#userClaim = auth.userClaim
    this.#tenantClaim = auth.tenantClaim
    this.#maxTokenBytes = auth.maxTokenBytes
    this.#issuer = auth.issuer === undefined ? undefined : [...auth.issuer]
    this.#audience = auth.audience === undefined ? undefined : [...auth.audience]
    this.#clockToleranceS = auth.clockToleranceS
    this.#maxAgeS = auth.maxAgeS
    const fetchImpl = options.fetch ?? ((input, init) => fetch(input, init))
    this.#keys = createVerificationKeys(auth, { now, fetch: fetchImpl, metrics: options.metrics, logger: options.logger })
    this.#algorithms = [...this.#keys.algorithms]
    this.#hmac = auth.key.kind === 'secret'
      ? new HmacTokenCheck(auth.key.secret, { algorithms: this.#algorithms, issuer: this.#issuer, audience: this.#audience, clockToleranceS: this.#clockToleranceS })
      : undefined
    // Entries expire with their token, checked on the injected clock in cached(): lru-cache's
    // own TTL would read the clock again on every lookup.
    this.#cache = auth.tokenCacheSize === 0 ? undefined : new LRUCache<string, Identity>({ max: auth.tokenCacheSize })
  }

  cached (token: string): Identity | undefined {
    const cache = this.#cache
    if (cache === undefined) return undefined
    const identity = cache.get(token)
    if (identity !== undefined) {
      if (identity.expiresAt > this.#clock.now()) {
        this.#metrics?.tokenCache.inc('hit')
        return identity
      }
      cache.delete(token)
    }
    this.#metrics?.tokenCache.inc('miss')
    return undefined
  }

  async verify (token: string): Promise<Identity> {
    try {
      const identity = await this.#check(token)
      if (this.#cache !== undefined && identity.expiresAt > this.#clock.now()) this.#cache.set(token, identity)
      return identity
    } catch (err) {
      const failure = toAuthError(err)
      if (!(err instanceof AuthError) && !(err instanceof errors.JOSEError)) this.#logger?.debug({ err }, 'unexpected token verification error')
      this.#metrics?.authFailure(failure.reason)
      throw failure
    }
  }

  revoke (user: string, notBeforeS: number): void {
    if (!Number.isFinite(notBeforeS)) return
    this.#notBefore.set(user, notBeforeS)
    // Paid once per revocation, so the cached path stays one lookup.
    const cache = this.#cache
    if (cache === undefined) return
    for (const [token, identity] of cache.entries()) {
      if (identity.user === user && isRevoked(identity, notBeforeS)) cache.delete(token)
    }
  }

  close (): void {
    this.#keys.close()
    this.#cache?.clear()
  }

  async #check (token: string): Promise<Identity> {
    if (typeof token !== 'string' || token.length === 0) throw new AuthError('missing', 'no token')
    if (token.length > this.#maxTokenBytes) throw new AuthError('too_large', `token is ${token.length} bytes, more than the ${this.#maxTokenBytes} allowed`)
    const now = this.#clock.now()
    let payload = this.#hmac?.verify(token, now)
    if (payload === undefined) {
      const options: JWTVerifyOptions = {
        algorithms: this.#algorithms,
        issuer: this.#issuer,
        audience: this.#audience,
        clockTolerance: this.#clockToleranceS,
        requiredClaims: REQUIRED_CLAIMS as string[],
        currentDate: new Date(now),
      }
      try {
        payload = (await jwtVerify(token, this.#resolveKey, options)).payload
      } catch (err) {
        if (!(err instanceof errors.JWKSMultipleMatchingKeys)) throw err
        payload = await verifyWithCandidates(token, err, options)
      }
    }
    const claim = this.#userClaim
    const user = Object.hasOwn(payload, claim) ? payload[claim] : undefined
    if (user === undefined) throw new AuthError('user', `token has no ${JSON.stringify(claim)} claim`)
    if (typeof user !== 'string') throw new AuthError('user', `claim ${JSON.stringify(claim)} is ${kindOf(user)}, not a string`)
    if (!isDnsLabel(user)) throw new AuthError('user', `claim ${JSON.stringify(claim)} is not a DNS-1123 label`)
    const expiresAt = this.#lifetimeEnd(payload, now)
    const issued = typeof payload.iat === 'number' ? { issuedAt: payload.iat * 1000 } : {}
    const notBefore = this.#notBefore.get(user)
    if (notBefore !== undefined && isRevoked(issued, notBefore)) {
      throw new AuthError('revoked', `token refused: the user's tokens issued before ${new Date(notBefore * 1000).toISOString()} were revoked${issued.issuedAt === undefined ? ' (and this one has no "iat" claim)' : ''}`)
    }
    const tenantClaim = this.#tenantClaim
    if (tenantClaim === undefined) return Object.freeze({ user, expiresAt, ...issued })
    return Object.freeze({ user, expiresAt, ...issued, tenant: readTenant(payload, tenantClaim) })
  }

  /**
   * The time claims jose does not judge: a number that parses to Infinity (`1e400`), an
   * `iat` in the future, and the token's age against PODGATE_JWT_MAX_AGE. Both the HMAC fast
   * path and jose have checked that exp is present and a number. Returns when the token
   * stops being valid, in epoch milliseconds.
   */
  #lifetimeEnd (payload: JWTPayload, nowMs: number): number {
    for (const claim of ['exp', 'nbf', 'iat'] as const) {
      const value = payload[claim]
      if (value !== undefined && !Number.isFinite(value)) throw new AuthError('claim', `token refused: "${claim}" claim is not a finite number`)
    }
    const now = nowMs / 1000
    const { iat } = payload
    if (iat !== undefined && iat > now + this.#clockToleranceS) throw new AuthError('not_yet_valid', 'token refused: "iat" claim is in the future')
    const exp = payload.exp as number
    const maxAge = this.#maxAgeS
    if (maxAge === undefined) return exp * 1000
    if (iat === undefined) throw new AuthError('claim', 'token refused: no "iat" claim, required when PODGATE_JWT_MAX_AGE is set')
    const end = Math.min(exp, iat + maxAge)
    if (end <= now - this.#clockToleranceS) throw new AuthError('expired', `token refused: issued more than ${maxAge} s ago (PODGATE_JWT_MAX_AGE)`)
    return end * 1000
  }
}

/** Whether a credential issued at `issuedAt` (ms; unknown counts as revoked) falls before the mark `notBeforeS`. */
export function isRevoked (identity: { readonly issuedAt?: number }, notBeforeS: number): boolean {
  return identity.issuedAt === undefined || identity.issuedAt < notBeforeS * 1000
}

/** The tenant claim, required once PODGATE_TENANT_CLAIM is set: a namespace name, or the token is refused. */
function readTenant (payload: JWTPayload, claim: string): string {
  const tenant = Object.hasOwn(payload, claim) ? payload[claim] : undefined
  if (tenant === undefined) throw new AuthError('claim', `token has no ${JSON.stringify(claim)} claim, required by PODGATE_TENANT_CLAIM`)
  if (typeof tenant !== 'string') throw new AuthError('claim', `claim ${JSON.stringify(claim)} is ${kindOf(tenant)}, not a string`)
  if (!isDnsLabel(tenant)) throw new AuthError('claim', `claim ${JSON.stringify(claim)} is not a DNS-1123 label (a namespace name)`)
  return tenant
}

/** Tries each key of an ambiguous JWKS match; only a signature mismatch moves on to the next. */
async function verifyWithCandidates (token: string, ambiguous: errors.JWKSMultipleMatchingKeys, options: JWTVerifyOptions): Promise<JWTPayload> {
  let tried = 0
  for await (const key of ambiguous) {
    try {
      return (await jwtVerify(token, key, options)).payload
    } catch (err) {
      if (!(err instanceof errors.JWSSignatureVerificationFailed)) throw err
    }
    if (++tried === MAX_CANDIDATE_KEYS) break
  }
  throw new AuthError('signature', `signature matches none of the ${tried} JWKS keys tried; the token should name its kid`)
}

/** The AuthError for any verification failure; jose's errors map by code. */
function toAuthError (err: unknown): AuthError {
  if (err instanceof AuthError) return err
  if (!(err instanceof errors.JOSEError)) {
    return new AuthError('key', `token could not be checked against the key: ${describe(err)}`, { cause: err })
  }
  const refused = `token refused: ${err.message}`
  switch (err.code) {
    case 'ERR_JWT_EXPIRED':
      return new AuthError('expired', refused, { cause: err })
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      return new AuthError(claimReason(err as errors.JWTClaimValidationFailed), refused, { cause: err })
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return new AuthError('signature', refused, { cause: err })
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return new AuthError('algorithm', refused, { cause: err })
    case 'ERR_JWKS_NO_MATCHING_KEY':
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
    case 'ERR_JWKS_INVALID':
    case 'ERR_JWKS_TIMEOUT':
    case 'ERR_JWK_INVALID':
      return new AuthError('key', refused, { cause: err })
    default:
      // ERR_JWS_INVALID, ERR_JWT_INVALID, ERR_JOSE_NOT_SUPPORTED (unknown crit) and the rest.
      return new AuthError('malformed', refused, { cause: err })
  }
}

function claimReason (err: errors.JWTClaimValidationFailed): AuthError['reason'] {
  switch (err.claim) {
    case 'nbf': return err.reason === 'check_failed' ? 'not_yet_valid' : 'claim'
    case 'iss': return 'issuer'
    case 'aud': return 'audience'
    default: return 'claim'
  }
}

function kindOf (value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`
}

function describe (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function checkAuthConfig (auth: AuthConfig): void {
  if (auth.key.kind === 'none') throw new ConfigError('PODGATE_JWT_SECRET', 'no token key configured: set PODGATE_JWT_SECRET, PODGATE_JWT_PUBLIC_KEY or PODGATE_JWKS_URL')
  if (!Number.isInteger(auth.tokenCacheSize) || auth.tokenCacheSize < 0) throw new ConfigError('PODGATE_TOKEN_CACHE_SIZE', `expected a non-negative integer, got ${auth.tokenCacheSize}`)
  if (!Number.isInteger(auth.maxTokenBytes) || auth.maxTokenBytes < 1) throw new ConfigError('PODGATE_MAX_TOKEN_BYTES', `expected a positive integer, got ${auth.maxTokenBytes}`)
  if (!Number.isFinite(auth.clockToleranceS) || auth.clockToleranceS < 0) throw new ConfigError('PODGATE_JWT_CLOCK_TOLERANCE', `expected a non-negative duration, got ${auth.clockToleranceS}`)
  if (typeof auth.userClaim !== 'string' || auth.userClaim === '') throw new ConfigError('PODGATE_USER_CLAIM', 'must name a claim')
  if (auth.tenantClaim === '') throw new ConfigError('PODGATE_TENANT_CLAIM', 'must name a claim')
}
