// The Workloads contract over the local driver: a user's workload is a backend process on
// 127.0.0.1. Suspending stops the process but keeps the user; waking starts it again.
// Desired state lives in this process's memory, which is what local mode is.
import { systemClock, type Clock } from '../clock.ts'
import type { EndpointSource } from '../discovery/source.ts'
import { BadRequestError, WorkloadNotFoundError } from '../errors.ts'
import type { LocalDriver } from './driver.ts'
import { userIdProblem } from '../kube/labels.ts'
import type { Logger } from '../log.ts'
import {
  type Workload, type WorkloadListener, type WorkloadPhase, type Workloads, type WorkloadSpecInput,
} from '../workloads/workloads.ts'

export const DEFAULT_PROFILE = 'default'

export interface LocalWorkloadsOptions {
  readonly driver: LocalDriver
  /** The source the driver registers backends in: readiness changes become workload changes. */
  readonly source: EndpointSource
  readonly logger: Logger
  /** Profile names accepted by `put`; every one runs the driver's backend. */
  readonly profiles?: readonly string[]
  /** The profile of a workload created without one; must be in `profiles`. */
  readonly defaultProfile?: string
  /** Its now() is a new workload's creation time. */
  readonly clock?: Clock
}

interface Entry {
  readonly user: string
  profile: string
  suspended: boolean
  readonly createdAt: string
  lastActivity: string | undefined
  /** Why the latest start failed; cleared by the next start. */
  failure: string | undefined
  /** Bumped by every start and stop, so the outcome of a superseded start is ignored. */
  generation: number
  /** RFC 3339: the user's tokens issued before it are refused. */
  tokensNotBefore?: string
}

export class LocalWorkloads implements Workloads {
  readonly #driver: LocalDriver
  readonly #source: EndpointSource
  readonly #logger: Logger
  readonly #profiles: ReadonlySet<string>
  readonly #defaultProfile: string
  readonly #clock: Clock
  readonly #entries = new Map<string, Entry>()
  readonly #listeners = new Set<WorkloadListener>()
  readonly #unsubscribe: () => void

