// Whether a request is a person's browser navigating (pages and the sign-in redirect) or a
// program (JSON). Read only on the error path; the forwarding path never looks.
import type { IncomingHttpHeaders } from 'node:http'

/** Media types a browser asks for when it navigates to a document. */
const HTML_TYPES = new Set(['text/html', 'application/xhtml+xml'])

/**
 * A browser navigation: GET or HEAD, an Accept that prefers HTML, not an XMLHttpRequest, not a
 * CORS fetch, and (when the browser says) aimed at a document. Everything else is a program.
 */
export function isNavigation (req: { readonly method?: string | undefined, readonly headers: IncomingHttpHeaders }): boolean {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false
  const headers = req.headers
  if (!prefersHtml(headers.accept)) return false
  if (lower(headers['x-requested-with']) === 'xmlhttprequest') return false
  if (lower(headers['sec-fetch-mode']) === 'cors') return false
  const dest = lower(headers['sec-fetch-dest'])
  return dest === undefined || dest === 'document' || dest === 'empty'
}

/**
 * Whether an Accept header ranks HTML at least as high as anything else it names, and above
 * JSON: a browser's `text/html,…,image/avif,…` does; `application/json, text/html` and the bare
 * wildcard of curl and fetch() do not. Wildcards never count as asking for HTML.
 */
export function prefersHtml (accept: string | undefined): boolean {
  if (accept === undefined || !/html/i.test(accept)) return false
  let html = 0
  let best = 0
  let json = 0
  for (const range of accept.split(',')) {
    const [type = '', ...params] = range.split(';')
    const name = type.trim().toLowerCase()
    if (name === '' || name.includes('*')) continue
    const q = quality(params)
    if (HTML_TYPES.has(name)) html = Math.max(html, q)
    else if (name === 'application/json' || name.endsWith('+json')) json = Math.max(json, q)
    best = Math.max(best, q)
  }
  return html > 0 && html >= best && html > json
}

function quality (params: readonly string[]): number {
  for (const param of params) {
    const eq = param.indexOf('=')
    if (eq === -1 || param.slice(0, eq).trim().toLowerCase() !== 'q') continue
    const q = Number(param.slice(eq + 1).trim())
    return Number.isFinite(q) && q >= 0 && q <= 1 ? q : 0
  }
  return 1
}

function lower (value: string | string[] | undefined): string | undefined {
  const text = Array.isArray(value) ? value[0] : value
  return text?.trim().toLowerCase()
}
