// The gateway's view of where each user's pods are, from the EndpointSlices of podgate's
// Services in the served namespaces: one informer per namespace, or one cluster-wide watch,
// feeding one index and one snapshot. While the API server is unreachable the last snapshot
// keeps serving; the informers underneath are supervised (see ../kube/informer.ts).
import { DiscoveryV1Api, type KubeConfig, type V1EndpointSlice } from '@kubernetes/client-node'
import { Counter, Gauge, type Registry } from 'prom-client'
import { systemClock, type Clock, type TimerHandle } from '../clock.ts'
import { componentLogger, type Logger } from '../log.ts'
import type { Metrics } from '../metrics.ts'
import type { Cluster } from '../kube/kubeconfig.ts'
import { SupervisedInformer, type Backoff, type RestartReason } from '../kube/informer.ts'
import { MANAGED_BY_SELECTOR } from '../kube/labels.ts'
import { checkNamespaces, collectionPath, watchScopes, type ServedNamespaces } from '../kube/namespaces.ts'
import { EndpointIndex } from './endpoint-slices.ts'
import { SnapshotPublisher, type EndpointSource } from './source.ts'

export const DEFAULT_COALESCE_MS = 5

const WATCH_EVENT_TYPES = ['added', 'modified', 'deleted', 'bookmark', 'error', 'other'] as const
type WatchEventLabel = typeof WATCH_EVENT_TYPES[number]
function isWatchEventLabel (label: string): label is WatchEventLabel {
  return (WATCH_EVENT_TYPES as readonly string[]).includes(label)
}

/** The EndpointSlice informers' own metrics, summed over informers; one source per registry. */
export class EndpointSliceMetrics {
  readonly events: Counter<'type'>
  readonly restarts: Counter<'reason'>
  readonly lists: Counter
  readonly secondsSinceLastEvent: Gauge
  readonly usersInSeveralNamespaces: Gauge

  /** `lastEventAt`: the least recent of the informers' last events (the most silent watch). */
  constructor (registry: Registry, lastEventAt: () => number, clock: Clock, usersInSeveralNamespaces: () => number) {
    this.events = new Counter({ name: 'podgate_endpointslice_watch_events_total', help: 'EndpointSlice watch events received, by type', labelNames: ['type'] as const, registers: [registry] })
    this.restarts = new Counter({ name: 'podgate_endpointslice_informer_restarts_total', help: 'EndpointSlice informer restarts, by reason', labelNames: ['reason'] as const, registers: [registry] })
    this.lists = new Counter({ name: 'podgate_endpointslice_lists_total', help: 'Complete EndpointSlice lists (first sync and every relist)', registers: [registry] })
    this.secondsSinceLastEvent = new Gauge({
      name: 'podgate_endpointslice_seconds_since_last_event',
      help: 'Seconds since the last EndpointSlice watch event (bookmarks included) or list',
      registers: [registry],
      collect () { this.set(Math.max(0, (clock.now() - lastEventAt()) / 1000)) },
    })
    this.usersInSeveralNamespaces = new Gauge({
      name: 'podgate_users_in_several_namespaces',
      help: 'Users with EndpointSlices in more than one served namespace (only the oldest namespace is routed)',
      registers: [registry],
      collect () { this.set(usersInSeveralNamespaces()) },
    })
    for (const type of WATCH_EVENT_TYPES) this.events.inc({ type }, 0)
    for (const reason of ['error', 'watchdog'] satisfies RestartReason[]) this.restarts.inc({ reason }, 0)
  }

  event (type: string): void {
    const label = type.toLowerCase()
    this.events.inc({ type: isWatchEventLabel(label) ? label : 'other' })
  }
}

export type { ServedNamespaces }

export interface KubernetesEndpointSourceOptions {
  kubeConfig: KubeConfig
  namespaces: ServedNamespaces
  logger: Logger
  metrics?: Metrics
  /** Restart the informer after this long without any sign of life. Default 90 s. */
  watchdogMs?: number
  backoff?: Backoff
  /** Bursts of slice events within this window become one snapshot swap. Default 5 ms. */
  coalesceMs?: number
  random?: () => number
  clock?: Clock
}

function positive (value: number | undefined, field: string, allowZero = false): void {
  if (value === undefined) return
  if (!Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) {
    throw new TypeError(`KubernetesEndpointSource: options.${field} must be a ${allowZero ? 'non-negative' : 'positive'} number, got ${String(value)}`)
  }
}

export class KubernetesEndpointSource extends SnapshotPublisher implements EndpointSource {
  readonly #informers: ReadonlyArray<SupervisedInformer<V1EndpointSlice>>
  readonly #synced: Promise<void>
  readonly #index: EndpointIndex
  readonly #coalesceMs: number
  readonly #clock: Clock
  #flushTimer: TimerHandle | undefined
  #flushPending = false

