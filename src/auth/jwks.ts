// Verification keys from a JWKS URL. A token naming an unknown `kid` triggers a re-fetch so
// rotated keys work without a restart, but at most one fetch is ever in flight and at most
// one starts per cooldown, so a flood of made-up kids cannot become a flood of fetches.
// The last good key set is kept when a fetch fails.
import { createLocalJWKSet, errors, type CompactJWSHeaderParameters, type CryptoKey, type FlattenedJWSInput, type JSONWebKeySet } from 'jose'
import type { JwtAlgorithm } from '../config.ts'
import { AuthError } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { Metrics } from '../metrics.ts'
import type { VerificationKeys } from './keys.ts'

export const DEFAULT_JWKS_MAX_AGE_MS = 600_000
export const DEFAULT_JWKS_TIMEOUT_MS = 5_000
export const DEFAULT_JWKS_MAX_BYTES = 1_048_576

export interface JwksKeysOptions {
  readonly url: URL
  /** Least time between the starts of two fetches. */
  readonly cooldownMs: number
  readonly algorithms: readonly JwtAlgorithm[]
  readonly now: () => number
  readonly fetch: typeof fetch
  /** Age after which the key set is refreshed in the background (still used meanwhile). */
  readonly maxAgeMs?: number
  readonly timeoutMs?: number
  readonly maxBytes?: number
  readonly metrics?: Metrics | undefined
  readonly logger?: Logger | undefined
}

type LocalKeySet = ReturnType<typeof createLocalJWKSet>

const FETCH_OK = Object.freeze({ result: 'ok' })
const FETCH_ERROR = Object.freeze({ result: 'error' })

export class JwksKeys implements VerificationKeys {
  readonly algorithms: readonly JwtAlgorithm[]
  readonly #url: URL
  readonly #cooldownMs: number
  readonly #maxAgeMs: number
  readonly #timeoutMs: number
  readonly #maxBytes: number
  readonly #now: () => number
  readonly #fetch: typeof fetch
  readonly #metrics: Metrics | undefined
  readonly #logger: Logger | undefined
  readonly #abort = new AbortController()
  #keys: LocalKeySet | undefined
  #fetchedAt = -Infinity
  #attemptedAt = -Infinity
  #pending: Promise<void> | undefined
  #lastError: unknown

  constructor (options: JwksKeysOptions) {
    for (const name of ['cooldownMs', 'maxAgeMs', 'timeoutMs', 'maxBytes'] as const) {
      const value = options[name]
      if (value !== undefined && !(Number.isFinite(value) && value >= 0)) throw new TypeError(`JWKS option ${name} must be a non-negative number, got ${value}`)
    }
    this.algorithms = options.algorithms
    this.#url = options.url
    this.#cooldownMs = options.cooldownMs
    this.#maxAgeMs = options.maxAgeMs ?? DEFAULT_JWKS_MAX_AGE_MS
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_JWKS_TIMEOUT_MS
    this.#maxBytes = options.maxBytes ?? DEFAULT_JWKS_MAX_BYTES
    this.#now = options.now
    this.#fetch = options.fetch
    this.#metrics = options.metrics
    this.#logger = options.logger
  }

  async resolve (header: CompactJWSHeaderParameters, token: FlattenedJWSInput): Promise<CryptoKey> {
    if (this.#keys === undefined) {
      await this.#refresh()
    } else if (this.#now() - this.#fetchedAt >= this.#maxAgeMs) {
      void this.#refresh()
    }
    const keys = this.#keys
    if (keys === undefined) throw this.#unavailable()
    try {
      return await keys(header, token)
    } catch (err) {
      if (!(err instanceof errors.JWKSNoMatchingKey)) throw err
    }
    // An unknown kid may be a key the issuer has just rotated in.
    await this.#refresh()
    const current = this.#keys
    if (current === undefined || current === keys) throw new AuthError('key', `no key in the JWKS matches kid ${quote(header.kid)} and alg ${quote(header.alg)}`)
    return current(header, token)
  }

  close (): void {
    this.#abort.abort(new Error('token verifier closed'))
  }

  /** Starts a fetch unless one is in flight (then joins it) or one started within the cooldown. Never rejects. */
  #refresh (): Promise<void> {
    if (this.#pending !== undefined) return this.#pending
    const now = this.#now()
    const sinceLastAttempt = now - this.#attemptedAt
    // A wall clock stepped backwards must not hold off fetches until it catches up.
    if (this.#abort.signal.aborted || (sinceLastAttempt >= 0 && sinceLastAttempt < this.#cooldownMs)) return Promise.resolve()
    this.#attemptedAt = now
    const pending = this.#load().finally(() => { this.#pending = undefined })
    this.#pending = pending
    return pending
  }

  async #load (): Promise<void> {
    try {
      const keys = createLocalJWKSet(await this.#download())
      this.#keys = keys
      this.#fetchedAt = this.#now()
      this.#lastError = undefined
      this.#metrics?.jwksFetches.inc(FETCH_OK)
      this.#logger?.debug({ url: this.#url.href, keys: keys.jwks().keys.length }, 'JWKS fetched')
    } catch (err) {
      this.#lastError = err
      this.#metrics?.jwksFetches.inc(FETCH_ERROR)
      this.#logger?.warn({ err, url: this.#url.href, keptPreviousKeys: this.#keys !== undefined }, 'JWKS fetch failed')
    }
  }

  async #download (): Promise<JSONWebKeySet> {
    const response = await this.#fetch(this.#url, {
      redirect: 'manual',
      headers: { accept: 'application/jwk-set+json, application/json' },
      signal: AbortSignal.any([this.#abort.signal, AbortSignal.timeout(this.#timeoutMs)]),
    })
    if (response.status !== 200) {
      await response.body?.cancel()
      throw new Error(`JWKS ${this.#url.href} answered HTTP ${response.status}`)
    }
    return JSON.parse(await readText(response, this.#maxBytes)) as JSONWebKeySet
  }

  #unavailable (): AuthError {
    if (this.#abort.signal.aborted) return new AuthError('key', 'token verifier is closed')
    const reason = this.#lastError instanceof Error ? this.#lastError.message : 'not fetched yet'
    return new AuthError('key', `no JWKS available from ${this.#url.href}: ${reason}`, { cause: this.#lastError })
  }
}

/** A header value for a message: JSON, cut short, since the token chose it. */
function quote (value: unknown): string {
  const text = JSON.stringify(value) ?? 'undefined'
  return text.length > 66 ? `${text.slice(0, 64)}…` : text
}

/** The response body as UTF-8, refusing more than `maxBytes` without buffering the excess. */
async function readText (response: Response, maxBytes: number): Promise<string> {
  const declared = Number(response.headers.get('content-length') ?? 0)
  if (declared > maxBytes) {
    await response.body?.cancel()
    throw new Error(`JWKS document of ${declared} bytes exceeds ${maxBytes}`)
  }
  if (response.body === null) return ''
  const body: AsyncIterable<Uint8Array> = response.body
  const chunks: Uint8Array[] = []
  let size = 0
  for await (const chunk of body) {
    size += chunk.byteLength
    if (size > maxBytes) throw new Error(`JWKS document exceeds ${maxBytes} bytes`)
    chunks.push(chunk)
  }
  return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks))
}
