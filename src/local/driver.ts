// Runs each user's backend as a child process on 127.0.0.1 and registers it in a
// LocalEndpointSource: the local stand-in for a Deployment plus its EndpointSlice.
import { spawn as spawnProcess } from 'node:child_process'
import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { systemClock, type Clock, type TimerHandle } from '../clock.ts'
import type { LocalEndpointSource } from './endpoint-source.ts'
import { endpoint, type Endpoint } from '../discovery/source.ts'
import { DrainingError, WorkloadFailedError, WorkloadNotFoundError } from '../errors.ts'
import { isDnsLabel } from '../kube/labels.ts'
import type { Logger } from '../log.ts'
import { launchBackend, type BackendProcess } from './backend-process.ts'

/** The backend script next to this file (`.ts` from src/, `.js` once compiled). */
export const DEFAULT_BACKEND_PATH = fileURLToPath(new URL(`./backend${extname(fileURLToPath(import.meta.url))}`, import.meta.url))

export const DEFAULT_BACKEND_START_TIMEOUT_MS = 10_000
export const DEFAULT_STOP_GRACE_MS = 5_000
export const DEFAULT_RESTART_INITIAL_MS = 250
export const DEFAULT_RESTART_MAX_MS = 10_000
export const DEFAULT_MAX_RESTARTS = 5
export const DEFAULT_STABLE_MS = 30_000


export interface LocalDriverOptions {
  readonly source: LocalEndpointSource
  readonly logger: Logger
  /** Script run for each user; DEFAULT_BACKEND_PATH unless a test swaps it. */
  readonly backendPath?: string
  readonly execPath?: string
  /** Environment of each child; empty by default so no secret or NODE_OPTIONS leaks in. */
  readonly env?: NodeJS.ProcessEnv
  /** How long a child may take to print its listening line. */
  readonly startTimeoutMs?: number
  /** Time between SIGTERM and SIGKILL. */
  readonly stopGraceMs?: number
  /** First restart delay after a crash; doubles per consecutive crash up to restartMaxMs. */
  readonly restartInitialMs?: number
  readonly restartMaxMs?: number
  /** Consecutive crashes after which the user is marked failed instead of restarted. */
  readonly maxRestarts?: number
  /** A child that stayed up this long resets the consecutive-crash count. */
  readonly stableMs?: number
  readonly spawn?: typeof spawnProcess
  /** Times the start timeout, the stop grace period, restart delays and process uptime. */
  readonly clock?: Clock
}

export type BackendState = 'starting' | 'running' | 'restarting' | 'failed' | 'stopping'

export interface BackendStatus {
  readonly user: string
  readonly state: BackendState
  readonly pid: number | undefined
  readonly endpoint: Endpoint | undefined
  /** Consecutive unexpected exits. */
  readonly crashes: number
}

interface Slot {
  readonly user: string
  /** Aborted when the user is removed: cancels a restart wait and a start in flight. */
  readonly removed: AbortController
  process: BackendProcess | undefined
  endpoint: Endpoint | undefined
  starting: Promise<Endpoint> | undefined
  stopping: Promise<void> | undefined
  crashes: number
  failed: boolean
}

export class LocalDriver {
  readonly #source: LocalEndpointSource
  readonly #logger: Logger
  readonly #backendPath: string
  readonly #execPath: string
  readonly #env: NodeJS.ProcessEnv
  readonly #startTimeoutMs: number
  readonly #stopGraceMs: number
  readonly #restartInitialMs: number
  readonly #restartMaxMs: number
  readonly #maxRestarts: number
  readonly #stableMs: number
  readonly #spawn: typeof spawnProcess
  readonly #clock: Clock
  readonly #slots = new Map<string, Slot>()
  #closing: Promise<void> | undefined

  constructor (options: LocalDriverOptions) {
    if (options?.source === undefined) throw new TypeError('source: required (a LocalEndpointSource)')
    if (options.logger === undefined) throw new TypeError('logger: required')
    this.#source = options.source
    this.#logger = options.logger
    this.#backendPath = nonEmpty('backendPath', options.backendPath ?? DEFAULT_BACKEND_PATH)
    this.#execPath = nonEmpty('execPath', options.execPath ?? process.execPath)
    this.#env = options.env ?? {}
    this.#startTimeoutMs = positive('startTimeoutMs', options.startTimeoutMs ?? DEFAULT_BACKEND_START_TIMEOUT_MS)
    this.#stopGraceMs = positive('stopGraceMs', options.stopGraceMs ?? DEFAULT_STOP_GRACE_MS)
    this.#restartInitialMs = positive('restartInitialMs', options.restartInitialMs ?? DEFAULT_RESTART_INITIAL_MS)
    this.#restartMaxMs = positive('restartMaxMs', options.restartMaxMs ?? DEFAULT_RESTART_MAX_MS)
    this.#maxRestarts = count('maxRestarts', options.maxRestarts ?? DEFAULT_MAX_RESTARTS)
    this.#stableMs = positive('stableMs', options.stableMs ?? DEFAULT_STABLE_MS)
    this.#spawn = options.spawn ?? spawnProcess
    this.#clock = options.clock ?? systemClock
  }

