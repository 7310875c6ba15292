// A client-node ListWatch kept alive. The ListWatch relists on 410 and resumes after a clean
// end of its watch, but stops for good on any other error (a broken stream, a failed list):
// this restarts it with jittered exponential backoff, restarts it when it has gone silent,
// and resolves `synced` after the first complete list.
import { ListWatch, Watch, type KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node'
import { systemClock, type Clock, type TimerHandle } from '../clock.ts'
import { FailureStreaks, type Logger } from '../log.ts'
import { apiErrorMessage } from './api.ts'

export const DEFAULT_WATCHDOG_MS = 90_000
export const DEFAULT_BACKOFF = Object.freeze({ initialMs: 500, maxMs: 30_000 })

export interface Backoff {
  readonly initialMs: number
  readonly maxMs: number
}

/** Where the informer's view goes. `replace` gets every object that exists after a list. */
export interface InformerHandlers<T> {
  replace (objects: readonly T[]): void
  upsert (object: T): void
  remove (object: T): void
}

export type RestartReason = 'error' | 'watchdog'

/** Hooks for metrics: every watch event by type, every restart, every complete list. */
export interface InformerObserver {
  event? (type: string): void
  restart? (reason: RestartReason): void
  listed? (): void
}

export interface SupervisedInformerOptions<T extends KubernetesObject> {
  kubeConfig: KubeConfig
  /** Collection path, e.g. `/apis/discovery.k8s.io/v1/namespaces/ns/endpointslices`. */
  path: string
  list: () => Promise<KubernetesListObject<T>>
  labelSelector?: string
  handlers: InformerHandlers<T>
  logger: Logger
  observer?: InformerObserver
  /** Restart when neither an event, a list nor a (re)connection happened for this long. */
  watchdogMs?: number
  backoff?: Backoff
  random?: () => number
  clock?: Clock
}

/** Delay before restart number `attempt` (0-based): exponential, capped, with half of it random. */
export function backoffDelay (attempt: number, backoff: Backoff, random: () => number): number {
  const ceiling = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.min(attempt, 30))
  return Math.round(ceiling / 2 + (random() * ceiling) / 2)
}

/** Thrown by the list of an informer that was replaced while the list was in flight. */
class RetiredInformerError extends Error {}

interface WatchHooks {
  readonly current: () => boolean
  readonly connected: () => void
  readonly event: (type: string) => void
  readonly timeoutSeconds: () => number
}

/**
 * The Watch one ListWatch generation uses: it asks for bookmarks and a server-side timeout,
 * reports activity, and goes quiet once its generation is retired, so a replaced informer's
 * late callbacks (an abort, a delayed reconnect) never reach the current one.
 */
class GenerationWatch extends Watch {
  readonly #hooks: WatchHooks

  constructor (kubeConfig: KubeConfig, hooks: WatchHooks) {
    super(kubeConfig)
    this.#hooks = hooks
  }

  override async watch (
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    const hooks = this.#hooks
    if (!hooks.current()) return new AbortController()
    const query = { ...queryParams, allowWatchBookmarks: true, timeoutSeconds: hooks.timeoutSeconds() }
    const controller = await super.watch(path, query, (phase, apiObj, watchObj) => {
      if (!hooks.current()) return
      hooks.event(phase)
      callback(phase, apiObj, watchObj)
    }, (err: unknown) => {
      if (hooks.current()) done(err)
    })
    // Retired while the watch was being opened: nobody holds this request to abort it later.
    if (hooks.current()) hooks.connected()
    else controller.abort()
    return controller
  }
}

export class SupervisedInformer<T extends KubernetesObject> {
  readonly synced: Promise<void>
  readonly #resolveSynced: () => void
  readonly #kubeConfig: KubeConfig
  readonly #path: string
  readonly #list: () => Promise<KubernetesListObject<T>>
  readonly #labelSelector: string | undefined
  readonly #handlers: InformerHandlers<T>
  readonly #logger: Logger
  readonly #failures: FailureStreaks
  readonly #observer: InformerObserver
  readonly #watchdogMs: number
  readonly #backoff: Backoff
  readonly #random: () => number
  readonly #clock: Clock
  readonly #pendingDelays = new Set<() => void>()
  #informer: ListWatch<T> | undefined
  #generation = 0
  #attempt = 0
  #restarts = 0
  #isSynced = false
  #started = false
  #closed = false
  #lastActivity: number
  #lastEventAt: number
  #retryTimer: TimerHandle | undefined
  #watchdogTimer: TimerHandle | undefined

