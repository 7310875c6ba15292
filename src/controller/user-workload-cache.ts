// The informer-backed cache of UserWorkloads every replica keeps: the spawner reads it on the request path without an API call, the leader's reconciler is driven by it.
import { CustomObjectsApi, type KubeConfig, type KubernetesListObject } from '@kubernetes/client-node'
import { ApiConnections, DEFAULT_REQUEST_TIMEOUT_MS, requestOptions } from '../kube/api.ts'
import type { Clock } from '../clock.ts'
import { SupervisedInformer, type Backoff } from '../kube/informer.ts'
import { componentLogger, type Logger } from '../log.ts'
import { WORKLOAD_GROUP, WORKLOAD_PLURAL, WORKLOAD_VERSION, type Workload } from '../workloads/workloads.ts'
import { toWorkload, type UserWorkloadObject } from './user-workload.ts'

export interface UserWorkloadChange {
  /** Name of the UserWorkload object (`user-<id>` for a well-formed one). */
  readonly name: string
  /** The user, when the object names one (also for a removal). */
  readonly user: string | undefined
  /** The workload now; undefined when it was deleted (or is malformed). */
  readonly workload: Workload | undefined
}

export type UserWorkloadChangeListener = (change: UserWorkloadChange) => void

export interface UserWorkloadCacheOptions {
  kubeConfig: KubeConfig
  namespace: string
  logger: Logger
  /** Reported as a Workload's profile when spec.profile is empty. */
  defaultProfile?: string
  requestTimeoutMs?: number
  watchdogMs?: number
  backoff?: Backoff
  random?: () => number
  clock?: Clock
}

interface Entry {
  readonly object: UserWorkloadObject
  readonly user: string | undefined
  readonly workload: Workload | undefined
}

/** Every UserWorkload in the namespace, kept current by a supervised informer. */
export class UserWorkloadCache {
  readonly #informer: SupervisedInformer<UserWorkloadObject>
  readonly #defaultProfile: string
  readonly #entries = new Map<string, Entry>()
  readonly #byUser = new Map<string, Workload>()
  readonly #listeners = new Set<UserWorkloadChangeListener>()
  readonly #logger: Logger
  readonly #connections = new ApiConnections()

  constructor (options: UserWorkloadCacheOptions) {
    const { kubeConfig, namespace } = options
    this.#defaultProfile = options.defaultProfile ?? ''
    this.#logger = options.logger
    const api = kubeConfig.makeApiClient(CustomObjectsApi)
    const listOptions = requestOptions(options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS, this.#connections)
    const list = async (): Promise<KubernetesListObject<UserWorkloadObject>> => {
      // One list per (re)sync; the informer resumes its watch from this resourceVersion.
      return await api.listNamespacedCustomObject({ group: WORKLOAD_GROUP, version: WORKLOAD_VERSION, namespace, plural: WORKLOAD_PLURAL }, listOptions) as KubernetesListObject<UserWorkloadObject>
    }
    this.#informer = new SupervisedInformer<UserWorkloadObject>({
      kubeConfig,
      path: `/apis/${WORKLOAD_GROUP}/${WORKLOAD_VERSION}/namespaces/${namespace}/${WORKLOAD_PLURAL}`,
      list,
      handlers: {
        replace: (objects) => { this.#replace(objects) },
        upsert: (object) => { this.#upsert(object) },
        remove: (object) => { this.#remove(object.metadata?.name ?? '') },
      },
      logger: componentLogger(options.logger, 'userworkload-informer', { namespace }),
      watchdogMs: options.watchdogMs,
      backoff: options.backoff,
      random: options.random,
      clock: options.clock,
    })
  }

  get synced (): Promise<void> { return this.#informer.synced }
  get isSynced (): boolean { return this.#informer.isSynced }
  get size (): number { return this.#entries.size }

  start (): void { this.#informer.start() }

  async close (): Promise<void> {
    await this.#informer.close()
    await this.#connections.close()
  }

  /** The user's workload as last seen; no API call. */
  cached (user: string): Workload | undefined {
    return this.#byUser.get(user)
  }

  /** Every well-formed workload as last seen. */
  workloads (): Workload[] {
    return [...this.#byUser.values()]
  }

  /** The raw object by name (the reconciler needs its uid, generation and status). */
  object (name: string): UserWorkloadObject | undefined {
    return this.#entries.get(name)?.object
  }

  names (): string[] {
    return [...this.#entries.keys()]
  }

  /** Called after every change, with the cache already updated; returns the unsubscribe function. */
  onChange (listener: UserWorkloadChangeListener): () => void {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }

  #emit (change: UserWorkloadChange): void {
    for (const listener of this.#listeners) {
      try {
        listener(change)
      } catch (err) {
        this.#logger.error({ err, workload: change.name }, 'UserWorkload change listener failed')
      }
    }
  }

  #set (object: UserWorkloadObject): UserWorkloadChange | undefined {
    const name = object.metadata?.name
    if (name === undefined || name === '') return undefined
    const previous = this.#entries.get(name)
    if (previous !== undefined && previous.object.metadata?.resourceVersion === object.metadata?.resourceVersion && object.metadata?.resourceVersion !== undefined) return undefined
    const workload = toWorkload(object, this.#defaultProfile)
    const user = typeof object.spec?.user === 'string' ? object.spec.user : undefined
    if (previous?.workload !== undefined) this.#byUser.delete(previous.workload.user)
    this.#entries.set(name, { object, user, workload })
    if (workload !== undefined) this.#byUser.set(workload.user, workload)
    return { name, user, workload }
  }

  #upsert (object: UserWorkloadObject): void {
    const change = this.#set(object)
    if (change !== undefined) this.#emit(change)
  }

  #remove (name: string): void {
    const previous = this.#entries.get(name)
    if (previous === undefined) return
    this.#entries.delete(name)
    if (previous.workload !== undefined) this.#byUser.delete(previous.workload.user)
    this.#emit({ name, user: previous.user, workload: undefined })
  }

  #replace (objects: readonly UserWorkloadObject[]): void {
    const seen = new Set<string>()
    const changes: UserWorkloadChange[] = []
    for (const object of objects) {
      const name = object.metadata?.name
      if (name === undefined) continue
      seen.add(name)
      const change = this.#set(object)
      if (change !== undefined) changes.push(change)
    }
    for (const name of [...this.#entries.keys()]) {
      if (seen.has(name)) continue
      const previous = this.#entries.get(name)
      this.#entries.delete(name)
      if (previous?.workload !== undefined) this.#byUser.delete(previous.workload.user)
      changes.push({ name, user: previous?.user, workload: undefined })
    }
    for (const change of changes) this.#emit(change)
  }
}
