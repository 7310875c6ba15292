// The leader's reconcile loop: from each UserWorkload and what the informers saw, its children and status; plus the orphan sweep.
import { CustomObjectsApi, PatchStrategy, type ConfigurationOptions, type KubeConfig } from '@kubernetes/client-node'
import { Counter, Gauge, Histogram } from 'prom-client'
import { componentLogger, FailureStreaks, type Logger } from '../log.ts'
import type { Metrics } from '../metrics.ts'
import { systemClock, type Clock, type TimerHandle } from '../clock.ts'
import type { Backoff } from '../kube/informer.ts'
import {
  ApiConnections, apiErrorMessage, apiStatus, DEFAULT_REQUEST_TIMEOUT_MS, FIELD_MANAGER, isRetryable, requestOptions, retryAfterMs,
} from '../kube/api.ts'
import { MANAGED_BY, MANAGED_BY_LABEL, userIdProblem, workloadName } from '../kube/labels.ts'
import { objectKey, splitObjectKey, type ServedNamespaces } from '../kube/namespaces.ts'
import type { UserWorkloadCache } from './user-workload-cache.ts'
import type { UserWorkloadObject } from './user-workload.ts'
import { CHILD_KINDS, Children, userOf } from './children.ts'
import type { Profiles } from './profiles.ts'
import { deriveStatus, statusMatches, type ObservedWorkload } from './status.ts'
import { desiredChildren, KEEP_ANNOTATION } from './templates.ts'
import { DEFAULT_CONCURRENCY, DEFAULT_RETRY_BACKOFF, WorkQueue } from './work-queue.ts'
import { WORKLOAD_GROUP, WORKLOAD_PLURAL, WORKLOAD_VERSION } from '../workloads/workloads.ts'

export const DEFAULT_SWEEP_INTERVAL_MS = 5 * 60_000
export const DEFAULT_RESYNC_INTERVAL_MS = 10 * 60_000
/** Retry-After is honoured up to this long. */
const MAX_RETRY_AFTER_MS = 5 * 60_000

/** The reconciler's metrics; created once per registry and shared by every leadership term. */
export class ReconcilerMetrics {
  readonly reconciles: Counter<'result'>
  readonly duration: Histogram
  readonly swept: Counter<'kind'>
  readonly writes: Counter<'kind' | 'verb'>
  /** Reports the running reconciler's queue depth (0 while not leading). */
  queueDepth: () => number = () => 0

  constructor (metrics: Metrics) {
    const registers = [metrics.registry]
    this.reconciles = new Counter({ name: 'podgate_reconciles_total', help: 'UserWorkload reconciles, by result', labelNames: ['result'] as const, registers })
    this.duration = new Histogram({ name: 'podgate_reconcile_duration_seconds', help: 'Time to reconcile one UserWorkload', buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers })
    this.swept = new Counter({ name: 'podgate_orphans_deleted_total', help: 'Children deleted by the orphan sweep, by kind', labelNames: ['kind'] as const, registers })
    this.writes = new Counter({ name: 'podgate_provisioner_writes_total', help: 'API writes by the reconciler, by kind and verb', labelNames: ['kind', 'verb'] as const, registers })
    const depth = (): number => this.queueDepth()
    new Gauge({ name: 'podgate_reconcile_queue_depth', help: 'UserWorkloads waiting to be reconciled', registers, collect () { this.set(depth()) } })
    for (const result of ['success', 'error']) this.reconciles.inc({ result }, 0)
    for (const { kind } of CHILD_KINDS) this.swept.inc({ kind }, 0)
    // The writes children.ts makes: apply for every kind, patch for the kept one (PVC), delete for the others.
    for (const { kind, keptOnDelete } of CHILD_KINDS) for (const verb of ['apply', keptOnDelete ? 'patch' : 'delete']) this.writes.inc({ kind, verb }, 0)
    this.writes.inc({ kind: 'UserWorkload', verb: 'status' }, 0)
  }
}

export interface ReconcilerOptions {
  kubeConfig: KubeConfig
  /** Where UserWorkloads and their children live. */
  namespaces: ServedNamespaces
  /** podgate's own namespace: users' NetworkPolicies admit the gateway's pods from there. */
  gatewayNamespace: string
  profiles: Profiles
  /** The UserWorkload cache (running on every replica); the reconciler follows its changes. */
  cache: UserWorkloadCache
  logger: Logger
  metrics?: ReconcilerMetrics
  gatewayPodSelector?: Readonly<Record<string, string>>
  /** Create a NetworkPolicy per user (default true); when false, podgate's existing ones are deleted. */
  networkPolicy?: boolean
  concurrency?: number
  retryBackoff?: Backoff
  requestTimeoutMs?: number
  sweepIntervalMs?: number
  /** Every workload is requeued this often, whatever the events said. */
  resyncIntervalMs?: number
  watchdogMs?: number
  informerBackoff?: Backoff
  random?: () => number
  clock?: Clock
}

