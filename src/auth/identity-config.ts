// PODGATE_IDENTITY_*: the signed identity header pods can verify (docs/adr/0009-identity-token.md).
// Read by loadConfig through readIdentity; undefined (off) unless PODGATE_IDENTITY_KEY names a
// key file. The private key is held where neither a log line nor a serialised config reaches it.
import { createHash, createPrivateKey, createPublicKey, sign, type KeyObject } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { EnvReader } from '../env-reader.ts'
import { ConfigError } from '../errors.ts'

/** Inbound copies of this name are dropped even when the identity header is off. */
export const DEFAULT_IDENTITY_HEADER = 'x-podgate-identity'
export const DEFAULT_IDENTITY_TTL_S = 30
const MAX_IDENTITY_TTL_S = 600

/** request: a token per request, bound to its method and target; user: one token per user, reused for a few seconds. */
export const IDENTITY_BINDINGS = ['request', 'user'] as const
export type IdentityBinding = typeof IDENTITY_BINDINGS[number]
export type IdentityAlgorithm = 'EdDSA' | 'ES256'

/** A public key as the JWKS publishes it (RFC 7517); `kid` is its RFC 7638 thumbprint. */
export interface IdentityJwk {
  readonly kty: 'OKP' | 'EC'
  readonly crv: 'Ed25519' | 'P-256'
  readonly x: string
  readonly y?: string
  readonly kid: string
  readonly alg: IdentityAlgorithm
  readonly use: 'sig'
}

/** The signing key. Its private half is reachable only through sign(): not a property, so never logged or serialised. */
export class IdentitySigningKey {
  readonly alg: IdentityAlgorithm
  readonly jwk: IdentityJwk
  readonly #key: KeyObject

  constructor (key: KeyObject, jwk: IdentityJwk) {
    this.#key = key
    this.alg = jwk.alg
    this.jwk = jwk
  }

