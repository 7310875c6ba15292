// A fake Kubernetes API server on 127.0.0.1 for tests that use the real
// @kubernetes/client-node: the REST shapes (lists, Status errors, watches as chunked JSON
// lines with bookmarks and 410 Gone), plus hooks that break it on purpose. Not modelled:
// field ownership (server-side apply merges and never reports conflicts, so `force` changes
// nothing), admission, validation beyond names, and namespaces as a precondition.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { parse as parseYaml } from 'yaml'
import { applyJsonPatch, isPlainObject, mergePatch, PatchError } from './fake-kube-patch.ts'
import {
  FakeKubeStore,
  type DeleteOptions, type ResourceRef, type SelectorOptions, type StoreOptions, type WatchDelivery,
} from './fake-kube-store.ts'
import { KubeStatusError, statusErrors, type KubeObject, type ResourceType, type ResourceTypeSpec } from './fake-kube-types.ts'

export { FakeKubeStore } from './fake-kube-store.ts'
export { KubeStatusError } from './fake-kube-types.ts'
export type { KubeObject, ObjectMeta, OwnerReference, ResourceType, ResourceTypeSpec } from './fake-kube-types.ts'
export { sliceFor, type SliceOptions } from './fake-kube-slices.ts'

export const VERBS = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete', 'deletecollection'] as const
export type Verb = typeof VERBS[number]

export interface FakeKubeOptions extends StoreOptions {
  /** When set, every request must carry `Authorization: Bearer <token>` (401 otherwise). */
  token?: string
  /** How often watches with allowWatchBookmarks get a BOOKMARK. Default 1000 ms. */
  bookmarkIntervalMs?: number
  /** Request bodies larger than this get 413. Default 16 MiB. */
  maxBodyBytes?: number
}

/** Which requests a failure rule applies to. */
export type RequestMatcher = (request: { method: string, path: string, verb: Verb | undefined }) => boolean

export interface InjectedError {
  /** HTTP method (GET, POST, …); any when absent. */
  method?: string
  /** Path prefix, e.g. `/apis/discovery.k8s.io/v1`; any when absent. */
  path?: string
  /** Kubernetes verb (list, watch, …); any when absent. */
  verb?: Verb
  status: number
  /** How many matching requests fail; unlimited when absent. */
  times?: number
  reason?: string
  message?: string
  /** Destroy the connection instead of answering. */
  reset?: boolean
}

interface FailureRule {
  readonly match: RequestMatcher
  readonly status: number
  readonly reason: string
  readonly message: string
  readonly reset: boolean
  remaining: number
}

interface OpenWatch {
  readonly response: ServerResponse
  readonly stop: () => void
  muted: boolean
}

interface Target {
  type: ResourceType
  namespace: string | undefined
  name: string | undefined
  subresource: string | undefined
}

const REASONS: Record<number, string> = {
  400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 405: 'MethodNotAllowed', 409: 'Conflict',
  410: 'Expired', 413: 'RequestEntityTooLarge', 415: 'UnsupportedMediaType', 422: 'Invalid', 429: 'TooManyRequests',
  500: 'InternalError', 503: 'ServiceUnavailable', 504: 'Timeout',
}

function reasonFor (status: number): string {
  return REASONS[status] ?? (status >= 500 ? 'InternalError' : 'BadRequest')
}

function isTrue (value: string | null): boolean {
  return value === 'true' || value === '1'
}

export class FakeKubeServer {
  readonly store: FakeKubeStore
  readonly counts: Record<Verb, number> = { get: 0, list: 0, watch: 0, create: 0, update: 0, patch: 0, delete: 0, deletecollection: 0 }
  /** Watch requests answered with a 410 Gone ERROR event. */
  goneWatches = 0
  readonly #token: string | undefined
  readonly #bookmarkIntervalMs: number
  readonly #maxBodyBytes: number
  readonly #rules: FailureRule[] = []
  readonly #watches = new Set<OpenWatch>()
  #server: Server | undefined
  #port = 0

