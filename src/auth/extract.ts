// Finds the token in a request: `Authorization: Bearer <token>` first, then the session
// cookie. Runs on every request, so it scans with indexOf and allocates only the result.
import type { IncomingHttpHeaders } from 'node:http'
import { AuthError } from '../errors.ts'

const SPACE = 0x20
const TAB = 0x09
const SEMICOLON = 0x3b
const EQUALS = 0x3d
const QUOTE = 0x22

/**
 * The bearer token or the `cookieName` cookie, or undefined when neither carries one.
 * Throws AuthError('too_large') when the token found is longer than `maxBytes`, and
 * AuthError('ambiguous') when the cookie is there twice with different values.
 */
export function extractToken (headers: IncomingHttpHeaders, cookieName: string, maxBytes: number): string | undefined {
  const authorization = headers.authorization
  if (typeof authorization === 'string') {
    const token = bearerToken(authorization)
    if (token !== undefined) return checkSize(token, maxBytes)
  }
  const cookie = headers.cookie
  if (typeof cookie === 'string') {
    const token = cookieValue(cookie, cookieName)
    if (token !== undefined) return checkSize(token, maxBytes)
  }
  return undefined
}

function checkSize (token: string, maxBytes: number): string {
  // Tokens are ASCII, so characters are bytes; anything else fails verification anyway.
  if (token.length > maxBytes) throw new AuthError('too_large', `token is ${token.length} bytes, more than the ${maxBytes} allowed`)
  return token
}

/** The credentials of a `Bearer` authorization (scheme matched case-insensitively), else undefined. */
export function bearerToken (value: string): string | undefined {
  let start = skipWhitespace(value, 0)
  if (value.length < start + 7 || !isBearerScheme(value, start)) return undefined
  start += 6
  const code = value.charCodeAt(start)
  if (code !== SPACE && code !== TAB) return undefined
  start = skipWhitespace(value, start)
  const end = trimEnd(value, start, value.length)
  return end > start ? value.slice(start, end) : undefined
}

function isBearerScheme (value: string, at: number): boolean {
  // ASCII letters only: OR-ing 0x20 lowercases them and leaves no other character equal.
  return (value.charCodeAt(at) | 0x20) === 0x62 && // b
    (value.charCodeAt(at + 1) | 0x20) === 0x65 && // e
    (value.charCodeAt(at + 2) | 0x20) === 0x61 && // a
    (value.charCodeAt(at + 3) | 0x20) === 0x72 && // r
    (value.charCodeAt(at + 4) | 0x20) === 0x65 && // e
    (value.charCodeAt(at + 5) | 0x20) === 0x72 // r
}

/**
 * The value of the cookie named exactly `name` in a Cookie header, else undefined. Two
 * copies with different values (a sibling subdomain can plant one: cookie tossing) are
 * refused rather than resolved by order, which the attacker may control.
 */
export function cookieValue (header: string, name: string): string | undefined {
  if (name.length === 0) return undefined
  let found: string | undefined
  for (let at = header.indexOf(name); at !== -1; at = header.indexOf(name, at + 1)) {
    // A match counts only as a whole name: `xsession=` or `session2=` must not match `session`.
    if (header.charCodeAt(at + name.length) !== EQUALS || !startsCookiePair(header, at)) continue
    let start = skipWhitespace(header, at + name.length + 1)
    let end = header.indexOf(';', start)
    end = trimEnd(header, start, end === -1 ? header.length : end)
    // RFC 6265 allows a value wrapped in double quotes.
    if (end - start >= 2 && header.charCodeAt(start) === QUOTE && header.charCodeAt(end - 1) === QUOTE) {
      start++
      end--
    }
    const value = end > start ? header.slice(start, end) : ''
    if (found === undefined) found = value
    else if (value !== found) throw new AuthError('ambiguous', `more than one ${name} cookie, with different values`)
  }
  return found === '' ? undefined : found
}

/** True when position `at` is the start of a name: the header start or after `;` and whitespace. */
function startsCookiePair (header: string, at: number): boolean {
  let i = at - 1
  while (i >= 0) {
    const code = header.charCodeAt(i)
    if (code === SEMICOLON) return true
    if (code !== SPACE && code !== TAB) return false
    i--
  }
  return true
}

function skipWhitespace (value: string, from: number): number {
  let i = from
  while (i < value.length) {
    const code = value.charCodeAt(i)
    if (code !== SPACE && code !== TAB) break
    i++
  }
  return i
}

function trimEnd (value: string, start: number, end: number): number {
  let i = end
  while (i > start) {
    const code = value.charCodeAt(i - 1)
    if (code !== SPACE && code !== TAB) break
    i--
  }
  return i
}
