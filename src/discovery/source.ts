// The contract between the gateway and whatever knows where users' pods are: an immutable
// snapshot (user id → ready endpoints), swapped whole on every change, and change events.
// The request path only ever calls `snapshot.get(user)`.

export interface Endpoint {
  /** IP address (v4 or v6, without brackets). */
  readonly address: string
  readonly port: number
  /** `http://address:port` (IPv6 bracketed); the key of the endpoint's connection pool. */
  readonly origin: string
}

export type EndpointSnapshot = ReadonlyMap<string, readonly Endpoint[]>

export interface EndpointChange {
  readonly snapshot: EndpointSnapshot
  /** Users whose endpoint list (or the namespace they are routed from, or their profile) differs from the previous snapshot. */
  readonly users: ReadonlySet<string>
}

export type EndpointListener = (change: EndpointChange) => void

export interface EndpointSource {
  /** The current snapshot; replaced, never mutated. */
  readonly snapshot: EndpointSnapshot
  /** Users with at least one ready endpoint, and ready endpoints, in the current snapshot. */
  readonly routableUsers: number
  readonly endpointCount: number
  /** Resolves once the first complete view is loaded; gates /readyz. */
  readonly synced: Promise<void>
  readonly isSynced: boolean
  /**
   * The namespace `user` is routed from, for the tenant check (PODGATE_TENANT_CLAIM); absent, or
   * undefined for a user, where the source has no namespaces. Changes come with the user's change event.
   */
  namespaceOf?(user: string): string | undefined
  /**
   * The profile of `user`'s workload, for per-profile limits; absent, or undefined for a user, where
   * the source knows no profiles. Changes come with the user's change event.
   */
  profileOf?(user: string): string | undefined
  /** Subscribes to snapshot swaps; returns the unsubscribe function. */
  onChange (listener: EndpointListener): () => void
  start (): Promise<void>
  close (): Promise<void>
}

export function endpoint (address: string, port: number): Endpoint {
  const host = address.includes(':') ? `[${address}]` : address
  return Object.freeze({ address, port, origin: `http://${host}:${port}` })
}

/** Users whose endpoint lists differ between two snapshots (compared by origin, in order). */
export function changedUsers (before: EndpointSnapshot, after: EndpointSnapshot): Set<string> {
  const changed = new Set<string>()
  for (const [user, list] of after) {
    const old = before.get(user)
    if (old === undefined || old.length !== list.length || old.some((e, i) => e.origin !== list[i]?.origin)) changed.add(user)
  }
  for (const user of before.keys()) if (!after.has(user)) changed.add(user)
  return changed
}

/**
 * Holds the snapshot and its listeners; sources extend it and call `publish` with a
 * whole new map whenever their view changes.
 */
export class SnapshotPublisher {
  #snapshot: EndpointSnapshot = new Map()
  readonly #listeners = new Set<EndpointListener>()
  readonly #onListenerError: (err: unknown) => void
  #routableUsers = 0
  #endpointCount = 0

  constructor (onListenerError: (err: unknown) => void = (err) => { queueMicrotask(() => { throw err }) }) {
    this.#onListenerError = onListenerError
  }

  get snapshot (): EndpointSnapshot { return this.#snapshot }
  get routableUsers (): number { return this.#routableUsers }
  get endpointCount (): number { return this.#endpointCount }

  onChange (listener: EndpointListener): () => void {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }

  /**
   * Swaps in `next` and notifies listeners if any user's endpoints changed. A source that
   * knows which users changed passes them and saves a diff of the whole table.
   */
  protected publish (next: EndpointSnapshot, users: ReadonlySet<string> = changedUsers(this.#snapshot, next)): void {
    const previous = this.#snapshot
    for (const user of users) {
      const before = previous.get(user)?.length ?? 0
      const after = next.get(user)?.length ?? 0
      this.#endpointCount += after - before
      this.#routableUsers += Number(after > 0) - Number(before > 0)
    }
    this.#snapshot = next
    if (users.size === 0) return
    const change: EndpointChange = { snapshot: next, users }
    for (const listener of this.#listeners) {
      try {
        listener(change)
      } catch (err) {
        // One listener's bug must neither starve the others nor reach the source's watch.
        this.#onListenerError(err)
      }
    }
  }
}
