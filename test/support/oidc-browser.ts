// A browser for the login tests, as far as a login needs one: fetch() with redirects taken one
// at a time, and a cookie jar that keeps cookies per host name (not port, as browsers do), by
// path, and drops them on Max-Age=0. HttpOnly, SameSite and Secure are recorded for the tests to
// check, not enforced.

export interface StoredCookie {
  readonly name: string
  readonly value: string
  readonly host: string
  readonly path: string
  /** The attributes as sent, lower-cased names: `httponly`, `samesite`, `secure`, `max-age`, `path`. */
  readonly attributes: Readonly<Record<string, string>>
}

export interface Hop {
  readonly url: string
  readonly status: number
  readonly location: string | undefined
  readonly setCookies: readonly string[]
  readonly body: string
  readonly headers: Headers
}

export class TestBrowser {
  readonly #jar = new Map<string, StoredCookie>()

  /** One request, no redirect followed; its Set-Cookie headers go into the jar. */
  async request (url: string, init: { method?: string, headers?: Record<string, string>, body?: string } = {}): Promise<Hop> {
    const target = new URL(url)
    const headers = new Headers(init.headers)
    const cookie = this.cookieHeader(target)
    if (cookie !== '' && !headers.has('cookie')) headers.set('cookie', cookie)
    const response = await fetch(target, { method: init.method ?? 'GET', headers, body: init.body, redirect: 'manual' })
    const setCookies = response.headers.getSetCookie()
    for (const line of setCookies) this.store(target, line)
    const location = response.headers.get('location') ?? undefined
    return {
      url: target.href,
      status: response.status,
      location: location === undefined ? undefined : new URL(location, target).href,
      setCookies,
      body: await response.text(),
      headers: response.headers,
    }
  }

  /** GETs `url` and every redirect after it (at most `max`), returning each hop. */
  async follow (url: string, max = 10): Promise<Hop[]> {
    const hops: Hop[] = []
    let next: string | undefined = url
    while (next !== undefined) {
      if (hops.length === max) throw new Error(`more than ${max} redirects from ${url}`)
      const hop = await this.request(next)
      hops.push(hop)
      next = hop.status >= 300 && hop.status < 400 ? hop.location : undefined
    }
    return hops
  }

  /** The Cookie header a browser would send to `url`. */
  cookieHeader (url: URL): string {
    return [...this.#jar.values()]
      .filter((cookie) => cookie.host === url.hostname && pathMatches(url.pathname, cookie.path))
      .map((cookie) => `${cookie.name}=${cookie.value}`)
      .join('; ')
  }

  /** The cookie named `name` for `url`'s host, whatever its path. */
  cookie (url: string, name: string): StoredCookie | undefined {
    const host = new URL(url).hostname
    return [...this.#jar.values()].find((cookie) => cookie.host === host && cookie.name === name)
  }

  cookies (url: string): StoredCookie[] {
    const host = new URL(url).hostname
    return [...this.#jar.values()].filter((cookie) => cookie.host === host)
  }

  /** Stores a Set-Cookie line as if `url` had sent it (planting or altering a cookie). */
  store (url: URL, line: string): void {
    const [pair = '', ...rest] = line.split(';')
    const eq = pair.indexOf('=')
    const name = pair.slice(0, eq).trim()
    const value = pair.slice(eq + 1).trim()
    const attributes: Record<string, string> = {}
    for (const part of rest) {
      const at = part.indexOf('=')
      const key = (at === -1 ? part : part.slice(0, at)).trim().toLowerCase()
      attributes[key] = at === -1 ? '' : part.slice(at + 1).trim()
    }
    const path = attributes.path ?? defaultPath(url.pathname)
    const key = `${url.hostname}|${path}|${name}`
    if (attributes['max-age'] !== undefined && Number(attributes['max-age']) <= 0) {
      this.#jar.delete(key)
      return
    }
    this.#jar.set(key, { name, value, host: url.hostname, path, attributes })
  }
}

function pathMatches (requestPath: string, cookiePath: string): boolean {
  if (requestPath === cookiePath) return true
  if (!requestPath.startsWith(cookiePath)) return false
  return cookiePath.endsWith('/') || requestPath.charAt(cookiePath.length) === '/'
}

function defaultPath (path: string): string {
  const last = path.lastIndexOf('/')
  return last <= 0 ? '/' : path.slice(0, last)
}