  constructor (options: SupervisedInformerOptions<T>) {
    this.#kubeConfig = options.kubeConfig
    this.#path = options.path
    this.#list = options.list
    this.#labelSelector = options.labelSelector
    this.#handlers = options.handlers
    this.#logger = options.logger
    this.#failures = new FailureStreaks(this.#logger, { failed: 'watch failed; restarting the informer', recovered: 'informer listing and watching again', describe: apiErrorMessage })
    this.#observer = options.observer ?? {}
    this.#watchdogMs = options.watchdogMs ?? DEFAULT_WATCHDOG_MS
    this.#backoff = options.backoff ?? DEFAULT_BACKOFF
    this.#random = options.random ?? Math.random
    this.#clock = options.clock ?? systemClock
    this.#lastActivity = this.#clock.now()
    this.#lastEventAt = this.#lastActivity
    const { promise, resolve } = Promise.withResolvers<void>()
    this.synced = promise
    this.#resolveSynced = resolve
  }

  get isSynced (): boolean { return this.#isSynced }
  /** When the last watch event or complete list arrived (ms, from the clock). */
  get lastEventAt (): number { return this.#lastEventAt }
  get restarts (): number { return this.#restarts }

  start (): void {
    if (this.#started || this.#closed) return
    this.#started = true
    this.#launch()
    this.#armWatchdog()
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#clock.clearTimeout(this.#retryTimer)
    this.#clock.clearTimeout(this.#watchdogTimer)
    await this.#retire()
  }

  #touch (): void { this.#lastActivity = this.#clock.now() }

  #launch (): void {
    const generation = ++this.#generation
    const current = (): boolean => generation === this.#generation && !this.#closed
    const watch = new GenerationWatch(this.#kubeConfig, {
      current,
      connected: () => { this.#touch() },
      event: (type) => {
        this.#touch()
        this.#lastEventAt = this.#lastActivity
        if (type !== 'ERROR') {
          this.#attempt = 0
          this.#failures.recovered({ path: this.#path })
        }
        this.#observer.event?.(type)
      },
      // Like client-go: the server ends each watch after 5–10 minutes, spreading reconnects.
      timeoutSeconds: () => Math.round(300 * (1 + this.#random())),
    })
    const list = async (): Promise<KubernetesListObject<T>> => {
      const result = await this.#list()
      if (!current()) throw new RetiredInformerError('informer replaced during list')
      this.#touch()
      this.#lastEventAt = this.#lastActivity
      this.#handlers.replace(result.items)
      this.#failures.recovered({ path: this.#path })
      this.#observer.listed?.()
      if (!this.#isSynced) {
        this.#isSynced = true
        this.#resolveSynced()
      }
      return result
    }
    const informer = new ListWatch<T>(this.#path, watch, list, false, this.#labelSelector, undefined, { delayFn: (ms) => this.#delay(ms) })
    informer.on('add', (object) => { if (current()) this.#handlers.upsert(object) })
    informer.on('update', (object) => { if (current()) this.#handlers.upsert(object) })
    informer.on('delete', (object) => { if (current()) this.#handlers.remove(object) })
    informer.on('error', (err) => { if (current()) this.#fail(err) })
    this.#informer = informer
    this.#touch()
    informer.start().catch((err: unknown) => { if (current()) this.#fail(err) })
  }

  /** The ListWatch's own pause between clean reconnects; cut short when the informer is retired. */
  #delay (ms: number): Promise<void> {
    return new Promise((resolve) => {
      const finish = (): void => {
        this.#pendingDelays.delete(finish)
        this.#clock.clearTimeout(handle)
        this.#touch()
        resolve()
      }
      const handle = this.#clock.setTimeout(finish, ms)
      this.#pendingDelays.add(finish)
    })
  }

  async #retire (): Promise<void> {
    this.#generation++
    const informer = this.#informer
    this.#informer = undefined
    for (const finish of [...this.#pendingDelays]) finish()
    await informer?.stop().catch(() => {})
  }

  #fail (err: unknown): void {
    const delay = backoffDelay(this.#attempt++, this.#backoff, this.#random)
    this.#restarts++
    this.#failures.failed(err, { path: this.#path, delayMs: delay })
    this.#observer.restart?.('error')
    void this.#retire()
    this.#retryTimer = this.#clock.setTimeout(() => {
      this.#retryTimer = undefined
      if (!this.#closed) this.#launch()
    }, delay)
  }

  #armWatchdog (): void {
    this.#watchdogTimer = this.#clock.setTimeout(() => { this.#checkWatchdog() }, Math.max(5, Math.floor(this.#watchdogMs / 4)))
  }

  #checkWatchdog (): void {
    if (this.#closed) return
    const silentMs = this.#clock.now() - this.#lastActivity
    if (this.#informer !== undefined && this.#pendingDelays.size === 0 && silentMs > this.#watchdogMs) {
      this.#restarts++
      this.#logger.warn({ path: this.#path, silentMs }, 'watch silent for too long; restarting the informer')
      this.#observer.restart?.('watchdog')
      void this.#retire()
      this.#launch()
    }
    this.#armWatchdog()
  }
}
