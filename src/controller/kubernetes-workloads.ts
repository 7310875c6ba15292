// The Workloads contract over UserWorkload objects in the served namespaces (the admin API and the spawner call it), and the status.lastActivity writes the activity recorder asks for.
import { CustomObjectsApi, PatchStrategy, type ConfigurationOptions, type KubeConfig, type KubernetesListObject } from '@kubernetes/client-node'
import { BadRequestError, ConflictError, WorkloadNotFoundError } from '../errors.ts'
import { ApiConnections, apiErrorMessage, apiStatus, DEFAULT_REQUEST_TIMEOUT_MS, FIELD_MANAGER, requestOptions } from '../kube/api.ts'
import { isDnsLabel, MANAGED_BY, MANAGED_BY_LABEL, USER_LABEL, userIdProblem, workloadName } from '../kube/labels.ts'
import { checkNamespaces, isServed, watchScopes, type ServedNamespaces } from '../kube/namespaces.ts'
import { FailureStreaks, type Logger } from '../log.ts'
import type { Profiles } from './profiles.ts'
import type { UserWorkloadCache } from './user-workload-cache.ts'
import { toWorkload, type UserWorkloadObject } from './user-workload.ts'
import {
  WORKLOAD_GROUP, WORKLOAD_KIND, WORKLOAD_PLURAL, WORKLOAD_VERSION,
  type Workload, type WorkloadListener, type Workloads, type WorkloadSpecInput,
} from '../workloads/workloads.ts'

const LIST_PAGE_SIZE = 500

/** A 403 or 404 on a namespace's UserWorkloads: a 404 that says so; undefined for any other failure. */
function unreadableNamespace (err: unknown, namespace: string): WorkloadNotFoundError | undefined {
  const status = apiStatus(err)
  if (status !== 403 && status !== 404) return undefined
  return new WorkloadNotFoundError(`podgate cannot read UserWorkloads in namespace ${namespace} (${status}): the namespace is gone, or podgate's Role there is missing`, { cause: err })
}

function byUserThenAge (a: Workload, b: Workload): number {
  if (a.user !== b.user) return a.user < b.user ? -1 : 1
  const [x, y] = [a.createdAt ?? '', b.createdAt ?? '']
  if (x !== y) return x < y ? -1 : 1
  const [m, n] = [a.namespace ?? '', b.namespace ?? '']
  return m < n ? -1 : m > n ? 1 : 0
}

export interface KubernetesWorkloadsOptions {
  kubeConfig: KubeConfig
  /** Where UserWorkloads may be. */
  namespaces: ServedNamespaces
  /** Where a workload is created when no namespace is named (must be served). */
  defaultNamespace: string
  profiles: Profiles
  logger: Logger
  /** Where each user's workload is (without it, the default namespace); also skips activity writes older than what another replica recorded. */
  cache?: UserWorkloadCache
  requestTimeoutMs?: number
}

/** Workloads as UserWorkload objects in the served namespaces (the admin API and the spawner call this). */
export class KubernetesWorkloads implements Workloads {
  readonly #api: CustomObjectsApi
  readonly #namespaces: ServedNamespaces
  readonly #defaultNamespace: string
  readonly #profiles: Profiles
  readonly #activityFailures: FailureStreaks
  readonly #logger: Logger
  readonly #cache: UserWorkloadCache | undefined
  readonly #plain: ConfigurationOptions
  readonly #merge: ConfigurationOptions
  readonly #connections = new ApiConnections()
  /** Users with an activity write in flight, and the newest activity waiting for it to end. */
  readonly #activityWrites = new Map<string, Date | undefined>()
  readonly #writes = new Set<Promise<void>>()
  #closed = false

