// The primary's side of the gateway workers: claims the port, forks them, lets each bind
// only where no other process listens, feeds each the routing snapshot and every change to
// it, answers their spawn requests and activity reports, collects their metrics, restarts one
// that dies, and drains them all on shutdown.
import { fork, type ChildProcess } from 'node:child_process'
import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { EndpointSource } from '../discovery/source.ts'
import type { ActivityListener, MissingWorkload } from '../gateway/gateway.ts'
import { ListenError } from '../listen.ts'
import { FailureStreaks, type Logger } from '../log.ts'
import type { Metrics } from '../metrics.ts'
import type { ServedNamespaces } from '../kube/namespaces.ts'
import type { RevocationMarks } from '../auth/revocations.ts'
import { toWireEndpoints, toWireError, toWireRoutes, type FromWorker, type ToWorker, type WorkerMetrics } from './messages.ts'
import { PortClaim } from './port-claim.ts'
import { forkEnv } from './worker-options.ts'

const here = fileURLToPath(import.meta.url)
/** worker.ts next to this file, or worker.js in the compiled package. */
export const WORKER_SCRIPT = fileURLToPath(new URL(`./worker${extname(here)}`, import.meta.url))

/** A worker must answer a metrics scrape within this long, or is left out of it. */
const SCRAPE_TIMEOUT_MS = 2000
/** A worker that served this long before dying is restarted at once. */
const HEALTHY_AFTER_MS = 60_000
/** Time a worker gets, beyond the drain timeout, to exit before it is killed. */
const EXIT_GRACE_MS = 5000

export interface WorkerSupervisorOptions {
  readonly count: number
  /** The gateway address (PODGATE_HOST) the primary claims before any worker binds it. */
  readonly host: string
  /** The configured gateway port; 0 takes the port the claim was given. */
  readonly port: number
  readonly source: EndpointSource
  readonly metrics: Metrics
  readonly logger: Logger
  readonly onMissing?: MissingWorkload | undefined
  /** The namespace spawn on demand creates workloads in: with PODGATE_TENANT_CLAIM, only that tenant may spawn. */
  readonly spawnNamespaces?: ServedNamespaces | undefined
  /** Relayed to every worker's verifier: the marks so far at init, each new one as it comes. */
  readonly revocations?: RevocationMarks | undefined
  readonly onActivity?: ActivityListener | undefined
  readonly activityIntervalMs?: number | undefined
  readonly drainTimeoutMs: number
  /** The workers' environment, where they read their PODGATE_* configuration (default: this process's). */
  readonly env?: NodeJS.ProcessEnv
  /** Node options for the workers (default: this process's, e.g. --max-old-space-size); forkEnv adds the young generation's size unless one is set. */
  readonly execArgv?: readonly string[]
  /** Delay before restarting a worker after `failures` quick deaths in a row. */
  readonly restartDelayMs?: (failures: number) => number
}

interface Worker {
  readonly index: number
  readonly child: ChildProcess
  readonly forkedAt: number
  /** Has the snapshot: routing changes are sent to it from now on. */
  initialized: boolean
  listening: boolean
  /** Why it could not listen, as it or the primary's claim said. */
  cannotListen: string | undefined
  /** Settles once it listens or exits. */
  readonly settled: Promise<void>
}

export class WorkerSupervisor {
  readonly #options: WorkerSupervisorOptions
  readonly #logger: Logger
  readonly #workers = new Map<number, Worker>()
  readonly #failures = new Map<number, number>()
  readonly #restarts = new Set<NodeJS.Timeout>()
  readonly #scrapes = new Map<number, (metrics: WorkerMetrics) => void>()
  readonly #restartFailures: FailureStreaks
  #nextScrape = 1
  #port: number
  /** Held while no worker listens (see port-claim.ts). */
  #claim: PortClaim | undefined
  /** Bind permissions, one at a time: the next is judged once the last worker listens or exits. */
  #binding: Promise<void> = Promise.resolve()
  #started = false
  #stopping = false
  #unsubscribe: (() => void) | undefined

  constructor (options: WorkerSupervisorOptions) {
    if (!Number.isInteger(options.count) || options.count < 2) throw new TypeError(`count: expected an integer ≥ 2, got ${String(options.count)}`)
    this.#options = options
    this.#port = options.port
    this.#logger = options.logger
    this.#restartFailures = new FailureStreaks(this.#logger, { failed: 'gateway worker down; restarting it', recovered: 'gateway worker serving again', level: 'error' })
  }

