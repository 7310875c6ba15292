// The path prefix podgate keeps for itself on the gateway port, the login's paths under it,
// and the check of where a login may return to. Nothing under /.podgate/ is ever forwarded
// to a pod. Pure functions: the gateway and the sign-in redirect use them without openid-client.
import type { AuthConfig } from '../config.ts'

export const RESERVED_PREFIX = '/.podgate/'
export const LOGIN_PATH = '/.podgate/login'
export const CALLBACK_PATH = '/.podgate/callback'
export const LOGOUT_PATH = '/.podgate/logout'

const RESERVED_ROOT = '/.podgate'
const SLASH = 0x2f
const QUESTION = 0x3f
const MAX_RETURN_PATH = 2048
const PLACEHOLDER_ORIGIN = 'http://podgate.invalid'
/** Backslashes (browsers read `/\host` as `//host`), whitespace and control characters anywhere. */
const UNSAFE_CHARACTERS = /[\\\s\p{Cc}]/u
/** An encoded `/` or `\` right after the first `/`: `//host` to anything that decodes before redirecting. */
const ENCODED_SECOND_SLASH = /^\/(?:%2f|%5c)/i

/** Whether a request target (origin-form, as in `req.url`) is podgate's own: `/.podgate` or anything under `/.podgate/`. */
export function isReservedPath (url: string | undefined): boolean {
  if (url === undefined || !url.startsWith(RESERVED_ROOT)) return false
  const next = url.charCodeAt(RESERVED_ROOT.length)
  return Number.isNaN(next) || next === SLASH || next === QUESTION
}

/**
 * Where to send a browser that needs to sign in, when podgate's own OpenID Connect login is
 * configured: `/.podgate/login?rd=<returnTo>` (returnTo: the path and query it asked for).
 * undefined when it is not, so a caller can fall back to another sign-in URL.
 */
export function signInPath (auth: Pick<AuthConfig, 'oidc'>, returnTo: string): string | undefined {
  if (auth.oidc === undefined) return undefined
  return `${LOGIN_PATH}?rd=${encodeURIComponent(safeReturnPath(returnTo))}`
}

/**
 * `rd` if it is a path on this host, normalised; else `/`. Only `/…` qualifies: never
 * `//host`, `/\host`, an absolute URL, an encoded second slash, anything with a space,
 * control character or backslash, dot segments that climb to `//`, or podgate's own paths.
 */
export function safeReturnPath (rd: unknown): string {
  if (typeof rd !== 'string' || rd.length > MAX_RETURN_PATH) return '/'
  if (rd.charCodeAt(0) !== SLASH || rd.charCodeAt(1) === SLASH || UNSAFE_CHARACTERS.test(rd)) return '/'
  let url: URL
  try {
    url = new URL(rd, PLACEHOLDER_ORIGIN)
  } catch {
    return '/'
  }
  if (url.origin !== PLACEHOLDER_ORIGIN) return '/'
  const path = `${url.pathname}${url.search}${url.hash}`
  // Checked again after normalisation: `/..//host` becomes `//host`.
  if (path.charCodeAt(1) === SLASH || ENCODED_SECOND_SLASH.test(path) || isReservedPath(path)) return '/'
  return path
}
