// What the gateway needs from token verification.
import type { IncomingHttpHeaders } from 'node:http'

export interface Identity {
  /** The user id: a DNS-1123 label, safe to use in resource names. */
  readonly user: string
  /** When the token stops being valid, in epoch milliseconds. */
  readonly expiresAt: number
  /** The tenant claim (PODGATE_TENANT_CLAIM), a DNS-1123 label; only present when that check is on. */
  readonly tenant?: string
  /** When the credential was issued (a JWT's `iat`), in epoch milliseconds; revocation compares it. */
  readonly issuedAt?: number
}

/** The request a credential came with, for a verifier that asks another service (PODGATE_AUTH_URL). */
export interface CredentialRequest {
  readonly headers: IncomingHttpHeaders
  readonly method?: string | undefined
  readonly url?: string | undefined
}

export interface TokenVerifier {
  /** Verified-token cache lookup without verification work; undefined on a miss. */
  cached (token: string): Identity | undefined
  /**
   * Verifies the token; rejects with AuthError when it is refused, and with NotReadyError (503)
   * only when the verdict cannot be had right now (an external verifier that did not answer).
   */
  verify (token: string, request?: CredentialRequest): Promise<Identity>
  /**
   * From now on refuses tokens of `user` issued before `notBeforeS` (epoch seconds; a JWT
   * without `iat` too), cached ones included; a later mark replaces an earlier one.
   */
  revoke (user: string, notBeforeS: number): void
  close (): void
}