  /**
   * Starts `user`'s backend unless it is already running or starting, and resolves with
   * its endpoint once registered. Concurrent calls share one start; a failed user is retried.
   */
  async ensureUser (user: string): Promise<Endpoint> {
    checkUser(user)
    for (;;) {
      if (this.#closing !== undefined) throw new DrainingError('the local driver is shutting down')
      const slot = this.#slots.get(user)
      if (slot?.stopping !== undefined) {
        await slot.stopping
        continue
      }
      if (slot === undefined) {
        const fresh: Slot = { user, removed: new AbortController(), process: undefined, endpoint: undefined, starting: undefined, stopping: undefined, crashes: 0, failed: false }
        this.#slots.set(user, fresh)
        // Known but not ready while it starts: the gateway answers 503, not 404.
        this.#source.set(user, [])
        return this.#begin(fresh, () => this.#startOnce(fresh))
      }
      if (slot.endpoint !== undefined) return slot.endpoint
      if (slot.starting !== undefined) return slot.starting
      slot.crashes = 0
      slot.failed = false
      return this.#begin(slot, () => this.#startOnce(slot))
    }
  }

  /** Unregisters `user` first (no new traffic), then stops the process: SIGTERM, SIGKILL after the grace period. */
  removeUser (user: string): Promise<void> {
    checkUser(user)
    const slot = this.#slots.get(user)
    if (slot === undefined) return Promise.resolve()
    slot.stopping ??= this.#remove(slot)
    return slot.stopping
  }

  /** Users with a backend in any state, sorted. */
  users (): string[] {
    return [...this.#slots.keys()].sort()
  }

  status (user: string): BackendStatus | undefined {
    const slot = this.#slots.get(user)
    if (slot === undefined) return undefined
    let state: BackendState
    if (slot.stopping !== undefined) state = 'stopping'
    else if (slot.endpoint !== undefined) state = 'running'
    else if (slot.failed) state = 'failed'
    else state = slot.crashes > 0 ? 'restarting' : 'starting'
    return { user, state, pid: slot.process?.pid, endpoint: slot.endpoint, crashes: slot.crashes }
  }

  /** Stops every backend and resolves once all of them have exited. */
  close (): Promise<void> {
    this.#closing ??= Promise.all([...this.#slots.keys()].map((user) => this.removeUser(user))).then(() => undefined)
    return this.#closing
  }

  /** Runs a start as the slot's shared `starting` promise. */
  #begin (slot: Slot, work: () => Promise<Endpoint>): Promise<Endpoint> {
    const started: Promise<Endpoint> = work().finally(() => {
      if (slot.starting === started) slot.starting = undefined
    })
    // A restart nobody awaits must not become an unhandled rejection; awaiting callers still see it.
    started.catch(() => {})
    slot.starting = started
    return started
  }

  async #startOnce (slot: Slot): Promise<Endpoint> {
    try {
      return await this.#launchAndRegister(slot)
    } catch (err) {
      if (!slot.removed.signal.aborted) {
        slot.failed = true
        this.#logger.error({ err, user: slot.user }, 'local backend failed to start')
      }
      throw err
    }
  }

  async #restart (slot: Slot): Promise<Endpoint> {
    for (;;) {
      if (slot.crashes > this.#maxRestarts) {
        slot.failed = true
        this.#logger.error({ user: slot.user, crashes: slot.crashes }, 'local backend keeps failing; not restarting it')
        throw new WorkloadFailedError(`backend for ${slot.user} failed ${slot.crashes} times in a row; not restarting it`)
      }
      const wait = Math.min(this.#restartMaxMs, this.#restartInitialMs * 2 ** (slot.crashes - 1))
      try {
        await this.#delay(wait, slot.removed.signal)
      } catch (err) {
        throw new WorkloadNotFoundError(`backend for ${slot.user} was removed while waiting to restart`, { cause: err })
      }
      try {
        return await this.#launchAndRegister(slot)
      } catch (err) {
        if (slot.removed.signal.aborted) throw err
        slot.crashes += 1
        this.#logger.warn({ err, user: slot.user, crashes: slot.crashes }, 'local backend restart failed')
      }
    }
  }

