// The cookies of podgate's login: every one HttpOnly and SameSite=Lax (sent on the top-level
// redirect back from the provider, not on cross-site subrequests), Secure whenever the login's
// callback URL is https.
import { AuthError, BadRequestError } from '../errors.ts'
import { cookieValue } from './extract.ts'

export interface CookieOptions {
  readonly path: string
  /** 0 deletes the cookie. */
  readonly maxAgeS: number
  readonly secure: boolean
}

/** One Set-Cookie value. `value` must already be cookie-safe (a JWT, a JWE: base64url and dots). */
export function setCookie (name: string, value: string, options: CookieOptions): string {
  return `${name}=${value}; Path=${options.path}; Max-Age=${options.maxAgeS}; HttpOnly; SameSite=Lax${options.secure ? '; Secure' : ''}`
}

/** The Set-Cookie value that deletes `name` at `path`. */
export function clearCookie (name: string, path: string, secure: boolean): string {
  return setCookie(name, '', { path, maxAgeS: 0, secure })
}

/**
 * The value of cookie `name` in the request's Cookie header, or undefined. Two copies with
 * different values (a sibling subdomain can plant one) are a BadRequestError, never a guess.
 */
export function readCookie (header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined
  try {
    return cookieValue(header, name)
  } catch (err) {
    if (err instanceof AuthError) throw new BadRequestError(`more than one ${name} cookie, with different values`)
    throw err
  }
}
