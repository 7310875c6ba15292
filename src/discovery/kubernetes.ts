// The gateway's view of where each user's pods are, from the EndpointSlices of podgate's
// Services in one namespace. While the API server is unreachable the last snapshot keeps
// serving; the informer underneath is supervised (see ../kube/informer.ts).
import { DiscoveryV1Api, type KubeConfig, type V1EndpointSlice } from '@kubernetes/client-node'
import { Counter, Gauge, type Registry } from 'prom-client'
import { systemClock, type Clock, type TimerHandle } from '../clock.ts'
import { componentLogger, type Logger } from '../log.ts'
import type { Metrics } from '../metrics.ts'
import type { Cluster } from '../kube/kubeconfig.ts'
import { SupervisedInformer, type Backoff, type RestartReason } from '../kube/informer.ts'
import { isDnsLabel, MANAGED_BY_SELECTOR } from '../kube/labels.ts'
import { EndpointIndex } from './endpoint-slices.ts'
import { SnapshotPublisher, type EndpointSource } from './source.ts'

export const DEFAULT_COALESCE_MS = 5

const WATCH_EVENT_TYPES = ['added', 'modified', 'deleted', 'bookmark', 'error', 'other'] as const
type WatchEventLabel = typeof WATCH_EVENT_TYPES[number]
function isWatchEventLabel (label: string): label is WatchEventLabel {
  return (WATCH_EVENT_TYPES as readonly string[]).includes(label)
}

/** The EndpointSlice informer's own metrics; one source per registry. */
export class EndpointSliceMetrics {
  readonly events: Counter<'type'>
  readonly restarts: Counter<'reason'>
  readonly lists: Counter
  readonly secondsSinceLastEvent: Gauge

  constructor (registry: Registry, lastEventAt: () => number, clock: Clock) {
    this.events = new Counter({ name: 'podgate_endpointslice_watch_events_total', help: 'EndpointSlice watch events received, by type', labelNames: ['type'] as const, registers: [registry] })
    this.restarts = new Counter({ name: 'podgate_endpointslice_informer_restarts_total', help: 'EndpointSlice informer restarts, by reason', labelNames: ['reason'] as const, registers: [registry] })
    this.lists = new Counter({ name: 'podgate_endpointslice_lists_total', help: 'Complete EndpointSlice lists (first sync and every relist)', registers: [registry] })
    this.secondsSinceLastEvent = new Gauge({
      name: 'podgate_endpointslice_seconds_since_last_event',
      help: 'Seconds since the last EndpointSlice watch event (bookmarks included) or list',
      registers: [registry],
      collect () { this.set(Math.max(0, (clock.now() - lastEventAt()) / 1000)) },
    })
    for (const type of WATCH_EVENT_TYPES) this.events.inc({ type }, 0)
    for (const reason of ['error', 'watchdog'] satisfies RestartReason[]) this.restarts.inc({ reason }, 0)
  }

  event (type: string): void {
    const label = type.toLowerCase()
    this.events.inc({ type: isWatchEventLabel(label) ? label : 'other' })
  }
}

export interface KubernetesEndpointSourceOptions {
  kubeConfig: KubeConfig
  namespace: string
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
  readonly #informer: SupervisedInformer<V1EndpointSlice>
  readonly #index: EndpointIndex
  readonly #coalesceMs: number
  readonly #clock: Clock
  #flushTimer: TimerHandle | undefined
  #flushPending = false

  constructor (options: KubernetesEndpointSourceOptions) {
    // A listener's bug is logged; it must not reach the informer, which would take it for a failed list.
    super((err) => { options.logger.error({ err }, 'endpoint change listener failed') })
    if (!isDnsLabel(options.namespace)) {
      throw new TypeError(`KubernetesEndpointSource: options.namespace must be a namespace name, got ${JSON.stringify(options.namespace)}`)
    }
    positive(options.watchdogMs, 'watchdogMs')
    positive(options.coalesceMs, 'coalesceMs', true)
    positive(options.backoff?.initialMs, 'backoff.initialMs')
    positive(options.backoff?.maxMs, 'backoff.maxMs')
    if (options.backoff !== undefined && options.backoff.maxMs < options.backoff.initialMs) {
      throw new TypeError('KubernetesEndpointSource: options.backoff.maxMs must not be below backoff.initialMs')
    }
    const { logger, namespace } = options
    const clock = options.clock ?? systemClock
    this.#clock = clock
    this.#coalesceMs = options.coalesceMs ?? DEFAULT_COALESCE_MS
    this.#index = new EndpointIndex((slice, problem) => { logger.warn({ slice, problem }, 'EndpointSlice not fully routable') })
    const api = options.kubeConfig.makeApiClient(DiscoveryV1Api)
    let informerMetrics: EndpointSliceMetrics | undefined
    this.#informer = new SupervisedInformer<V1EndpointSlice>({
      kubeConfig: options.kubeConfig,
      path: `/apis/discovery.k8s.io/v1/namespaces/${namespace}/endpointslices`,
      list: () => api.listNamespacedEndpointSlice({ namespace, labelSelector: MANAGED_BY_SELECTOR }),
      labelSelector: MANAGED_BY_SELECTOR,
      handlers: {
        // A list is applied at once, so `synced` never resolves on a partial snapshot.
        replace: (slices) => {
          this.#index.replace(slices)
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
      logger: componentLogger(logger, 'endpointslice-informer', { namespace }),
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
    if (options.metrics !== undefined) {
      const informer = this.#informer
      informerMetrics = new EndpointSliceMetrics(options.metrics.registry, () => informer.lastEventAt, clock)
    }
  }

  get synced (): Promise<void> { return this.#informer.synced }
  get isSynced (): boolean { return this.#informer.isSynced }
  /** Informer restarts so far (errors and watchdog). */
  get restarts (): number { return this.#informer.restarts }

  /** Starts watching; returns at once. Await `synced` for the first complete snapshot. */
  start (): Promise<void> {
    this.#informer.start()
    return Promise.resolve()
  }

  async close (): Promise<void> {
    this.#clock.clearTimeout(this.#flushTimer)
    this.#flushPending = false
    await this.#informer.close()
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

/** The source `podgate serve` uses, on the cluster and namespace `resolveCluster` found. */
export function createKubernetesSource (options: { cluster: Cluster, logger: Logger, metrics?: Metrics }): KubernetesEndpointSource {
  const { kubeConfig, namespace, source } = options.cluster
  options.logger.info({ namespace, kubeconfig: source, server: kubeConfig.getCurrentCluster()?.server }, 'routing from EndpointSlices')
  return new KubernetesEndpointSource({ kubeConfig, namespace, logger: options.logger, metrics: options.metrics })
}