/** Why a UserWorkload cannot be served (said in its status), or undefined. */
function workloadProblem (name: string, object: UserWorkloadObject, profiles: Profiles): string | undefined {
  const user = object.spec?.user
  if (typeof user !== 'string') return 'spec.user is missing'
  const userProblem = userIdProblem(user)
  if (userProblem !== undefined) return `spec.user: ${userProblem}`
  if (name !== workloadName(user)) return `metadata.name must be ${workloadName(user)} (user-<spec.user>), got ${name}`
  if (profiles.get(object.spec?.profile) === undefined) return `spec.profile: unknown profile ${JSON.stringify(object.spec?.profile)}; known: ${profiles.names.join(', ')}`
  return undefined
}

/** Why a UserWorkload is refused because another namespace holds the user's workload. */
export function claimedElsewhereProblem (user: string, servedFrom: string): string {
  return `user ${user} already has a workload in namespace ${servedFrom}, created earlier; a user id is unique across namespaces, so this one gets no pod: delete one of the two`
}

/**
 * Level-triggered: any change to a UserWorkload, to one of its children or to one of its pods
 * queues that workload (keyed namespace/name), and reconciling it compares the whole desired
 * state with what the informers last saw: children are server-side applied only when they
 * differ, status is written only when it changes, failures retry with per-key backoff. A user
 * claimed in several namespaces is served from the oldest claim; the others get a Failed
 * status and no children. An orphan sweep removes children labelled as podgate's whose
 * UserWorkload (in their namespace) is gone.
 */
export class Reconciler {
  readonly #options: ReconcilerOptions
  readonly #cache: UserWorkloadCache
  readonly #profiles: Profiles
  readonly #logger: Logger
  readonly #reconcileFailures: FailureStreaks
  readonly #orphanFailures: FailureStreaks
  readonly #metrics: ReconcilerMetrics | undefined
  readonly #queue: WorkQueue
  readonly #children: Children
  readonly #statusApi: CustomObjectsApi
  readonly #statusOptions: ConfigurationOptions
  readonly #connections = new ApiConnections()
  readonly #clock: Clock
  /** Status last written per workload (objectKey), with the resourceVersion it was computed from. */
  readonly #written = new Map<string, { rv: string | undefined, json: string }>()
  readonly #synced: Promise<void>
  #unsubscribe: (() => void) | undefined
  #sweepTimer: TimerHandle | undefined
  #resyncTimer: TimerHandle | undefined
  #sweeping: Promise<number> | undefined
  #started = false
  #closed = false

