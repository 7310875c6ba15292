// A gateway worker's endpoint source: the primary's snapshot, sent whole once and then as
// the changed users' entries, so N workers cost the API server one watch, not N.
import { SnapshotPublisher, type Endpoint, type EndpointSource } from '../discovery/source.ts'
import { fromWireEndpoints, type WireRoutes } from './messages.ts'

export class RelayedSource extends SnapshotPublisher implements EndpointSource {
  readonly #synced = Promise.withResolvers<void>()
  #isSynced = false

  constructor (routes: WireRoutes, synced: boolean) {
    super()
    const snapshot = new Map<string, readonly Endpoint[]>()
    for (const [user, list] of routes) if (list !== null) snapshot.set(user, fromWireEndpoints(list))
    this.publish(snapshot)
    if (synced) this.markSynced()
  }

  get synced (): Promise<void> { return this.#synced.promise }
  get isSynced (): boolean { return this.#isSynced }

  /** Applies the primary's changed entries as one new snapshot. */
  apply (routes: WireRoutes): void {
    const next = new Map(this.snapshot)
    const users = new Set<string>()
    for (const [user, list] of routes) {
      users.add(user)
      if (list === null) next.delete(user)
      else next.set(user, fromWireEndpoints(list))
    }
    this.publish(next, users)
  }

  markSynced (): void {
    if (this.#isSynced) return
    this.#isSynced = true
    this.#synced.resolve()
  }

  start (): Promise<void> { return Promise.resolve() }
  close (): Promise<void> { return Promise.resolve() }
}
