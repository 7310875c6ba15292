// An endpoint source fed by code instead of an informer: the local driver registers each
// user's backend process here. Every change publishes a whole new map.
import { SnapshotPublisher, type Endpoint, type EndpointSource } from '../discovery/source.ts'

export class LocalEndpointSource extends SnapshotPublisher implements EndpointSource {
  readonly synced: Promise<void>
  readonly #markSynced: () => void
  #isSynced = false

  constructor () {
    super()
    const { promise, resolve } = Promise.withResolvers<void>()
    this.synced = promise
    this.#markSynced = resolve
  }

  get isSynced (): boolean { return this.#isSynced }

  /** The local view is complete as soon as it exists. */
  start (): Promise<void> {
    this.#isSynced = true
    this.#markSynced()
    return Promise.resolve()
  }

  close (): Promise<void> {
    return Promise.resolve()
  }

  /**
   * Sets `user`'s ready endpoints. An empty list keeps the user known but not ready
   * (a backend starting or restarting); `delete` makes the user unknown.
   */
  set (user: string, endpoints: readonly Endpoint[]): void {
    checkUser(user)
    const given: unknown = endpoints
    if (!Array.isArray(given)) throw new TypeError(`endpoints: expected an array, got ${typeof given}`)
    for (const [i, e] of (given as unknown[]).entries()) {
      if (!isEndpoint(e)) throw new TypeError(`endpoints[${i}]: expected an Endpoint (use endpoint(address, port))`)
    }
    const next = new Map(this.snapshot)
    next.set(user, Object.freeze([...endpoints]))
    this.publish(next)
  }

  /** Forgets `user`; a no-op when the user is unknown. */
  delete (user: string): void {
    checkUser(user)
    if (!this.snapshot.has(user)) return
    const next = new Map(this.snapshot)
    next.delete(user)
    this.publish(next)
  }
}

function isEndpoint (value: unknown): value is Endpoint {
  if (value === null || typeof value !== 'object') return false
  const e = value as Record<string, unknown>
  return typeof e.origin === 'string' && typeof e.address === 'string' && Number.isInteger(e.port)
}

function checkUser (user: string): void {
  if (typeof user !== 'string' || user === '') throw new TypeError(`user: expected a non-empty string, got ${JSON.stringify(user)}`)
}
