// GET /.well-known/jwks.json on the admin port: the public keys pods verify the identity
// header with (the signing key and PODGATE_IDENTITY_PUBLISHED_KEYS). Never a private member.
import type { AdminApp } from '../gateway/admin.ts'
import type { IdentityConfig } from './identity-config.ts'

export const JWKS_PATH = '/.well-known/jwks.json'
/** Keys change only with a rollout; a pod that meets an unknown kid refetches anyway (jose, PyJWKClient). */
const CACHE_CONTROL = 'public, max-age=300'

/** Registers the JWKS route when the identity header is on; nothing otherwise. */
export function registerIdentityKeys (app: AdminApp, identity: IdentityConfig | undefined): void {
  if (identity === undefined) return
  const body = JSON.stringify({ keys: identity.published })
  app.get(JWKS_PATH, (_request, reply) => reply.header('cache-control', CACHE_CONTROL).type('application/jwk-set+json').send(body))
}