  constructor (options: FakeKubeOptions = {}) {
    this.store = new FakeKubeStore(options)
    this.#token = options.token
    this.#bookmarkIntervalMs = options.bookmarkIntervalMs ?? 1000
    this.#maxBodyBytes = options.maxBodyBytes ?? 16 * 1024 * 1024
    if (!(this.#bookmarkIntervalMs > 0)) throw new TypeError('bookmarkIntervalMs must be positive')
  }

  /** Creates a server and starts it on 127.0.0.1, port 0. */
  static async start (options: FakeKubeOptions = {}): Promise<FakeKubeServer> {
    const server = new FakeKubeServer(options)
    await server.start()
    return server
  }

  get port (): number { return this.#port }
  get url (): string { return `http://127.0.0.1:${this.#port}` }
  get listening (): boolean { return this.#server !== undefined }
  get openWatches (): number { return this.#watches.size }

  /** Listens again on the port it had before (or a new one the first time). */
  async start (): Promise<void> {
    if (this.#server !== undefined) return
    const server = createServer((request, response) => { this.#handle(request, response) })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.#port, '127.0.0.1', () => {
        server.off('error', reject)
        resolve()
      })
    })
    this.#port = (server.address() as AddressInfo).port
    this.#server = server
  }

  /** Goes down like a crashed API server: stops listening and cuts every connection. */
  async stop (): Promise<void> {
    const server = this.#server
    if (server === undefined) return
    this.#server = undefined
    for (const watch of this.#watches) watch.stop()
    const closed = new Promise<void>((resolve) => { server.close(() => { resolve() }) })
    server.closeAllConnections()
    await closed
  }

  /** Destroys every open watch connection (clients see the stream break). */
  dropWatches (): number {
    const count = this.#watches.size
    for (const watch of [...this.#watches]) {
      watch.stop()
      watch.response.destroy()
    }
    return count
  }

  /** Ends every open watch cleanly, as the API server does when a watch times out. */
  endWatches (): number {
    const count = this.#watches.size
    for (const watch of [...this.#watches]) {
      watch.stop()
      watch.response.end()
    }
    return count
  }

  /** Open watches stay connected but send nothing more (no events, no bookmarks). */
  muteWatches (): number {
    for (const watch of this.#watches) watch.muted = true
    return this.#watches.size
  }

  /** Forgets history: the next watch from an older resourceVersion gets 410 Gone. */
  compact (): void { this.store.compact() }

  /**
   * Answers requests with `status` (503 by default) instead of serving them: the next `count`
   * requests, or every request the predicate accepts. Returns the function that lifts the rule.
   */
  refuse (what: number | RequestMatcher, options: { status?: number, reset?: boolean } = {}): () => void {
    const status = options.status ?? 503
    return this.#addRule({
      match: typeof what === 'number' ? () => true : what,
      status,
      reason: reasonFor(status),
      message: 'refused by the test',
      reset: options.reset ?? false,
      remaining: typeof what === 'number' ? what : Infinity,
    })
  }

  /** Fails matching requests with a Status of `status`; returns the function that lifts it. */
  injectError (error: InjectedError): () => void {
    return this.#addRule({
      match: ({ method, path, verb }) =>
        (error.method === undefined || error.method.toUpperCase() === method) &&
        (error.path === undefined || path.startsWith(error.path)) &&
        (error.verb === undefined || error.verb === verb),
      status: error.status,
      reason: error.reason ?? reasonFor(error.status),
      message: error.message ?? `injected ${error.status}`,
      reset: error.reset ?? false,
      remaining: error.times ?? Infinity,
    })
  }

  #addRule (rule: FailureRule): () => void {
    this.#rules.push(rule)
    return () => {
      const index = this.#rules.indexOf(rule)
      if (index >= 0) this.#rules.splice(index, 1)
    }
  }

  // Direct store access for tests, without HTTP. put() keeps status as given; a namespaced
  // object without metadata.namespace goes to "default".
  define (spec: ResourceTypeSpec): ResourceType { return this.store.define(spec) }
  put (object: KubeObject): KubeObject { return this.store.put(object) }
  get (ref: ResourceRef, namespace: string | undefined, name: string): KubeObject | undefined {
    return this.store.get(this.store.typeOf(ref), namespace, name)
  }

  list (ref: ResourceRef, options: SelectorOptions = {}): KubeObject[] {
    return this.store.list(this.store.typeOf(ref), options).items
  }

  delete (ref: ResourceRef, namespace: string | undefined, name: string, options: DeleteOptions = {}): KubeObject | undefined {
    const type = this.store.typeOf(ref)
    if (this.store.get(type, namespace, name) === undefined) return undefined
    return this.store.delete(type, namespace, name, options).object
  }

  #handle (request: IncomingMessage, response: ServerResponse): void {
    const url = new URL(request.url ?? '/', 'http://fake')
    const method = request.method ?? 'GET'
    const target = this.#target(url.pathname)
    const verb = target instanceof KubeStatusError || target === undefined ? undefined : verbOf(method, target, url.searchParams)
    if (verb !== undefined) this.counts[verb]++
    if (this.#token !== undefined && request.headers.authorization !== `Bearer ${this.#token}`) {
      request.resume()
      sendError(response, new KubeStatusError(401, 'Unauthorized', 'Unauthorized'))
      return
    }
    const rule = this.#rules.find((candidate) => candidate.remaining > 0 && candidate.match({ method, path: url.pathname, verb }))
    if (rule !== undefined) {
      rule.remaining--
      if (rule.remaining <= 0) this.#rules.splice(this.#rules.indexOf(rule), 1)
      request.resume()
      if (rule.reset) response.destroy()
      else sendError(response, new KubeStatusError(rule.status, rule.reason, rule.message))
      return
    }
    if (target === undefined) {
      request.resume()
      this.#discovery(url.pathname, response)
      return
    }
    if (target instanceof KubeStatusError) {
      request.resume()
      sendError(response, target)
      return
    }
    readBody(request, this.#maxBodyBytes).then((body) => {
      this.#serve(method, target, url.searchParams, request, body, response)
    }, (err: unknown) => {
      sendError(response, err instanceof KubeStatusError ? err : new KubeStatusError(400, 'BadRequest', String(err)))
    })
  }

  /** Resolves a resource path; undefined for discovery paths, a Status error for unknown resources. */
  #target (pathname: string): Target | KubeStatusError | undefined {
    const segments = pathname.split('/').filter((segment) => segment !== '').map(decodeURIComponent)
    let group: string
    let version: string
    let rest: string[]
    if (segments[0] === 'api' && segments.length >= 3) {
      group = ''
      version = segments[1] ?? ''
      rest = segments.slice(2)
    } else if (segments[0] === 'apis' && segments.length >= 4) {
      group = segments[1] ?? ''
      version = segments[2] ?? ''
      rest = segments.slice(3)
    } else {
      return undefined
    }
    let namespace: string | undefined
    const namespaceSubresource = rest.length === 3 && (rest[2] === 'status' || rest[2] === 'finalize')
    if (rest[0] === 'namespaces' && rest.length >= 3 && !namespaceSubresource) {
      namespace = rest[1]
      rest = rest.slice(2)
    }
    const [resource, name, subresource] = rest
    const type = this.store.resolve(group, version, resource ?? '')
    if (type === undefined || rest.length > 3) return new KubeStatusError(404, 'NotFound', 'the server could not find the requested resource')
    if (subresource !== undefined && subresource !== 'status') {
      return new KubeStatusError(404, 'NotFound', `the server could not find the requested resource (subresource ${subresource})`)
    }
    if (subresource === 'status' && !type.status) return new KubeStatusError(404, 'NotFound', `${type.qualified} has no status subresource`)
    if (!type.namespaced && namespace !== undefined) return new KubeStatusError(404, 'NotFound', `${type.qualified} is not namespaced`)
    if (type.namespaced && namespace === undefined && name !== undefined) return new KubeStatusError(404, 'NotFound', `${type.qualified} is namespaced`)
    return { type, namespace, name, subresource }
  }

