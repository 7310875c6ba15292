// Workloads over UserWorkload custom objects, plus the informer-backed cache of them that
// every replica keeps (the spawner reads it on the request path without an API call, the
// leader's reconciler is driven by it). Also the conventions every provisioner API call
// shares: pooled connections, a per-request timeout, the patch content types, and how API errors are classified.
import {
  ApiException, CustomObjectsApi, Observable, PatchStrategy, setHeaderMiddleware,
  type ConfigurationOptions, type KubeConfig, type KubernetesListObject, type KubernetesObject, type ObservableMiddleware,
} from '@kubernetes/client-node'
import type { Dispatcher } from 'undici'
import { isValidUserId } from '../auth/user-id.ts'
import { BadRequestError, WorkloadNotFoundError } from '../errors.ts'
import { apiErrorMessage, apiStatus } from '../kube/api-errors.ts'
import { componentLogger, FailureStreaks, type Logger } from '../log.ts'
import { SupervisedInformer, type Backoff, type CancelSchedule, type Schedule } from '../kube/informer.ts'
import type { Profiles } from './profiles.ts'
import {
  MANAGED_BY, MANAGED_BY_LABEL, USER_LABEL, WORKLOAD_GROUP, WORKLOAD_KIND, WORKLOAD_PHASES, WORKLOAD_PLURAL, WORKLOAD_VERSION, workloadName, workloadUserProblem,
  type Workload, type WorkloadCondition, type WorkloadListener, type WorkloadPhase, type Workloads, type WorkloadSpecInput, type WorkloadStatus,
} from '../workloads/workloads.ts'

export const FIELD_MANAGER = 'podgate'
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000
export const DEFAULT_ACTIVITY_INTERVAL_MS = 30_000
const LIST_PAGE_SIZE = 500
const MAX_TRACKED_ACTIVITY = 100_000

// ---- API conventions -------------------------------------------------------------------

function timeoutMiddleware (timeoutMs: number, stop: AbortSignal): ObservableMiddleware {
  return {
    pre: (context) => {
      context.setSignal(AbortSignal.any([AbortSignal.timeout(timeoutMs), stop]))
      return new Observable(Promise.resolve(context))
    },
    post: (response) => new Observable(Promise.resolve(response)),
  }
}

/**
 * client-node 2.0.1 builds a new undici Agent for every request, so no connection is reused: a
 * TCP and TLS handshake per call, and idle sockets piling up on the API server under load. This
 * keeps the first Agent and sends every later request through it; its owner closes it.
 */
export class ApiConnections {
  readonly #stop = new AbortController()
  #dispatcher: Dispatcher | undefined
  #closed = false

