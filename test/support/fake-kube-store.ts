// The storage behind the fake Kubernetes API server: objects keyed by (resource type,
// namespace, name), one global resourceVersion, a bounded event history that watches
// replay from, finalizers, and an ownerReference garbage collector: synchronous when an owner
// goes, and (like the real one) after the fact for an object written with owners that are all
// gone, as a writer acting on a stale view of its owner does.
import { randomInt, randomUUID } from 'node:crypto'
import { parseFieldSelector, parseLabelSelector, SelectorError, type FieldMatcher, type LabelMatcher } from './fake-kube-selector.ts'
import { BUILTIN_RESOURCES, statusErrors, type KubeObject, type ObjectMeta, type ResourceType, type ResourceTypeSpec } from './fake-kube-types.ts'

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED'

interface HistoryEntry {
  readonly rv: number
  readonly type: ResourceType
  readonly event: WatchEventType
  readonly object: KubeObject
  readonly previous: KubeObject | undefined
}

/** One event as a watcher sees it; `json()` serialises the object once for every watcher. */
export interface WatchDelivery {
  readonly type: WatchEventType
  readonly object: KubeObject
  json (): string
}

export type WatchSink = (delivery: WatchDelivery) => void

export interface SelectorOptions {
  namespace?: string
  labelSelector?: string
  fieldSelector?: string
}

export interface ListOptions extends SelectorOptions {
  limit?: number
  continue?: string
  resourceVersion?: string
  resourceVersionMatch?: string
}

export interface WatchOptions extends SelectorOptions {
  resourceVersion?: string
}

export interface WriteOptions {
  fieldManager?: string
  operation?: 'Update' | 'Apply'
  subresource?: 'status'
}

export type PropagationPolicy = 'Orphan' | 'Background' | 'Foreground'

export interface DeleteOptions {
  propagationPolicy?: PropagationPolicy
  preconditions?: { uid?: string, resourceVersion?: string }
}

export interface StoreOptions {
  /** Events kept for watches to replay; older resourceVersions get 410 Gone. */
  historyLimit?: number
  /** Delete dependents (by ownerReferences uid) when their owner goes. Default true. */
  garbageCollection?: boolean
  now?: () => Date
}

interface Watcher {
  readonly type: ResourceType
  readonly namespace: string | undefined
  readonly labels: LabelMatcher
  readonly fields: FieldMatcher
  readonly sink: WatchSink
}

/** `group/version/resource` (`v1/pods` for the core group) or an object's apiVersion and kind. */
export type ResourceRef = string | ResourceType | { apiVersion: string, kind: string }

const NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/
const GENERATE_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789'

function timestamp (date: Date): string {
  return date.toISOString().replace(/\.\d+Z$/, 'Z')
}

function labelsOf (object: KubeObject): Record<string, string> | undefined {
  return object.metadata?.labels
}

/** Structural equality that ignores key order (clients re-serialise objects in their own order). */
function isDeepEqual (a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false
  if (Array.isArray(a) !== Array.isArray(b)) return false
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((item, i) => isDeepEqual(item, b[i]))
  const left = Object.entries(a).filter(([, v]) => v !== undefined)
  const right = b as Record<string, unknown>
  return left.length === Object.values(right).filter((v) => v !== undefined).length && left.every(([k, v]) => isDeepEqual(v, right[k]))
}

/** Everything that makes up the object's desired state: a change bumps metadata.generation. */
function specOf (object: KubeObject): Record<string, unknown> {
  const { metadata: _m, status: _s, apiVersion: _a, kind: _k, ...rest } = object
  return rest
}

function withoutVolatile (object: KubeObject): KubeObject {
  const { resourceVersion: _rv, managedFields: _mf, ...metadata } = object.metadata ?? {}
  return { ...object, metadata }
}

export class FakeKubeStore {
  readonly #types = new Map<string, ResourceType>()
  readonly #byKind = new Map<string, ResourceType>()
  readonly #objects = new Map<string, Map<string, KubeObject>>()
  readonly #uids = new Map<string, { type: ResourceType, id: string }>()
  readonly #pendingPolicy = new Map<string, PropagationPolicy>()
  /** Uids of deleted objects, so a dependent written later with only dead owners is collected. */
  readonly #goneUids = new Set<string>()
  readonly #watchers = new Set<Watcher>()
  /** Stored objects are never mutated, so one serialisation serves every watcher. */
  readonly #serialized = new WeakMap<KubeObject, string>()
  readonly #historyLimit: number
  readonly #now: () => Date
  #history: HistoryEntry[] = []
  #rv = 0
  #oldestRv = 0
  garbageCollection: boolean