  /** The JWS signature of `data`: Ed25519, or ECDSA P-256 SHA-256 as r‖s (RFC 7518 §3.4), never DER. */
  sign (data: Buffer): Buffer {
    return this.alg === 'EdDSA' ? sign(null, data, this.#key) : sign('sha256', data, { key: this.#key, dsaEncoding: 'ieee-p1363' })
  }
}

export interface IdentityConfig {
  /** Lower-case header name the token goes out under; inbound copies are dropped. */
  readonly header: string
  /** Seconds from `iat` to `exp`. */
  readonly ttlS: number
  readonly binding: IdentityBinding
  readonly key: IdentitySigningKey
  /** What /.well-known/jwks.json lists: the signing key's public half first, then PODGATE_IDENTITY_PUBLISHED_KEYS. */
  readonly published: readonly IdentityJwk[]
}

const OPTIONS = ['PODGATE_IDENTITY_HEADER', 'PODGATE_IDENTITY_TTL', 'PODGATE_IDENTITY_BINDING', 'PODGATE_IDENTITY_PUBLISHED_KEYS'] as const
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/
const GENERATE = 'openssl genpkey -algorithm ed25519 -out identity.pem'

/** PODGATE_IDENTITY_KEY and its options, or undefined when off; an option alone is refused. */
export function readIdentity (read: EnvReader, userHeader: string): IdentityConfig | undefined {
  // Any text is taken here and checked below, so that no error message can echo a pasted key.
  const path = read.optional('PODGATE_IDENTITY_KEY', /^[\s\S]+$/)
  if (path === undefined) {
    const stray = OPTIONS.find((name) => read.has(name))
    if (stray !== undefined) throw new ConfigError(stray, 'has no effect without PODGATE_IDENTITY_KEY')
    return undefined
  }
  const header = read.string('PODGATE_IDENTITY_HEADER', DEFAULT_IDENTITY_HEADER, HEADER_NAME).toLowerCase()
  if (header.replaceAll('_', '-') === userHeader.replaceAll('_', '-')) {
    throw new ConfigError('PODGATE_IDENTITY_HEADER', `must differ from PODGATE_USER_HEADER (${userHeader})`)
  }
  const ttlMs = read.duration('PODGATE_IDENTITY_TTL', DEFAULT_IDENTITY_TTL_S * 1000)
  if (ttlMs < 1000 || ttlMs > MAX_IDENTITY_TTL_S * 1000 || ttlMs % 1000 !== 0) {
    throw new ConfigError('PODGATE_IDENTITY_TTL', `expected whole seconds from 1s to ${MAX_IDENTITY_TTL_S / 60}m (exp is in seconds), got ${ttlMs} ms`)
  }
  const key = signingKey(path)
  const published = [key.jwk]
  for (const file of read.list('PODGATE_IDENTITY_PUBLISHED_KEYS') ?? []) {
    const jwk = publicJwk('PODGATE_IDENTITY_PUBLISHED_KEYS', createKey('PODGATE_IDENTITY_PUBLISHED_KEYS', file, 'public'))
    if (!published.some((known) => known.kid === jwk.kid)) published.push(jwk)
  }
  return {
    header,
    ttlS: ttlMs / 1000,
    binding: read.oneOf('PODGATE_IDENTITY_BINDING', IDENTITY_BINDINGS, 'request'),
    key,
    published,
  }
}

function signingKey (path: string): IdentitySigningKey {
  const key = createKey('PODGATE_IDENTITY_KEY', path, 'private')
  return new IdentitySigningKey(key, publicJwk('PODGATE_IDENTITY_KEY', createPublicKey(key)))
}

/**
 * Reads one PEM file: the signing key must be an unencrypted PKCS#8 private key; a published
 * key may be that or a public key, whose public half is kept.
 */
function createKey (variable: string, path: string, kind: 'private' | 'public'): KeyObject {
  if (path.includes('-----BEGIN')) throw new ConfigError(variable, 'expected the path of a PEM file, not the key itself')
  let pem: string
  try {
    pem = readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError(variable, `cannot read ${JSON.stringify(path)} (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
  }
  const blocks = [...pem.matchAll(/-----BEGIN ([A-Z ]+)-----/g)].map((m) => m[1])
  const accepted = kind === 'private' ? ['PRIVATE KEY'] : ['PRIVATE KEY', 'PUBLIC KEY']
  if (blocks.length !== 1 || !accepted.includes(blocks[0] ?? '')) {
    const found = blocks.length === 0 ? 'no PEM block' : blocks.map((b) => `"${b}"`).join(', ')
    throw new ConfigError(variable, `${JSON.stringify(path)} must hold one PEM ${accepted.map((b) => `"${b}"`).join(' or ')} block (unencrypted PKCS#8, as \`${GENERATE}\` writes; \`openssl pkcs8 -topk8 -nocrypt\` converts others), found ${found}`)
  }
  try {
    return kind === 'private' ? createPrivateKey(pem) : createPublicKey(pem)
  } catch (err) {
    // OpenSSL's reason names the decoder that failed, never the key's bytes.
    throw new ConfigError(variable, `${JSON.stringify(path)} cannot be parsed: ${(err as Error).message}`)
  }
}

/** The public JWK with its thumbprint as `kid`; only Ed25519 (EdDSA) and P-256 (ES256) sign identities. */
function publicJwk (variable: string, key: KeyObject): IdentityJwk {
  const curve = key.asymmetricKeyDetails?.namedCurve
  const jwk = key.export({ format: 'jwk' })
  if (key.asymmetricKeyType === 'ed25519' && typeof jwk.x === 'string') {
    const members = { crv: 'Ed25519', kty: 'OKP', x: jwk.x } as const
    return { ...members, kid: thumbprint(members), alg: 'EdDSA', use: 'sig' }
  }
  if (key.asymmetricKeyType === 'ec' && curve === 'prime256v1' && typeof jwk.x === 'string' && typeof jwk.y === 'string') {
    const members = { crv: 'P-256', kty: 'EC', x: jwk.x, y: jwk.y } as const
    return { ...members, kid: thumbprint(members), alg: 'ES256', use: 'sig' }
  }
  const type = curve === undefined ? String(key.asymmetricKeyType) : `${key.asymmetricKeyType} ${curve}`
  throw new ConfigError(variable, `unsupported key type ${type}: use Ed25519 (EdDSA, \`${GENERATE}\`) or EC P-256 (ES256)`)
}

/** RFC 7638: SHA-256 over the required members in lexicographic order, without whitespace (the callers list them in that order). */
function thumbprint (members: Readonly<Record<string, string>>): string {
  return createHash('sha256').update(JSON.stringify(members)).digest('base64url')
}