  /** Aborted by abort(): every request made with these connections ends at once. */
  get signal (): AbortSignal { return this.#stop.signal }

  /** Cancels the requests in flight (a replica that stopped leading must stop writing). */
  abort (): void {
    this.#stop.abort(new Error('the provisioner stopped'))
  }

  readonly middleware: ObservableMiddleware = {
    pre: (context) => {
      const fresh = context.getDispatcher()
      if (fresh !== undefined && !this.#closed) {
        this.#dispatcher ??= fresh
        context.setDispatcher(this.#dispatcher)
      }
      return new Observable(Promise.resolve(context))
    },
    post: (response) => new Observable(Promise.resolve(response)),
  }

  /** Closes the pooled connections once the requests in flight have finished. */
  async close (): Promise<void> {
    this.#closed = true
    const dispatcher = this.#dispatcher
    this.#dispatcher = undefined
    await dispatcher?.close().catch(() => {})
  }
}

/** Per-call client options: pooled connections, a timeout on every request and, for patches, the content type. */
export function requestOptions (timeoutMs: number, connections: ApiConnections, contentType?: PatchStrategy): ConfigurationOptions {
  const middleware = [connections.middleware, timeoutMiddleware(timeoutMs, connections.signal)]
  if (contentType !== undefined) middleware.push(setHeaderMiddleware('Content-Type', contentType))
  return { middleware, middlewareMergeStrategy: 'append' }
}

// Read in src/kube, where the informer needs them too; exported here as before.
export { apiErrorMessage, apiStatus }

/** Worth retrying with backoff: conflicts, throttling, server errors, timeouts and broken connections. */
export function isRetryable (err: unknown): boolean {
  const status = apiStatus(err)
  if (status === undefined) return true
  return status === 409 || status === 429 || status >= 500
}

/** Retry-After of a 429/503, in milliseconds (delta-seconds or an HTTP date). */
export function retryAfterMs (err: unknown, now: () => number = Date.now): number | undefined {
  if (!(err instanceof ApiException)) return undefined
  const headers = (err.headers ?? {}) as Record<string, string | undefined>
  const value = headers['retry-after'] ?? headers['Retry-After']
  if (value === undefined || value.trim() === '') return undefined
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000
  const date = Date.parse(value)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now())
}

// ---- UserWorkload objects --------------------------------------------------------------

export interface UserWorkloadStatusObject {
  phase?: string
  readyReplicas?: number
  serviceName?: string
  lastActivity?: string
  message?: string
  conditions?: WorkloadCondition[]
}

export interface UserWorkloadObject extends KubernetesObject {
  spec?: { user?: string, profile?: string, suspended?: boolean }
  status?: UserWorkloadStatusObject
}

function isPhase (value: unknown): value is WorkloadPhase {
  return (WORKLOAD_PHASES as readonly unknown[]).includes(value)
}

/** The Workload a UserWorkload object describes; undefined when it names no valid user. */
export function toWorkload (object: UserWorkloadObject, defaultProfile = ''): Workload | undefined {
  const user = object.spec?.user
  if (!isValidUserId(user) || object.metadata?.name !== workloadName(user)) return undefined
  const status = object.status ?? {}
  const readyReplicas = typeof status.readyReplicas === 'number' && status.readyReplicas >= 0 ? status.readyReplicas : 0
  const workloadStatus: WorkloadStatus = {
    phase: isPhase(status.phase) ? status.phase : 'Pending',
    readyReplicas,
    ...(typeof status.serviceName === 'string' ? { serviceName: status.serviceName } : {}),
    ...(typeof status.lastActivity === 'string' ? { lastActivity: status.lastActivity } : {}),
    ...(typeof status.message === 'string' ? { message: status.message } : {}),
    ...(Array.isArray(status.conditions) ? { conditions: status.conditions.map((c) => ({ ...c })) } : {}),
  }
  const profile = object.spec?.profile
  const created: unknown = object.metadata?.creationTimestamp
  const createdAt = created instanceof Date ? created.toISOString() : typeof created === 'string' ? created : undefined
  return deepFreeze({
    user,
    profile: typeof profile === 'string' && profile !== '' ? profile : defaultProfile,
    suspended: object.spec?.suspended === true,
    status: workloadStatus,
    ...(createdAt === undefined ? {} : { createdAt }),
  })
}

function deepFreeze<T> (value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const child of Object.values(value)) deepFreeze(child)
    Object.freeze(value)
  }
  return value
}

// ---- The cache ---------------------------------------------------------------------------

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
  setTimeout?: Schedule
  clearTimeout?: CancelSchedule
  now?: () => number
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
      setTimeout: options.setTimeout,
      clearTimeout: options.clearTimeout,
      now: options.now,
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

// ---- Workloads ---------------------------------------------------------------------------

export interface KubernetesWorkloadsOptions {
  kubeConfig: KubeConfig
  namespace: string
  profiles: Profiles
  logger: Logger
  /** Used to skip activity writes older than what another replica already recorded. */
  cache?: UserWorkloadCache
  requestTimeoutMs?: number
  /** At most one status.lastActivity write per user per interval. */
  activityIntervalMs?: number
  setTimeout?: Schedule
  clearTimeout?: CancelSchedule
  now?: () => number
}

interface ActivityState {
  writtenAt: number
  pending: Date | undefined
  timer: unknown
}

/** Workloads as UserWorkload objects in one namespace (the admin API and the spawner call this). */
export class KubernetesWorkloads implements Workloads {
  readonly #api: CustomObjectsApi
  readonly #namespace: string
  readonly #profiles: Profiles
  readonly #activityFailures: FailureStreaks
  readonly #cache: UserWorkloadCache | undefined
  readonly #activityIntervalMs: number
  readonly #setTimeout: Schedule
  readonly #clearTimeout: CancelSchedule
  readonly #now: () => number
  readonly #plain: ConfigurationOptions
  readonly #merge: ConfigurationOptions
  readonly #connections = new ApiConnections()
  readonly #activity = new Map<string, ActivityState>()
  readonly #writes = new Set<Promise<void>>()
  #closed = false

