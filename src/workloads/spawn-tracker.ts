// Each spawn on demand from its create or wake call to how it ended, for the spawn metrics.
// A spawn outlives the requests that wait on it (a browser leaves with the starting page and
// reloads), so while none waits this follows the endpoint and workload events itself; its
// time to ready is from the call to the first ready endpoint, however many reloads came between.
import type { Clock, TimerHandle } from '../clock.ts'
import type { EndpointChange, EndpointSource } from '../discovery/source.ts'
import type { Metrics, SpawnAction, SpawnFailure } from '../metrics.ts'
import type { Workload, WorkloadChange, Workloads } from './workloads.ts'

export interface SpawnTrackerOptions {
  readonly metrics: Metrics
  readonly source: EndpointSource
  readonly workloads: Workloads
  readonly clock: Clock
  /** PODGATE_START_TIMEOUT: a spawn with no ready endpoint by then ends as `timeout`. */
  readonly timeoutMs: number
  /** Whether a request waits on `user` now: its wait reports the end, so no events are followed here. */
  readonly watched: (user: string) => boolean
}

interface Spawn {
  readonly startedAt: number
  readonly timer: TimerHandle
}

/** Every started spawn ends once: ready (its duration observed) or a failure reason. */
export class SpawnTracker {
  readonly #options: SpawnTrackerOptions
  /** Spawns in progress, by user: at most one each, and each ends within the start timeout. */
  readonly #spawns = new Map<string, Spawn>()
  #unfollow: (() => void) | undefined

  constructor (options: SpawnTrackerOptions) {
    this.#options = options
  }

  /** A create or wake call is about to be made; returns its start, for started(). */
  attempt (action: SpawnAction): number {
    this.#options.metrics.spawns.inc(action)
    return this.#options.clock.now()
  }

  /** The create or wake call failed: the spawn never started. */
  refused (reason: Extract<SpawnFailure, 'api' | 'invalid_user'>): void {
    this.#options.metrics.spawnFailures.inc(reason)
  }

  /** The call made at `at` succeeded: the spawn is in progress until it ends. */
  started (user: string, at: number): void {
    // A spawn already in progress (woken again before it was ready) keeps its first start.
    if (this.#spawns.has(user)) return
    const { clock, timeoutMs } = this.#options
    const timer = clock.setTimeout(() => { this.#end(user, 'timeout') }, Math.max(0, at + timeoutMs - clock.now()), { unref: true })
    this.#spawns.set(user, { startedAt: at, timer })
    if (this.#options.watched(user)) return
    // The wait ended before the call returned: what happened since is in the snapshot, what comes next in events.
    if ((this.#options.source.snapshot.get(user)?.length ?? 0) > 0) this.ready(user)
    else this.#follow()
  }

  /** `user` has a ready endpoint. */
  ready (user: string): void {
    const spawn = this.#take(user)
    if (spawn !== undefined) this.#options.metrics.spawnDuration.observe((this.#options.clock.now() - spawn.startedAt) / 1000)
  }

  /** What the workload looks like now (undefined: deleted); a spawn ends when it failed or is gone. */
  observe (user: string, workload: Workload | undefined): void {
    if (workload === undefined) this.#end(user, 'deleted')
    else if (workload.status.phase === 'Failed') this.#end(user, 'failed')
  }

  /** No request waits on `user` any more: a spawn still in progress is followed here. */
  unwatched (user: string): void {
    if (this.#spawns.has(user)) this.#follow()
  }

  #end (user: string, reason: SpawnFailure): void {
    if (this.#take(user) !== undefined) this.#options.metrics.spawnFailures.inc(reason)
  }

  #take (user: string): Spawn | undefined {
    const spawn = this.#spawns.get(user)
    if (spawn === undefined) return undefined
    this.#spawns.delete(user)
    this.#options.clock.clearTimeout(spawn.timer)
    if (this.#spawns.size === 0) {
      this.#unfollow?.()
      this.#unfollow = undefined
    }
    return spawn
  }

  #follow (): void {
    if (this.#unfollow !== undefined) return
    const { source, workloads } = this.#options
    const unsubscribes = [source.onChange((change) => { this.#endpointsChanged(change) })]
    if (workloads.onChange !== undefined) unsubscribes.push(workloads.onChange((change: WorkloadChange) => { this.observe(change.user, change.workload) }))
    this.#unfollow = () => { for (const unsubscribe of unsubscribes) unsubscribe() }
  }

  #endpointsChanged (change: EndpointChange): void {
    for (const user of this.#spawns.keys()) {
      if (change.users.has(user) && (change.snapshot.get(user)?.length ?? 0) > 0) this.ready(user)
    }
  }
}
