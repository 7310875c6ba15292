// Key and token fixtures for tests: signing keys per algorithm, token builders (including
// hand-built hostile ones), an AuthConfig with defaults, and a JWKS server on 127.0.0.1.
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { CompactSign, SignJWT, exportJWK, exportSPKI, generateKeyPair, importPKCS8, type CryptoKey, type JSONWebKeySet, type JWK, type JWTPayload, type KeyObject } from 'jose'
import {
  ASYMMETRIC_ALGORITHMS, DEFAULT_CLOCK_TOLERANCE_S, DEFAULT_COOKIE_NAME, DEFAULT_MAX_TOKEN_BYTES, DEFAULT_TOKEN_CACHE_SIZE,
  DEFAULT_USER_CLAIM, HMAC_ALGORITHMS, type AuthConfig, type JwtAlgorithm, type KeySource,
} from '../../src/config.ts'

/** The HS256 secret tests share, as PODGATE_JWT_SECRET would carry it. */
export const TEST_SECRET_TEXT = 'podgate-test-secret-0123456789abcdef'

/** A fresh copy of the test secret's bytes (fresh so no test can alter another's). */
export function testSecret (): Uint8Array {
  return new TextEncoder().encode(TEST_SECRET_TEXT)
}

/** An AuthConfig as loadConfig would build it for `key`, with `overrides` applied. */
export function authConfig (key: KeySource, overrides: Partial<AuthConfig> = {}): AuthConfig {
  return {
    key,
    algorithms: key.kind === 'secret' ? HMAC_ALGORITHMS : ASYMMETRIC_ALGORITHMS,
    issuer: undefined,
    audience: undefined,
    clockToleranceS: DEFAULT_CLOCK_TOLERANCE_S,
    userClaim: DEFAULT_USER_CLAIM,
    tenantClaim: undefined,
    cookieName: DEFAULT_COOKIE_NAME,
    tokenCacheSize: DEFAULT_TOKEN_CACHE_SIZE,
    maxTokenBytes: DEFAULT_MAX_TOKEN_BYTES,
    maxAgeS: undefined,
    authUrl: undefined,
    forwardCredentials: false,
    oidc: undefined,
    ...overrides,
  }
}

export interface SigningKey {
  readonly alg: JwtAlgorithm
  readonly privateKey: CryptoKey
  readonly publicKey: CryptoKey
  /** The public key as a PEM "PUBLIC KEY" block (PODGATE_JWT_PUBLIC_KEY). */
  readonly pem: string
}

/** A new key pair for an asymmetric algorithm. */
export async function generateSigningKey (alg: JwtAlgorithm): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true })
  return { alg, privateKey, publicKey, pem: await exportSPKI(publicKey) }
}

/** The public JWK of `key`, as a JWKS server publishes it. */
export async function publicJwk (key: SigningKey, kid: string | undefined): Promise<JWK> {
  const jwk = await exportJWK(key.publicKey)
  return kid === undefined ? { ...jwk, alg: key.alg, use: 'sig' } : { ...jwk, kid, alg: key.alg, use: 'sig' }
}

export interface SignOptions {
  /** Epoch milliseconds; iat and the default exp derive from it. Defaults to Date.now(). */
  readonly now?: number
  /** Seconds from `now` to exp; 3600 unless given. */
  readonly ttlSeconds?: number
  /** false leaves exp out entirely. */
  readonly exp?: false
  readonly kid?: string
}

/** Anything jose signs with: a CryptoKey, a node KeyObject, or HMAC secret bytes. */
export type SigningInput = CryptoKey | KeyObject | Uint8Array

/** Signs `claims` (plus iat and exp) with `key`; `key` may be any bytes for HS*, even a PEM. */
export async function signToken (key: SigningInput, alg: string, claims: JWTPayload, options: SignOptions = {}): Promise<string> {
  const nowS = Math.floor((options.now ?? Date.now()) / 1000)
  const header = options.kid === undefined ? { alg, typ: 'JWT' } : { alg, typ: 'JWT', kid: options.kid }
  const payload: JWTPayload = { iat: nowS, ...claims }
  if (options.exp !== false && claims.exp === undefined) payload.exp = nowS + (options.ttlSeconds ?? 3600)
  return new SignJWT(payload).setProtectedHeader(header).sign(key)
}

