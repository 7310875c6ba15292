// Header hygiene between client and user pod: hop-by-hop headers never cross, the identity
// header is only ever the one podgate sets, and X-Forwarded-* describe the real client.
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders } from 'node:http'
import { bearerToken } from '../auth/extract.ts'
import { DEFAULT_IDENTITY_HEADER } from '../auth/identity-config.ts'
import type { IdentitySigner } from '../auth/identity-token.ts'

/** RFC 9110 §7.6.1 connection-specific fields, plus ones undici refuses to be given. */
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection',
  'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect', 'http2-settings',
])

/** Headers about the client's connection: podgate sets them, and believes a client's only behind a trusted proxy. */
const FORWARDED = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'forwarded', 'x-real-ip', 'true-client-ip'])
/** Framing and routing headers a client's Connection header may not remove. */
const KEPT = new Set(['host', 'content-length'])

export interface ForwardingOptions {
  /** Lower-case name of the identity header (default x-user-id). */
  readonly userHeader: string
  /** Whether X-Forwarded-* from the client (an Ingress in front) are believed and extended. */
  readonly trustProxy: boolean
  /** podgate's session cookie: consumed here, never shown to the pod unless forwardCredentials. */
  readonly cookieName: string
  /** Pass the bearer Authorization header and the session cookie on unchanged (PODGATE_FORWARD_CREDENTIALS). */
  readonly forwardCredentials: boolean
  /** Signs the identity header pods can verify (PODGATE_IDENTITY_KEY); off: only inbound copies of its default name are dropped. */
  readonly identity?: IdentitySigner | undefined
}

/**
 * Builds the upstream request headers as a flat [name, value, …] list from the client's
 * raw headers, podgate's own first: a server that keeps only its first N headers still
 * sees the identity. Every inbound header that a server could take for the identity header
 * or a forwarding header (any case, `_` for `-`: CGI and WSGI fold both into one key) is
 * dropped, and so is podgate's own credential (a bearer Authorization, the session
 * cookie) unless `forwardCredentials`: the pod learns who the user is from the identity
 * header, and a token it never sees it cannot leak.
 */
export function upstreamHeaders (req: IncomingMessage, user: string, options: ForwardingOptions): string[] {
  const raw = req.rawHeaders
  const extraHop = connectionTokens(req.headers.connection)
  const trustProxy = options.trustProxy
  const userHeader = options.userHeader
  const stripCredentials = !options.forwardCredentials
  // The identity headers' names compared the way a CGI server would see them.
  const userKey = userHeader.includes('_') ? userHeader.replaceAll('_', '-') : userHeader
  const identity = options.identity
  const identityKey = identity === undefined ? DEFAULT_IDENTITY_HEADER : identity.header.includes('_') ? identity.header.replaceAll('_', '-') : identity.header
  let forwardedFor: string | undefined
  let forwardedProto: string | undefined
  let forwardedHost: string | undefined
  // Room for podgate's four at the front, filled in once the client's are read.
  const out: string[] = ['x-forwarded-for', '', 'x-forwarded-proto', '', 'x-forwarded-host', '', userHeader, user]
  if (identity !== undefined) out.push(identity.header, identity.token(user, req.method ?? 'GET', req.url ?? '/'))
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string
    const value = raw[i + 1] as string
    let lower = name.toLowerCase()
    if (HOP_BY_HOP.has(lower) || (extraHop !== undefined && extraHop.has(lower))) continue
    if (lower.includes('_')) {
      // Only the exact name is ever believed; a look-alike of a reserved one goes.
      lower = lower.replaceAll('_', '-')
      if (lower === userKey || lower === identityKey || FORWARDED.has(lower)) continue
      out.push(name, value)
      continue
    }
    if (lower === userKey || lower === identityKey) continue
    if (lower === 'authorization' && stripCredentials && bearerToken(value) !== undefined) continue
    if (lower === 'cookie' && stripCredentials) {
      const rest = withoutCookie(value, options.cookieName)
      if (rest !== '') out.push(name, rest)
      continue
    }
    if (FORWARDED.has(lower)) {
      if (!trustProxy) continue
      if (lower === 'x-forwarded-for') forwardedFor = forwardedFor === undefined ? value : `${forwardedFor}, ${value}`
      else if (lower === 'x-forwarded-proto') forwardedProto ??= value
      else if (lower === 'x-forwarded-host') forwardedHost ??= value
      else out.push(name, value)
      continue
    }
    out.push(name, value)
  }
  const socket = req.socket
  const remote = socket.remoteAddress ?? ''
  out[1] = forwardedFor === undefined ? remote : `${forwardedFor}, ${remote}`
  out[3] = forwardedProto ?? ((socket as { encrypted?: boolean }).encrypted === true ? 'https' : 'http')
  out[5] = forwardedHost ?? req.headers.host ?? ''
  return out
}