  constructor (options: StoreOptions = {}) {
    this.#historyLimit = options.historyLimit ?? 100_000
    if (!Number.isInteger(this.#historyLimit) || this.#historyLimit < 2) throw new TypeError('historyLimit must be an integer of at least 2')
    this.garbageCollection = options.garbageCollection ?? true
    this.#now = options.now ?? (() => new Date())
    for (const spec of BUILTIN_RESOURCES) this.define(spec)
  }

  get resourceVersion (): number { return this.#rv }

  /** Registers a resource type (a CRD being installed). */
  define (spec: ResourceTypeSpec): ResourceType {
    const group = spec.group ?? ''
    const type: ResourceType = Object.freeze({
      group,
      version: spec.version,
      resource: spec.resource,
      kind: spec.kind,
      namespaced: spec.namespaced ?? true,
      status: spec.status ?? false,
      custom: spec.custom ?? false,
      apiVersion: group === '' ? spec.version : `${group}/${spec.version}`,
      key: `${group}/${spec.version}/${spec.resource}`,
      qualified: group === '' ? spec.resource : `${spec.resource}.${group}`,
    })
    this.#types.set(type.key, type)
    this.#byKind.set(`${type.apiVersion}|${type.kind}`, type)
    return type
  }

  types (): ResourceType[] { return [...this.#types.values()] }

  resolve (group: string, version: string, resource: string): ResourceType | undefined {
    return this.#types.get(`${group}/${version}/${resource}`)
  }

  typeOf (ref: ResourceRef): ResourceType {
    if (typeof ref === 'object' && 'key' in ref) return ref
    if (typeof ref === 'object') {
      const type = this.#byKind.get(`${ref.apiVersion}|${ref.kind}`)
      if (type === undefined) throw new Error(`unknown resource kind ${ref.apiVersion} ${ref.kind}: define() it first`)
      return type
    }
    const parts = ref.split('/')
    const [group, version, resource] = parts.length === 2 ? ['', parts[0] ?? '', parts[1] ?? ''] : [parts[0] ?? '', parts[1] ?? '', parts[2] ?? '']
    const type = this.resolve(group, version, resource)
    if (type === undefined) throw new Error(`unknown resource ${JSON.stringify(ref)}: define() it first`)
    return type
  }

  #bucket (type: ResourceType): Map<string, KubeObject> {
    let bucket = this.#objects.get(type.key)
    if (bucket === undefined) {
      bucket = new Map()
      this.#objects.set(type.key, bucket)
    }
    return bucket
  }

  #namespaceFor (type: ResourceType, namespace: string | undefined): string {
    if (!type.namespaced) return ''
    if (namespace === undefined || namespace === '') throw statusErrors.badRequest(`${type.qualified} is namespaced: a namespace is required`)
    return namespace
  }

  get (type: ResourceType, namespace: string | undefined, name: string): KubeObject | undefined {
    const object = this.#bucket(type).get(`${this.#namespaceFor(type, namespace)}/${name}`)
    return object === undefined ? undefined : structuredClone(object)
  }

  #matchers (options: SelectorOptions): { labels: LabelMatcher, fields: FieldMatcher } {
    try {
      return { labels: parseLabelSelector(options.labelSelector), fields: parseFieldSelector(options.fieldSelector) }
    } catch (err) {
      if (err instanceof SelectorError) throw statusErrors.badRequest(`unable to parse requirement: ${err.message}`)
      throw err
    }
  }

  #select (type: ResourceType, options: SelectorOptions): Array<[string, KubeObject]> {
    const { labels, fields } = this.#matchers(options)
    const prefix = type.namespaced && options.namespace !== undefined && options.namespace !== '' ? `${options.namespace}/` : ''
    const selected: Array<[string, KubeObject]> = []
    for (const entry of this.#bucket(type)) {
      if (prefix !== '' && !entry[0].startsWith(prefix)) continue
      if (labels(labelsOf(entry[1])) && fields(entry[1])) selected.push(entry)
    }
    return selected.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
  }

  list (type: ResourceType, options: ListOptions = {}): { items: KubeObject[], resourceVersion: string, continue?: string } {
    let listRv = this.#rv
    let after: string | undefined
    if (options.continue !== undefined && options.continue !== '') {
      let token: { rv?: unknown, after?: unknown }
      try {
        token = JSON.parse(Buffer.from(options.continue, 'base64url').toString('utf8')) as { rv?: unknown, after?: unknown }
      } catch {
        throw statusErrors.badRequest('invalid continue token')
      }
      if (typeof token.rv !== 'number' || typeof token.after !== 'string') throw statusErrors.badRequest('invalid continue token')
      if (token.rv < this.#oldestRv) {
        throw statusErrors.gone('The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results.')
      }
      listRv = token.rv
      after = token.after
    }
    if (options.resourceVersionMatch === 'Exact' && options.resourceVersion !== undefined) {
      const exact = Number(options.resourceVersion)
      if (exact < this.#oldestRv) throw statusErrors.gone(`too old resource version: ${exact} (${this.#oldestRv})`)
    }
    let selected = this.#select(type, options)
    if (after !== undefined) {
      const start = after
      selected = selected.filter(([id]) => id > start)
    }
    const limit = options.limit !== undefined && options.limit > 0 ? options.limit : Infinity
    const page = selected.slice(0, limit)
    const items = page.map(([, object]) => structuredClone(object))
    const last = page[page.length - 1]
    if (selected.length > page.length && last !== undefined) {
      return { items, resourceVersion: String(listRv), continue: Buffer.from(JSON.stringify({ rv: listRv, after: last[0] })).toString('base64url') }
    }
    return { items, resourceVersion: String(listRv) }
  }

  #record (event: WatchEventType, type: ResourceType, object: KubeObject, previous: KubeObject | undefined): void {
    const entry: HistoryEntry = { rv: this.#rv, type, event, object, previous }
    this.#history.push(entry)
    if (this.#history.length > this.#historyLimit) {
      const dropped = this.#history.splice(0, this.#history.length - Math.floor(this.#historyLimit / 2))
      this.#oldestRv = dropped[dropped.length - 1]?.rv ?? this.#oldestRv
    }
    for (const watcher of this.#watchers) if (watcher.type === type) this.#deliver(watcher, entry)
  }

  /** Forgets the event history: a watch from any earlier resourceVersion now gets 410 Gone. */
  compact (): void {
    this.#history = []
    this.#oldestRv = this.#rv
  }

  /**
   * Replays events after `resourceVersion` (or synthetic ADDED events for the current state when
   * it is absent or "0"), then delivers live ones. Throws 410 Gone when the history no longer
   * reaches back that far. Returns the function that ends the watch.
   */
  watch (type: ResourceType, options: WatchOptions, sink: WatchSink): () => void {
    const { labels, fields } = this.#matchers(options)
    const namespace = type.namespaced && options.namespace !== undefined && options.namespace !== '' ? options.namespace : undefined
    const watcher: Watcher = { type, namespace, labels, fields, sink }
    const since = options.resourceVersion
    if (since === undefined || since === '' || since === '0') {
      for (const [, object] of this.#select(type, options)) sink(delivery('ADDED', object))
    } else {
      const from = Number(since)
      if (!Number.isSafeInteger(from) || from < 0) throw statusErrors.badRequest(`invalid resource version: ${JSON.stringify(since)}`)
      if (from < this.#oldestRv) throw statusErrors.gone(`too old resource version: ${from} (${this.#oldestRv})`)
      for (const entry of this.#history) if (entry.rv > from && entry.type === type) this.#deliver(watcher, entry)
    }
    this.#watchers.add(watcher)
    return () => { this.#watchers.delete(watcher) }
  }

  /** Translates a stored change into what a filtered watch sees (an object leaving the selector is DELETED for it). */
  #deliver (watcher: Watcher, entry: HistoryEntry): void {
    const namespace = entry.object.metadata?.namespace
    if (watcher.namespace !== undefined && namespace !== watcher.namespace) return
    const matches = (object: KubeObject): boolean => watcher.labels(labelsOf(object)) && watcher.fields(object)
    const now = matches(entry.object)
    const before = entry.previous !== undefined && matches(entry.previous)
    let type: WatchEventType | undefined
    if (entry.event === 'ADDED') type = now ? 'ADDED' : undefined
    else if (entry.event === 'DELETED') type = before ? 'DELETED' : undefined
    else if (now) type = before ? 'MODIFIED' : 'ADDED'
    else if (before) type = 'DELETED'
    if (type === undefined) return
    const serialized = this.#serialized
    watcher.sink({
      type,
      object: entry.object,
      json: () => {
        let json = serialized.get(entry.object)
        if (json === undefined) {
          json = JSON.stringify(entry.object)
          serialized.set(entry.object, json)
        }
        return json
      },
    })
  }

  #stampManager (object: KubeObject, options: WriteOptions): void {
    if (options.fieldManager === undefined) return
    const metadata = object.metadata ?? {}
    const operation = options.operation ?? 'Update'
    const entry: Record<string, unknown> = {
      manager: options.fieldManager, operation, apiVersion: object.apiVersion, time: timestamp(this.#now()), fieldsType: 'FieldsV1', fieldsV1: {},
      ...(options.subresource === undefined ? {} : { subresource: options.subresource }),
    }
    const others = (metadata.managedFields ?? []).filter((m) => !(m.manager === options.fieldManager && m.operation === operation && m.subresource === options.subresource))
    metadata.managedFields = [...others, entry]
  }

  /** POST semantics. `keepStatus` is for direct test access (the API drops status on create). */
  create (type: ResourceType, namespace: string | undefined, body: KubeObject, options: WriteOptions & { keepStatus?: boolean } = {}): KubeObject {
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw statusErrors.badRequest('the request body must be an object')
    if (body.kind !== undefined && body.kind !== type.kind) throw statusErrors.badRequest(`the kind of the object (${String(body.kind)}) does not match the resource (${type.kind})`)
    const object = structuredClone(body)
    object.apiVersion = type.apiVersion
    object.kind = type.kind
    const metadata: ObjectMeta = object.metadata ?? {}
    object.metadata = metadata
    if (type.namespaced) {
      if (metadata.namespace !== undefined && namespace !== undefined && metadata.namespace !== namespace) {
        throw statusErrors.badRequest('the namespace of the provided object does not match the namespace sent on the request')
      }
      metadata.namespace = this.#namespaceFor(type, namespace ?? metadata.namespace)
    } else {
      delete metadata.namespace
    }
    if ((metadata.name === undefined || metadata.name === '') && metadata.generateName !== undefined && metadata.generateName !== '') {
      let suffix = ''
      for (let i = 0; i < 5; i++) suffix += GENERATE_ALPHABET[randomInt(GENERATE_ALPHABET.length)]
      metadata.name = `${metadata.generateName}${suffix}`
    }
    const name = metadata.name
    if (name === undefined || name === '') throw statusErrors.invalid(type, undefined, 'metadata.name: Required value: name or generateName is required')
    if (typeof name !== 'string' || name.length > 253 || !NAME.test(name)) {
      throw statusErrors.invalid(type, String(name), 'metadata.name: Invalid value: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, \'-\' or \'.\'')
    }
    const bucket = this.#bucket(type)
    const id = `${metadata.namespace ?? ''}/${name}`
    if (bucket.has(id)) throw statusErrors.alreadyExists(type, name)
    metadata.uid = randomUUID()
    metadata.creationTimestamp = timestamp(this.#now())
    metadata.generation = 1
    delete metadata.deletionTimestamp
    if (type.status && options.keepStatus !== true) delete object.status
    this.#stampManager(object, options)
    metadata.resourceVersion = String(++this.#rv)
    bucket.set(id, object)
    this.#uids.set(metadata.uid, { type, id })
    this.#record('ADDED', type, object, undefined)
    this.#collectIfOrphaned(type, id, object)
    return structuredClone(object)
  }

  #existing (type: ResourceType, namespace: string | undefined, name: string): { id: string, object: KubeObject } {
    const id = `${this.#namespaceFor(type, namespace)}/${name}`
    const object = this.#bucket(type).get(id)
    if (object === undefined) throw statusErrors.notFound(type, name)
    return { id, object }
  }

  /** PUT semantics: 404 when absent, 409 when body.metadata.resourceVersion is stale. */
  update (type: ResourceType, namespace: string | undefined, name: string, body: KubeObject, options: WriteOptions & { keepStatus?: boolean } = {}): KubeObject {
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw statusErrors.badRequest('the request body must be an object')
    if (body.metadata?.name !== undefined && body.metadata.name !== name) {
      throw statusErrors.badRequest(`the name of the object (${body.metadata.name}) does not match the name on the URL (${name})`)
    }
    const { id, object: existing } = this.#existing(type, namespace, name)
    const expected = body.metadata?.resourceVersion
    if (expected !== undefined && expected !== '' && expected !== existing.metadata?.resourceVersion) throw statusErrors.conflict(type, name)
    return this.#replace(type, id, existing, body, options)
  }

  /** PATCH semantics: `change` turns the current object into the patched one. */
  patch (type: ResourceType, namespace: string | undefined, name: string, change: (current: KubeObject) => KubeObject, options: WriteOptions = {}): KubeObject {
    const { id, object: existing } = this.#existing(type, namespace, name)
    const patched = change(structuredClone(existing))
    if (patched === null || typeof patched !== 'object' || Array.isArray(patched)) throw statusErrors.badRequest('the patched object is not an object')
    const expected = patched.metadata?.resourceVersion
    if (expected !== undefined && expected !== existing.metadata?.resourceVersion) throw statusErrors.conflict(type, name)
    if (patched.metadata?.name !== undefined && patched.metadata.name !== name) throw statusErrors.badRequest('metadata.name cannot be changed by a patch')
    return this.#replace(type, id, existing, patched, options)
  }

  #replace (type: ResourceType, id: string, existing: KubeObject, body: KubeObject, options: WriteOptions & { keepStatus?: boolean }): KubeObject {
    const before = existing.metadata ?? {}
    let next: KubeObject
    if (options.subresource === 'status') {
      next = { ...structuredClone(existing), status: structuredClone(body.status) }
      if (body.status === undefined) delete next.status
    } else {
      next = structuredClone(body)
      if (type.status && options.keepStatus !== true) {
        if (existing.status === undefined) delete next.status
        else next.status = structuredClone(existing.status)
      }
    }
    next.apiVersion = type.apiVersion
    next.kind = type.kind
    const metadata: ObjectMeta = { ...(next.metadata ?? {}) }
    next.metadata = metadata
    metadata.name = before.name
    if (type.namespaced) metadata.namespace = before.namespace
    else delete metadata.namespace
    metadata.uid = before.uid
    metadata.creationTimestamp = before.creationTimestamp
    if (before.deletionTimestamp === undefined) delete metadata.deletionTimestamp
    else metadata.deletionTimestamp = before.deletionTimestamp
    metadata.generation = (before.generation ?? 1) + (isDeepEqual(specOf(existing), specOf(next)) ? 0 : 1)
    metadata.resourceVersion = before.resourceVersion
    metadata.managedFields = before.managedFields
    if (metadata.managedFields === undefined) delete metadata.managedFields
    if (isDeepEqual(withoutVolatile(existing), withoutVolatile(next))) return structuredClone(existing)
    this.#stampManager(next, options)
    metadata.resourceVersion = String(++this.#rv)
    this.#bucket(type).set(id, next)
    this.#record('MODIFIED', type, next, existing)
    if (metadata.deletionTimestamp !== undefined && (metadata.finalizers ?? []).length === 0) {
      this.#finalDelete(type, id, next, this.#pendingPolicy.get(metadata.uid ?? '') ?? 'Background')
    } else {
      this.#collectIfOrphaned(type, id, next)
    }
    return structuredClone(next)
  }

  /**
   * DELETE semantics: an object with finalizers only gets a deletionTimestamp; otherwise it is
   * removed and (unless Orphan) its dependents are collected. `deleted` says which happened.
   */
  delete (type: ResourceType, namespace: string | undefined, name: string, options: DeleteOptions = {}): { object: KubeObject, deleted: boolean } {
    const { id, object } = this.#existing(type, namespace, name)
    const pre = options.preconditions
    if ((pre?.uid !== undefined && pre.uid !== object.metadata?.uid) || (pre?.resourceVersion !== undefined && pre.resourceVersion !== object.metadata?.resourceVersion)) {
      throw statusErrors.conflict(type, name)
    }
    const policy = options.propagationPolicy ?? 'Background'
    if ((object.metadata?.finalizers ?? []).length > 0) {
      if (object.metadata?.deletionTimestamp !== undefined) return { object: structuredClone(object), deleted: false }
      this.#pendingPolicy.set(object.metadata?.uid ?? '', policy)
      const next: KubeObject = { ...object, metadata: { ...object.metadata, deletionTimestamp: timestamp(this.#now()), resourceVersion: String(++this.#rv) } }
      this.#bucket(type).set(id, next)
      this.#record('MODIFIED', type, next, object)
      return { object: structuredClone(next), deleted: false }
    }
    return { object: structuredClone(this.#finalDelete(type, id, object, policy)), deleted: true }
  }

  #finalDelete (type: ResourceType, id: string, object: KubeObject, policy: PropagationPolicy): KubeObject {
    const uid = object.metadata?.uid ?? ''
    this.#bucket(type).delete(id)
    this.#uids.delete(uid)
    this.#goneUids.add(uid)
    this.#pendingPolicy.delete(uid)
    const gone: KubeObject = { ...object, metadata: { ...object.metadata, resourceVersion: String(++this.#rv) } }
    this.#record('DELETED', type, gone, object)
    if (this.garbageCollection) this.#collect(uid, policy)
    return gone
  }

  /**
   * An object written with ownerReferences that all name deleted objects is removed soon after
   * (the real collector finds such dependents from its graph), not in the write that made it.
   */
  #collectIfOrphaned (type: ResourceType, id: string, object: KubeObject): void {
    const refs = object.metadata?.ownerReferences ?? []
    if (!this.garbageCollection || refs.length === 0 || !refs.every((ref) => this.#goneUids.has(ref.uid))) return
    setImmediate(() => {
      const current = this.#bucket(type).get(id)
      if (current?.metadata?.uid !== object.metadata?.uid || current?.metadata?.deletionTimestamp !== undefined) return
      const owners = current?.metadata?.ownerReferences ?? []
      if (owners.length === 0 || !owners.every((ref) => this.#goneUids.has(ref.uid))) return
      this.delete(type, current?.metadata?.namespace, current?.metadata?.name ?? '', { propagationPolicy: 'Background' })
    })
  }

  /** What the garbage collector does when `ownerUid` is gone. */
  #collect (ownerUid: string, policy: PropagationPolicy): void {
    const dependents: Array<{ type: ResourceType, id: string, object: KubeObject }> = []
    for (const [key, bucket] of this.#objects) {
      const type = this.#types.get(key)
      if (type === undefined) continue
      for (const [id, object] of bucket) {
        if (object.metadata?.ownerReferences?.some((ref) => ref.uid === ownerUid) === true) dependents.push({ type, id, object })
      }
    }
    for (const { type, id, object } of dependents) {
      const current = this.#bucket(type).get(id)
      if (current !== object) continue
      const refs = object.metadata?.ownerReferences ?? []
      if (policy === 'Orphan') {
        const remaining = refs.filter((ref) => ref.uid !== ownerUid)
        const metadata: ObjectMeta = { ...object.metadata, ownerReferences: remaining }
        if (remaining.length === 0) delete metadata.ownerReferences
        this.#replace(type, id, object, { ...object, metadata }, { keepStatus: true })
      } else if (!refs.some((ref) => ref.uid !== ownerUid && this.#uids.has(ref.uid))) {
        const [namespace, name] = [object.metadata?.namespace, object.metadata?.name ?? '']
        this.delete(type, namespace, name, { propagationPolicy: policy })
      }
    }
  }

  /** DELETE on a collection: every matching object, as one delete each. */
  deleteCollection (type: ResourceType, options: SelectorOptions & DeleteOptions): KubeObject[] {
    const removed: KubeObject[] = []
    for (const [, object] of this.#select(type, options)) {
      const name = object.metadata?.name ?? ''
      if (this.#bucket(type).get(`${object.metadata?.namespace ?? ''}/${name}`) === undefined) continue
      removed.push(this.delete(type, object.metadata?.namespace, name, options).object)
    }
    return removed
  }

  /** Direct test access: creates or replaces `object` as given (status included, no RV check). */
  put (object: KubeObject): KubeObject {
    const type = this.typeOf({ apiVersion: String(object.apiVersion), kind: String(object.kind) })
    const name = object.metadata?.name
    const namespace = type.namespaced ? object.metadata?.namespace ?? 'default' : undefined
    if (name !== undefined && this.#bucket(type).has(`${namespace ?? ''}/${name}`)) {
      const { resourceVersion: _rv, ...metadata } = object.metadata ?? {}
      return this.update(type, namespace, name, { ...object, metadata }, { keepStatus: true })
    }
    return this.create(type, namespace, object, { keepStatus: true })
  }
}

function delivery (type: WatchEventType, object: KubeObject): WatchDelivery {
  let json: string | undefined
  return { type, object, json: () => (json ??= JSON.stringify(object)) }
}
