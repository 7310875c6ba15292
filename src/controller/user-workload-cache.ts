// The informer-backed cache of UserWorkloads every replica keeps, across the served namespaces: the spawner reads it on the request path without an API call, the leader's reconciler is driven by it.
import { CustomObjectsApi, type KubeConfig, type KubernetesListObject } from '@kubernetes/client-node'
import { ApiConnections, DEFAULT_REQUEST_TIMEOUT_MS, requestOptions } from '../kube/api.ts'
import type { Clock } from '../clock.ts'
import { SupervisedInformer, type Backoff } from '../kube/informer.ts'
import { checkNamespaces, collectionPath, objectKey, watchScopes, type ServedNamespaces } from '../kube/namespaces.ts'
import { componentLogger, type Logger } from '../log.ts'
import { WORKLOAD_GROUP, WORKLOAD_PLURAL, WORKLOAD_VERSION, type Workload } from '../workloads/workloads.ts'
import { toWorkload, type UserWorkloadObject } from './user-workload.ts'

export interface UserWorkloadChange {
  readonly namespace: string
  /** Name of the UserWorkload object (`user-<id>` for a well-formed one). */
  readonly name: string
  /** The user, when the object names one (also for a removal). */
  readonly user: string | undefined
  /** This object's workload now; undefined when it was deleted (or is malformed). */
  readonly workload: Workload | undefined
}

export type UserWorkloadChangeListener = (change: UserWorkloadChange) => void

export interface UserWorkloadCacheOptions {
  kubeConfig: KubeConfig
  /** Where UserWorkloads are watched: one informer per namespace, or one cluster-wide for `all`. */
  namespaces: ServedNamespaces
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
  readonly namespace: string
  readonly object: UserWorkloadObject
  readonly user: string | undefined
  readonly workload: Workload | undefined
  /** metadata.creationTimestamp as written, for the oldest-claim-wins order. */
  readonly created: string
}

/** Oldest first; equal timestamps (one-second resolution) by namespace name, the same on every replica. */
function byAge (a: Entry, b: Entry): number {
  if (a.created !== b.created) return a.created < b.created ? -1 : 1
  return a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : 0
}

function createdOf (object: UserWorkloadObject): string {
  const created: unknown = object.metadata?.creationTimestamp
  return created instanceof Date ? created.toISOString().replace(/\.\d+Z$/, 'Z') : typeof created === 'string' ? created : ''
}

/**
 * Every UserWorkload in the served namespaces, kept current by supervised informers. A user id
 * is unique across namespaces: when several namespaces hold a workload for one user, the oldest
 * (then the first namespace by name) is the user's workload and the others are refused.
 */
export class UserWorkloadCache {
  readonly #informers: ReadonlyArray<SupervisedInformer<UserWorkloadObject>>
  readonly #synced: Promise<void>
  readonly #defaultProfile: string
  /** By objectKey(namespace, name). */
  readonly #entries = new Map<string, Entry>()
  /** Well-formed workloads per user, oldest first: the first is the one served. */
  readonly #claims = new Map<string, Entry[]>()
  readonly #listeners = new Set<UserWorkloadChangeListener>()
  readonly #logger: Logger
  readonly #connections = new ApiConnections()

