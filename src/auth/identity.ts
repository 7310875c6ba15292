// What the gateway needs from token verification.

export interface Identity {
  /** The user id: a DNS-1123 label, safe to use in resource names. */
  readonly user: string
  /** When the token stops being valid, in epoch milliseconds. */
  readonly expiresAt: number
  /** The tenant claim (PODGATE_TENANT_CLAIM), a DNS-1123 label; only present when that check is on. */
  readonly tenant?: string
}

export interface TokenVerifier {
  /** Verified-token cache lookup without verification work; undefined on a miss. */
  cached (token: string): Identity | undefined
  /** Verifies the token; rejects with AuthError (never anything else) when it is refused. */
  verify (token: string): Promise<Identity>
  close (): void
}