  constructor (options: KubernetesEndpointSourceOptions) {
    // A listener's bug is logged; it must not reach the informer, which would take it for a failed list.
    super((err) => { options.logger.error({ err }, 'endpoint change listener failed') })
    const namespaces = checkNamespaces(options.namespaces, 'KubernetesEndpointSource')
    positive(options.watchdogMs, 'watchdogMs')
    positive(options.coalesceMs, 'coalesceMs', true)
    positive(options.backoff?.initialMs, 'backoff.initialMs')
    positive(options.backoff?.maxMs, 'backoff.maxMs')
    if (options.backoff !== undefined && options.backoff.maxMs < options.backoff.initialMs) {
      throw new TypeError('KubernetesEndpointSource: options.backoff.maxMs must not be below backoff.initialMs')
    }
    const { logger } = options
    const clock = options.clock ?? systemClock
    this.#clock = clock
    this.#coalesceMs = options.coalesceMs ?? DEFAULT_COALESCE_MS
    this.#index = new EndpointIndex(
      (slice, problem) => { logger.warn({ slice, problem }, 'EndpointSlice not fully routable') },
      ({ user, routed, ignored }) => { logger.warn({ user, routed, ignored }, 'user has EndpointSlices in several namespaces; routing only the oldest') },
    )
    const api = options.kubeConfig.makeApiClient(DiscoveryV1Api)
    let informerMetrics: EndpointSliceMetrics | undefined
    const informer = (namespace: string | undefined): SupervisedInformer<V1EndpointSlice> => new SupervisedInformer<V1EndpointSlice>({
      kubeConfig: options.kubeConfig,
      path: collectionPath('discovery.k8s.io', 'v1', 'endpointslices', namespace),
      list: namespace === undefined
        ? () => api.listEndpointSliceForAllNamespaces({ labelSelector: MANAGED_BY_SELECTOR })
        : () => api.listNamespacedEndpointSlice({ namespace, labelSelector: MANAGED_BY_SELECTOR }),
      labelSelector: MANAGED_BY_SELECTOR,
      handlers: {
        // A list is applied at once, so `synced` never resolves on a partial snapshot.
        replace: (slices) => {
          this.#index.replace(slices, namespace)
          this.#flush()
        },
        upsert: (slice) => {
          this.#index.upsert(slice)
          this.#schedule()
        },
        remove: (slice) => {
          this.#index.remove(slice)
          this.#schedule()
        },
      },
      logger: componentLogger(logger, 'endpointslice-informer', { namespace: namespace ?? '*' }),
      observer: {
        event: (type) => informerMetrics?.event(type),
        restart: (reason) => informerMetrics?.restarts.inc({ reason }),
        listed: () => { informerMetrics?.lists.inc() },
      },
      watchdogMs: options.watchdogMs,
      backoff: options.backoff,
      random: options.random,
      clock,
    })
    this.#informers = watchScopes(namespaces).map(informer)
    this.#synced = Promise.all(this.#informers.map((i) => i.synced)).then(() => {})
    if (options.metrics !== undefined) {
      const informers = this.#informers
      const index = this.#index
      informerMetrics = new EndpointSliceMetrics(options.metrics.registry, () => Math.min(...informers.map((i) => i.lastEventAt)), clock, () => index.usersInSeveralNamespaces)
    }
  }

  /** Resolves once every informer has listed its namespace (or the cluster) once. */
  get synced (): Promise<void> { return this.#synced }
  get isSynced (): boolean { return this.#informers.every((i) => i.isSynced) }
  /** Informer restarts so far (errors and watchdog), over all informers. */
  get restarts (): number { return this.#informers.reduce((sum, i) => sum + i.restarts, 0) }
  /** Users with EndpointSlices in more than one namespace; each is routed from one only. */
  get usersInSeveralNamespaces (): number { return this.#index.usersInSeveralNamespaces }

  /** The namespace `user`'s endpoints in the current snapshot come from. Not for the request path. */
  namespaceOf (user: string): string | undefined { return this.#index.namespaceOf(user) }

  /** The profile label of `user`'s slices in the current snapshot (a Map lookup: the limits read it per request). */
  profileOf (user: string): string | undefined { return this.#index.profileOf(user) }

  /** Starts watching; returns at once. Await `synced` for the first complete snapshot. */
  start (): Promise<void> {
    for (const informer of this.#informers) informer.start()
    return Promise.resolve()
  }

  async close (): Promise<void> {
    this.#clock.clearTimeout(this.#flushTimer)
    this.#flushPending = false
    await Promise.all(this.#informers.map((i) => i.close()))
  }

  #schedule (): void {
    if (this.#flushPending) return
    this.#flushPending = true
    this.#flushTimer = this.#clock.setTimeout(() => { this.#flush() }, this.#coalesceMs)
  }

  #flush (): void {
    if (this.#flushPending) {
      this.#clock.clearTimeout(this.#flushTimer)
      this.#flushPending = false
    }
    const previous = this.snapshot
    const next = this.#index.apply(previous)
    if (next === previous) return
    this.publish(next, this.#index.changed)
  }
}

/**
 * The source `podgate serve` uses, on the cluster `resolveCluster` found: in `namespaces`, else
 * in the one namespace it resolved.
 */
export function createKubernetesSource (options: { cluster: Cluster, namespaces?: ServedNamespaces, logger: Logger, metrics?: Metrics }): KubernetesEndpointSource {
  const { kubeConfig, source } = options.cluster
  const namespaces = options.namespaces ?? [options.cluster.namespace]
  options.logger.info({ namespaces: namespaces === 'all' ? '*' : namespaces, kubeconfig: source, server: kubeConfig.getCurrentCluster()?.server }, 'routing from EndpointSlices')
  return new KubernetesEndpointSource({ kubeConfig, namespaces, logger: options.logger, metrics: options.metrics })
}