  #serve (method: string, target: Target, query: URLSearchParams, request: IncomingMessage, body: Buffer, response: ServerResponse): void {
    try {
      const { type, namespace, name } = target
      const subresource = target.subresource === 'status' ? 'status' as const : undefined
      const fieldManager = query.get('fieldManager') ?? undefined
      const selectors: SelectorOptions = {
        namespace,
        labelSelector: query.get('labelSelector') ?? undefined,
        fieldSelector: query.get('fieldSelector') ?? undefined,
      }
      switch (method) {
        case 'GET':
          if (name !== undefined) {
            const object = this.store.get(type, namespace, name)
            if (object === undefined) throw statusErrors.notFound(type, name)
            sendJson(response, 200, object)
          } else if (isTrue(query.get('watch'))) {
            this.#watch(type, query, selectors, response)
          } else {
            const limit = query.get('limit')
            const list = this.store.list(type, {
              ...selectors,
              limit: limit === null ? undefined : Number(limit),
              continue: query.get('continue') ?? undefined,
              resourceVersion: query.get('resourceVersion') ?? undefined,
              resourceVersionMatch: query.get('resourceVersionMatch') ?? undefined,
            })
            const items = type.custom ? list.items : list.items.map(({ apiVersion: _a, kind: _k, ...item }) => item)
            sendJson(response, 200, {
              kind: `${type.kind}List`,
              apiVersion: type.apiVersion,
              metadata: { resourceVersion: list.resourceVersion, ...(list.continue === undefined ? {} : { continue: list.continue }) },
              items,
            })
          }
          return
        case 'POST': {
          if (name !== undefined) throw new KubeStatusError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')
          sendJson(response, 201, this.store.create(type, namespace, parseJson(body) as KubeObject, { fieldManager }))
          return
        }
        case 'PUT':
          if (name === undefined) throw new KubeStatusError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')
          sendJson(response, 200, this.store.update(type, namespace, name, parseJson(body) as KubeObject, { fieldManager, subresource }))
          return
        case 'PATCH':
          if (name === undefined) throw new KubeStatusError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')
          this.#patch(target, name, subresource, request.headers['content-type'] ?? '', body, query, response)
          return
        case 'DELETE': {
          const options = deleteOptions(body, query)
          if (name === undefined) {
            const removed = this.store.deleteCollection(type, { ...selectors, ...options })
            sendJson(response, 200, { kind: `${type.kind}List`, apiVersion: type.apiVersion, metadata: { resourceVersion: String(this.store.resourceVersion) }, items: removed })
            return
          }
          const { object, deleted } = this.store.delete(type, namespace, name, options)
          sendJson(response, deleted ? 200 : 202, object)
          return
        }
        default:
          throw new KubeStatusError(405, 'MethodNotAllowed', `method ${method} is not supported`)
      }
    } catch (err) {
      sendError(response, asStatusError(err))
    }
  }

  #patch (target: Target, name: string, subresource: 'status' | undefined, contentType: string, body: Buffer, query: URLSearchParams, response: ServerResponse): void {
    const { type, namespace } = target
    const mediaType = contentType.split(';')[0]?.trim().toLowerCase() ?? ''
    const fieldManager = query.get('fieldManager') ?? undefined
    if (mediaType === 'application/apply-patch+yaml') {
      if (fieldManager === undefined || fieldManager === '') {
        throw statusErrors.invalid(type, name, 'fieldManager: Required value: is required for apply patch')
      }
      let applied: unknown
      try {
        applied = parseYaml(body.toString('utf8'))
      } catch (err) {
        throw statusErrors.badRequest(`error decoding YAML: ${(err as Error).message}`)
      }
      if (!isPlainObject(applied)) throw statusErrors.badRequest('an apply patch must be an object')
      const options = { fieldManager, operation: 'Apply' as const, subresource }
      if (this.store.get(type, namespace, name) === undefined) {
        if (subresource !== undefined) throw statusErrors.notFound(type, name)
        const metadata = isPlainObject(applied.metadata) ? applied.metadata : {}
        sendJson(response, 201, this.store.create(type, namespace, { ...applied, metadata: { ...metadata, name } }, options))
        return
      }
      sendJson(response, 200, this.store.patch(type, namespace, name, (current) => mergePatch(current, applied) as KubeObject, options))
      return
    }
    let change: (current: KubeObject) => KubeObject
    if (mediaType === 'application/json-patch+json') {
      const operations = parseJson(body)
      change = (current) => applyJsonPatch(current, operations) as KubeObject
    } else if (mediaType === 'application/merge-patch+json' || mediaType === 'application/strategic-merge-patch+json') {
      const patch = parseJson(body)
      if (!isPlainObject(patch)) throw statusErrors.badRequest('a merge patch must be a JSON object')
      change = (current) => mergePatch(current, patch) as KubeObject
    } else {
      throw new KubeStatusError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got ${JSON.stringify(contentType)})`)
    }
    sendJson(response, 200, this.store.patch(type, namespace, name, change, { fieldManager, subresource }))
  }

  #watch (type: ResourceType, query: URLSearchParams, selectors: SelectorOptions, response: ServerResponse): void {
    response.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-cache, private', 'transfer-encoding': 'chunked' })
    response.flushHeaders()
    let bookmarkTimer: NodeJS.Timeout | undefined
    let timeoutTimer: NodeJS.Timeout | undefined
    let unsubscribe = (): void => {}
    let stopped = false
    const watch: OpenWatch = {
      response,
      muted: false,
      stop: () => {
        if (stopped) return
        stopped = true
        unsubscribe()
        clearTimeout(bookmarkTimer)
        clearTimeout(timeoutTimer)
        this.#watches.delete(watch)
      },
    }
    const write = (line: string): void => {
      if (!watch.muted && !response.destroyed && !response.writableEnded) response.write(line)
    }
    response.on('close', watch.stop)
    this.#watches.add(watch)
    try {
      unsubscribe = this.store.watch(type, { ...selectors, resourceVersion: query.get('resourceVersion') ?? undefined }, (event: WatchDelivery) => {
        write(`{"type":"${event.type}","object":${event.json()}}\n`)
      })
    } catch (err) {
      const status = asStatusError(err)
      if (status.code === 410) this.goneWatches++
      watch.stop()
      response.end(`${JSON.stringify({ type: 'ERROR', object: status.toStatus() })}\n`)
      return
    }
    if (isTrue(query.get('allowWatchBookmarks'))) {
      const bookmark = (): void => {
        write(`${JSON.stringify({ type: 'BOOKMARK', object: { kind: type.kind, apiVersion: type.apiVersion, metadata: { resourceVersion: String(this.store.resourceVersion) } } })}\n`)
        bookmarkTimer = setTimeout(bookmark, this.#bookmarkIntervalMs)
      }
      bookmarkTimer = setTimeout(bookmark, this.#bookmarkIntervalMs)
    }
    const timeoutSeconds = Number(query.get('timeoutSeconds') ?? '0')
    if (timeoutSeconds > 0) {
      timeoutTimer = setTimeout(() => {
        watch.stop()
        response.end()
      }, timeoutSeconds * 1000)
    }
  }

  #discovery (pathname: string, response: ServerResponse): void {
    const path = pathname.replace(/\/+$/, '')
    const types = this.store.types()
    const resources = (group: string, version: string): Array<Record<string, unknown>> => types
      .filter((type) => type.group === group && type.version === version)
      .flatMap((type) => [
        { name: type.resource, singularName: type.kind.toLowerCase(), namespaced: type.namespaced, kind: type.kind, verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'] },
        ...(type.status ? [{ name: `${type.resource}/status`, singularName: '', namespaced: type.namespaced, kind: type.kind, verbs: ['get', 'patch', 'update'] }] : []),
      ])
    if (path === '/version') {
      sendJson(response, 200, { major: '1', minor: '33', gitVersion: 'v1.33.0-fake', platform: 'linux/amd64' })
      return
    }
    if (path === '/api') {
      sendJson(response, 200, { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [] })
      return
    }
    if (path === '/apis') {
      const groups = new Map<string, string[]>()
      for (const type of types) {
        if (type.group === '') continue
        const versions = groups.get(type.group) ?? []
        if (!versions.includes(type.version)) versions.push(type.version)
        groups.set(type.group, versions)
      }
      sendJson(response, 200, {
        kind: 'APIGroupList',
        apiVersion: 'v1',
        groups: [...groups].map(([name, versions]) => ({
          name,
          versions: versions.map((version) => ({ groupVersion: `${name}/${version}`, version })),
          preferredVersion: { groupVersion: `${name}/${versions[0] ?? ''}`, version: versions[0] ?? '' },
        })),
      })
      return
    }
    const core = /^\/api\/([^/]+)$/.exec(path)
    const named = /^\/apis\/([^/]+)\/([^/]+)$/.exec(path)
    const [group, version] = core !== null ? ['', core[1] ?? ''] : named !== null ? [named[1] ?? '', named[2] ?? ''] : [undefined, undefined]
    if (group !== undefined && version !== undefined) {
      const list = resources(group, version)
      if (list.length > 0) {
        sendJson(response, 200, { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: group === '' ? version : `${group}/${version}`, resources: list })
        return
      }
    }
    sendError(response, new KubeStatusError(404, 'NotFound', 'the server could not find the requested resource'))
  }
}

function verbOf (method: string, target: Target, query: URLSearchParams): Verb | undefined {
  switch (method) {
    case 'GET': return target.name !== undefined ? 'get' : isTrue(query.get('watch')) ? 'watch' : 'list'
    case 'POST': return 'create'
    case 'PUT': return 'update'
    case 'PATCH': return 'patch'
    case 'DELETE': return target.name !== undefined ? 'delete' : 'deletecollection'
    default: return undefined
  }
}

function deleteOptions (body: Buffer, query: URLSearchParams): DeleteOptions {
  const parsed = body.length === 0 ? {} : parseJson(body)
  const fromBody = isPlainObject(parsed) ? parsed : {}
  const policy = query.get('propagationPolicy') ?? (typeof fromBody.propagationPolicy === 'string' ? fromBody.propagationPolicy : undefined)
  if (policy !== undefined && policy !== 'Orphan' && policy !== 'Background' && policy !== 'Foreground') {
    throw statusErrors.badRequest(`propagationPolicy: Unsupported value: ${JSON.stringify(policy)}`)
  }
  const preconditions = isPlainObject(fromBody.preconditions) ? fromBody.preconditions : undefined
  return {
    ...(policy === undefined ? {} : { propagationPolicy: policy }),
    ...(preconditions === undefined
      ? {}
      : {
          preconditions: {
            ...(typeof preconditions.uid === 'string' ? { uid: preconditions.uid } : {}),
            ...(typeof preconditions.resourceVersion === 'string' ? { resourceVersion: preconditions.resourceVersion } : {}),
          },
        }),
  }
}

function parseJson (body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'))
  } catch (err) {
    throw statusErrors.badRequest(`the request body is not valid JSON: ${(err as Error).message}`)
  }
}

function asStatusError (err: unknown): KubeStatusError {
  if (err instanceof KubeStatusError) return err
  if (err instanceof PatchError) return new KubeStatusError(422, 'Invalid', `the patch could not be applied: ${err.message}`)
  return new KubeStatusError(500, 'InternalError', `internal error: ${(err as Error).message}`)
}

function readBody (request: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    request.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > limit) {
        reject(new KubeStatusError(413, 'RequestEntityTooLarge', `request body larger than ${limit} bytes`))
        request.destroy()
        return
      }
      chunks.push(chunk)
    })
    request.on('end', () => { resolve(Buffer.concat(chunks)) })
    request.on('error', reject)
  })
}

function sendJson (response: ServerResponse, status: number, body: unknown): void {
  if (response.headersSent || response.destroyed) return
  const text = JSON.stringify(body)
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  response.end(text)
}

function sendError (response: ServerResponse, error: KubeStatusError): void {
  sendJson(response, error.code, error.toStatus())
}