  async #launchAndRegister (slot: Slot): Promise<Endpoint> {
    const { user } = slot
    const { process: proc, address, port } = await launchBackend({
      user,
      signal: slot.removed.signal,
      spawn: this.#spawn,
      execPath: this.#execPath,
      backendPath: this.#backendPath,
      env: this.#env,
      startTimeoutMs: this.#startTimeoutMs,
      clock: this.#clock,
      logger: this.#logger,
      stop: (started) => this.#stopProcess(user, started),
    })
    if (slot.removed.signal.aborted) {
      await this.#stopProcess(user, proc)
      throw new WorkloadNotFoundError(`backend for ${user} was removed while starting`)
    }
    const ready = endpoint(address, port)
    proc.startedAt = this.#clock.now()
    slot.process = proc
    slot.endpoint = ready
    slot.failed = false
    void proc.exited.then(() => { this.#onExit(slot, proc) })
    this.#source.set(user, [ready])
    this.#logger.info({ user, pid: proc.pid, origin: ready.origin }, 'local backend ready')
    return ready
  }

  #onExit (slot: Slot, proc: BackendProcess): void {
    if (slot.process !== proc) return
    slot.process = undefined
    slot.endpoint = undefined
    if (proc.stopRequested || slot.removed.signal.aborted) return
    const { child } = proc
    if (this.#clock.now() - proc.startedAt >= this.#stableMs) slot.crashes = 0
    slot.crashes += 1
    this.#logger.warn({ user: slot.user, pid: proc.pid, code: child.exitCode, signal: child.signalCode, crashes: slot.crashes, stderr: proc.stderr.text() }, 'local backend exited unexpectedly; restarting it')
    this.#source.set(slot.user, [])
    void this.#begin(slot, () => this.#restart(slot))
  }

  async #remove (slot: Slot): Promise<void> {
    slot.removed.abort()
    this.#source.delete(slot.user)
    // A start in flight sees the abort and stops its own child.
    await slot.starting?.catch(() => {})
    const proc = slot.process
    if (proc !== undefined) await this.#stopProcess(slot.user, proc)
    slot.process = undefined
    slot.endpoint = undefined
    if (this.#slots.get(slot.user) === slot) this.#slots.delete(slot.user)
    this.#logger.info({ user: slot.user }, 'local backend removed')
  }

  async #stopProcess (user: string, proc: BackendProcess): Promise<void> {
    proc.stopRequested = true
    if (proc.hasExited) return
    proc.child.kill('SIGTERM')
    if (await this.#settlesWithin(proc.exited, this.#stopGraceMs)) return
    this.#logger.warn({ user, pid: proc.pid, graceMs: this.#stopGraceMs }, 'local backend ignored SIGTERM; killing it')
    proc.child.kill('SIGKILL')
    if (await this.#settlesWithin(proc.exited, this.#stopGraceMs)) return
    this.#logger.error({ user, pid: proc.pid }, 'local backend did not exit after SIGKILL')
  }

  /** Waits `ms`; rejects when `signal` aborts. */
  #delay (ms: number, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason as Error)
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        this.#clock.clearTimeout(timer)
        reject(signal.reason as Error)
      }
      const timer = this.#clock.setTimeout(() => {
        signal.removeEventListener('abort', onAbort)
        resolve()
      }, ms)
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }

  /** Whether `promise` settles within `ms`. */
  async #settlesWithin (promise: Promise<void>, ms: number): Promise<boolean> {
    let timer: TimerHandle | undefined
    const timeout = new Promise<false>((resolve) => { timer = this.#clock.setTimeout(() => { resolve(false) }, ms) })
    try {
      return await Promise.race([promise.then(() => true), timeout])
    } finally {
      this.#clock.clearTimeout(timer)
    }
  }
}

function checkUser (user: string): void {
  if (!isDnsLabel(user)) throw new TypeError(`user: expected a DNS-1123 label, got ${JSON.stringify(user)}`)
}

function positive (name: string, value: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw new TypeError(`${name}: expected a positive number, got ${String(value)}`)
  return value
}

function count (name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0) throw new TypeError(`${name}: expected a non-negative integer, got ${String(value)}`)
  return value
}

function nonEmpty (name: string, value: string): string {
  if (typeof value !== 'string' || value === '') throw new TypeError(`${name}: expected a non-empty string`)
  return value
}