  get port (): number { return this.#port }
  get serving (): number { return [...this.#workers.values()].filter((w) => w.listening).length }

  /**
   * Claims the port, then starts every worker (the first alone) and resolves with the port they
   * share. Rejects with a ListenError when the port is taken, whoever holds it.
   */
  async start (): Promise<number> {
    const { source } = this.#options
    this.#claim = await PortClaim.take(this.#options.host, this.#port)
    this.#port = this.#claim.port
    const unfollowRoutes = source.onChange(({ snapshot, users }) => { this.#broadcast({ type: 'routes', routes: toWireRoutes(snapshot, users, source) }) })
    const unfollowRevocations = this.#options.revocations?.onChange((user, notBeforeS) => { this.#broadcast({ type: 'revoke', user, notBeforeS }) })
    this.#unsubscribe = () => {
      unfollowRoutes()
      unfollowRevocations?.()
    }
    source.synced.then(() => { this.#broadcast({ type: 'synced' }) }, () => {})
    try {
      await this.#spawn(0)
      await Promise.all(Array.from({ length: this.#options.count - 1 }, async (_, i) => { await this.#spawn(i + 1) }))
    } catch (err) {
      await this.drain()
      throw err
    }
    this.#started = true
    return this.#port
  }

  /** Undefined while at least one worker serves and all have started once; else why not. */
  notReady (): string | undefined {
    if (this.#stopping) return 'draining'
    if (!this.#started) return 'gateway workers starting'
    return this.serving === 0 ? 'no gateway worker is serving' : undefined
  }

  /** Every serving worker's metrics; one that does not answer in time is left out (and logged). */
  async scrape (): Promise<WorkerMetrics[]> {
    const answers = [...this.#workers.values()].filter((w) => w.listening).map(async (worker) => {
      const id = this.#nextScrape++
      let timer: NodeJS.Timeout | undefined
      const answer = new Promise<WorkerMetrics | undefined>((resolve) => {
        this.#scrapes.set(id, resolve)
        timer = setTimeout(() => { resolve(undefined) }, SCRAPE_TIMEOUT_MS)
      })
      this.#send(worker.child, { type: 'scrape', id })
      const metrics = await answer
      clearTimeout(timer)
      this.#scrapes.delete(id)
      if (metrics === undefined) this.#logger.warn({ worker: worker.index }, 'worker did not answer the metrics scrape')
      return metrics
    })
    return (await Promise.all(answers)).filter((m) => m !== undefined)
  }

  /** Tells every worker to drain and waits (bounded) for them to exit; idempotent. */
  async drain (): Promise<void> {
    this.#stopping = true
    this.#unsubscribe?.()
    await this.#claim?.release()
    this.#claim = undefined
    for (const timer of this.#restarts) clearTimeout(timer)
    this.#restarts.clear()
    const exits = [...this.#workers.values()].map(async (worker) => {
      if (worker.child.exitCode !== null || worker.child.signalCode !== null) return
      const exited = new Promise((resolve) => { worker.child.once('exit', resolve) })
      this.#send(worker.child, { type: 'drain' })
      const timer = setTimeout(() => {
        this.#logger.warn({ worker: worker.index }, 'worker did not exit after draining; killing it')
        worker.child.kill('SIGKILL')
      }, this.#options.drainTimeoutMs + EXIT_GRACE_MS)
      await exited
      clearTimeout(timer)
    })
    await Promise.all(exits)
  }

  /** Forks worker `index` and resolves once it listens; rejects if it exits first. */
  #spawn (index: number): Promise<void> {
    const { source, onMissing, spawnNamespaces, onActivity, activityIntervalMs, metrics } = this.#options
    const execArgv = [...(this.#options.execArgv ?? process.execArgv)]
    const child = fork(WORKER_SCRIPT, [String(index)], {
      env: forkEnv({ ...(this.#options.env ?? process.env), PODGATE_PORT: String(this.#port) }, execArgv),
      execArgv,
      serialization: 'advanced',
      stdio: 'inherit',
    })
    const listening = Promise.withResolvers<void>()
    const worker: Worker = {
      index, child, forkedAt: performance.now(), initialized: false, listening: false, cannotListen: undefined, settled: listening.promise.catch(() => {}),
    }
    this.#workers.set(index, worker)
    child.on('error', (err) => {
      this.#logger.error({ err, worker: index }, 'gateway worker process error')
      listening.reject(err)
    })
    child.on('message', (message: FromWorker) => {
      switch (message.type) {
        case 'hello':
          if (this.#stopping) {
            this.#send(child, { type: 'drain' })
            break
          }
          // The snapshot as of now; every later change follows it on the same channel.
          this.#send(child, {
            type: 'init',
            // With each route, the namespace (workers check tenants) and profile (their limits) of its user.
            routes: toWireRoutes(source.snapshot, undefined, source),
            synced: source.isSynced,
            missing: onMissing !== undefined,
            ...(spawnNamespaces === undefined ? {} : { spawnNamespaces }),
            activity: onActivity !== undefined,
            activityIntervalMs,
            ...(this.#options.revocations === undefined ? {} : { revocations: this.#options.revocations.entries() }),
          })
          worker.initialized = true
          break
        case 'bind':
          void this.#permitBind(worker)
          break
        case 'listening':
          if (this.#port === 0) this.#port = message.port
          worker.listening = true
          metrics.workers.set(this.serving)
          this.#restartFailures.recovered({ worker: index }, String(index))
          listening.resolve()
          break
        case 'cannot-listen':
          worker.cannotListen = message.message
          break
        case 'missing':
          void this.#answerMissing(child, message)
          break
        case 'activity':
          for (const user of message.users) onActivity?.(user)
          break
        case 'metrics':
          this.#scrapes.get(message.id)?.(message.metrics)
          break
      }
    })
    child.once('exit', (code, signal) => {
      if (this.#workers.get(index) === worker) this.#workers.delete(index)
      metrics.workers.set(this.serving)
      if (!worker.listening) {
        listening.reject(worker.cannotListen === undefined
          ? new Error(`gateway worker ${index} exited (${signal ?? `code ${String(code)}`}) before listening on port ${this.#port}`)
          : new ListenError(worker.cannotListen))
      }
      if (this.#stopping || !worker.listening) return
      this.#restartFailures.failed(`exited (${signal ?? `code ${String(code)}`})`, { worker: index, code, signal }, { key: String(index) })
      metrics.workerRestarts.inc()
      this.#scheduleRestart(index, performance.now() - worker.forkedAt)
    })
    return listening.promise
  }

  /**
   * Answers a worker about to bind. While another worker listens, the port is this primary's
   * group and the worker joins it. Otherwise the claim (held since start, or taken again now)
   * proves nobody else listens; it is released just before the answer, and the next worker is
   * judged only once this one listens or exits (a claim taken then would fail on it).
   */
  #permitBind (worker: Worker): Promise<void> {
    this.#binding = this.#binding.then(async () => {
      let refused: string | undefined
      const guarded = this.serving > 0
      if (this.#stopping) refused = 'the gateway is draining'
      else if (!guarded) {
        try {
          this.#claim ??= await PortClaim.take(this.#options.host, this.#port)
          await this.#claim.release()
          this.#claim = undefined
        } catch (err) {
          refused = err instanceof Error ? err.message : String(err)
        }
      }
      if (refused !== undefined) worker.cannotListen = refused
      this.#send(worker.child, refused === undefined ? { type: 'bind' } : { type: 'bind', refused })
      // The port is unguarded until this worker listens: nobody else is judged meanwhile.
      if (!guarded && refused === undefined) await worker.settled
    })
    return this.#binding
  }

  #scheduleRestart (index: number, livedMs: number): void {
    const failures = livedMs >= HEALTHY_AFTER_MS ? 0 : (this.#failures.get(index) ?? 0) + 1
    this.#failures.set(index, failures)
    const delay = (this.#options.restartDelayMs ?? defaultRestartDelay)(failures)
    const timer = setTimeout(() => {
      this.#restarts.delete(timer)
      if (this.#stopping) return
      this.#spawn(index).catch((err: unknown) => {
        if (this.#stopping) return
        this.#restartFailures.failed(err, { worker: index }, { key: String(index) })
        this.#scheduleRestart(index, 0)
      })
    }, delay)
    this.#restarts.add(timer)
  }

  async #answerMissing (child: ChildProcess, message: Extract<FromWorker, { type: 'missing' }>): Promise<void> {
    const onMissing = this.#options.onMissing
    if (onMissing === undefined) return
    try {
      const endpoints = await onMissing(message.user, message.accept, message.namespace)
      this.#send(child, { type: 'endpoints', id: message.id, endpoints: toWireEndpoints(endpoints) })
    } catch (err) {
      this.#send(child, { type: 'endpoints', id: message.id, error: toWireError(err) })
    }
  }

  #broadcast (message: ToWorker): void {
    for (const worker of this.#workers.values()) if (worker.initialized) this.#send(worker.child, message)
  }

  #send (child: ChildProcess, message: ToWorker): void {
    if (!child.connected) return
    // A worker that exits between the check and the write surfaces as a callback error: its exit handler deals with it.
    child.send(message, (err) => { if (err !== null) this.#logger.debug({ err }, 'message to a gateway worker lost') })
  }
}

/** 0 s for the first death, then 1, 2, 4 … capped at 30 s while a worker keeps dying young. */
export function defaultRestartDelay (failures: number): number {
  return failures <= 1 ? 0 : Math.min(30_000, 1000 * 2 ** (failures - 2))
}
