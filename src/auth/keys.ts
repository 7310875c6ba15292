// The keys a token may be verified with, and the algorithms each admits. The algorithm set
// follows from the key itself (intersected with the configured list), so a public key is
// never usable as an HMAC secret and `none` is never admitted.
import { X509Certificate, createPublicKey, type KeyObject } from 'node:crypto'
import { importSPKI, importX509, type CompactJWSHeaderParameters, type CryptoKey, type FlattenedJWSInput } from 'jose'
import { HMAC_ALGORITHMS, ASYMMETRIC_ALGORITHMS, type AuthConfig, type JwtAlgorithm } from '../config.ts'
import { AuthError, ConfigError } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { Metrics } from '../metrics.ts'
import { JwksKeys } from './jwks.ts'

export interface VerificationKeys {
  /** Algorithms a token may name in its header; the allow-list handed to jose. */
  readonly algorithms: readonly JwtAlgorithm[]
  /** The key for a token's header; throws or rejects (AuthError or a jose error) when none fits. */
  resolve (header: CompactJWSHeaderParameters, token: FlattenedJWSInput): CryptoKey | Promise<CryptoKey>
  close (): void
}

export interface KeyOptions {
  readonly now: () => number
  readonly fetch: typeof fetch
  readonly metrics?: Metrics | undefined
  readonly logger?: Logger | undefined
}

const HMAC_HASH: Readonly<Record<string, string>> = { HS256: 'SHA-256', HS384: 'SHA-384', HS512: 'SHA-512' }
const RSA_ALGORITHMS: readonly JwtAlgorithm[] = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']
const EC_ALGORITHMS: Readonly<Record<string, JwtAlgorithm>> = { prime256v1: 'ES256', secp384r1: 'ES384', secp521r1: 'ES512' }
const MIN_RSA_BITS = 2048

/** Builds the keys for the configured source. Throws ConfigError naming the variable at fault. */
export function createVerificationKeys (auth: AuthConfig, options: KeyOptions): VerificationKeys {
  const key = auth.key
  switch (key.kind) {
    case 'secret':
      return new StaticKeys(usable(auth.algorithms, HMAC_ALGORITHMS, 'a shared secret'), (alg) => importHmac(key.secret, alg))
    case 'public-key':
      return publicKeys(key.pem, auth.algorithms)
    case 'jwks':
      return new JwksKeys({
        url: key.url,
        cooldownMs: key.cooldownMs,
        algorithms: usable(auth.algorithms, ASYMMETRIC_ALGORITHMS, 'a JWKS'),
        now: options.now,
        fetch: options.fetch,
        metrics: options.metrics,
        logger: options.logger,
      })
    default:
      throw new ConfigError('PODGATE_JWT_SECRET', `unknown key source ${JSON.stringify((key as { kind: unknown }).kind)}`)
  }
}

function publicKeys (pem: string, configured: readonly JwtAlgorithm[]): VerificationKeys {
  // Both importers want the PEM block alone, without any text around it.
  const match = /-----BEGIN (PUBLIC KEY|CERTIFICATE)-----[\s\S]+?-----END \1-----/.exec(pem)
  if (match === null) throw new ConfigError('PODGATE_JWT_PUBLIC_KEY', 'no PEM "PUBLIC KEY" or "CERTIFICATE" block found')
  const block = match[0]
  const isCertificate = match[1] === 'CERTIFICATE'
  let keyObject: KeyObject
  try {
    keyObject = isCertificate ? new X509Certificate(block).publicKey : createPublicKey(block)
  } catch (err) {
    throw new ConfigError('PODGATE_JWT_PUBLIC_KEY', `cannot be parsed: ${(err as Error).message}`)
  }
  const algorithms = usable(configured, algorithmsForKey(keyObject), `this ${describeKey(keyObject)} key`)
  return new StaticKeys(algorithms, (alg) => isCertificate ? importX509(block, alg) : importSPKI(block, alg))
}