  constructor (options: LocalWorkloadsOptions) {
    if (options?.driver === undefined) throw new TypeError('driver: required (a LocalDriver)')
    if (options.source === undefined) throw new TypeError('source: required (the LocalEndpointSource the driver registers in)')
    if (options.logger === undefined) throw new TypeError('logger: required')
    const given: unknown = options.profiles ?? [DEFAULT_PROFILE]
    if (!Array.isArray(given) || given.length === 0 || given.some((p) => typeof p !== 'string' || p === '')) {
      throw new TypeError('profiles: expected a non-empty array of profile names')
    }
    const profiles = given as readonly string[]
    const defaultProfile = options.defaultProfile ?? profiles[0] ?? DEFAULT_PROFILE
    if (!profiles.includes(defaultProfile)) throw new TypeError(`defaultProfile: ${JSON.stringify(defaultProfile)} is not one of profiles`)
    this.#driver = options.driver
    this.#source = options.source
    this.#logger = options.logger
    this.#profiles = new Set(profiles)
    this.#defaultProfile = defaultProfile
    this.#clock = options.clock ?? systemClock
    this.#unsubscribe = this.#source.onChange((change) => {
      for (const user of change.users) {
        const entry = this.#entries.get(user)
        if (entry === undefined) continue
        this.#emit(entry)
        // A microtask: the driver registers the restart right after announcing the crash.
        if (this.#driver.status(user)?.state === 'restarting') queueMicrotask(() => { this.#followRestart(entry) })
      }
    })
  }

  /** Creates the workload and starts its backend, or sets the profile of an existing one (the default when none is given). */
  put (user: string, spec: WorkloadSpecInput, namespace?: string): Promise<{ workload: Workload, created: boolean }> {
    if (namespace !== undefined) return Promise.reject(noNamespaces())
    const problem = userIdProblem(user)
    if (problem !== undefined) return Promise.reject(new BadRequestError(`user: ${problem}`))
    const profile = spec?.profile ?? this.#defaultProfile
    if (!this.#profiles.has(profile)) {
      return Promise.reject(new BadRequestError(`profile: unknown profile ${JSON.stringify(profile)}; known: ${[...this.#profiles].join(', ')}`))
    }
    const existing = this.#entries.get(user)
    if (existing !== undefined) {
      const changed = profile !== existing.profile
      if (changed) existing.profile = profile
      // PUT is the way to retry a backend that failed: desired state is re-applied.
      if (!existing.suspended && this.#driver.status(user)?.state === 'failed') this.#start(existing)
      else if (changed) this.#emit(existing)
      return Promise.resolve({ workload: this.#view(existing), created: false })
    }
    const entry: Entry = {
      user,
      profile,
      suspended: false,
      createdAt: new Date(this.#clock.now()).toISOString(),
      lastActivity: undefined,
      failure: undefined,
      generation: 0,
    }
    this.#entries.set(user, entry)
    this.#logger.info({ user, profile: entry.profile }, 'workload created')
    this.#start(entry)
    return Promise.resolve({ workload: this.#view(entry), created: true })
  }

  get (user: string, namespace?: string): Promise<Workload | undefined> {
    if (namespace !== undefined) return Promise.reject(noNamespaces())
    return Promise.resolve(this.cached(user))
  }

  cached (user: string): Workload | undefined {
    const entry = this.#entries.get(user)
    return entry === undefined ? undefined : this.#view(entry)
  }

  list (namespace?: string): Promise<Workload[]> {
    if (namespace !== undefined) return Promise.reject(noNamespaces())
    return Promise.resolve([...this.#entries.keys()].sort().map((user) => this.#view(this.#entries.get(user) as Entry)))
  }

  async delete (user: string, namespace?: string): Promise<boolean> {
    if (namespace !== undefined) throw noNamespaces()
    const entry = this.#entries.get(user)
    if (entry === undefined) return false
    this.#entries.delete(user)
    entry.generation++
    this.#notify(user, undefined)
    this.#logger.info({ user }, 'workload deleted')
    await this.#driver.removeUser(user)
    return true
  }

  revoke (user: string, at: Date, namespace?: string): Promise<Workload> {
    if (namespace !== undefined) return Promise.reject(noNamespaces())
    const entry = this.#entries.get(user)
    if (entry === undefined) return Promise.reject(new WorkloadNotFoundError(`no workload for user ${user}: the revocation mark lives on the workload`))
    const mark = at.toISOString().replace(/\.\d+Z$/, 'Z')
    if (entry.tokensNotBefore === undefined || Date.parse(entry.tokensNotBefore) < Date.parse(mark)) {
      entry.tokensNotBefore = mark
      this.#logger.info({ user, tokensNotBefore: mark }, 'tokens revoked')
      this.#emit(entry)
    }
    return Promise.resolve(this.#view(entry))
  }

  async setSuspended (user: string, suspended: boolean, namespace?: string): Promise<void> {
    if (namespace !== undefined) throw noNamespaces()
    const entry = this.#entries.get(user)
    if (entry === undefined) throw new WorkloadNotFoundError(`no workload for ${user}`)
    if (entry.suspended === suspended) return
    entry.suspended = suspended
    this.#logger.info({ user }, suspended ? 'workload suspended' : 'workload woken')
    if (!suspended) {
      this.#start(entry)
      return
    }
    entry.generation++
    entry.failure = undefined
    this.#emit(entry)
    await this.#driver.removeUser(user)
  }

  /** Keeps `at` as the user's lastActivity; the ActivityRecorder in front of it throttles. */
  touch (user: string, at: Date): void {
    const entry = this.#entries.get(user)
    if (entry !== undefined) entry.lastActivity = at.toISOString()
  }

  onChange (listener: WorkloadListener): () => void {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }

  /** Stops following the endpoint source; the driver (and its processes) belong to the caller. */
  close (): void {
    this.#unsubscribe()
    this.#listeners.clear()
  }

  #start (entry: Entry): void {
    const generation = ++entry.generation
    entry.failure = undefined
    this.#driver.ensureUser(entry.user).catch((err: unknown) => {
      this.#failed(entry, generation, err)
    })
    // After the call: ensureUser has already moved the backend out of any earlier failed state.
    this.#emit(entry)
  }

  // A crashed backend restarts inside the driver; ensureUser shares that restart, so its
  // outcome (giving up after too many crashes) becomes this workload's Failed status.
  #followRestart (entry: Entry): void {
    if (this.#entries.get(entry.user) !== entry || entry.suspended) return
    const backend = this.#driver.status(entry.user)
    const generation = entry.generation
    if (backend?.state === 'failed') {
      // The driver gave up at once (too many crashes): there is no restart left to share.
      this.#failed(entry, generation, new Error(`the backend process crashed ${backend.crashes} times in a row; not restarting it`))
    } else if (backend?.state === 'restarting') {
      this.#driver.ensureUser(entry.user).catch((err: unknown) => {
        this.#failed(entry, generation, err)
      })
    }
  }

  #failed (entry: Entry, generation: number, err: unknown): void {
    if (this.#entries.get(entry.user) !== entry || entry.generation !== generation || entry.suspended) return
    entry.failure = err instanceof Error ? err.message : String(err)
    this.#logger.warn({ user: entry.user, reason: entry.failure }, 'workload failed')
    this.#emit(entry)
  }

  #emit (entry: Entry): void {
    this.#notify(entry.user, this.#view(entry))
  }

  #notify (user: string, workload: Workload | undefined): void {
    for (const listener of this.#listeners) {
      try {
        listener({ user, workload })
      } catch (err) {
        this.#logger.error({ err, user }, 'workload listener failed')
      }
    }
  }

  #view (entry: Entry): Workload {
    const backend = this.#driver.status(entry.user)
    let phase: WorkloadPhase
    let message: string | undefined
    if (entry.suspended) {
      phase = 'Suspended'
    } else if (backend?.state === 'running') {
      phase = 'Ready'
    } else if (backend?.state === 'failed' || (backend === undefined && entry.failure !== undefined)) {
      phase = 'Failed'
      message = entry.failure ?? 'the backend process failed'
    } else if (backend?.state === 'starting' || backend?.state === 'restarting') {
      phase = 'Starting'
      if (backend.crashes > 0) message = `restarting after ${backend.crashes} crash${backend.crashes === 1 ? '' : 'es'}`
    } else {
      phase = 'Pending'
    }
    const readyReplicas = phase === 'Ready' ? 1 : 0
    return Object.freeze({
      user: entry.user,
      profile: entry.profile,
      suspended: entry.suspended,
      createdAt: entry.createdAt,
      ...(entry.tokensNotBefore === undefined ? {} : { tokensNotBefore: entry.tokensNotBefore }),
      status: Object.freeze({
        phase,
        readyReplicas,
        ...(entry.lastActivity === undefined ? {} : { lastActivity: entry.lastActivity }),
        ...(message === undefined ? {} : { message }),
      }),
    })
  }
}

function noNamespaces (): BadRequestError {
  return new BadRequestError('namespace: local workloads have no namespaces; use /api/users/<id>')
}