  constructor (options: UserWorkloadCacheOptions) {
    const { kubeConfig } = options
    const namespaces = checkNamespaces(options.namespaces, 'UserWorkloadCache')
    this.#defaultProfile = options.defaultProfile ?? ''
    this.#logger = options.logger
    const api = kubeConfig.makeApiClient(CustomObjectsApi)
    const listOptions = requestOptions(options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS, this.#connections)
    // One list per (re)sync; the informer resumes its watch from this resourceVersion.
    const list = (namespace: string | undefined) => async (): Promise<KubernetesListObject<UserWorkloadObject>> => await (namespace === undefined
      ? api.listCustomObjectForAllNamespaces({ group: WORKLOAD_GROUP, version: WORKLOAD_VERSION, resourcePlural: WORKLOAD_PLURAL }, listOptions)
      : api.listNamespacedCustomObject({ group: WORKLOAD_GROUP, version: WORKLOAD_VERSION, plural: WORKLOAD_PLURAL, namespace }, listOptions)) as KubernetesListObject<UserWorkloadObject>
    this.#informers = watchScopes(namespaces).map((namespace) => new SupervisedInformer<UserWorkloadObject>({
      kubeConfig,
      path: collectionPath(WORKLOAD_GROUP, WORKLOAD_VERSION, WORKLOAD_PLURAL, namespace),
      list: list(namespace),
      handlers: {
        replace: (objects) => { this.#replace(objects, namespace) },
        upsert: (object) => { this.#upsert(object) },
        remove: (object) => { this.#remove(object.metadata?.namespace ?? '', object.metadata?.name ?? '') },
      },
      logger: componentLogger(options.logger, 'userworkload-informer', { namespace: namespace ?? '*' }),
      watchdogMs: options.watchdogMs,
      backoff: options.backoff,
      random: options.random,
      clock: options.clock,
    }))
    this.#synced = Promise.all(this.#informers.map((informer) => informer.synced)).then(() => {})
  }

  /** Resolves once every informer has listed. */
  get synced (): Promise<void> { return this.#synced }
  get isSynced (): boolean { return this.#informers.every((informer) => informer.isSynced) }
  get size (): number { return this.#entries.size }

  start (): void { for (const informer of this.#informers) informer.start() }

  async close (): Promise<void> {
    await Promise.all(this.#informers.map((informer) => informer.close()))
    await this.#connections.close()
  }

  /** The user's workload as last seen (the oldest claim when several namespaces hold one); no API call. */
  cached (user: string): Workload | undefined {
    return this.#claims.get(user)?.[0]?.workload
  }

  /** The namespaces holding a workload for `user`, the served one first. */
  claims (user: string): string[] {
    return (this.#claims.get(user) ?? []).map((entry) => entry.namespace)
  }

  /** Every user's served workload as last seen. */
  workloads (): Workload[] {
    const workloads: Workload[] = []
    for (const entries of this.#claims.values()) if (entries[0]?.workload !== undefined) workloads.push(entries[0].workload)
    return workloads
  }

  /** The raw object (the reconciler needs its uid, generation and status). */
  object (namespace: string, name: string): UserWorkloadObject | undefined {
    return this.#entries.get(objectKey(namespace, name))?.object
  }

  /** objectKey(namespace, name) of every object, well-formed or not. */
  keys (): string[] {
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
        this.#logger.error({ err, namespace: change.namespace, workload: change.name }, 'UserWorkload change listener failed')
      }
    }
  }

  #unclaim (entry: Entry): void {
    if (entry.workload === undefined) return
    const entries = this.#claims.get(entry.workload.user)
    if (entries === undefined) return
    const rest = entries.filter((other) => other !== entry)
    if (rest.length === 0) this.#claims.delete(entry.workload.user)
    else this.#claims.set(entry.workload.user, rest)
  }

  #claim (entry: Entry): void {
    if (entry.workload === undefined) return
    const entries = [...(this.#claims.get(entry.workload.user) ?? []), entry].sort(byAge)
    this.#claims.set(entry.workload.user, entries)
  }

  #set (object: UserWorkloadObject): UserWorkloadChange | undefined {
    const name = object.metadata?.name
    const namespace = object.metadata?.namespace
    if (name === undefined || name === '' || namespace === undefined || namespace === '') return undefined
    const key = objectKey(namespace, name)
    const previous = this.#entries.get(key)
    if (previous !== undefined && previous.object.metadata?.resourceVersion === object.metadata?.resourceVersion && object.metadata?.resourceVersion !== undefined) return undefined
    const workload = toWorkload(object, this.#defaultProfile)
    const user = typeof object.spec?.user === 'string' ? object.spec.user : undefined
    if (previous !== undefined) this.#unclaim(previous)
    const entry: Entry = { namespace, object, user, workload, created: createdOf(object) }
    this.#entries.set(key, entry)
    this.#claim(entry)
    return { namespace, name, user, workload }
  }

  #upsert (object: UserWorkloadObject): void {
    const change = this.#set(object)
    if (change !== undefined) this.#emit(change)
  }

  #delete (key: string): UserWorkloadChange | undefined {
    const previous = this.#entries.get(key)
    if (previous === undefined) return undefined
    this.#entries.delete(key)
    this.#unclaim(previous)
    return { namespace: previous.namespace, name: previous.object.metadata?.name ?? '', user: previous.user, workload: undefined }
  }

  #remove (namespace: string, name: string): void {
    const change = this.#delete(objectKey(namespace, name))
    if (change !== undefined) this.#emit(change)
  }

  /** A complete list of `namespace` (all namespaces when undefined): what it lacks there is gone. */
  #replace (objects: readonly UserWorkloadObject[], namespace: string | undefined): void {
    const seen = new Set<string>()
    const changes: UserWorkloadChange[] = []
    for (const object of objects) {
      const change = this.#set(object)
      if (object.metadata?.namespace !== undefined && object.metadata.name !== undefined) seen.add(objectKey(object.metadata.namespace, object.metadata.name))
      if (change !== undefined) changes.push(change)
    }
    for (const [key, entry] of [...this.#entries]) {
      if (seen.has(key) || (namespace !== undefined && entry.namespace !== namespace)) continue
      const change = this.#delete(key)
      if (change !== undefined) changes.push(change)
    }
    for (const change of changes) this.#emit(change)
  }
}
