// EndpointSlices → user → ready endpoints, with no I/O: what a slice routes to, and an index
// that turns slice changes into the next immutable snapshot touching only changed users. A
// user id is unique across namespaces: when slices for one user appear in several, only one
// namespace is routed (see `pickNamespace`). The index also keeps each user's profile, from the
// label the slices inherit from the Service.
import { isIP } from 'node:net'
import { HTTP_PORT_NAME, PROFILE_LABEL, USER_LABEL } from '../kube/labels.ts'
import { endpoint, type Endpoint, type EndpointSnapshot } from './source.ts'

/** Set by the EndpointSlice controller (podgate's own labels are inherited from the Service). */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name'

/** The parts of a discovery.k8s.io/v1 EndpointSlice read here (raw JSON or client-node's V1EndpointSlice). */
export interface EndpointSliceLike {
  metadata?: {
    name?: string
    namespace?: string
    resourceVersion?: string
    /** RFC 3339 in raw JSON; a Date once client-node has deserialized a list. */
    creationTimestamp?: Date | string
    labels?: Record<string, string>
  }
  addressType?: string
  endpoints?: ReadonlyArray<{
    addresses?: readonly string[] | null
    conditions?: { ready?: boolean | null, terminating?: boolean | null } | null
  }> | null
  ports?: ReadonlyArray<{ name?: string | null, port?: number | null, protocol?: string | null }> | null
}

export interface SliceRoute {
  readonly user: string
  readonly service: string | undefined
  /** The workload's profile (the Service's label, copied by the EndpointSlice controller). */
  readonly profile: string | undefined
  /** Ready endpoints on the slice's HTTP port; may be empty. */
  readonly endpoints: readonly Endpoint[]
}

/** A slice read: its route when one can be built, and why not (or why partly) otherwise. */
export interface SliceReading {
  readonly user: string | undefined
  readonly route: SliceRoute | undefined
  readonly problem: string | undefined
}

export function sliceKey (slice: EndpointSliceLike): string {
  return `${slice.metadata?.namespace ?? ''}/${slice.metadata?.name ?? ''}`
}

function pickPort (slice: EndpointSliceLike): number | string {
  const ports = slice.ports ?? []
  const usable = (p: { port?: number | null, protocol?: string | null }): p is { port: number } =>
    typeof p.port === 'number' && Number.isInteger(p.port) && p.port > 0 && p.port < 65536 && (p.protocol ?? 'TCP') === 'TCP'
  const named = ports.find((p) => p.name === HTTP_PORT_NAME)
  if (named !== undefined) return usable(named) ? named.port : `port "${HTTP_PORT_NAME}" is not a usable TCP port`
  if (ports.length === 1 && ports[0] !== undefined) return usable(ports[0]) ? ports[0].port : 'its only port is not a usable TCP port'
  return ports.length === 0 ? 'it has no ports' : `it has ${ports.length} ports and none is named "${HTTP_PORT_NAME}"`
}

/**
 * Reads one slice. An endpoint is routed to when `conditions.ready` is true or unset (the API
 * says nil means ready) and it is not terminating: a serving-but-terminating endpoint finishes
 * its requests but gets no new ones.
 */
export function readSlice (slice: EndpointSliceLike): SliceReading {
  const user = slice.metadata?.labels?.[USER_LABEL]
  if (user === undefined || user === '') return { user: undefined, route: undefined, problem: `no ${USER_LABEL} label` }
  if (slice.addressType === 'FQDN') return { user, route: undefined, problem: 'addressType FQDN is not routable' }
  const port = pickPort(slice)
  if (typeof port === 'string') return { user, route: undefined, problem: `no HTTP port: ${port}` }
  const endpoints: Endpoint[] = []
  let invalid = 0
  for (const item of slice.endpoints ?? []) {
    if (item.conditions?.ready === false || item.conditions?.terminating === true) continue
    for (const address of item.addresses ?? []) {
      if (isIP(address) === 0) invalid++
      else endpoints.push(endpoint(address, port))
    }
  }
  const labels = slice.metadata?.labels
  const route = { user, service: labels?.[SERVICE_NAME_LABEL], profile: labels?.[PROFILE_LABEL] || undefined, endpoints }
  return { user, route, problem: invalid > 0 ? `${invalid} address(es) are not IP addresses` : undefined }
}

interface IndexedSlice {
  readonly user: string
  readonly namespace: string
  /** Milliseconds since the epoch; +Infinity when unknown (counts as the newest). */
  readonly createdAt: number
  readonly resourceVersion: string | undefined
  readonly profile: string | undefined
  readonly endpoints: readonly Endpoint[]
}

function createdAt (slice: EndpointSliceLike): number {
  const value = slice.metadata?.creationTimestamp
  const ms = value instanceof Date ? value.getTime() : value === undefined ? Number.NaN : Date.parse(value)
  return Number.isFinite(ms) ? ms : Number.POSITIVE_INFINITY
}