/** A compact JWS over arbitrary payload bytes: a properly signed token whose payload need not be JSON. */
export function signPayload (key: SigningInput, alg: string, payload: Uint8Array): Promise<string> {
  return new CompactSign(payload).setProtectedHeader({ alg }).sign(key)
}

/** base64url(JSON) of a value: one segment of a hand-built token. */
export function encodeSegment (value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url')
}

/** A token with an empty signature, built by hand (jose refuses to make `alg: none`). */
export function unsignedToken (header: Record<string, unknown>, payload: Record<string, unknown>): string {
  return `${encodeSegment(header)}.${encodeSegment(payload)}.`
}

/** A self-signed X.509 certificate (EC P-256, valid until 2126) for PEM certificate tests. */
export const TEST_CERTIFICATE = `-----BEGIN CERTIFICATE-----
MIIBlDCCATmgAwIBAgIUMBVyazsP8oPloRbW0G9SMsYTj3EwCgYIKoZIzj0EAwIw
HjEcMBoGA1UEAwwTcG9kZ2F0ZS10ZXN0LWlzc3VlcjAgFw0yNjExMjIwMjI3MDda
GA8yMTI2MTAyOTAyMjcwN1owHjEcMBoGA1UEAwwTcG9kZ2F0ZS10ZXN0LWlzc3Vl
cjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABOCX9GAwRRt8I0r4PgDF3kR4TA/3
28Mfvu8N0Wlfl9kwaJBDVaOrFVm/xDAI5BXTdcNO9Iqu9MjRpbEQihAAfcijUzBR
MB0GA1UdDgQWBBRWEQAoQr5HK/ilSLbtevRhl6YCuDAfBgNVHSMEGDAWgBRWEQAo
Qr5HK/ilSLbtevRhl6YCuDAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0kA
MEYCIQDZ+XkrKaiOdvsbIwyvWeyyWml9SAMqnw4VJ1AwqqiIcQIhAP5aT/MtLid2
gjy13ik97LSkLYHD3SCYFG9lBo7pd2s1
-----END CERTIFICATE-----
`

const TEST_CERTIFICATE_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgADwDS9sPtjg/cUlF
ehfxmSRNz+y6IvweDcI2hbL/NHChRANCAATgl/RgMEUbfCNK+D4Axd5EeEwP99vD
H77vDdFpX5fZMGiQQ1WjqxVZv8QwCOQV03XDTvSKrvTI0aWxEIoQAH3I
-----END PRIVATE KEY-----
`

/** The ES256 private key of TEST_CERTIFICATE. */
export function certificatePrivateKey (): Promise<CryptoKey> {
  return importPKCS8(TEST_CERTIFICATE_KEY, 'ES256')
}

export interface JwksServer {
  readonly url: URL
  /** JWKS documents served so far. */
  readonly requests: number
  /** Replaces the document served from the next request on. */
  setKeys (jwks: JSONWebKeySet): void
  /** Serves this status and raw body from the next request on (a broken JWKS endpoint). */
  setResponse (status: number, body: string): void
  /** Delay before each answer, so concurrent callers overlap one fetch. */
  delayMs: number
  close (): Promise<void>
}

/** Serves a JWKS over HTTP on 127.0.0.1 (a port the OS picks), counting requests. */
export async function startJwksServer (initial: JSONWebKeySet): Promise<JwksServer> {
  let response = { status: 200, body: JSON.stringify(initial) }
  let requests = 0
  const server: Server = createServer((_req, res) => {
    requests++
    const { status, body } = response
    const answer = (): void => {
      res.writeHead(status, { 'content-type': 'application/jwk-set+json' }).end(body)
    }
    if (jwks.delayMs > 0) setTimeout(answer, jwks.delayMs)
    else answer()
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const { port } = server.address() as AddressInfo
  const jwks: JwksServer = {
    url: new URL(`http://127.0.0.1:${port}/.well-known/jwks.json`),
    get requests () { return requests },
    setKeys (next) { response = { status: 200, body: JSON.stringify(next) } },
    setResponse (status, body) { response = { status, body } },
    delayMs: 0,
    close () {
      return new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
    },
  }
  return jwks
}
