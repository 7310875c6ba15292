// Signs an HS256 token for a user: `podgate token <user>` and the demo hand these out.
import { SignJWT } from 'jose'
import { systemClock, type Clock } from '../clock.ts'
import { DEFAULT_USER_CLAIM } from '../config.ts'
import { BadRequestError } from '../errors.ts'
import { isDnsLabel } from '../kube/labels.ts'

export interface MintOptions {
  /** The shared HS256 secret the gateway verifies with (at least 32 bytes). */
  readonly secret: Uint8Array
  readonly user: string
  readonly ttlSeconds: number
  /** The claim that carries the user id; the verifier's userClaim. */
  readonly claim?: string | undefined
  readonly issuer?: string | undefined
  readonly audience?: string | undefined
  /** More claims, e.g. the tenant (PODGATE_TENANT_CLAIM); neither a registered claim nor the user's. */
  readonly claims?: Readonly<Record<string, string>> | undefined
  /** Its now() is the token's issue time. */
  readonly clock?: Clock | undefined
}

const MIN_SECRET_BYTES = 32
const REGISTERED_CLAIMS = new Set(['exp', 'iat', 'nbf', 'iss', 'aud', 'jti'])

/** A signed JWT for `user`, valid from now for `ttlSeconds`. Throws BadRequestError on bad input. */
export async function mintToken (options: MintOptions): Promise<string> {
  const { secret, user, ttlSeconds, claim = DEFAULT_USER_CLAIM, issuer, audience } = options
  if (!isDnsLabel(user)) throw new BadRequestError(`invalid user id ${JSON.stringify(user)}: expected a DNS-1123 label (a-z, 0-9, '-', at most 63 characters, alphanumeric at both ends)`)
  if (!(secret instanceof Uint8Array) || secret.length < MIN_SECRET_BYTES) throw new BadRequestError(`the signing secret must be at least ${MIN_SECRET_BYTES} bytes`)
  if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0) throw new BadRequestError(`ttlSeconds must be a positive whole number, got ${ttlSeconds}`)
  if (claim === '' || REGISTERED_CLAIMS.has(claim)) throw new BadRequestError(`${JSON.stringify(claim)} cannot carry the user id`)
  const claims = options.claims ?? {}
  for (const name of Object.keys(claims)) {
    if (name === '' || name === claim || REGISTERED_CLAIMS.has(name)) throw new BadRequestError(`${JSON.stringify(name)} cannot be an extra claim`)
  }
  const issuedAt = Math.floor((options.clock ?? systemClock).now() / 1000)
  const jwt = new SignJWT({ ...claims, [claim]: user })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuedAt(issuedAt)
    .setExpirationTime(issuedAt + ttlSeconds)
  if (issuer !== undefined) jwt.setIssuer(issuer)
  if (audience !== undefined) jwt.setAudience(audience)
  return jwt.sign(secret)
}
