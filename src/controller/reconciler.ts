// The leader's reconcile loop. Level-triggered: any change to a UserWorkload, to one of its
// children or to one of its pods queues that workload, and reconciling it compares the whole
// desired state with what the informers last saw: children are server-side applied only when
// they differ, status is written only when it changes, failures retry with per-key backoff.
// An orphan sweep removes children labelled as podgate's whose UserWorkload is gone.
import {
  AppsV1Api, CoreV1Api, CustomObjectsApi, NetworkingV1Api, PatchStrategy,
  type ConfigurationOptions, type KubeConfig, type KubernetesListObject, type KubernetesObject,
  type V1Deployment, type V1NetworkPolicy, type V1NetworkPolicyIngressRule, type V1PersistentVolumeClaim, type V1Pod, type V1Service,
} from '@kubernetes/client-node'
import { Counter, Gauge, Histogram } from 'prom-client'
import { componentLogger, FailureStreaks, type Logger } from '../log.ts'
import type { Metrics } from '../metrics.ts'
import { backoffDelay, SupervisedInformer, type Backoff, type CancelSchedule, type Schedule } from '../kube/informer.ts'
import {
  ApiConnections, apiErrorMessage, apiStatus, DEFAULT_REQUEST_TIMEOUT_MS, FIELD_MANAGER, isRetryable, requestOptions, retryAfterMs,
  type UserWorkloadCache, type UserWorkloadObject, type UserWorkloadStatusObject,
} from './kubernetes-workloads.ts'
import type { Profiles } from './profiles.ts'
import { desiredChildren, KEEP_ANNOTATION, type DesiredChildren } from './templates.ts'
import {
  MANAGED_BY, MANAGED_BY_LABEL, USER_LABEL, WORKLOAD_GROUP, WORKLOAD_PLURAL, WORKLOAD_VERSION, workloadName, workloadUserProblem,
  type WorkloadCondition, type WorkloadPhase,
} from '../workloads/workloads.ts'

export const DEFAULT_CONCURRENCY = 8
export const DEFAULT_RETRY_BACKOFF: Backoff = Object.freeze({ initialMs: 250, maxMs: 60_000 })
export const DEFAULT_SWEEP_INTERVAL_MS = 5 * 60_000
export const DEFAULT_RESYNC_INTERVAL_MS = 10 * 60_000
/** Retry-After is honoured up to this long. */
const MAX_RETRY_AFTER_MS = 5 * 60_000
const MANAGED_SELECTOR = `${MANAGED_BY_LABEL}=${MANAGED_BY}`
const MAX_MESSAGE = 1024

// ---- Work queue ----------------------------------------------------------------------------

export interface WorkQueueOptions {
  process: (key: string) => Promise<void>
  concurrency?: number
  backoff?: Backoff
  /** Delay before retrying after `err` on attempt `attempt` (0-based); the backoff when undefined. */
  retryDelay?: (err: unknown, attempt: number) => number | undefined
  onError?: (key: string, err: unknown, attempt: number, delayMs: number) => void
  /** A key that had failed `attempts` times was processed. */
  onRecovered?: (key: string, attempts: number) => void
  random?: () => number
  setTimeout?: Schedule
  clearTimeout?: CancelSchedule
}

/**
 * Keys waiting to be processed, like client-go's workqueue: a key added while queued is queued
 * once; a key added while being processed is processed again afterwards, never concurrently;
 * a failed key comes back after a per-key exponential backoff.
 */
export class WorkQueue {
  readonly #process: (key: string) => Promise<void>
  readonly #concurrency: number
  readonly #backoff: Backoff
  readonly #retryDelay: (err: unknown, attempt: number) => number | undefined
  readonly #onError: (key: string, err: unknown, attempt: number, delayMs: number) => void
  readonly #onRecovered: (key: string, attempts: number) => void
  readonly #random: () => number
  readonly #setTimeout: Schedule
  readonly #clearTimeout: CancelSchedule
  /** Insertion-ordered: the oldest key is processed first. */
  readonly #queued = new Set<string>()
  readonly #processing = new Set<string>()
  readonly #again = new Set<string>()
  readonly #failures = new Map<string, number>()
  readonly #retries = new Map<string, unknown>()
  readonly #running = new Set<Promise<void>>()
  #idleWaiters: Array<() => void> = []
  #started = false
  #closed = false

