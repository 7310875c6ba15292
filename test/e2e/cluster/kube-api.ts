// A small JSON client for the end-to-end tests: one undici Agent per identity (a client
// certificate or a bearer token), TLS verified against the test cluster's CA.
import { Agent, request } from 'undici'

export interface KubeIdentity {
  /** https://127.0.0.1:<port> */
  readonly server: string
  readonly ca: string
  readonly cert?: string
  readonly key?: string
  readonly token?: string
}

export interface KubeResponse {
  readonly status: number
  readonly body: unknown
  readonly text: string
}

export const MERGE_PATCH = 'application/merge-patch+json'
export const APPLY_PATCH = 'application/apply-patch+yaml'

const DEFAULT_TIMEOUT_MS = 10_000

/** A non-2xx answer where a 2xx was expected, with the API server's own message. */
export class KubeApiError extends Error {
  readonly status: number
  constructor (method: string, path: string, response: KubeResponse) {
    const message = (response.body as { message?: string } | undefined)?.message ?? response.text.slice(0, 300)
    super(`${method} ${path}: ${response.status} ${message}`)
    this.name = 'KubeApiError'
    this.status = response.status
  }
}

export class KubeApi {
  readonly identity: KubeIdentity
  readonly #agent: Agent
  readonly #authorization: string | undefined

  constructor (identity: KubeIdentity) {
    if (!/^https:\/\/[^/]+$/.test(identity.server)) throw new TypeError(`server: expected https://host:port, got ${JSON.stringify(identity.server)}`)
    if ((identity.cert === undefined) !== (identity.key === undefined)) throw new TypeError('cert and key: give both or neither')
    this.identity = identity
    this.#agent = new Agent({
      connect: { ca: identity.ca, ...(identity.cert === undefined ? {} : { cert: identity.cert, key: identity.key }) },
      keepAliveTimeout: 2_000,
    })
    this.#authorization = identity.token === undefined ? undefined : `Bearer ${identity.token}`
  }

  /** Any answer, 2xx or not; throws only when there is no answer (refused, timed out). */
  async request (method: string, path: string, options: { body?: unknown, contentType?: string, timeoutMs?: number } = {}): Promise<KubeResponse> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS
    const headers: Record<string, string> = { accept: 'application/json' }
    if (this.#authorization !== undefined) headers.authorization = this.#authorization
    let payload: string | undefined
    if (options.body !== undefined) {
      headers['content-type'] = options.contentType ?? 'application/json'
      payload = typeof options.body === 'string' ? options.body : JSON.stringify(options.body)
    }
    const response = await request(this.identity.server + path, {
      method: method as 'GET',
      headers,
      body: payload,
      dispatcher: this.#agent,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs),
    })
    const text = await response.body.text()
    let body: unknown
    try {
      body = text === '' ? undefined : JSON.parse(text)
    } catch {
      body = undefined
    }
    return { status: response.statusCode, body, text }
  }

  /** The parsed body of a 2xx answer; KubeApiError otherwise. */
  async expect<T = Record<string, unknown>> (method: string, path: string, options: { body?: unknown, contentType?: string, timeoutMs?: number } = {}): Promise<T> {
    const response = await this.request(method, path, options)
    if (response.status < 200 || response.status > 299) throw new KubeApiError(method, path, response)
    return response.body as T
  }

  get<T = Record<string, unknown>> (path: string): Promise<T> {
    return this.expect<T>('GET', path)
  }

  close (): Promise<void> {
    return this.#agent.close()
  }
}