  constructor (options: KubernetesWorkloadsOptions) {
    this.#api = options.kubeConfig.makeApiClient(CustomObjectsApi)
    this.#namespaces = checkNamespaces(options.namespaces, 'KubernetesWorkloads')
    if (!isServed(this.#namespaces, options.defaultNamespace)) {
      throw new TypeError(`KubernetesWorkloads: options.defaultNamespace ${JSON.stringify(options.defaultNamespace)} is not among the served namespaces`)
    }
    this.#defaultNamespace = options.defaultNamespace
    this.#profiles = options.profiles
    this.#logger = options.logger
    this.#activityFailures = new FailureStreaks(options.logger, { failed: 'could not record activity', recovered: 'recording activity again', describe: apiErrorMessage })
    this.#cache = options.cache
    const timeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS
    this.#plain = requestOptions(timeoutMs, this.#connections)
    this.#merge = requestOptions(timeoutMs, this.#connections, PatchStrategy.MergePatch)
  }

  #ref (user: string, namespace: string): { group: string, version: string, namespace: string, plural: string, name: string } {
    return { group: WORKLOAD_GROUP, version: WORKLOAD_VERSION, namespace, plural: WORKLOAD_PLURAL, name: workloadName(user) }
  }

  /** Where the user's workload is as the cache last saw it (the one served when several), else the default namespace. */
  #namespaceOf (user: string): string {
    return this.#cache?.claims(user)[0] ?? this.#defaultNamespace
  }

  /** `namespace` when named (BadRequestError unless served), else where the user's workload is. */
  #target (user: string, namespace: string | undefined): string {
    if (namespace === undefined) return this.#namespaceOf(user)
    if (!isDnsLabel(namespace)) throw new BadRequestError(`namespace: ${JSON.stringify(namespace.slice(0, 64))} is not a namespace name (a DNS-1123 label)`)
    if (!isServed(this.#namespaces, namespace)) throw new BadRequestError(`namespace: ${namespace} is not served by this podgate (PODGATE_NAMESPACES)`)
    return namespace
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

  /** Changes of well-formed workloads, from the cache (nothing without one): the user's served workload after the change. */
  onChange (listener: WorkloadListener): () => void {
    const cache = this.#cache
    if (cache === undefined) return () => {}
    return cache.onChange((change) => {
      if (change.user !== undefined && change.name === workloadName(change.user)) listener({ user: change.user, workload: cache.cached(change.user) })
    })
  }

  /**
   * Creates the UserWorkload, or sets its profile when it exists. Throws BadRequestError for a bad
   * id, profile or namespace, ConflictError when `namespace` is named and the user's workload is in another.
   */
  async put (user: string, spec: WorkloadSpecInput, namespace?: string): Promise<{ workload: Workload, created: boolean }> {
    const problem = userIdProblem(user)
    if (problem !== undefined) throw new BadRequestError(`user id: ${problem}`)
    const profile = spec.profile === '' ? undefined : spec.profile
    if (profile !== undefined && this.#profiles.get(profile) === undefined) {
      throw new BadRequestError(`profile: unknown profile ${JSON.stringify(profile)}; known: ${this.#profiles.names.join(', ')}`)
    }
    // Where the user's workload is decides where (and whether) to create: never from a cache that has not listed yet.
    if (this.#cache !== undefined && !this.#cache.isSynced) await this.#cache.synced
    const target = this.#target(user, namespace)
    const existing = this.#cache?.claims(user)[0]
    if (existing !== undefined && existing !== target) {
      throw new ConflictError(`user ${user} already has a workload in namespace ${existing}; a user id is unique across namespaces: delete it there first`)
    }
    const body: UserWorkloadObject = {
      apiVersion: `${WORKLOAD_GROUP}/${WORKLOAD_VERSION}`,
      kind: WORKLOAD_KIND,
      metadata: { name: workloadName(user), namespace: target, labels: { [MANAGED_BY_LABEL]: MANAGED_BY, [USER_LABEL]: user } },
      spec: { user, suspended: false, ...(profile === undefined ? {} : { profile }) },
    }
    // A create racing a delete can see 409 then 404: a few rounds settle it.
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const created: unknown = await this.#api.createNamespacedCustomObject({ ...this.#ref(user, target), body, fieldManager: FIELD_MANAGER }, this.#plain)
        return { workload: this.#toWorkload(created, user), created: true }
      } catch (err) {
        if (apiStatus(err) !== 409) throw err
      }
      let current: UserWorkloadObject
      try {
        current = await this.#api.getNamespacedCustomObject(this.#ref(user, target), this.#plain) as UserWorkloadObject
      } catch (err) {
        if (apiStatus(err) === 404) continue
        throw err
      }
      if ((current.spec?.profile ?? '') === (profile ?? '')) return { workload: this.#toWorkload(current, user), created: false }
      const patched: unknown = await this.#api.patchNamespacedCustomObject({ ...this.#ref(user, target), body: { spec: { profile: profile ?? null } }, fieldManager: FIELD_MANAGER }, this.#merge)
      return { workload: this.#toWorkload(patched, user), created: false }
    }
    throw new Error(`UserWorkload ${workloadName(user)} kept appearing and disappearing while it was being created`)
  }

  async get (user: string, namespace?: string): Promise<Workload | undefined> {
    if (!isDnsLabel(user)) return undefined
    const target = this.#target(user, namespace)
    try {
      return toWorkload(await this.#api.getNamespacedCustomObject(this.#ref(user, target), this.#plain) as UserWorkloadObject, this.#profiles.default.name)
    } catch (err) {
      if (apiStatus(err) === 404) return undefined
      throw unreadableNamespace(err, target) ?? err
    }
  }

  /**
   * Every UserWorkload in `namespace`, or in the served namespaces, by user (a user in several
   * namespaces: oldest first), read from the API in pages. Across namespaces, one that cannot be
   * read (deleted, or podgate's Role there gone: 403) is left out with a warning, not the whole list.
   */
  async list (namespace?: string): Promise<Workload[]> {
    const workloads: Workload[] = []
    const scopes = namespace === undefined ? watchScopes(this.#namespaces) : [this.#target('', namespace)]
    for (const scope of scopes) {
      try {
        await this.#listInto(workloads, scope)
      } catch (err) {
        const unreadable = scope === undefined ? undefined : unreadableNamespace(err, scope)
        if (unreadable === undefined) throw err
        if (namespace !== undefined) throw unreadable
        this.#logger.warn({ namespace: scope, error: apiErrorMessage(err) }, 'cannot list UserWorkloads in a served namespace; listing the others')
      }
    }
    return workloads.sort(byUserThenAge)
  }

  async #listInto (workloads: Workload[], namespace: string | undefined): Promise<void> {
    let continueToken: string | undefined
    do {
      const paging = { limit: LIST_PAGE_SIZE, ...(continueToken === undefined ? {} : { _continue: continueToken }) }
      const page = await (namespace === undefined
        ? this.#api.listCustomObjectForAllNamespaces({ group: WORKLOAD_GROUP, version: WORKLOAD_VERSION, resourcePlural: WORKLOAD_PLURAL, ...paging }, this.#plain)
        : this.#api.listNamespacedCustomObject({ group: WORKLOAD_GROUP, version: WORKLOAD_VERSION, namespace, plural: WORKLOAD_PLURAL, ...paging }, this.#plain)) as KubernetesListObject<UserWorkloadObject>
      for (const object of page.items) {
        const workload = toWorkload(object, this.#profiles.default.name)
        if (workload !== undefined) workloads.push(workload)
      }
      continueToken = page.metadata?._continue ?? (page.metadata as { continue?: string } | undefined)?.continue
    } while (continueToken !== undefined && continueToken !== '')
  }

  async delete (user: string, namespace?: string): Promise<boolean> {
    if (!isDnsLabel(user)) return false
    const target = this.#target(user, namespace)
    try {
      await this.#api.deleteNamespacedCustomObject({ ...this.#ref(user, target), propagationPolicy: 'Background' }, this.#plain)
      return true
    } catch (err) {
      if (apiStatus(err) === 404) return false
      throw err
    }
  }

  async revoke (user: string, at: Date, namespace?: string): Promise<Workload> {
    if (!isDnsLabel(user) || Number.isNaN(at.getTime())) throw new WorkloadNotFoundError(`no workload for user ${JSON.stringify(user)}`)
    const target = this.#target(user, namespace)
    const current = this.#cache?.object(target, workloadName(user))?.spec?.tokensNotBefore
    const mark = at.toISOString().replace(/\.\d+Z$/, 'Z')
    // A mark only moves later: a repeated or delayed revoke never re-admits tokens.
    if (current !== undefined && Date.parse(current) >= Date.parse(mark)) {
      const cached = this.#cache?.cached(user)
      if (cached?.namespace === target) return cached
    }
    try {
      const patched: unknown = await this.#api.patchNamespacedCustomObject({ ...this.#ref(user, target), body: { spec: { tokensNotBefore: mark } }, fieldManager: FIELD_MANAGER }, this.#merge)
      return this.#toWorkload(patched, user)
    } catch (err) {
      if (apiStatus(err) === 404) throw new WorkloadNotFoundError(`no workload for user ${user}${namespace === undefined ? '' : ` in namespace ${namespace}`}: the revocation mark lives on the UserWorkload`, { cause: err })
      throw err
    }
  }

  async setSuspended (user: string, suspended: boolean, namespace?: string): Promise<void> {
    if (!isDnsLabel(user)) throw new WorkloadNotFoundError(`no workload for user ${JSON.stringify(user)}`)
    try {
      await this.#api.patchNamespacedCustomObject({ ...this.#ref(user, this.#target(user, namespace)), body: { spec: { suspended } }, fieldManager: FIELD_MANAGER }, this.#merge)
    } catch (err) {
      if (apiStatus(err) === 404) throw new WorkloadNotFoundError(`no workload for user ${user}`, { cause: err })
      throw err
    }
  }

  /**
   * Writes `at` into status.lastActivity, unthrottled: the ActivityRecorder in front of this
   * decides how often. One write per user is in flight at a time, so an older one can never
   * land last; a touch meanwhile waits for it (only the newest is kept).
   */
  touch (user: string, at: Date): void {
    if (this.#closed || !isDnsLabel(user) || Number.isNaN(at.getTime())) return
    if (this.#activityWrites.has(user)) {
      const waiting = this.#activityWrites.get(user)
      if (waiting === undefined || waiting < at) this.#activityWrites.set(user, at)
      return
    }
    this.#writeActivity(user, at)
  }

  #writeActivity (user: string, at: Date): void {
    // Another replica (or an earlier write) may have recorded later activity already.
    const recorded = this.#cache?.cached(user)?.status.lastActivity
    if (recorded !== undefined && Date.parse(recorded) >= at.getTime()) return
    this.#activityWrites.set(user, undefined)
    const lastActivity = at.toISOString().replace(/\.\d+Z$/, 'Z')
    const write = this.#api.patchNamespacedCustomObjectStatus({ ...this.#ref(user, this.#namespaceOf(user)), body: { status: { lastActivity } }, fieldManager: FIELD_MANAGER }, this.#merge)
      .then(() => { this.#activityFailures.recovered({ user }, user) }, (err: unknown) => {
        if (apiStatus(err) === 404) {
          // No workload (deleted meanwhile): nothing to write, now or next.
          this.#activityWrites.set(user, undefined)
          this.#activityFailures.forget(user)
        } else {
          this.#activityFailures.failed(err, { user }, { key: user })
        }
      })
    this.#writes.add(write)
    void write.finally(() => {
      this.#writes.delete(write)
      const next = this.#activityWrites.get(user)
      this.#activityWrites.delete(user)
      // Accepted before any close: close waits for it too.
      if (next !== undefined) this.#writeActivity(user, next)
    })
  }

  /** Refuses later touches and waits for the activity writes already asked for. */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    // A write that ends may start the one waiting behind it: wait until none is left.
    while (this.#writes.size > 0) await Promise.allSettled([...this.#writes])
    await this.#connections.close()
  }
}
