// A gateway worker's endpoint source: the primary's snapshot, sent whole once and then as
// the changed users' entries, so N workers cost the API server one watch, not N. Each entry
// carries the namespace its user is routed from and their profile, when the primary's source
// has them.
import { SnapshotPublisher, type Endpoint, type EndpointSource } from '../discovery/source.ts'
import { fromWireEndpoints, type WireRoutes } from './messages.ts'

export class RelayedSource extends SnapshotPublisher implements EndpointSource {
  readonly #synced = Promise.withResolvers<void>()
  /** Kept beside the snapshot and updated per changed user, like the primary's index. */
  readonly #namespaces = new Map<string, string>()
  readonly #profiles = new Map<string, string>()
  #isSynced = false

  constructor (routes: WireRoutes, synced: boolean) {
    super()
    const snapshot = new Map<string, readonly Endpoint[]>()
    for (const [user, list, namespace, profile] of routes) {
      if (list === null) continue
      snapshot.set(user, fromWireEndpoints(list))
      if (namespace !== undefined) this.#namespaces.set(user, namespace)
      if (profile !== undefined) this.#profiles.set(user, profile)
    }
    this.publish(snapshot)
    if (synced) this.markSynced()
  }

  get synced (): Promise<void> { return this.#synced.promise }
  get isSynced (): boolean { return this.#isSynced }

  /** Applies the primary's changed entries as one new snapshot. */
  apply (routes: WireRoutes): void {
    const next = new Map(this.snapshot)
    const users = new Set<string>()
    for (const [user, list, namespace, profile] of routes) {
      users.add(user)
      if (list === null) next.delete(user)
      else next.set(user, fromWireEndpoints(list))
      setOrDelete(this.#namespaces, user, list === null ? undefined : namespace)
      setOrDelete(this.#profiles, user, list === null ? undefined : profile)
    }
    this.publish(next, users)
  }

  /** The namespace the primary routes `user` from; undefined when its source has none. */
  namespaceOf (user: string): string | undefined { return this.#namespaces.get(user) }

  /** The profile the primary's source gives `user`'s workload; undefined when it has none. */
  profileOf (user: string): string | undefined { return this.#profiles.get(user) }

  markSynced (): void {
    if (this.#isSynced) return
    this.#isSynced = true
    this.#synced.resolve()
  }

  start (): Promise<void> { return Promise.resolve() }
  close (): Promise<void> { return Promise.resolve() }
}

function setOrDelete (map: Map<string, string>, user: string, value: string | undefined): void {
  if (value === undefined) map.delete(user)
  else map.set(user, value)
}