  constructor (options: ReconcilerOptions) {
    this.#options = options
    this.#cache = options.cache
    this.#profiles = options.profiles
    this.#logger = componentLogger(options.logger, 'reconciler')
    this.#reconcileFailures = new FailureStreaks(this.#logger, { failed: 'reconcile failed; retrying', recovered: 'reconciled after failures', describe: apiErrorMessage })
    this.#orphanFailures = new FailureStreaks(this.#logger, { failed: 'could not delete an orphan', recovered: 'deleted an orphan: its UserWorkload is gone', describe: apiErrorMessage })
    this.#clock = options.clock ?? systemClock
    const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS
    this.#statusOptions = requestOptions(requestTimeoutMs, this.#connections, PatchStrategy.MergePatch)
    this.#statusApi = options.kubeConfig.makeApiClient(CustomObjectsApi)
    this.#children = new Children({
      kubeConfig: options.kubeConfig,
      namespaces: options.namespaces,
      networkPolicy: options.networkPolicy ?? true,
      connections: this.#connections,
      requestTimeoutMs,
      onChange: (users) => {
        for (const key of users) {
          const { namespace, name: user } = splitObjectKey(key)
          this.#queue.add(objectKey(namespace, workloadName(user)))
        }
      },
      logger: this.#logger,
      writes: options.metrics?.writes,
      watchdogMs: options.watchdogMs,
      informerBackoff: options.informerBackoff,
      random: options.random,
      clock: this.#clock,
    })
    this.#queue = new WorkQueue({
      process: (key) => this.#reconcileTimed(key),
      concurrency: options.concurrency ?? DEFAULT_CONCURRENCY,
      backoff: options.retryBackoff ?? DEFAULT_RETRY_BACKOFF,
      retryDelay: (err) => {
        const after = retryAfterMs(err, () => this.#clock.now())
        if (after !== undefined) return Math.min(after, MAX_RETRY_AFTER_MS)
        // Not worth a quick retry (400, 403, 422…): come back at the slowest pace.
        return isRetryable(err) ? undefined : (options.retryBackoff ?? DEFAULT_RETRY_BACKOFF).maxMs
      },
      onError: (key, err, attempt, delayMs) => {
        const level = isRetryable(err) && attempt < 5 ? 'warn' : 'error'
        const { namespace, name } = splitObjectKey(key)
        this.#reconcileFailures.failed(err, { namespace, workload: name, retryInMs: delayMs }, { key, level })
      },
      onRecovered: (key) => {
        const { namespace, name } = splitObjectKey(key)
        this.#reconcileFailures.recovered({ namespace, workload: name }, key)
      },
      random: options.random,
      clock: this.#clock,
    })
    this.#metrics = options.metrics
    this.#synced = Promise.all([this.#cache.synced, this.#children.synced]).then(() => {})
  }

  /** Resolves once the UserWorkload cache and every child informer have listed. */
  get synced (): Promise<void> { return this.#synced }
  get queue (): WorkQueue { return this.#queue }

  /** Starts the informers; once synced, reconciles every workload and sweeps orphans. */
  async start (): Promise<void> {
    if (this.#started || this.#closed) return
    this.#started = true
    this.#unsubscribe = this.#cache.onChange((change) => {
      this.#queue.add(objectKey(change.namespace, change.name))
      // Which claim serves a user can change with any of them: the others are reconciled too.
      if (change.user !== undefined) for (const namespace of this.#cache.claims(change.user)) this.#queue.add(objectKey(namespace, workloadName(change.user)))
    })
    this.#children.start()
    await this.#synced
    if (this.#closed) return
    for (const key of this.#cache.keys()) this.#queue.add(key)
    if (this.#metrics !== undefined) this.#metrics.queueDepth = () => this.#queue.depth
    this.#queue.start()
    this.#logger.info({ workloads: this.#cache.size }, 'reconciler synced; reconciling every workload')
    await this.sweep()
    this.#scheduleSweep()
    this.#scheduleResync()
  }

  /** Resolves when no workload is queued or being reconciled. */
  whenIdle (): Promise<void> { return this.#queue.whenIdle() }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#unsubscribe?.()
    if (this.#metrics !== undefined) this.#metrics.queueDepth = () => 0
    this.#clock.clearTimeout(this.#sweepTimer)
    this.#clock.clearTimeout(this.#resyncTimer)
    this.#connections.abort()
    await this.#queue.close()
    await this.#sweeping
    await this.#children.close()
    await this.#connections.close()
  }

  #scheduleSweep (): void {
    if (this.#closed) return
    this.#sweepTimer = this.#clock.setTimeout(() => {
      void this.sweep().finally(() => { this.#scheduleSweep() })
    }, this.#options.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS)
  }

  #scheduleResync (): void {
    if (this.#closed) return
    this.#resyncTimer = this.#clock.setTimeout(() => {
      for (const key of this.#cache.keys()) this.#queue.add(key)
      this.#scheduleResync()
    }, this.#options.resyncIntervalMs ?? DEFAULT_RESYNC_INTERVAL_MS)
  }

  /**
   * Deletes children labelled as podgate's whose UserWorkload (in the child's namespace) is gone. Never an unlabelled object,
   * never a PVC kept on delete. Returns how many were deleted.
   */
  sweep (): Promise<number> {
    if (this.#sweeping !== undefined) return this.#sweeping
    const run = this.#sweep().finally(() => { this.#sweeping = undefined })
    this.#sweeping = run
    return run
  }

  async #sweep (): Promise<number> {
    if (this.#closed || !this.#cache.isSynced) return 0
    let deleted = 0
    for (const kind of this.#children.kinds) {
      const kindName = kind.spec.kind
      for (const object of kind.index.all()) {
        if (this.#closed) return deleted
        const user = userOf(object)
        const { name, namespace } = object.metadata ?? {}
        if (user === undefined || name === undefined || namespace === undefined || object.metadata?.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY) continue
        if (kind.spec.keptOnDelete && object.metadata?.annotations?.[KEEP_ANNOTATION] === 'true') continue
        if (this.#cache.object(namespace, workloadName(user)) !== undefined) continue
        const key = `${kindName}/${namespace}/${name}`
        try {
          await kind.remove(namespace, name, { uid: object.metadata?.uid, resourceVersion: object.metadata?.resourceVersion })
          deleted++
          this.#metrics?.swept.inc({ kind: kindName })
          // One line either way; after failed attempts it says how many.
          if (this.#orphanFailures.recovered({ kind: kindName, namespace, name, user }, key) === 0) {
            this.#logger.info({ kind: kindName, namespace, name, user }, 'deleted an orphan: its UserWorkload is gone')
          }
        } catch (err) {
          const status = apiStatus(err)
          // 404: already gone; 409: changed since it was seen (adopted again, say): leave it.
          if (status === 404 || status === 409) this.#orphanFailures.forget(key)
          else if (!this.#closed) this.#orphanFailures.failed(err, { kind: kindName, namespace, name }, { key })
        }
      }
    }
    return deleted
  }

  async #reconcileTimed (name: string): Promise<void> {
    const started = performance.now()
    try {
      await this.#reconcile(name)
      this.#metrics?.reconciles.inc({ result: 'success' })
    } catch (err) {
      this.#metrics?.reconciles.inc({ result: 'error' })
      throw err
    } finally {
      this.#metrics?.duration.observe((performance.now() - started) / 1000)
    }
  }

  async #reconcile (key: string): Promise<void> {
    const { namespace, name } = splitObjectKey(key)
    const object = this.#cache.object(namespace, name)
    if (object === undefined) {
      this.#written.delete(key)
      return
    }
    if (object.metadata?.deletionTimestamp !== undefined && object.metadata.deletionTimestamp !== null) return
    const user = object.spec?.user
    const profile = this.#profiles.get(object.spec?.profile)
    const problem = workloadProblem(name, object, this.#profiles)
    if (problem !== undefined || typeof user !== 'string' || profile === undefined) {
      await this.#writeStatus(object, { suspended: false, generation: object.metadata?.generation, problem: problem ?? 'invalid workload', serviceName: undefined, hasDeployment: false, pods: [] })
      return
    }
    const servedFrom = this.#cache.claims(user)[0]
    if (servedFrom !== undefined && servedFrom !== namespace) {
      await this.#children.deleteStale(namespace, user, undefined)
      await this.#writeStatus(object, {
        suspended: false, generation: object.metadata?.generation, problem: claimedElsewhereProblem(user, servedFrom), problemReason: 'UserInAnotherNamespace', serviceName: undefined, hasDeployment: false, pods: [],
      })
      return
    }
    const uid = object.metadata?.uid
    if (uid === undefined) throw new Error(`UserWorkload ${key} has no uid`)
    const suspended = object.spec?.suspended === true
    const desired = desiredChildren({ user, suspended, owner: { name, uid }, profile }, {
      namespace,
      gatewayNamespace: this.#options.gatewayNamespace,
      ...(this.#options.gatewayPodSelector === undefined ? {} : { gatewayPodSelector: this.#options.gatewayPodSelector }),
    })
    await this.#children.apply(desired)
    await this.#children.deleteStale(namespace, user, desired)
    await this.#writeStatus(object, {
      suspended,
      generation: object.metadata?.generation,
      serviceName: this.#children.get('Service', namespace, name) === undefined ? undefined : name,
      hasDeployment: this.#children.get('Deployment', namespace, name) !== undefined,
      pods: this.#children.podsOf(namespace, user),
    })
  }

  async #writeStatus (object: UserWorkloadObject, observed: ObservedWorkload): Promise<void> {
    const name = object.metadata?.name ?? ''
    const namespace = object.metadata?.namespace ?? ''
    const key = objectKey(namespace, name)
    const status = deriveStatus(observed, object.status, new Date(this.#clock.now()))
    if (statusMatches(status, object.status)) return
    const body = {
      status: {
        phase: status.phase,
        readyReplicas: status.readyReplicas,
        serviceName: status.serviceName ?? null,
        message: status.message ?? null,
        conditions: status.conditions,
      },
    }
    const json = JSON.stringify(body)
    const rv = object.metadata?.resourceVersion
    const last = this.#written.get(key)
    // Already written from this very version; its watch event has not arrived yet.
    if (last !== undefined && last.rv === rv && last.json === json) return
    try {
      await this.#statusApi.patchNamespacedCustomObjectStatus({
        group: WORKLOAD_GROUP, version: WORKLOAD_VERSION, namespace, plural: WORKLOAD_PLURAL, name, body, fieldManager: FIELD_MANAGER,
      }, this.#statusOptions)
    } catch (err) {
      if (apiStatus(err) === 404) return
      throw err
    }
    this.#metrics?.writes.inc({ kind: 'UserWorkload', verb: 'status' })
    this.#written.set(key, { rv, json })
    if (status.phase === 'Failed' && observed.problem === undefined) this.#logger.warn({ namespace, workload: name, message: status.message }, 'workload cannot start')
    if (observed.problemReason === 'UserInAnotherNamespace') this.#logger.warn({ namespace, workload: name, message: status.message }, 'UserWorkload refused: its user is served from another namespace')
  }
}
