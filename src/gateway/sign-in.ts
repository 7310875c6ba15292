// Where a browser without a valid token is sent to sign in. signInLocation is the one place
// that decides it: podgate's own login (/.podgate/login, with PODGATE_OIDC_ISSUER), else
// PODGATE_SIGNIN_URL; config refuses both at once.
import type { IncomingMessage } from 'node:http'
import type { AuthConfig, SignInConfig } from '../config.ts'
import { signInPath } from '../auth/oidc-paths.ts'
import { requestOrigin } from './headers.ts'

export interface SignInOptions {
  readonly signIn: SignInConfig | undefined
  /** PODGATE_TRUST_PROXY: the original URL's scheme and host come from X-Forwarded-Proto/-Host. */
  readonly trustProxy: boolean
  /** podgate's own OpenID Connect login, when configured: browsers go to /.podgate/login. */
  readonly oidc?: AuthConfig['oidc']
}

const ABSOLUTE_HTTP = /^https?:\/\//i

/**
 * The Location for a browser navigation whose token is missing or refused: the sign-in URL
 * with the URL the browser asked for in its redirect parameter. undefined: answer 401.
 */
export function signInLocation (req: Pick<IncomingMessage, 'url' | 'headers' | 'socket'>, options: SignInOptions): string | undefined {
  const own = signInPath({ oidc: options.oidc }, req.url ?? '/')
  if (own !== undefined) return own
  const signIn = options.signIn
  if (signIn === undefined) return undefined
  return withQueryParam(signIn.url, signIn.redirectParam, originalUrl(req, options.trustProxy))
}

/**
 * The URL as the client addressed podgate: scheme and host by the trust-proxy rules
 * (requestOrigin, the view the pod and PODGATE_AUTH_URL get), then the target as sent.
 */
export function originalUrl (req: Pick<IncomingMessage, 'url' | 'headers' | 'socket'>, trustProxy: boolean): string {
  const target = req.url ?? '/'
  // A request refused before checkRequest rewrote its absolute-form target carries its own origin.
  if (ABSOLUTE_HTTP.test(target)) return target
  return `${requestOrigin(req, trustProxy)}${target}`
}

/** `url` with `name=value` (percent-encoded) added to its query; the query it has, and any fragment, kept byte for byte. */
export function withQueryParam (url: URL, name: string, value: string): string {
  const href = url.href
  const hash = href.indexOf('#')
  const base = hash === -1 ? href : href.slice(0, hash)
  const separator = url.search !== '' ? '&' : base.endsWith('?') ? '' : '?'
  return `${base}${separator}${name}=${encodeURIComponent(value)}${hash === -1 ? '' : href.slice(hash)}`
}