/** One namespace's claim on a user: its oldest slice for them. */
export interface NamespaceClaim {
  readonly namespace: string
  readonly createdAt: number
}

/**
 * The namespace a user is routed from when several hold slices for them: the one whose slices
 * are oldest, ties by namespace name. Every replica sees the same objects, so every replica
 * picks the same one.
 */
export function pickNamespace (claims: Iterable<NamespaceClaim>): string | undefined {
  let best: NamespaceClaim | undefined
  for (const claim of claims) {
    if (best === undefined || claim.createdAt < best.createdAt || (claim.createdAt === best.createdAt && claim.namespace < best.namespace)) best = claim
  }
  return best?.namespace
}

/**
 * The profile a user's routed slices name. They disagree only while the EndpointSlice controller
 * relabels a Service's slices one by one; then the least name, so every replica picks the same.
 */
function profileOf (slices: readonly IndexedSlice[]): string | undefined {
  let profile: string | undefined
  for (const slice of slices) {
    if (slice.profile !== undefined && (profile === undefined || slice.profile < profile)) profile = slice.profile
  }
  return profile
}

/** Merges a user's slices (one Service may have several): unique by origin, in a stable order. */
function mergeEndpoints (lists: Iterable<readonly Endpoint[]>): readonly Endpoint[] {
  const byOrigin = new Map<string, Endpoint>()
  for (const list of lists) for (const e of list) byOrigin.set(e.origin, e)
  return Object.freeze([...byOrigin.values()].sort((a, b) => (a.origin < b.origin ? -1 : a.origin > b.origin ? 1 : 0)))
}

function sameEndpoints (a: readonly Endpoint[] | undefined, b: readonly Endpoint[]): boolean {
  return a !== undefined && a.length === b.length && a.every((e, i) => e.origin === b[i]?.origin)
}

export type ProblemReporter = (sliceKey: string, problem: string) => void

/** A user newly found in several namespaces: routed from `routed`, not from `ignored`. */
export interface NamespaceConflict {
  readonly user: string
  readonly routed: string
  readonly ignored: readonly string[]
}
export type ConflictReporter = (conflict: NamespaceConflict) => void

/**
 * Slices by key, by user and by namespace. Changes only mark users dirty; `apply` copies the
 * previous snapshot once and recomputes just those users, so an event costs O(users) for the
 * copy, not a rebuild.
 */
export class EndpointIndex {
  readonly #slices = new Map<string, IndexedSlice>()
  readonly #byUser = new Map<string, Set<string>>()
  readonly #byNamespace = new Map<string, Set<string>>()
  /** The namespace each user in the snapshot is routed from. */
  readonly #routedFrom = new Map<string, string>()
  /** The profile of each user in the snapshot whose slices name one. */
  readonly #profiles = new Map<string, string>()
  /** Users with slices in more than one namespace. */
  readonly #conflicted = new Set<string>()
  readonly #dirty = new Set<string>()
  #changed: ReadonlySet<string> = new Set()
  readonly #onProblem: ProblemReporter
  readonly #onConflict: ConflictReporter

  constructor (onProblem: ProblemReporter = () => {}, onConflict: ConflictReporter = () => {}) {
    this.#onProblem = onProblem
    this.#onConflict = onConflict
  }

