// Identity-header fixtures: signing keys as PEM files (what PODGATE_IDENTITY_KEY names), and a
// pod-side check of the header with jose against podgate's published JWKS, as a pod does it.
import { createHash, generateKeyPairSync } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from 'jose'

export const IDENTITY_ALGORITHMS = ['EdDSA', 'ES256'] as const
export type IdentityAlg = typeof IDENTITY_ALGORITHMS[number]

export interface IdentityKeyPem {
  /** PKCS#8 "PRIVATE KEY" block. */
  readonly privatePem: string
  /** SPKI "PUBLIC KEY" block. */
  readonly publicPem: string
}

/** A new key pair for the identity header, in the PEM forms `openssl genpkey` writes. */
export function identityKeyPem (alg: IdentityAlg): IdentityKeyPem {
  const pair = alg === 'EdDSA'
    ? generateKeyPairSync('ed25519', { privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } })
    : generateKeyPairSync('ec', { namedCurve: 'P-256', privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } })
  return { privatePem: pair.privateKey, publicPem: pair.publicKey }
}

interface TestDir { testdir (fixture: Record<string, string>): string }

/** Writes `files` (name → content) into the test's own directory, removed after it; returns their paths. */
export function keyFiles<K extends string> (t: TestDir, files: Record<K, string>): Record<K, string> {
  const dir = t.testdir(files)
  return Object.fromEntries(Object.keys(files).map((name) => [name, `${dir}/${name}`])) as Record<K, string>
}

/** What a pod concludes from the identity header of a request it received. */
export type PodVerdict =
  | { readonly ok: true, readonly payload: JWTPayload, readonly kid: string | undefined }
  | { readonly ok: false, readonly error: string }

/**
 * A pod's check: signature against the JWKS at `jwksUrl`, `aud` = user-<X-User-ID>, `exp`,
 * and (unless `binding: false`) `req_hash` recomputed from the request line.
 */
export function podVerifier (jwksUrl: string, options: { header?: string, binding?: boolean, currentDate?: () => Date } = {}): (req: IncomingMessage) => Promise<PodVerdict> {
  const jwks = createRemoteJWKSet(new URL(jwksUrl))
  const header = options.header ?? 'x-podgate-identity'
  return async (req) => {
    try {
      const token = req.headers[header]
      if (typeof token !== 'string') return { ok: false, error: 'no identity header' }
      const { payload, protectedHeader } = await jwtVerify(token, jwks, {
        audience: `user-${String(req.headers['x-user-id'])}`,
        algorithms: ['EdDSA', 'ES256'],
        typ: 'podgate-identity+jwt',
        currentDate: options.currentDate?.(),
      })
      if (options.binding !== false) {
        const expected = createHash('sha256').update(`${req.method} ${req.url}`).digest('base64url')
        if (payload.req_hash !== expected) return { ok: false, error: 'req_hash does not match this request' }
      }
      return { ok: true, payload, kid: protectedHeader.kid }
    } catch (err) {
      return { ok: false, error: (err as Error).message }
    }
  }
}
