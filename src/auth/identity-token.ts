// Signs the identity header podgate sends to a user's pod: a compact JWS (sub, aud, iat, exp,
// jti, and with request binding req_hash), signed synchronously with node:crypto on the
// request path. docs/adr/0009-identity-token.md has the measurements behind the two bindings.
import { createHash, randomUUID } from 'node:crypto'
import { systemClock, type Clock } from '../clock.ts'
import { workloadName } from '../kube/labels.ts'
import type { IdentityConfig } from './identity-config.ts'

/** Explicit typing (RFC 8725 §3.11): this token is never mistaken for an access token. */
export const IDENTITY_TOKEN_TYPE = 'podgate-identity+jwt'
/** Longest a token is reused with `user` binding; less when half the TTL is shorter. */
export const MAX_REUSE_MS = 5_000

export interface IdentitySigner {
  /** Lower-case header name the token goes out under. */
  readonly header: string
  /** The token for `user`'s request `method target` (the target exactly as forwarded: path and query). */
  token (user: string, method: string, target: string): string
}

/** Undefined when the identity header is off: the request path then does no work at all. */
export function createIdentitySigner (config: IdentityConfig | undefined, clock: Clock = systemClock): IdentitySigner | undefined {
  if (config === undefined) return undefined
  return config.binding === 'request' ? new RequestBoundSigner(config, clock) : new PerUserSigner(config, clock)
}

/**
 * `req_hash`: base64url(SHA-256(method SP target)), the target exactly as the pod receives it
 * (path and query, before any percent-decoding), so the pod recomputes it from its own request.
 */
export function requestHash (method: string, target: string): string {
  return createHash('sha256').update(`${method} ${target}`).digest('base64url')
}

/** The JOSE header and the signature around a payload; the header is encoded once per key. */
class TokenSigner {
  readonly header: string
  readonly #config: IdentityConfig
  readonly #clock: Clock
  readonly #protected: string

  constructor (config: IdentityConfig, clock: Clock) {
    this.header = config.header
    this.#config = config
    this.#clock = clock
    const key = config.key
    this.#protected = Buffer.from(JSON.stringify({ alg: key.alg, kid: key.jwk.kid, typ: IDENTITY_TOKEN_TYPE })).toString('base64url')
  }

  protected now (): number {
    return this.#clock.now()
  }

  protected sign (user: string, nowMs: number, reqHash: string | undefined): string {
    const iat = Math.floor(nowMs / 1000)
    const claims = { sub: user, aud: workloadName(user), iat, exp: iat + this.#config.ttlS, jti: randomUUID(), req_hash: reqHash }
    const input = `${this.#protected}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`
    return `${input}.${this.#config.key.sign(Buffer.from(input)).toString('base64url')}`
  }
}

/** One signature per request: a token that is good for this method and target only. */
class RequestBoundSigner extends TokenSigner implements IdentitySigner {
  token (user: string, method: string, target: string): string {
    return this.sign(user, this.now(), requestHash(method, target))
  }
}

/**
 * One token per user, reused for min(5 s, TTL/2): no req_hash. Tokens live in the map of the
 * current window; the next window starts with an empty one, so memory follows the users of
 * the last window and no timer or sweep is needed.
 */
class PerUserSigner extends TokenSigner implements IdentitySigner {
  readonly #reuseMs: number
  #tokens = new Map<string, string>()
  #windowEnd = 0

  constructor (config: IdentityConfig, clock: Clock) {
    super(config, clock)
    this.#reuseMs = Math.min(MAX_REUSE_MS, config.ttlS * 500)
  }

  token (user: string): string {
    const now = this.now()
    // A clock set back must not stretch the window.
    if (now >= this.#windowEnd || now < this.#windowEnd - this.#reuseMs) {
      this.#tokens = new Map()
      this.#windowEnd = now + this.#reuseMs
    }
    let token = this.#tokens.get(user)
    if (token === undefined) {
      token = this.sign(user, now, undefined)
      this.#tokens.set(user, token)
    }
    return token
  }
}