  constructor (options: KubernetesWorkloadsOptions) {
    this.#api = options.kubeConfig.makeApiClient(CustomObjectsApi)
    this.#namespace = options.namespace
    this.#profiles = options.profiles
    this.#activityFailures = new FailureStreaks(options.logger, { failed: 'could not record activity', recovered: 'recording activity again', describe: apiErrorMessage })
    this.#cache = options.cache
    this.#activityIntervalMs = options.activityIntervalMs ?? DEFAULT_ACTIVITY_INTERVAL_MS
    this.#setTimeout = options.setTimeout ?? ((callback, ms) => setTimeout(callback, ms))
    this.#clearTimeout = options.clearTimeout ?? ((handle) => { clearTimeout(handle as NodeJS.Timeout) })
    this.#now = options.now ?? Date.now
    const timeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS
    this.#plain = requestOptions(timeoutMs, this.#connections)
    this.#merge = requestOptions(timeoutMs, this.#connections, PatchStrategy.MergePatch)
  }

  #ref (user: string): { group: string, version: string, namespace: string, plural: string, name: string } {
    return { group: WORKLOAD_GROUP, version: WORKLOAD_VERSION, namespace: this.#namespace, plural: WORKLOAD_PLURAL, name: workloadName(user) }
  }

  #toWorkload (object: unknown, user: string): Workload {
    const workload = toWorkload(object as UserWorkloadObject, this.#profiles.default.name)
    if (workload === undefined) throw new Error(`UserWorkload ${workloadName(user)} does not describe user ${user}`)
    return workload
  }

  /** The cache's view of the user's workload, without I/O; undefined without a cache or before it has the user. */
  cached (user: string): Workload | undefined {
    return this.#cache?.cached(user)
  }

