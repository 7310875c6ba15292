// Spawn on demand: a verified user with no ready endpoint gets their workload created (or
// woken), and the request waits — woken by endpoint events, never by polling — until an
// endpoint is ready, the workload fails, or the start timeout passes.
import { systemClock, type Clock, type TimerHandle } from '../clock.ts'
import { DEFAULT_BROWSER_GRACE_MS } from '../config.ts'
import type { EndpointSource, Endpoint } from '../discovery/source.ts'
import { BadRequestError, ForbiddenError, NotReadyError, PodgateError, WorkloadFailedError, WorkloadNotFoundError } from '../errors.ts'
import type { MissingWorkload } from '../gateway/gateway.ts'
import { prefersHtml } from '../gateway/navigation.ts'
import { startingPage } from '../gateway/pages.ts'
import { FailureStreaks, type Logger } from '../log.ts'
import type { Metrics } from '../metrics.ts'
import { SpawnTracker } from './spawn-tracker.ts'
import type { Workload, Workloads } from './workloads.ts'

export const DEFAULT_STATUS_CHECK_MS = 2_000
export const DEFAULT_RETRY_AFTER_S = 5
export const PAGE_REFRESH_S = 3

export interface SpawnerOptions {
  readonly workloads: Workloads
  readonly source: EndpointSource
  /** Create a workload for a user who has none; otherwise such users get 404. */
  readonly spawnOnDemand: boolean
  /** How long an API client waits for an endpoint before a 503. */
  readonly startTimeoutMs: number
  readonly logger: Logger
  /** How long a browser waits before it gets the self-refreshing starting page (PODGATE_BROWSER_GRACE). */
  readonly browserGraceMs?: number
  /** Status check interval, only for Workloads without change events. */
  readonly statusCheckMs?: number
  readonly retryAfterSeconds?: number
  readonly clock?: Clock
  /**
   * The activity pipeline (ActivityRecorder.record): a workload that became ready counts as
   * used then, however long its start took, so idle culling does not take it at once.
   */
  readonly onActivity?: (user: string) => void
  /** Where spawns, starting pages and start timeouts are counted (podgate_spawns_total, …). */
  readonly metrics?: Metrics
}

/** One user's wait, shared by every request for that user. */
interface Watch {
  readonly user: string
  readonly ready: Promise<readonly Endpoint[]>
  waiters: number
  settled: boolean
  stop (): void
}

export interface Spawner {
  /** The gateway's MissingWorkload hook. */
  readonly onMissing: MissingWorkload
  /** Users with a wait in progress (for probes and tests). */
  readonly waiting: number
}

