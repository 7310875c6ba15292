// One login in progress, kept by the browser: state, nonce, PKCE verifier, where to return and
// the redirect_uri sent, sealed (AES-256-GCM, jose's dir JWE) in a cookie named after the state.
// No server-side store, so any replica or worker can finish the flow, and two tabs logging in at
// once each have their own cookie.
import { hkdfSync } from 'node:crypto'
import { EncryptJWT, jwtDecrypt } from 'jose'

export interface LoginFlow {
  readonly state: string
  readonly nonce: string
  readonly codeVerifier: string
  /** Where the browser goes after the login: a path on this host (safeReturnPath). */
  readonly returnTo: string
  /** The redirect_uri of the authorization request; the code exchange must repeat it. */
  readonly redirectUri: string
}

/** How long a login may take from /.podgate/login to the callback. */
export const FLOW_TTL_S = 600
const FLOW_COOKIE_PREFIX = 'podgate-oidc-'
/** What openid-client's randomState() makes (43 base64url characters), with room for others. */
const STATE = /^[A-Za-z0-9_-]{16,128}$/
const KEY_INFO = 'podgate oidc login flow cookie v1'

/** The cookie that carries the flow of `state`, or undefined when `state` cannot be one of podgate's. */
export function flowCookieName (state: unknown): string | undefined {
  return typeof state === 'string' && STATE.test(state) ? `${FLOW_COOKIE_PREFIX}${state}` : undefined
}

/**
 * The flow cookies' key: derived from the session-signing secret (HKDF-SHA256) so there is no
 * second secret to configure, and distinct from it so a flow cookie is never a session token.
 */
export function flowKey (secret: Uint8Array): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', secret, new Uint8Array(0), KEY_INFO, 32))
}

export async function sealFlow (flow: LoginFlow, key: Uint8Array, nowMs: number): Promise<string> {
  const now = Math.floor(nowMs / 1000)
  return await new EncryptJWT({ ...flow })
    .setProtectedHeader({ alg: 'dir', enc: 'A256GCM' })
    .setIssuedAt(now)
    .setExpirationTime(now + FLOW_TTL_S)
    .encrypt(key)
}

/** The flow sealed in `value`, or undefined when it was not sealed with `key`, was changed, or has expired. */
export async function openFlow (value: string, key: Uint8Array, nowMs: number): Promise<LoginFlow | undefined> {
  try {
    const { payload } = await jwtDecrypt(value, key, {
      keyManagementAlgorithms: ['dir'],
      contentEncryptionAlgorithms: ['A256GCM'],
      currentDate: new Date(nowMs),
      clockTolerance: 0,
      requiredClaims: ['exp'],
    })
    const { state, nonce, codeVerifier, returnTo, redirectUri } = payload
    if (typeof state !== 'string' || typeof nonce !== 'string' || typeof codeVerifier !== 'string' || typeof returnTo !== 'string' || typeof redirectUri !== 'string') return undefined
    return { state, nonce, codeVerifier, returnTo, redirectUri }
  } catch {
    return undefined
  }
}