  /** Changes of well-formed workloads, from the cache (nothing without one). */
  onChange (listener: WorkloadListener): () => void {
    if (this.#cache === undefined) return () => {}
    return this.#cache.onChange((change) => {
      if (change.user !== undefined && change.name === workloadName(change.user)) listener({ user: change.user, workload: change.workload })
    })
  }

  /** Creates the UserWorkload, or sets its profile when it exists. Throws BadRequestError for a bad id or profile. */
  async put (user: string, spec: WorkloadSpecInput): Promise<{ workload: Workload, created: boolean }> {
    const problem = workloadUserProblem(user)
    if (problem !== undefined) throw new BadRequestError(`user id: ${problem}`)
    const profile = spec.profile === '' ? undefined : spec.profile
    if (profile !== undefined && this.#profiles.get(profile) === undefined) {
      throw new BadRequestError(`profile: unknown profile ${JSON.stringify(profile)}; known: ${this.#profiles.names.join(', ')}`)
    }
    const body: UserWorkloadObject = {
      apiVersion: `${WORKLOAD_GROUP}/${WORKLOAD_VERSION}`,
      kind: WORKLOAD_KIND,
      metadata: { name: workloadName(user), namespace: this.#namespace, labels: { [MANAGED_BY_LABEL]: MANAGED_BY, [USER_LABEL]: user } },
      spec: { user, suspended: false, ...(profile === undefined ? {} : { profile }) },
    }
    // A create racing a delete can see 409 then 404: a few rounds settle it.
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const created: unknown = await this.#api.createNamespacedCustomObject({ ...this.#ref(user), body, fieldManager: FIELD_MANAGER }, this.#plain)
        return { workload: this.#toWorkload(created, user), created: true }
      } catch (err) {
        if (apiStatus(err) !== 409) throw err
      }
      let existing: UserWorkloadObject
      try {
        existing = await this.#api.getNamespacedCustomObject(this.#ref(user), this.#plain) as UserWorkloadObject
      } catch (err) {
        if (apiStatus(err) === 404) continue
        throw err
      }
      if ((existing.spec?.profile ?? '') === (profile ?? '')) return { workload: this.#toWorkload(existing, user), created: false }
      const patched: unknown = await this.#api.patchNamespacedCustomObject({ ...this.#ref(user), body: { spec: { profile: profile ?? null } }, fieldManager: FIELD_MANAGER }, this.#merge)
      return { workload: this.#toWorkload(patched, user), created: false }
    }
    throw new Error(`UserWorkload ${workloadName(user)} kept appearing and disappearing while it was being created`)
  }

  async get (user: string): Promise<Workload | undefined> {
    if (!isValidUserId(user)) return undefined
    try {
      return toWorkload(await this.#api.getNamespacedCustomObject(this.#ref(user), this.#plain) as UserWorkloadObject, this.#profiles.default.name)
    } catch (err) {
      if (apiStatus(err) === 404) return undefined
      throw err
    }
  }

  async list (): Promise<Workload[]> {
    const workloads: Workload[] = []
    let continueToken: string | undefined
    do {
      const page = await this.#api.listNamespacedCustomObject({
        group: WORKLOAD_GROUP, version: WORKLOAD_VERSION, namespace: this.#namespace, plural: WORKLOAD_PLURAL, limit: LIST_PAGE_SIZE,
        ...(continueToken === undefined ? {} : { _continue: continueToken }),
      }, this.#plain) as KubernetesListObject<UserWorkloadObject>
      for (const object of page.items) {
        const workload = toWorkload(object, this.#profiles.default.name)
        if (workload !== undefined) workloads.push(workload)
      }
      continueToken = page.metadata?._continue ?? (page.metadata as { continue?: string } | undefined)?.continue
    } while (continueToken !== undefined && continueToken !== '')
    return workloads.sort((a, b) => (a.user < b.user ? -1 : a.user > b.user ? 1 : 0))
  }

  async delete (user: string): Promise<boolean> {
    if (!isValidUserId(user)) return false
    try {
      await this.#api.deleteNamespacedCustomObject({ ...this.#ref(user), propagationPolicy: 'Background' }, this.#plain)
      return true
    } catch (err) {
      if (apiStatus(err) === 404) return false
      throw err
    }
  }

  async setSuspended (user: string, suspended: boolean): Promise<void> {
    if (!isValidUserId(user)) throw new WorkloadNotFoundError(`no workload for user ${JSON.stringify(user)}`)
    try {
      await this.#api.patchNamespacedCustomObject({ ...this.#ref(user), body: { spec: { suspended } }, fieldManager: FIELD_MANAGER }, this.#merge)
    } catch (err) {
      if (apiStatus(err) === 404) throw new WorkloadNotFoundError(`no workload for user ${user}`, { cause: err })
      throw err
    }
  }

  /** Records activity: the first touch in an interval is written at once, later ones at the interval's end. */
  touch (user: string, at: Date): void {
    if (this.#closed || !isValidUserId(user) || Number.isNaN(at.getTime())) return
    const now = this.#now()
    let state = this.#activity.get(user)
    if (state === undefined) {
      if (this.#activity.size >= MAX_TRACKED_ACTIVITY) this.#forgetIdle(now)
      state = { writtenAt: -Infinity, pending: undefined, timer: undefined }
      this.#activity.set(user, state)
    }
    if (state.pending === undefined || state.pending < at) state.pending = at
    if (state.timer !== undefined) return
    const wait = state.writtenAt + this.#activityIntervalMs - now
    if (wait <= 0) {
      this.#flushActivity(user, state)
      return
    }
    state.timer = this.#setTimeout(() => {
      state.timer = undefined
      this.#flushActivity(user, state)
    }, wait)
  }

  #forgetIdle (now: number): void {
    for (const [user, state] of this.#activity) {
      if (state.timer === undefined && state.pending === undefined && now - state.writtenAt >= this.#activityIntervalMs) {
        this.#activity.delete(user)
        this.#activityFailures.forget(user)
      }
    }
  }

  #flushActivity (user: string, state: ActivityState): void {
    const at = state.pending
    state.pending = undefined
    if (at === undefined) return
    state.writtenAt = this.#now()
    const recorded = this.#cache?.cached(user)?.status.lastActivity
    if (recorded !== undefined && Date.parse(recorded) >= at.getTime()) return
    const lastActivity = at.toISOString().replace(/\.\d+Z$/, 'Z')
    const write = this.#api.patchNamespacedCustomObjectStatus({ ...this.#ref(user), body: { status: { lastActivity } }, fieldManager: FIELD_MANAGER }, this.#merge)
      .then(() => { this.#activityFailures.recovered({ user }, user) }, (err: unknown) => {
        if (apiStatus(err) === 404) {
          this.#activity.delete(user)
          this.#activityFailures.forget(user)
        } else {
          this.#activityFailures.failed(err, { user }, { key: user })
        }
      })
    this.#writes.add(write)
    void write.finally(() => this.#writes.delete(write))
  }

  /** Writes pending activity now and waits for writes in flight. */
  async close (): Promise<void> {
    if (this.#closed) return
    for (const [user, state] of this.#activity) {
      if (state.timer !== undefined) {
        this.#clearTimeout(state.timer)
        state.timer = undefined
      }
      this.#flushActivity(user, state)
    }
    this.#closed = true
    await Promise.allSettled([...this.#writes])
    await this.#connections.close()
  }
}
