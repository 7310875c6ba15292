// HS256/384/512 tokens under the shared secret, checked synchronously with node:crypto.
// jose verifies HMAC through WebCrypto, which is asynchronous and costs ~20 µs a token here;
// this costs a few. It only ever *accepts*: a token in the plain form (header names only
// alg, typ, kid; canonical base64url; claims as jose would check them with the same options)
// whose signature matches. Anything else — a bad signature included — is left to jose,
// which refuses it with its reason, so no token passes here that jose would refuse.
import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto'
import type { JWTPayload } from 'jose'

export interface HmacClaimOptions {
  /** HS* algorithms a token may name. */
  readonly algorithms: readonly string[]
  readonly issuer: readonly string[] | undefined
  readonly audience: readonly string[] | undefined
  readonly clockToleranceS: number
}

const HASHES: Readonly<Record<string, string>> = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' }
const PLAIN_HEADER = new Set(['alg', 'typ', 'kid'])
const BASE64URL = /^[A-Za-z0-9_-]+$/
const strictUtf8 = new TextDecoder('utf-8', { fatal: true })

export class HmacTokenCheck {
  readonly #key: KeyObject
  readonly #options: HmacClaimOptions

  constructor (secret: Uint8Array, options: HmacClaimOptions) {
    this.#key = createSecretKey(secret)
    this.#options = options
  }

  /** The payload of a valid plain HS* token; undefined for anything jose should look at. */
  verify (token: string, nowMs: number): JWTPayload | undefined {
    const first = token.indexOf('.')
    const second = token.indexOf('.', first + 1)
    if (first < 1 || second < first + 2 || second === token.length - 1 || token.indexOf('.', second + 1) !== -1) return undefined
    const header = decodeObject(token.slice(0, first))
    if (header === undefined) return undefined
    for (const name in header) if (!PLAIN_HEADER.has(name)) return undefined
    const alg = header.alg
    if (typeof alg !== 'string' || !this.#options.algorithms.includes(alg) || !Object.hasOwn(HASHES, alg)) return undefined
    const signature = canonicalBytes(token.slice(second + 1))
    if (signature === undefined) return undefined
    const expected = createHmac(HASHES[alg] as string, this.#key).update(token.slice(0, second), 'latin1').digest()
    if (signature.length !== expected.length || !timingSafeEqual(signature, expected)) return undefined
    const payload = decodeObject(token.slice(first + 1, second))
    return payload !== undefined && this.#claimsHold(payload, nowMs) ? payload : undefined
  }

  // jose's validateClaimsSet for our options: exp required; iss and aud when configured;
  // iat, nbf, exp numbers when present; nbf and exp against the clock with the tolerance.
  #claimsHold (payload: JWTPayload, nowMs: number): boolean {
    const { issuer, audience, clockToleranceS } = this.#options
    if (!Object.hasOwn(payload, 'exp')) return false
    if (issuer !== undefined && (!Object.hasOwn(payload, 'iss') || !issuer.includes(payload.iss as string))) return false
    if (audience !== undefined && (!Object.hasOwn(payload, 'aud') || !audienceMatches(payload.aud, audience))) return false
    const { iat, nbf, exp } = payload
    if (iat !== undefined && typeof iat !== 'number') return false
    if (nbf !== undefined && typeof nbf !== 'number') return false
    if (typeof exp !== 'number') return false
    const now = Math.floor(nowMs / 1000)
    if (nbf !== undefined && nbf > now + clockToleranceS) return false
    return exp > now - clockToleranceS
  }
}

function audienceMatches (aud: unknown, accepted: readonly string[]): boolean {
  if (typeof aud === 'string') return accepted.includes(aud)
  return Array.isArray(aud) && accepted.some((value) => aud.includes(value))
}

/** The bytes of a base64url segment, only if the segment is their one canonical encoding. */
function canonicalBytes (segment: string): Buffer | undefined {
  if (!BASE64URL.test(segment)) return undefined
  const bytes = Buffer.from(segment, 'base64url')
  return bytes.toString('base64url') === segment ? bytes : undefined
}

/** A segment that decodes to strict UTF-8 JSON whose top level is a plain object. */
function decodeObject (segment: string): Record<string, unknown> | undefined {
  const bytes = canonicalBytes(segment)
  if (bytes === undefined) return undefined
  let value: unknown
  try {
    value = JSON.parse(strictUtf8.decode(bytes))
  } catch {
    return undefined
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined
  return value as Record<string, unknown>
}