export function createSpawner (options: SpawnerOptions): Spawner {
  const { workloads, source, logger } = options
  if (workloads === undefined) throw new TypeError('workloads: required')
  if (source === undefined) throw new TypeError('source: required (the endpoint source the gateway routes on)')
  if (logger === undefined) throw new TypeError('logger: required')
  if (typeof options.spawnOnDemand !== 'boolean') throw new TypeError('spawnOnDemand: expected a boolean')
  const startTimeoutMs = positive('startTimeoutMs', options.startTimeoutMs)
  const graceMs = Math.min(startTimeoutMs, nonNegative('browserGraceMs', options.browserGraceMs ?? DEFAULT_BROWSER_GRACE_MS))
  const statusCheckMs = positive('statusCheckMs', options.statusCheckMs ?? DEFAULT_STATUS_CHECK_MS)
  const retryAfter = options.retryAfterSeconds ?? DEFAULT_RETRY_AFTER_S
  if (!Number.isInteger(retryAfter) || retryAfter < 1) throw new TypeError(`retryAfterSeconds: expected a whole number of seconds ≥ 1, got ${String(retryAfter)}`)
  const timeoutText = startTimeoutMs < 1000 ? `${startTimeoutMs} ms` : `${Math.round(startTimeoutMs / 1000)} s`
  const clock = options.clock ?? systemClock
  // Unref'd: a waiting request's own socket keeps the process alive, a timer alone must not.
  const schedule = (fn: () => void, ms: number): TimerHandle => clock.setTimeout(fn, ms, { unref: true })

  // A status check that keeps failing (the API down) logs its stack once, then one line per attempt.
  const statusChecks = new FailureStreaks(logger, { failed: 'workload status check failed; checking again', recovered: 'workload status check works again' })
  const watches = new Map<string, Watch>()
  // Creating or waking is shared too, so a wait that ends and restarts never issues a second one.
  const ensuring = new Map<string, Promise<void>>()
  const { metrics } = options
  const spawns = metrics === undefined ? undefined : new SpawnTracker({ metrics, source, workloads, clock, timeoutMs: startTimeoutMs, watched: (user) => watches.has(user) })

  /** Makes the workload exist (a new one in `namespace`, else the default) and not be suspended; rejects when it cannot run. */
  const ensure = (user: string, namespace: string | undefined): Promise<void> => {
    let pending = ensuring.get(user)
    if (pending === undefined) {
      pending = ensureOnce(user, namespace).finally(() => { ensuring.delete(user) })
      ensuring.set(user, pending)
    }
    return pending
  }

  // A failure to reach the API (or the local driver) is the platform's, and passing: 503
  // with Retry-After, never a 500, and the error logged once per request, without a stack.
  const ensureOnce = (user: string, namespace: string | undefined): Promise<void> => ensureWorkload(user, namespace).catch((err: unknown) => {
    if (err instanceof PodgateError) throw err
    logger.warn({ user, error: err instanceof Error ? err.message : String(err) }, 'could not start the workload; answering 503')
    throw new NotReadyError('the workload cannot be started right now (the workload API failed or refused; the reason is in podgate\'s log); try again', retryAfter, { cause: err })
  })

  const ensureWorkload = async (user: string, namespace: string | undefined): Promise<void> => {
    const workload = workloads.cached?.(user) ?? await workloads.get(user)
    // A tenant's request never creates, wakes or waits on a workload in another tenant's namespace.
    if (namespace !== undefined && workload?.namespace !== undefined && workload.namespace !== namespace) {
      throw new ForbiddenError('the token\'s tenant is not the namespace this user\'s workload is in')
    }
    if (workload === undefined) {
      if (!options.spawnOnDemand) throw new WorkloadNotFoundError('no workload for this user')
      const at = spawns?.attempt('create') ?? 0
      try {
        const { created, workload: spawned } = await workloads.put(user, {}, namespace)
        logger.info({ user, namespace: spawned.namespace, created }, 'spawning a workload on first request')
      } catch (err) {
        // A token may name a user no workload can be made for (a 59–63 character id).
        const invalid = err instanceof BadRequestError
        spawns?.refused(invalid ? 'invalid_user' : 'api')
        if (invalid) throw new WorkloadNotFoundError(`no workload can be created for this user (${err.message})`, { cause: err })
        throw err
      }
      spawns?.started(user, at)
      return
    }
    if (workload.suspended) {
      logger.info({ user }, 'waking a suspended workload')
      const at = spawns?.attempt('wake') ?? 0
      await workloads.setSuspended(user, false).catch((err: unknown) => {
        spawns?.refused('api')
        throw err
      })
      spawns?.started(user, at)
      return
    }
    const failure = failureOf(workload)
    if (failure !== undefined) throw failure
  }

  const watch = (user: string, namespace: string | undefined): Watch => {
    const started = clock.now()
    const { promise: ready, resolve, reject } = Promise.withResolvers<readonly Endpoint[]>()
    // Every waiter attaches its own handlers; this keeps an abandoned wait from being unhandled.
    ready.catch(() => {})
    let statusTimer: TimerHandle | undefined
    const unsubscribes: Array<() => void> = []
    const current: Watch = {
      user,
      ready,
      waiters: 0,
      settled: false,
      stop: () => {
        if (current.settled) return
        current.settled = true
        if (watches.get(user) === current) watches.delete(user)
        for (const unsubscribe of unsubscribes) unsubscribe()
        clock.clearTimeout(statusTimer)
        statusChecks.forget(user)
        spawns?.unwatched(user)
      },
    }
    const succeed = (endpoints: readonly Endpoint[]): void => {
      if (current.settled) return
      spawns?.ready(user)
      current.stop()
      logger.info({ user, ms: clock.now() - started }, 'workload ready')
      options.onActivity?.(user)
      resolve(endpoints)
    }
    const fail = (err: unknown): void => {
      if (current.settled) return
      current.stop()
      if (!(err instanceof PodgateError)) logger.error({ err, user }, 'waiting for a workload failed')
      reject(err)
    }
    const judge = (workload: Workload | undefined): void => {
      spawns?.observe(user, workload)
      if (workload === undefined) {
        fail(new WorkloadNotFoundError('the workload was deleted while starting'))
        return
      }
      const failure = failureOf(workload)
      if (failure !== undefined) fail(failure)
    }

    unsubscribes.push(source.onChange((change) => {
      if (!change.users.has(user)) return
      const endpoints = change.snapshot.get(user)
      if (endpoints !== undefined && endpoints.length > 0) succeed(endpoints)
    }))
    const evented = workloads.onChange !== undefined
    if (workloads.onChange !== undefined) {
      unsubscribes.push(workloads.onChange((change) => {
        if (change.user === user) judge(change.workload)
      }))
    }
    // Re-check after subscribing: an endpoint that became ready in between raised no event we saw.
    const endpoints = source.snapshot.get(user)
    if (endpoints !== undefined && endpoints.length > 0) {
      succeed(endpoints)
      return current
    }
    ensure(user, namespace).then(() => {
      if (current.settled || evented) return
      const check = (): void => {
        statusTimer = schedule(() => {
          workloads.get(user).then((workload) => {
            statusChecks.recovered({ user }, user)
            if (current.settled) return
            judge(workload)
            if (!current.settled) check()
          }, (err: unknown) => {
            statusChecks.failed(err, { user }, { key: user })
            if (!current.settled) check()
          })
        }, statusCheckMs)
      }
      check()
    }, fail)
    return current
  }

  const onMissing: MissingWorkload = (user, accept, namespace) => {
    let current = watches.get(user)
    if (current === undefined) {
      current = watch(user, namespace)
      if (!current.settled) watches.set(user, current)
    }
    const shared = current
    shared.waiters++
    // The Accept half of the gateway's navigation test: only a browser gets the page after the grace.
    const browser = prefersHtml(accept)
    return new Promise<readonly Endpoint[]>((resolve, reject) => {
      let done = false
      const leave = (): void => {
        done = true
        clock.clearTimeout(timer)
        // The last waiter to give up ends the shared wait; a later request starts a fresh one.
        if (--shared.waiters === 0) shared.stop()
      }
      const timer = schedule(() => {
        if (done) return
        leave()
        if (browser) metrics?.startingPages.inc()
        else metrics?.startTimeouts.inc()
        reject(browser
          ? new NotReadyError('the workspace is starting', PAGE_REFRESH_S, { page: startingPage({ user, refreshSeconds: PAGE_REFRESH_S }) })
          : new NotReadyError(`the workload is not ready after ${timeoutText}`, retryAfter))
      }, browser ? graceMs : startTimeoutMs)
      shared.ready.then((endpoints) => {
        if (done) return
        leave()
        resolve(endpoints)
      }, (err: unknown) => {
        if (done) return
        leave()
        // A failed workload's page (no reload: waiting will not help) is the gateway's errorPage.
        reject(err instanceof Error ? err : new PodgateError(String(err)))
      })
    })
  }

  return {
    onMissing,
    get waiting () { return watches.size },
  }
}

function failureOf (workload: Workload): WorkloadFailedError | undefined {
  if (workload.status.phase !== 'Failed') return undefined
  return new WorkloadFailedError(workload.status.message ?? 'the workload failed to start')
}

function positive (name: string, value: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw new TypeError(`${name}: expected a positive number, got ${String(value)}`)
  return value
}

function nonNegative (name: string, value: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new TypeError(`${name}: expected a number ≥ 0, got ${String(value)}`)
  return value
}
