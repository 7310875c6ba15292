// What podgate refuses before it authenticates or forwards a request: targets and header
// sets that RFC 9112 calls invalid, that undici would refuse to send (which would surface
// as a 502 blamed on the pod), or that are ambiguous about who is asking. One pass over
// the raw headers; nothing is allocated for an ordinary request.
import type { IncomingMessage } from 'node:http'
import { AuthError, BadRequestError, TooManyHeadersError, type PodgateError } from '../errors.ts'

/** RFC 3986 host (reg-name with percent-encoding and sub-delims, or an IP literal), then an optional port. */
const HOST = /^(?:\[[0-9A-Fa-f:.]+(?:%25[A-Za-z0-9._~-]+)?\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]*)?$/
const ABSOLUTE_HTTP = /^https?:\/\//i

/**
 * The refusal for `req`, or undefined when it may go on. An absolute-form target
 * (`GET http://host/path`) is rewritten to origin-form with its authority as the Host
 * (RFC 9112 §3.2.2), so the pod always sees a path.
 */
export function checkRequest (req: IncomingMessage, maxHeaders: number): PodgateError | undefined {
  const raw = req.rawHeaders
  if (raw.length > maxHeaders * 2) return new TooManyHeadersError(`more than ${maxHeaders} request header fields`)
  let hostAt = -1
  let authorization: string | undefined
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    // Lengths first: only two names matter here, and most headers are neither.
    if (name.length === 4 && name.toLowerCase() === 'host') {
      if (hostAt !== -1) return new BadRequestError('more than one Host header')
      hostAt = i + 1
    } else if (name.length === 13 && name.toLowerCase() === 'authorization') {
      const value = raw[i + 1] as string
      if (authorization === undefined) authorization = value
      else if (value !== authorization) return new AuthError('ambiguous', 'more than one Authorization header, with different values')
    }
  }
  if (hostAt !== -1 && !HOST.test(raw[hostAt] as string)) return new BadRequestError('invalid Host header')
  const url = req.url ?? ''
  if (url.charCodeAt(0) === 0x2f) return undefined // '/': origin-form, the usual case
  return absoluteForm(req, url, hostAt)
}

function absoluteForm (req: IncomingMessage, url: string, hostAt: number): BadRequestError | undefined {
  if (!ABSOLUTE_HTTP.test(url)) return new BadRequestError('request target must be a path or an http(s) URL')
  const start = url.indexOf('//') + 2
  let end = start
  while (end < url.length && url[end] !== '/' && url[end] !== '?' && url[end] !== '#') end++
  const authority = url.slice(start, end)
  if (authority === '' || authority.includes('@') || !HOST.test(authority)) return new BadRequestError('invalid authority in the request target')
  const rest = url.slice(end)
  req.url = rest === '' || rest[0] !== '/' ? `/${rest}` : rest
  // The target's authority replaces any Host the client sent (RFC 9112 §3.2.2).
  if (hostAt === -1) req.rawHeaders.push('Host', authority)
  else req.rawHeaders[hostAt] = authority
  req.headers.host = authority
  return undefined
}