/** Every algorithm jose can verify with this public key. */
function algorithmsForKey (key: KeyObject): readonly JwtAlgorithm[] {
  switch (key.asymmetricKeyType) {
    case 'rsa': {
      const bits = key.asymmetricKeyDetails?.modulusLength ?? 0
      if (bits < MIN_RSA_BITS) throw new ConfigError('PODGATE_JWT_PUBLIC_KEY', `RSA key has ${bits} bits; at least ${MIN_RSA_BITS} are required`)
      return RSA_ALGORITHMS
    }
    case 'ec': {
      const alg = EC_ALGORITHMS[key.asymmetricKeyDetails?.namedCurve ?? '']
      if (alg === undefined) throw new ConfigError('PODGATE_JWT_PUBLIC_KEY', `unsupported EC curve ${key.asymmetricKeyDetails?.namedCurve ?? '(unknown)'}; use P-256, P-384 or P-521`)
      return [alg]
    }
    case 'ed25519':
      return ['EdDSA', 'Ed25519']
    default:
      throw new ConfigError('PODGATE_JWT_PUBLIC_KEY', `unsupported key type ${describeKey(key)}; use an RSA, EC (P-256/384/521) or Ed25519 key`)
  }
}

function describeKey (key: KeyObject): string {
  const curve = key.asymmetricKeyDetails?.namedCurve
  return curve === undefined ? String(key.asymmetricKeyType) : `${key.asymmetricKeyType} ${curve}`
}

function usable (configured: readonly JwtAlgorithm[], possible: readonly JwtAlgorithm[], what: string): readonly JwtAlgorithm[] {
  const algorithms = configured.filter((alg) => possible.includes(alg))
  if (algorithms.length === 0) {
    throw new ConfigError('PODGATE_JWT_ALGORITHMS', `none of ${configured.join(', ') || '(empty)'} can be verified with ${what}; usable: ${possible.join(', ')}`)
  }
  return Object.freeze(algorithms)
}

function importHmac (secret: Uint8Array, alg: JwtAlgorithm): Promise<CryptoKey> {
  const hash = HMAC_HASH[alg]
  if (hash === undefined) return Promise.reject(new Error(`${alg} is not an HMAC algorithm`))
  // An imported CryptoKey spares jose a raw-key import on every verification.
  return crypto.subtle.importKey('raw', secret, { name: 'HMAC', hash }, false, ['verify'])
}

/** One key imported once per admitted algorithm, in the background; resolve() is a map lookup once done. */
class StaticKeys implements VerificationKeys {
  readonly algorithms: readonly JwtAlgorithm[]
  #keys: ReadonlyMap<string, CryptoKey> | undefined
  readonly #loading: Promise<ReadonlyMap<string, CryptoKey>>

  constructor (algorithms: readonly JwtAlgorithm[], load: (alg: JwtAlgorithm) => Promise<CryptoKey>) {
    this.algorithms = algorithms
    this.#loading = Promise.all(algorithms.map(async (alg) => [alg, await load(alg)] as const))
      .then((entries) => (this.#keys = new Map(entries)))
    // A failed import is reported by every resolve(); this keeps it from being unhandled meanwhile.
    this.#loading.catch(() => {})
  }

  resolve (header: CompactJWSHeaderParameters): CryptoKey | Promise<CryptoKey> {
    const keys = this.#keys
    if (keys !== undefined) return pick(keys, header.alg)
    return this.#loading.then((loaded) => pick(loaded, header.alg), (err: unknown) => {
      throw new AuthError('key', `verification key could not be imported: ${(err as Error).message}`, { cause: err })
    })
  }

  close (): void {}
}

function pick (keys: ReadonlyMap<string, CryptoKey>, alg: string | undefined): CryptoKey {
  const key = alg === undefined ? undefined : keys.get(alg)
  if (key === undefined) throw new AuthError('algorithm', `algorithm ${JSON.stringify(alg)} is not allowed`)
  return key
}