  constructor (options: WorkQueueOptions) {
    this.#process = options.process
    this.#concurrency = options.concurrency ?? DEFAULT_CONCURRENCY
    if (!Number.isInteger(this.#concurrency) || this.#concurrency < 1) throw new TypeError(`WorkQueue: concurrency must be a positive integer, got ${String(options.concurrency)}`)
    this.#backoff = options.backoff ?? DEFAULT_RETRY_BACKOFF
    this.#retryDelay = options.retryDelay ?? (() => undefined)
    this.#onError = options.onError ?? (() => {})
    this.#onRecovered = options.onRecovered ?? (() => {})
    this.#random = options.random ?? Math.random
    this.#setTimeout = options.setTimeout ?? ((callback, ms) => setTimeout(callback, ms))
    this.#clearTimeout = options.clearTimeout ?? ((handle) => { clearTimeout(handle as NodeJS.Timeout) })
  }

  /** Keys waiting (not counting those being processed). */
  get depth (): number { return this.#queued.size }
  get active (): number { return this.#processing.size }
  /** Keys waiting for a retry after a failure. */
  get retrying (): number { return this.#retries.size }

  add (key: string): void {
    if (this.#closed) return
    if (this.#processing.has(key)) {
      this.#again.add(key)
      return
    }
    this.#queued.add(key)
    this.#pump()
  }

  /** Starts processing; keys added before are kept and processed now. */
  start (): void {
    if (this.#started || this.#closed) return
    this.#started = true
    this.#pump()
  }

  /** Resolves once nothing is queued or being processed (retries may still be scheduled). */
  whenIdle (): Promise<void> {
    if ((this.#queued.size === 0 || !this.#started) && this.#processing.size === 0) return Promise.resolve()
    return new Promise((resolve) => { this.#idleWaiters.push(resolve) })
  }

  /** Stops taking keys, cancels retries and waits for the keys being processed. */
  async close (): Promise<void> {
    this.#closed = true
    this.#queued.clear()
    this.#again.clear()
    for (const handle of this.#retries.values()) this.#clearTimeout(handle)
    this.#retries.clear()
    await Promise.allSettled([...this.#running])
    this.#notifyIdle()
  }

  #pump (): void {
    if (!this.#started) return
    while (!this.#closed && this.#processing.size < this.#concurrency && this.#queued.size > 0) {
      const key = this.#queued.values().next().value as string
      this.#queued.delete(key)
      this.#processing.add(key)
      const run = this.#run(key)
      this.#running.add(run)
      void run.finally(() => this.#running.delete(run))
    }
  }

  async #run (key: string): Promise<void> {
    try {
      await this.#process(key)
      const failures = this.#failures.get(key)
      this.#failures.delete(key)
      if (failures !== undefined && !this.#closed) this.#onRecovered(key, failures)
      const retry = this.#retries.get(key)
      if (retry !== undefined) {
        this.#clearTimeout(retry)
        this.#retries.delete(key)
      }
    } catch (err) {
      const attempt = this.#failures.get(key) ?? 0
      this.#failures.set(key, attempt + 1)
      const delay = this.#retryDelay(err, attempt) ?? backoffDelay(attempt, this.#backoff, this.#random)
      // The retry sees the latest state anyway: events that came in meanwhile wait for it.
      this.#again.delete(key)
      if (!this.#closed) this.#onError(key, err, attempt, delay)
      if (!this.#closed) {
        const previous = this.#retries.get(key)
        if (previous !== undefined) this.#clearTimeout(previous)
        this.#retries.set(key, this.#setTimeout(() => {
          this.#retries.delete(key)
          this.add(key)
        }, delay))
      }
    } finally {
      this.#processing.delete(key)
      if (this.#again.delete(key) && !this.#closed) this.#queued.add(key)
      this.#pump()
      if (this.#queued.size === 0 && this.#processing.size === 0) this.#notifyIdle()
    }
  }

  #notifyIdle (): void {
    const waiters = this.#idleWaiters
    this.#idleWaiters = []
    for (const resolve of waiters) resolve()
  }
}

// ---- Status --------------------------------------------------------------------------------

/** Container waiting reasons that mean the pod will not become ready by waiting. */
export const FAILURE_REASONS: ReadonlySet<string> = new Set([
  'ImagePullBackOff', 'ErrImagePull', 'InvalidImageName', 'CrashLoopBackOff', 'CreateContainerConfigError', 'CreateContainerError', 'RunContainerError',
])

export interface PodProblem {
  readonly reason: string
  readonly message: string
}

function isLive (pod: V1Pod): boolean {
  return pod.metadata?.deletionTimestamp === undefined || pod.metadata.deletionTimestamp === null
}

export function isPodReady (pod: V1Pod): boolean {
  return isLive(pod) && (pod.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True')
}

/** Why the user's pods cannot start (a container waiting reason, or Unschedulable); undefined otherwise. */
export function podProblem (pods: readonly V1Pod[]): PodProblem | undefined {
  for (const pod of pods) {
    if (!isLive(pod)) continue
    for (const container of [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])]) {
      const waiting = container.state?.waiting
      if (waiting?.reason !== undefined && FAILURE_REASONS.has(waiting.reason)) return { reason: waiting.reason, message: waiting.message ?? '' }
    }
    const scheduled = (pod.status?.conditions ?? []).find((c) => c.type === 'PodScheduled')
    if (scheduled?.status === 'False' && scheduled.reason === 'Unschedulable') return { reason: 'Unschedulable', message: scheduled.message ?? '' }
  }
  return undefined
}

export interface ObservedWorkload {
  readonly suspended: boolean
  /** The UserWorkload's metadata.generation. */
  readonly generation: number | undefined
  /** A configuration problem (bad user id, unknown profile): the workload is Failed with this message. */
  readonly problem?: string
  readonly serviceName: string | undefined
  readonly hasDeployment: boolean
  readonly pods: readonly V1Pod[]
}

export interface DesiredStatus {
  readonly phase: WorkloadPhase
  readonly readyReplicas: number
  readonly serviceName: string | undefined
  readonly message: string | undefined
  readonly conditions: readonly WorkloadCondition[]
}

function clip (text: string): string {
  return text.length > MAX_MESSAGE ? `${text.slice(0, MAX_MESSAGE - 3)}...` : text
}

/** The status a workload should show, from what was observed. `previous` keeps lastTransitionTime stable. */
export function deriveStatus (observed: ObservedWorkload, previous: UserWorkloadStatusObject | undefined, now: Date): DesiredStatus {
  const readyReplicas = observed.pods.filter(isPodReady).length
  let phase: WorkloadPhase
  let reason: string
  let message: string | undefined
  const problem = observed.problem === undefined ? podProblem(observed.pods) : undefined
  if (observed.problem !== undefined) {
    [phase, reason, message] = ['Failed', 'InvalidWorkload', observed.problem]
  } else if (observed.suspended) {
    [phase, reason, message] = ['Suspended', 'Suspended', readyReplicas > 0 ? 'scaling to zero' : 'scaled to zero']
  } else if (readyReplicas > 0) {
    [phase, reason, message] = ['Ready', 'PodReady', undefined]
  } else if (problem !== undefined) {
    [phase, reason, message] = ['Failed', problem.reason, problem.message === '' ? problem.reason : `${problem.reason}: ${problem.message}`]
  } else if (observed.hasDeployment) {
    [phase, reason, message] = ['Starting', 'Starting', 'waiting for the pod to become ready']
  } else {
    [phase, reason, message] = ['Pending', 'Pending', 'waiting for the Deployment']
  }
  const ready = phase === 'Ready' ? 'True' : 'False'
  const before = previous?.conditions?.find((c) => c.type === 'Ready')
  const condition: WorkloadCondition & { observedGeneration?: number } = {
    type: 'Ready',
    status: ready,
    reason,
    message: clip(message ?? 'a pod is ready'),
    lastTransitionTime: before?.status === ready && typeof before.lastTransitionTime === 'string' ? before.lastTransitionTime : now.toISOString().replace(/\.\d+Z$/, 'Z'),
    ...(observed.generation === undefined ? {} : { observedGeneration: observed.generation }),
  }
  return { phase, readyReplicas, serviceName: observed.serviceName, message: message === undefined ? undefined : clip(message), conditions: [condition] }
}

/** Whether `current` already says what `desired` says (ignoring fields podgate does not write). */
export function statusMatches (desired: DesiredStatus, current: UserWorkloadStatusObject | undefined): boolean {
  return current !== undefined &&
    current.phase === desired.phase &&
    (current.readyReplicas ?? 0) === desired.readyReplicas &&
    current.serviceName === desired.serviceName &&
    current.message === desired.message &&
    isSubset(desired.conditions, current.conditions) && (current.conditions?.length ?? 0) === desired.conditions.length
}

const QUANTITY = /^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$/
const QUANTITY_SCALE: Record<string, number> = {
  '': 1, n: 1e-9, u: 1e-6, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
}

/** A Kubernetes quantity as a number ("500m" → 0.5, "1Gi" → 1073741824); undefined if it is not one. */
export function quantityValue (text: string): number | undefined {
  const match = QUANTITY.exec(text)
  if (match === null) return undefined
  const suffix = match[2] ?? ''
  const scale = /^[eE]/.test(suffix) ? 10 ** Number(suffix.slice(1)) : QUANTITY_SCALE[suffix]
  return scale === undefined ? undefined : Number(match[1]) * scale
}

function sameQuantity (desired: string, actual: string): boolean {
  const a = quantityValue(desired)
  const b = quantityValue(actual)
  return a !== undefined && b !== undefined && Math.abs(a - b) <= Math.abs(a) * 1e-12
}

/**
 * True when every field of `desired` has the same value in `actual`; the server's defaults in
 * `actual` are ignored, and resource quantities compare by value (the API server rewrites
 * "0.5" as "500m").
 */
export function isSubset (desired: unknown, actual: unknown, path: readonly string[] = []): boolean {
  if (Array.isArray(desired)) {
    return Array.isArray(actual) && actual.length === desired.length && desired.every((item, i) => isSubset(item, actual[i], path))
  }
  if (desired !== null && typeof desired === 'object') {
    if (actual === null || typeof actual !== 'object' || Array.isArray(actual)) return false
    const record = actual as Record<string, unknown>
    return Object.entries(desired).every(([key, value]) => value === undefined || isSubset(value, record[key], [...path.slice(-2), key]))
  }
  if (desired === actual) return true
  const [resources, section] = path
  return typeof desired === 'string' && typeof actual === 'string' && path.length === 3 && resources === 'resources' &&
    (section === 'requests' || section === 'limits') && sameQuantity(desired, actual)
}

// ---- Children ------------------------------------------------------------------------------

function userOf (object: KubernetesObject): string | undefined {
  return object.metadata?.labels?.[USER_LABEL]
}

/**
 * client-node's typed lists and patches return its models, where a NetworkPolicy ingress rule's
 * `from` is called `_from`; watch events carry the wire form. The index holds the wire form.
 */
function wireNetworkPolicy (policy: V1NetworkPolicy): V1NetworkPolicy {
  const ingress = policy.spec?.ingress
  if (ingress === undefined || !ingress.some((rule) => '_from' in rule)) return policy
  const rules = ingress.map((rule) => {
    const { _from: from, ...rest } = rule
    return (from === undefined ? rest : { ...rest, from }) as V1NetworkPolicyIngressRule
  })
  return { ...policy, spec: { ...policy.spec, ingress: rules } }
}

/** An informer's objects by name, with the names per user label. */
class ObjectIndex<T extends KubernetesObject> {
  readonly #byName = new Map<string, T>()
  readonly #byUser = new Map<string, Set<string>>()
  readonly #normalize: (object: T) => T

  constructor (normalize: (object: T) => T = (object) => object) {
    this.#normalize = normalize
  }

  get (name: string): T | undefined { return this.#byName.get(name) }
  all (): T[] { return [...this.#byName.values()] }
  get size (): number { return this.#byName.size }

  forUser (user: string): T[] {
    return [...(this.#byUser.get(user) ?? [])].flatMap((name) => {
      const object = this.#byName.get(name)
      return object === undefined ? [] : [object]
    })
  }

  /** Returns the users whose objects changed (before and after). */
  upsert (received: T): string[] {
    const object = this.#normalize(received)
    const name = object.metadata?.name
    if (name === undefined) return []
    const previous = this.remove(name)
    this.#byName.set(name, object)
    const user = userOf(object)
    if (user !== undefined) {
      let names = this.#byUser.get(user)
      if (names === undefined) {
        names = new Set()
        this.#byUser.set(user, names)
      }
      names.add(name)
    }
    return [...new Set([...previous, ...(user === undefined ? [] : [user])])]
  }

  remove (name: string): string[] {
    const previous = this.#byName.get(name)
    if (previous === undefined) return []
    this.#byName.delete(name)
    const user = userOf(previous)
    if (user === undefined) return []
    const names = this.#byUser.get(user)
    names?.delete(name)
    if (names?.size === 0) this.#byUser.delete(user)
    return [user]
  }

  replace (objects: readonly T[]): string[] {
    const users = new Set<string>()
    const seen = new Set<string>()
    for (const object of objects) {
      const name = object.metadata?.name
      if (name === undefined) continue
      seen.add(name)
      const previous = this.#byName.get(name)
      if (previous !== undefined && previous.metadata?.resourceVersion === object.metadata?.resourceVersion) continue
      for (const user of this.upsert(object)) users.add(user)
    }
    for (const name of [...this.#byName.keys()]) if (!seen.has(name)) for (const user of this.remove(name)) users.add(user)
    return [...users]
  }
}

interface Preconditions { uid?: string, resourceVersion?: string }

/** One kind of child: its informer's index and the writes the reconciler makes. */
interface ChildKind<T extends KubernetesObject> {
  readonly kind: 'Deployment' | 'Service' | 'NetworkPolicy' | 'PersistentVolumeClaim' | 'Pod'
  readonly index: ObjectIndex<T>
  readonly informer: SupervisedInformer<T>
  apply (name: string, body: T): Promise<T>
  patch (name: string, body: object): Promise<T>
  remove (name: string, preconditions: Preconditions): Promise<void>
}

export type SweptKind = 'Deployment' | 'Service' | 'NetworkPolicy' | 'PersistentVolumeClaim'
const SWEPT_KINDS: readonly SweptKind[] = ['Deployment', 'Service', 'NetworkPolicy', 'PersistentVolumeClaim']

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
    for (const kind of SWEPT_KINDS) this.swept.inc({ kind }, 0)
  }
}

export interface ReconcilerOptions {
  kubeConfig: KubeConfig
  namespace: string
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
  setTimeout?: Schedule
  clearTimeout?: CancelSchedule
  now?: () => number
}

/** Why a UserWorkload cannot be served (said in its status), or undefined. */
function workloadProblem (name: string, object: UserWorkloadObject, profiles: Profiles): string | undefined {
  const user = object.spec?.user
  if (typeof user !== 'string') return 'spec.user is missing'
  const userProblem = workloadUserProblem(user)
  if (userProblem !== undefined) return `spec.user: ${userProblem}`
  if (name !== workloadName(user)) return `metadata.name must be ${workloadName(user)} (user-<spec.user>), got ${name}`
  if (profiles.get(object.spec?.profile) === undefined) return `spec.profile: unknown profile ${JSON.stringify(object.spec?.profile)}; known: ${profiles.names.join(', ')}`
  return undefined
}

export class Reconciler {
  readonly #options: ReconcilerOptions
  readonly #namespace: string
  readonly #cache: UserWorkloadCache
  readonly #profiles: Profiles
  readonly #logger: Logger
  readonly #reconcileFailures: FailureStreaks
  readonly #orphanFailures: FailureStreaks
  readonly #metrics: ReconcilerMetrics | undefined
  readonly #queue: WorkQueue
  readonly #deployments: ChildKind<V1Deployment>
  readonly #services: ChildKind<V1Service>
  readonly #policies: ChildKind<V1NetworkPolicy>
  readonly #claims: ChildKind<V1PersistentVolumeClaim>
  readonly #pods: ChildKind<V1Pod>
  readonly #statusApi: CustomObjectsApi
  readonly #statusOptions: ConfigurationOptions
  readonly #connections = new ApiConnections()
  readonly #networkPolicy: boolean
  readonly #setTimeout: Schedule
  readonly #clearTimeout: CancelSchedule
  readonly #now: () => number
  /** Status last written per workload, with the resourceVersion it was computed from. */
  readonly #written = new Map<string, { rv: string | undefined, json: string }>()
  readonly #synced: Promise<void>
  #unsubscribe: (() => void) | undefined
  #sweepTimer: unknown
  #resyncTimer: unknown
  #sweeping: Promise<number> | undefined
  #started = false
  #closed = false

  constructor (options: ReconcilerOptions) {
    this.#options = options
    this.#namespace = options.namespace
    this.#cache = options.cache
    this.#profiles = options.profiles
    this.#logger = componentLogger(options.logger, 'reconciler')
    this.#reconcileFailures = new FailureStreaks(this.#logger, { failed: 'reconcile failed; retrying', recovered: 'reconciled after failures', describe: apiErrorMessage })
    this.#orphanFailures = new FailureStreaks(this.#logger, { failed: 'could not delete an orphan', recovered: 'deleted an orphan: its UserWorkload is gone', describe: apiErrorMessage })
    this.#networkPolicy = options.networkPolicy ?? true
    this.#setTimeout = options.setTimeout ?? ((callback, ms) => setTimeout(callback, ms))
    this.#clearTimeout = options.clearTimeout ?? ((handle) => { clearTimeout(handle as NodeJS.Timeout) })
    this.#now = options.now ?? Date.now
    const timeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS
    const plain = requestOptions(timeoutMs, this.#connections)
    const apply = requestOptions(timeoutMs, this.#connections, PatchStrategy.ServerSideApply)
    const merge = requestOptions(timeoutMs, this.#connections, PatchStrategy.MergePatch)
    this.#statusOptions = merge
    const { kubeConfig } = options
    const namespace = this.#namespace
    const apps = kubeConfig.makeApiClient(AppsV1Api)
    const core = kubeConfig.makeApiClient(CoreV1Api)
    const networking = kubeConfig.makeApiClient(NetworkingV1Api)
    this.#statusApi = kubeConfig.makeApiClient(CustomObjectsApi)
    const ssa = { namespace, fieldManager: FIELD_MANAGER, force: true }
    const mergeParams = { namespace, fieldManager: FIELD_MANAGER }
    const removal = (preconditions: Preconditions) => ({ namespace, propagationPolicy: 'Background', body: { preconditions } })
    this.#deployments = this.#child('Deployment', `/apis/apps/v1/namespaces/${namespace}/deployments`, () => apps.listNamespacedDeployment({ namespace, labelSelector: MANAGED_SELECTOR }, plain), {
      apply: (name, body) => apps.patchNamespacedDeployment({ ...ssa, name, body }, apply),
      patch: (name, body) => apps.patchNamespacedDeployment({ ...mergeParams, name, body }, merge),
      remove: async (name, pre) => { await apps.deleteNamespacedDeployment({ ...removal(pre), name }, plain) },
    })
    this.#services = this.#child('Service', `/api/v1/namespaces/${namespace}/services`, () => core.listNamespacedService({ namespace, labelSelector: MANAGED_SELECTOR }, plain), {
      apply: (name, body) => core.patchNamespacedService({ ...ssa, name, body }, apply),
      patch: (name, body) => core.patchNamespacedService({ ...mergeParams, name, body }, merge),
      remove: async (name, pre) => { await core.deleteNamespacedService({ ...removal(pre), name }, plain) },
    })
    this.#policies = this.#child('NetworkPolicy', `/apis/networking.k8s.io/v1/namespaces/${namespace}/networkpolicies`, () => networking.listNamespacedNetworkPolicy({ namespace, labelSelector: MANAGED_SELECTOR }, plain), {
      apply: (name, body) => networking.patchNamespacedNetworkPolicy({ ...ssa, name, body }, apply),
      patch: (name, body) => networking.patchNamespacedNetworkPolicy({ ...mergeParams, name, body }, merge),
      remove: async (name, pre) => { await networking.deleteNamespacedNetworkPolicy({ ...removal(pre), name }, plain) },
    }, wireNetworkPolicy)
    this.#claims = this.#child('PersistentVolumeClaim', `/api/v1/namespaces/${namespace}/persistentvolumeclaims`, () => core.listNamespacedPersistentVolumeClaim({ namespace, labelSelector: MANAGED_SELECTOR }, plain), {
      apply: (name, body) => core.patchNamespacedPersistentVolumeClaim({ ...ssa, name, body }, apply),
      patch: (name, body) => core.patchNamespacedPersistentVolumeClaim({ ...mergeParams, name, body }, merge),
      remove: async (name, pre) => { await core.deleteNamespacedPersistentVolumeClaim({ ...removal(pre), name }, plain) },
    })
    const readOnly = (): Promise<never> => Promise.reject(new Error('podgate never writes pods'))
    this.#pods = this.#child('Pod', `/api/v1/namespaces/${namespace}/pods`, () => core.listNamespacedPod({ namespace, labelSelector: MANAGED_SELECTOR }, plain), {
      apply: readOnly, patch: readOnly, remove: readOnly,
    })
    this.#queue = new WorkQueue({
      process: (key) => this.#reconcileTimed(key),
      concurrency: options.concurrency ?? DEFAULT_CONCURRENCY,
      backoff: options.retryBackoff ?? DEFAULT_RETRY_BACKOFF,
      retryDelay: (err) => {
        const after = retryAfterMs(err, this.#now)
        if (after !== undefined) return Math.min(after, MAX_RETRY_AFTER_MS)
        // Not worth a quick retry (400, 403, 422…): come back at the slowest pace.
        return isRetryable(err) ? undefined : (options.retryBackoff ?? DEFAULT_RETRY_BACKOFF).maxMs
      },
      onError: (key, err, attempt, delayMs) => {
        const level = isRetryable(err) && attempt < 5 ? 'warn' : 'error'
        this.#reconcileFailures.failed(err, { workload: key, retryInMs: delayMs }, { key, level })
      },
      onRecovered: (key) => { this.#reconcileFailures.recovered({ workload: key }, key) },
      random: options.random,
      setTimeout: this.#setTimeout,
      clearTimeout: this.#clearTimeout,
    })
    this.#metrics = options.metrics
    this.#synced = Promise.all([this.#cache.synced, ...this.#kinds().map((kind) => kind.informer.synced)]).then(() => {})
  }

  #kinds (): Array<ChildKind<KubernetesObject>> {
    return [this.#deployments, this.#services, this.#policies, this.#claims, this.#pods] as Array<ChildKind<KubernetesObject>>
  }

  #child<T extends KubernetesObject> (
    kind: ChildKind<T>['kind'],
    path: string,
    list: () => Promise<KubernetesListObject<T>>,
    writes: Pick<ChildKind<T>, 'apply' | 'patch' | 'remove'>,
    normalize?: (object: T) => T,
  ): ChildKind<T> {
    const index = new ObjectIndex<T>(normalize)
    const requeue = (users: readonly string[]): void => { for (const user of users) this.#queue.add(workloadName(user)) }
    const options = this.#options
    const informer = new SupervisedInformer<T>({
      kubeConfig: options.kubeConfig,
      path,
      list,
      labelSelector: MANAGED_SELECTOR,
      handlers: {
        replace: (objects) => { requeue(index.replace(objects)) },
        upsert: (object) => { requeue(index.upsert(object)) },
        remove: (object) => { requeue(index.remove(object.metadata?.name ?? '')) },
      },
      logger: this.#logger.child({ informer: kind }),
      watchdogMs: options.watchdogMs,
      backoff: options.informerBackoff,
      random: options.random,
      setTimeout: this.#setTimeout,
      clearTimeout: this.#clearTimeout,
      now: this.#now,
    })
    return { kind, index, informer, ...writes }
  }

  /** Resolves once the UserWorkload cache and every child informer have listed. */
  get synced (): Promise<void> { return this.#synced }
  get queue (): WorkQueue { return this.#queue }

  /** Starts the informers; once synced, reconciles every workload and sweeps orphans. */
  async start (): Promise<void> {
    if (this.#started || this.#closed) return
    this.#started = true
    this.#unsubscribe = this.#cache.onChange((change) => { this.#queue.add(change.name) })
    for (const kind of this.#kinds()) kind.informer.start()
    await this.#synced
    if (this.#closed) return
    for (const name of this.#cache.names()) this.#queue.add(name)
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
    this.#clearTimeout(this.#sweepTimer)
    this.#clearTimeout(this.#resyncTimer)
    this.#connections.abort()
    await this.#queue.close()
    await this.#sweeping
    await Promise.all(this.#kinds().map((kind) => kind.informer.close()))
    await this.#connections.close()
  }

  #scheduleSweep (): void {
    if (this.#closed) return
    this.#sweepTimer = this.#setTimeout(() => {
      void this.sweep().finally(() => { this.#scheduleSweep() })
    }, this.#options.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS)
  }

  #scheduleResync (): void {
    if (this.#closed) return
    this.#resyncTimer = this.#setTimeout(() => {
      for (const name of this.#cache.names()) this.#queue.add(name)
      this.#scheduleResync()
    }, this.#options.resyncIntervalMs ?? DEFAULT_RESYNC_INTERVAL_MS)
  }

  /**
   * Deletes children labelled as podgate's whose UserWorkload is gone. Never an unlabelled object,
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
    const kinds: Record<SweptKind, ChildKind<KubernetesObject>> = {
      Deployment: this.#deployments, Service: this.#services, NetworkPolicy: this.#policies, PersistentVolumeClaim: this.#claims,
    }
    for (const kindName of SWEPT_KINDS) {
      const kind = kinds[kindName]
      for (const object of kind.index.all()) {
        if (this.#closed) return deleted
        const user = userOf(object)
        const name = object.metadata?.name
        if (user === undefined || name === undefined || object.metadata?.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY) continue
        if (kindName === 'PersistentVolumeClaim' && object.metadata?.annotations?.[KEEP_ANNOTATION] === 'true') continue
        if (this.#cache.object(workloadName(user)) !== undefined) continue
        try {
          await kind.remove(name, { uid: object.metadata?.uid, resourceVersion: object.metadata?.resourceVersion })
          deleted++
          this.#metrics?.swept.inc({ kind: kindName })
          // One line either way; after failed attempts it says how many.
          if (this.#orphanFailures.recovered({ kind: kindName, name, user }, `${kindName}/${name}`) === 0) {
            this.#logger.info({ kind: kindName, name, user }, 'deleted an orphan: its UserWorkload is gone')
          }
        } catch (err) {
          const status = apiStatus(err)
          // 404: already gone; 409: changed since it was seen (adopted again, say): leave it.
          if (status === 404 || status === 409) this.#orphanFailures.forget(`${kindName}/${name}`)
          else if (!this.#closed) this.#orphanFailures.failed(err, { kind: kindName, name }, { key: `${kindName}/${name}` })
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

  async #reconcile (name: string): Promise<void> {
    const object = this.#cache.object(name)
    if (object === undefined) {
      this.#written.delete(name)
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
    const uid = object.metadata?.uid
    if (uid === undefined) throw new Error(`UserWorkload ${name} has no uid`)
    const suspended = object.spec?.suspended === true
    const desired = desiredChildren({ user, suspended, owner: { name, uid }, profile }, {
      namespace: this.#namespace,
      ...(this.#options.gatewayPodSelector === undefined ? {} : { gatewayPodSelector: this.#options.gatewayPodSelector }),
    })
    await this.#applyChildren(desired)
    await this.#deleteStale(user, desired)
    await this.#writeStatus(object, {
      suspended,
      generation: object.metadata?.generation,
      serviceName: this.#services.index.get(name) === undefined ? undefined : name,
      hasDeployment: this.#deployments.index.get(name) !== undefined,
      pods: this.#pods.index.forUser(user),
    })
  }

  /** Volume first (the pod mounts it), the NetworkPolicy before the pod exists, the Deployment last. */
  async #applyChildren (desired: DesiredChildren): Promise<void> {
    if (desired.claim !== undefined) await this.#ensureClaim(desired.claim)
    await this.#applyIfChanged(this.#services, desired.service)
    if (this.#networkPolicy) await this.#applyIfChanged(this.#policies, desired.networkPolicy)
    await this.#applyIfChanged(this.#deployments, desired.deployment)
  }

  async #applyIfChanged<T extends KubernetesObject> (kind: ChildKind<T>, desired: T): Promise<void> {
    const name = desired.metadata?.name ?? ''
    const current = kind.index.get(name)
    if (current !== undefined && isSubset(desired, current)) return
    const applied = await kind.apply(name, desired)
    this.#metrics?.writes.inc({ kind: kind.kind, verb: 'apply' })
    // The informer brings the same object soon; until then a reconcile must not apply it again.
    if (applied?.metadata?.name === name) kind.index.upsert(applied)
  }

  /**
   * A PVC is created once; afterwards only its ownership changes (keepOnDelete), never its spec:
   * storage class and access modes are immutable, and shrinking is refused.
   */
  async #ensureClaim (desired: V1PersistentVolumeClaim): Promise<void> {
    const name = desired.metadata?.name ?? ''
    const current = this.#claims.index.get(name)
    if (current === undefined) {
      await this.#applyIfChanged(this.#claims, desired)
      return
    }
    const keep = desired.metadata?.annotations?.[KEEP_ANNOTATION] === 'true'
    const ownedByWorkload = (current.metadata?.ownerReferences ?? []).some((ref) => ref.kind === 'UserWorkload')
    const kept = current.metadata?.annotations?.[KEEP_ANNOTATION] === 'true'
    const ownerMatches = keep ? !ownedByWorkload : isSubset(desired.metadata?.ownerReferences, current.metadata?.ownerReferences)
    if (kept === keep && ownerMatches && isSubset(desired.metadata?.labels, current.metadata?.labels)) return
    const patched = await this.#claims.patch(name, {
      metadata: {
        labels: desired.metadata?.labels,
        annotations: { [KEEP_ANNOTATION]: keep ? 'true' : null },
        ownerReferences: keep ? null : desired.metadata?.ownerReferences,
      },
    })
    this.#metrics?.writes.inc({ kind: 'PersistentVolumeClaim', verb: 'patch' })
    if (patched?.metadata?.name === name) this.#claims.index.upsert(patched)
  }

  /** Children of `user` that the templates no longer produce (a renamed child, a disabled NetworkPolicy); never a PVC. */
  async #deleteStale (user: string, desired: DesiredChildren): Promise<void> {
    const wanted: Array<[ChildKind<KubernetesObject>, string | undefined]> = [
      [this.#deployments, desired.deployment.metadata?.name],
      [this.#services, desired.service.metadata?.name],
      [this.#policies, this.#networkPolicy ? desired.networkPolicy.metadata?.name : undefined],
    ]
    for (const [kind, keep] of wanted) {
      for (const object of kind.index.forUser(user)) {
        const name = object.metadata?.name
        if (name === undefined || name === keep || object.metadata?.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY) continue
        try {
          await kind.remove(name, { uid: object.metadata?.uid })
          this.#metrics?.writes.inc({ kind: kind.kind, verb: 'delete' })
          kind.index.remove(name)
          this.#logger.info({ kind: kind.kind, name, user }, 'deleted a child the templates no longer produce')
        } catch (err) {
          if (apiStatus(err) !== 404) throw err
        }
      }
    }
  }

  async #writeStatus (object: UserWorkloadObject, observed: ObservedWorkload): Promise<void> {
    const name = object.metadata?.name ?? ''
    const status = deriveStatus(observed, object.status, new Date(this.#now()))
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
    const last = this.#written.get(name)
    // Already written from this very version; its watch event has not arrived yet.
    if (last !== undefined && last.rv === rv && last.json === json) return
    try {
      await this.#statusApi.patchNamespacedCustomObjectStatus({
        group: WORKLOAD_GROUP, version: WORKLOAD_VERSION, namespace: this.#namespace, plural: WORKLOAD_PLURAL, name, body, fieldManager: FIELD_MANAGER,
      }, this.#statusOptions)
    } catch (err) {
      if (apiStatus(err) === 404) return
      throw err
    }
    this.#metrics?.writes.inc({ kind: 'UserWorkload', verb: 'status' })
    this.#written.set(name, { rv, json })
    if (status.phase === 'Failed' && observed.problem === undefined) this.#logger.warn({ workload: name, message: status.message }, 'workload cannot start')
  }
}
