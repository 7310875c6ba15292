// EndpointSlices → user → ready endpoints, with no I/O: what a slice routes to, and an index
// that turns slice changes into the next immutable snapshot touching only changed users.
import { isIP } from 'node:net'
import { HTTP_PORT_NAME, USER_LABEL } from '../kube/labels.ts'
import { endpoint, type Endpoint, type EndpointSnapshot } from './source.ts'

/** Set by the EndpointSlice controller (podgate's own labels are inherited from the Service). */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name'

/** The parts of a discovery.k8s.io/v1 EndpointSlice read here (raw JSON or client-node's V1EndpointSlice). */
export interface EndpointSliceLike {
  metadata?: {
    name?: string
    namespace?: string
    resourceVersion?: string
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
  const service = slice.metadata?.labels?.[SERVICE_NAME_LABEL]
  return { user, route: { user, service, endpoints }, problem: invalid > 0 ? `${invalid} address(es) are not IP addresses` : undefined }
}

interface IndexedSlice {
  readonly user: string
  readonly resourceVersion: string | undefined
  readonly endpoints: readonly Endpoint[]
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

/**
 * Slices by key and by user. Changes only mark users dirty; `apply` copies the previous snapshot
 * once and recomputes just those users, so an event costs O(users) for the copy, not a rebuild.
 */
export class EndpointIndex {
  readonly #slices = new Map<string, IndexedSlice>()
  readonly #byUser = new Map<string, Set<string>>()
  readonly #dirty = new Set<string>()
  #changed: ReadonlySet<string> = new Set()
  readonly #onProblem: ProblemReporter

  constructor (onProblem: ProblemReporter = () => {}) {
    this.#onProblem = onProblem
  }

  get sliceCount (): number { return this.#slices.size }
  get pending (): boolean { return this.#dirty.size > 0 }

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
    this.#slices.set(key, { user: reading.user, resourceVersion, endpoints: reading.route?.endpoints ?? [] })
    let keys = this.#byUser.get(reading.user)
    if (keys === undefined) {
      keys = new Set()
      this.#byUser.set(reading.user, keys)
    }
    keys.add(key)
    this.#dirty.add(reading.user)
  }

  remove (slice: EndpointSliceLike): void {
    this.#removeKey(sliceKey(slice))
  }

  #removeKey (key: string): void {
    const existing = this.#slices.get(key)
    if (existing === undefined) return
    this.#slices.delete(key)
    const keys = this.#byUser.get(existing.user)
    keys?.delete(key)
    if (keys?.size === 0) this.#byUser.delete(existing.user)
    this.#dirty.add(existing.user)
  }

  /** A complete list: slices not in it are gone (deleted while no watch was open). */
  replace (slices: readonly EndpointSliceLike[]): void {
    const present = new Set(slices.map(sliceKey))
    for (const key of [...this.#slices.keys()]) if (!present.has(key)) this.#removeKey(key)
    for (const slice of slices) this.upsert(slice)
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
      // A user whose Service has slices but no ready endpoint stays known, with an empty
      // list: the gateway answers "not ready" (503) instead of "no workload" (404).
      const merged = keys === undefined ? undefined : mergeEndpoints([...keys].map((key) => this.#slices.get(key)?.endpoints ?? []))
      const before = previous.get(user)
      if (merged === undefined ? before !== undefined : !sameEndpoints(before, merged)) changes.push([user, merged])
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

  /** Users whose endpoints the last `apply` changed. */
  get changed (): ReadonlySet<string> { return this.#changed }
}