/**
 * `scheme://host` as the client addressed podgate: the first X-Forwarded-Proto and
 * X-Forwarded-Host when a trusted proxy set them (PODGATE_TRUST_PROXY), else the connection
 * and the Host header, the same view upstreamHeaders gives the pod.
 */
export function requestOrigin (req: { readonly headers: IncomingHttpHeaders, readonly socket?: unknown }, trustProxy: boolean): string {
  let proto: string | undefined
  let host: string | undefined
  if (trustProxy) {
    proto = firstItem(req.headers['x-forwarded-proto'])?.toLowerCase()
    if (proto !== 'http' && proto !== 'https') proto = undefined
    host = firstItem(req.headers['x-forwarded-host'])
  }
  proto ??= (req.socket as { encrypted?: boolean } | undefined)?.encrypted === true ? 'https' : 'http'
  host ??= req.headers.host ?? ''
  return `${proto}://${host}`
}

/** The first comma-separated item of a header, trimmed; undefined when empty. */
function firstItem (value: string | string[] | undefined): string | undefined {
  const text = Array.isArray(value) ? value[0] : value
  if (text === undefined) return undefined
  const comma = text.indexOf(',')
  const item = (comma === -1 ? text : text.slice(0, comma)).trim()
  return item === '' ? undefined : item
}

/** Response headers from the user pod, minus the hop-by-hop ones. */
export function downstreamHeaders (headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const extraHop = connectionTokens(headers.connection)
  const out: OutgoingHttpHeaders = {}
  for (const name in headers) {
    if (HOP_BY_HOP.has(name) || (extraHop !== undefined && extraHop.has(name))) continue
    out[name] = headers[name]
  }
  return out
}

/** Header names listed in a Connection header (RFC 9110 §7.6.1), lower-cased. */
function connectionTokens (connection: string | string[] | undefined): Set<string> | undefined {
  if (connection === undefined) return undefined
  // What nearly every client and pod sends names no header: no list to split.
  if (typeof connection === 'string' && connection.length <= 10) {
    const only = connection.toLowerCase()
    if (only === 'keep-alive' || only === 'close') return undefined
  }
  const text = Array.isArray(connection) ? connection.join(',') : connection
  let tokens: Set<string> | undefined
  for (const token of text.split(',')) {
    const name = token.trim().toLowerCase()
    if (name === '' || name === 'close' || name === 'keep-alive' || name === 'upgrade' || KEPT.has(name)) continue
    tokens ??= new Set()
    tokens.add(name)
  }
  return tokens
}

/** The Cookie header without the `name` cookie (every copy); unchanged when absent. */
export function withoutCookie (header: string, name: string): string {
  if (!header.includes(name)) return header
  const kept: string[] = []
  for (const pair of header.split(';')) {
    const trimmed = pair.trim()
    if (trimmed === '') continue
    const eq = trimmed.indexOf('=')
    if ((eq === -1 ? trimmed : trimmed.slice(0, eq).trimEnd()) === name) continue
    kept.push(trimmed)
  }
  return kept.join('; ')
}
