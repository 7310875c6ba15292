// Keys and pre-minted tokens for the load: minting stays out of the measured loop.
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { SignJWT } from 'jose'

const TOKEN_TTL = '2h'

export interface SigningKey {
  readonly alg: 'HS256' | 'ES256'
  /** What the proxy is configured with: the shared secret, or the public key as PEM. */
  readonly verifier: string
  readonly sign: (user: string, id: string) => Promise<string>
}

export function hs256Key (): SigningKey {
  const secret = randomBytes(32).toString('hex')
  const key = new TextEncoder().encode(secret)
  return { alg: 'HS256', verifier: secret, sign: async (user, id) => await mint(key, 'HS256', user, id) }
}

export function es256Key (): SigningKey {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString()
  return { alg: 'ES256', verifier: pem, sign: async (user, id) => await mint(privateKey, 'ES256', user, id) }
}

async function mint (key: Uint8Array | KeyObject, alg: string, user: string, id: string): Promise<string> {
  return await new SignJWT({}).setProtectedHeader({ alg, typ: 'JWT' }).setSubject(user).setJti(id).setIssuedAt().setExpirationTime(TOKEN_TTL).sign(key)
}

/** A credential that is not a JWT (no dots): only an auth service can say whose it is. */
export function opaqueToken (): string {
  return randomBytes(32).toString('base64url')
}

export function bearer (token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` }
}