  get sliceCount (): number { return this.#slices.size }
  get pending (): boolean { return this.#dirty.size > 0 }
  /** Users whose slices are in more than one namespace (as of the last `apply`). */
  get usersInSeveralNamespaces (): number { return this.#conflicted.size }

  /** The namespace `user` is routed from (as of the last `apply`); undefined when not in the snapshot. */
  namespaceOf (user: string): string | undefined { return this.#routedFrom.get(user) }

  /** The profile of `user`'s workload (as of the last `apply`); undefined when not in the snapshot or unlabelled. */
  profileOf (user: string): string | undefined { return this.#profiles.get(user) }

  upsert (slice: EndpointSliceLike): void {
    const key = sliceKey(slice)
    const existing = this.#slices.get(key)
    const resourceVersion = slice.metadata?.resourceVersion
    if (existing !== undefined && resourceVersion !== undefined && existing.resourceVersion === resourceVersion) return
    const reading = readSlice(slice)
    if (reading.problem !== undefined) this.#onProblem(key, reading.problem)
    if (reading.user === undefined) {
      this.#removeKey(key)
      return
    }
    if (existing !== undefined && existing.user !== reading.user) this.#removeKey(key)
    const namespace = slice.metadata?.namespace ?? ''
    this.#slices.set(key, { user: reading.user, namespace, createdAt: createdAt(slice), resourceVersion, profile: reading.route?.profile, endpoints: reading.route?.endpoints ?? [] })
    addTo(this.#byUser, reading.user, key)
    addTo(this.#byNamespace, namespace, key)
    this.#dirty.add(reading.user)
  }

  remove (slice: EndpointSliceLike): void {
    this.#removeKey(sliceKey(slice))
  }

  #removeKey (key: string): void {
    const existing = this.#slices.get(key)
    if (existing === undefined) return
    this.#slices.delete(key)
    deleteFrom(this.#byUser, existing.user, key)
    deleteFrom(this.#byNamespace, existing.namespace, key)
    this.#dirty.add(existing.user)
  }

  /**
   * A complete list: slices not in it are gone (deleted while no watch was open). With
   * `namespace`, the list is that namespace's alone and other namespaces' slices stay.
   */
  replace (slices: readonly EndpointSliceLike[], namespace?: string): void {
    const present = new Set(slices.map(sliceKey))
    const known = namespace === undefined ? this.#slices.keys() : this.#byNamespace.get(namespace)?.values() ?? []
    for (const key of [...known]) if (!present.has(key)) this.#removeKey(key)
    for (const slice of slices) this.upsert(slice)
  }

  /** The slices routed for a user (those of one namespace), noting a conflict when it is new. */
  #routedSlices (user: string, keys: ReadonlySet<string>): IndexedSlice[] {
    const slices: IndexedSlice[] = []
    for (const key of keys) {
      const slice = this.#slices.get(key)
      if (slice !== undefined) slices.push(slice)
    }
    const first = slices[0]?.namespace
    if (slices.every((slice) => slice.namespace === first)) {
      this.#conflicted.delete(user)
      if (first !== undefined) this.#routedFrom.set(user, first)
      return slices
    }
    const claims = new Map<string, number>()
    for (const slice of slices) claims.set(slice.namespace, Math.min(slice.createdAt, claims.get(slice.namespace) ?? Number.POSITIVE_INFINITY))
    const routed = pickNamespace([...claims].map(([namespace, at]) => ({ namespace, createdAt: at }))) ?? ''
    if (!this.#conflicted.has(user) || this.#routedFrom.get(user) !== routed) {
      this.#onConflict({ user, routed, ignored: [...claims.keys()].filter((ns) => ns !== routed).sort() })
    }
    this.#conflicted.add(user)
    this.#routedFrom.set(user, routed)
    return slices.filter((slice) => slice.namespace === routed)
  }

  /**
   * The snapshot after pending changes, built from `previous` (the snapshot the last call
   * returned); `previous` itself when no user's endpoints changed.
   */
  apply (previous: EndpointSnapshot): EndpointSnapshot {
    const changed = new Set<string>()
    this.#changed = changed
    if (this.#dirty.size === 0) return previous
    const changes: Array<[string, readonly Endpoint[] | undefined]> = []
    for (const user of this.#dirty) {
      const keys = this.#byUser.get(user)
      const routedBefore = this.#routedFrom.get(user)
      if (keys === undefined) {
        this.#routedFrom.delete(user)
        this.#conflicted.delete(user)
      }
      const routed = keys === undefined ? undefined : this.#routedSlices(user, keys)
      // A user whose Service has slices but no ready endpoint stays known, with an empty
      // list: the gateway answers "not ready" (503) instead of "no workload" (404).
      const merged = routed === undefined ? undefined : mergeEndpoints(routed.map((slice) => slice.endpoints))
      const before = previous.get(user)
      const profileBefore = this.#profiles.get(user)
      const profile = routed === undefined ? undefined : profileOf(routed)
      if (profile === undefined) this.#profiles.delete(user)
      else this.#profiles.set(user, profile)
      // A user now routed from another namespace (the tenant check reads it), or with another
      // profile (the limits read it), changed too, even with the same endpoints.
      const relabelled = this.#routedFrom.get(user) !== routedBefore || profile !== profileBefore
      if (merged === undefined ? before !== undefined : !sameEndpoints(before, merged) || relabelled) changes.push([user, merged])
    }
    this.#dirty.clear()
    if (changes.length === 0) return previous
    const next = new Map(previous)
    for (const [user, endpoints] of changes) {
      if (endpoints === undefined) next.delete(user)
      else next.set(user, endpoints)
      changed.add(user)
    }
    return next
  }

  /** Users whose endpoints, the namespace they are routed from, or their profile, the last `apply` changed. */
  get changed (): ReadonlySet<string> { return this.#changed }
}

function addTo (map: Map<string, Set<string>>, group: string, key: string): void {
  let keys = map.get(group)
  if (keys === undefined) {
    keys = new Set()
    map.set(group, keys)
  }
  keys.add(key)
}

function deleteFrom (map: Map<string, Set<string>>, group: string, key: string): void {
  const keys = map.get(group)
  keys?.delete(key)
  if (keys?.size === 0) map.delete(group)
}
