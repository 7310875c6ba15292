// One long-lived keep-alive pool per endpoint: created on first use, closed (after its
// in-flight requests finish) once no user's snapshot names the endpoint any more. The
// endpoints' outlier state follows the same snapshot.
import type { Registry } from 'prom-client'
import { Pool } from 'undici'
import type { Clock } from '../clock.ts'
import { DEFAULT_UPSTREAM_CONNECTIONS } from '../config.ts'
import type { EndpointChange, EndpointSnapshot, EndpointSource } from '../discovery/source.ts'
import { EndpointOutliers } from './outliers.ts'

export interface PoolOptions {
  readonly connectTimeoutMs: number
  readonly headersTimeoutMs: number
  readonly bodyTimeoutMs: number
  /** Connections per endpoint (PODGATE_UPSTREAM_CONNECTIONS); requests beyond them queue in the pool. */
  readonly upstreamConnections?: number
  /** Where the outlier-ejection metrics are registered (the Metrics registry). */
  readonly registry?: Registry | undefined
  /** The clock ejection backoffs run on. */
  readonly clock?: Clock | undefined
}

export type PoolFactory = (origin: string, options: Pool.Options) => Pool

export class EndpointPools {
  readonly #pools = new Map<string, Pool>()
  /** How many users' endpoint lists name each origin. */
  readonly #refs = new Map<string, number>()
  readonly #options: Pool.Options
  readonly #factory: PoolFactory
  #previous: EndpointSnapshot
  readonly #unsubscribe: () => void
  /** Which endpoints are out of their users' rotation after consecutive failures. */
  readonly outliers: EndpointOutliers

  constructor (source: EndpointSource, options: PoolOptions, factory: PoolFactory = (origin, opts) => new Pool(origin, opts)) {
    this.#options = {
      connections: options.upstreamConnections ?? DEFAULT_UPSTREAM_CONNECTIONS,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      keepAliveMaxTimeout: 600_000,
      headersTimeout: options.headersTimeoutMs,
      bodyTimeout: options.bodyTimeoutMs,
      connect: { timeout: options.connectTimeoutMs, noDelay: true },
    }
    this.#factory = factory
    this.outliers = new EndpointOutliers({ clock: options.clock, registry: options.registry })
    this.#previous = new Map()
    this.#count(source.snapshot, 1)
    this.#previous = source.snapshot
    this.#unsubscribe = source.onChange((change) => { this.#follow(change) })
  }

  get size (): number { return this.#pools.size }

  /** The pool for an endpoint; undefined once no snapshot names it (it just left). */
  get (origin: string): Pool | undefined {
    let pool = this.#pools.get(origin)
    if (pool === undefined) {
      if (!this.#refs.has(origin)) return undefined
      pool = this.#factory(origin, this.#options)
      this.#pools.set(origin, pool)
    }
    return pool
  }

  #follow ({ snapshot, users }: EndpointChange): void {
    // New references first: an endpoint a user keeps never drops to zero (its pool and outlier state stay).
    for (const user of users) for (const e of snapshot.get(user) ?? []) this.#add(e.origin, 1)
    for (const user of users) for (const e of this.#previous.get(user) ?? []) this.#add(e.origin, -1)
    this.#previous = snapshot
  }

  #count (snapshot: EndpointSnapshot, delta: number): void {
    for (const list of snapshot.values()) for (const e of list) this.#add(e.origin, delta)
  }

  #add (origin: string, delta: number): void {
    const refs = (this.#refs.get(origin) ?? 0) + delta
    if (refs > 0) {
      this.#refs.set(origin, refs)
      return
    }
    this.#refs.delete(origin)
    this.outliers.forget(origin)
    const pool = this.#pools.get(origin)
    if (pool === undefined) return
    this.#pools.delete(origin)
    // close() refuses new requests at once and resolves when in-flight ones have finished.
    pool.close().catch(() => {})
  }

  /** Closes every pool, letting in-flight requests finish. */
  async close (): Promise<void> {
    this.#unsubscribe()
    const pools = [...this.#pools.values()]
    this.#pools.clear()
    this.#refs.clear()
    await Promise.allSettled(pools.map((pool) => pool.close()))
  }

  /** Destroys every pool, aborting whatever is still in flight. */
  async destroy (): Promise<void> {
    this.#unsubscribe()
    const pools = [...this.#pools.values()]
    this.#pools.clear()
    await Promise.allSettled(pools.map((pool) => pool.destroy()))
  }
}
