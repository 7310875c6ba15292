// Leader election over a coordination.k8s.io/v1 Lease, as client-go does it: take the Lease
// when it is free or its holder stopped renewing (judged by when this replica last saw the
// record change, never by comparing clocks across machines), write with the resourceVersion
// read (a 409 means another replica won), renew while leading, step down when renewals keep
// failing, and clear holderIdentity on close so a successor takes over at once.
import { CoordinationV1Api, V1MicroTime, type ConfigurationOptions, type KubeConfig, type V1Lease } from '@kubernetes/client-node'
import { Gauge } from 'prom-client'
import { systemClock, type Clock, type TimerHandle } from '../clock.ts'
import { componentLogger, FailureStreaks, type Logger } from '../log.ts'
import type { Metrics } from '../metrics.ts'
import { ApiConnections, apiErrorMessage, apiStatus, DEFAULT_REQUEST_TIMEOUT_MS, FIELD_MANAGER, requestOptions } from '../kube/api.ts'
import { DNS_SUBDOMAIN } from '../kube/labels.ts'

export const DEFAULT_LEASE_NAME = 'podgate-provisioner'
export const DEFAULT_LEASE_DURATION_MS = 15_000
export const DEFAULT_RENEW_INTERVAL_MS = 5_000
export const DEFAULT_RETRY_INTERVAL_MS = 2_000
/** A leader that has not renewed for this long stops, before any other replica may take over. */
export const DEFAULT_RENEW_DEADLINE_MS = 10_000


export type LeadershipListener = (leading: boolean) => void | Promise<void>

export interface LeaderElectorOptions {
  kubeConfig: KubeConfig
  namespace: string
  /** Unique per replica (the pod name, say); written as the Lease's holderIdentity. */
  identity: string
  logger: Logger
  leaseName?: string
  leaseDurationMs?: number
  renewIntervalMs?: number
  retryIntervalMs?: number
  renewDeadlineMs?: number
  requestTimeoutMs?: number
  /** Registers the podgate_leader gauge on this registry. */
  metrics?: Metrics
  clock?: Clock
}

type Attempt = 'held' | 'other' | 'error'

function positive (value: number, field: string): number {
  if (!Number.isFinite(value) || value <= 0) throw new TypeError(`LeaderElector: options.${field} must be a positive number, got ${String(value)}`)
  return value
}

function timeOf (value: unknown): number {
  if (value instanceof Date) return value.getTime()
  return typeof value === 'string' ? Date.parse(value) : Number.NaN
}

export class LeaderElector {
  readonly identity: string
  readonly leaseName: string
  readonly #api: CoordinationV1Api
  readonly #namespace: string
  readonly #logger: Logger
  readonly #failures: FailureStreaks
  readonly #leaseDurationMs: number
  readonly #renewIntervalMs: number
  readonly #retryIntervalMs: number
  readonly #renewDeadlineMs: number
  readonly #options: ConfigurationOptions
  readonly #connections = new ApiConnections()
  readonly #clock: Clock
  readonly #gauge: Gauge | undefined
  readonly #listeners = new Set<LeadershipListener>()
  #leading = false
  #started = false
  #closed = false
  #timer: TimerHandle | undefined
  #running: Promise<void> | undefined
  #transitions: Promise<void> = Promise.resolve()
  #lastRenewAt = 0
  /** The last attempt wrote this replica into the Lease (possibly just before close). */
  #holds = false
  #observedRecord = ''
  #observedAt = 0

  constructor (options: LeaderElectorOptions) {
    if (typeof options.identity !== 'string' || options.identity.trim() === '' || options.identity.length > 253) {
      throw new TypeError(`LeaderElector: options.identity must be a non-empty string of at most 253 characters, got ${JSON.stringify(options.identity)}`)
    }
    this.identity = options.identity
    this.leaseName = options.leaseName ?? DEFAULT_LEASE_NAME
    if (!DNS_SUBDOMAIN.test(this.leaseName)) throw new TypeError(`LeaderElector: options.leaseName must be an object name, got ${JSON.stringify(this.leaseName)}`)
    this.#leaseDurationMs = positive(options.leaseDurationMs ?? DEFAULT_LEASE_DURATION_MS, 'leaseDurationMs')
    this.#renewIntervalMs = positive(options.renewIntervalMs ?? DEFAULT_RENEW_INTERVAL_MS, 'renewIntervalMs')
    this.#retryIntervalMs = positive(options.retryIntervalMs ?? DEFAULT_RETRY_INTERVAL_MS, 'retryIntervalMs')
    this.#renewDeadlineMs = positive(options.renewDeadlineMs ?? Math.min(DEFAULT_RENEW_DEADLINE_MS, this.#leaseDurationMs * 2 / 3), 'renewDeadlineMs')
    if (this.#renewDeadlineMs >= this.#leaseDurationMs) throw new TypeError('LeaderElector: options.renewDeadlineMs must be below leaseDurationMs, or two replicas could lead at once')
    if (this.#renewIntervalMs >= this.#renewDeadlineMs) throw new TypeError('LeaderElector: options.renewIntervalMs must be below the renew deadline')
    this.#api = options.kubeConfig.makeApiClient(CoordinationV1Api)
    this.#namespace = options.namespace
    this.#logger = componentLogger(options.logger, 'leader-election', { lease: this.leaseName, identity: this.identity })
    this.#failures = new FailureStreaks(this.#logger, { failed: 'lease request failed', recovered: 'lease requests answered again', describe: apiErrorMessage })
    this.#options = requestOptions(Math.min(options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS, this.#renewDeadlineMs), this.#connections)
    this.#clock = options.clock ?? systemClock
    if (options.metrics !== undefined) {
      this.#gauge = new Gauge({ name: 'podgate_leader', help: '1 while this replica holds the provisioner Lease', registers: [options.metrics.registry] })
      this.#gauge.set(0)
    }
  }

  get isLeader (): boolean { return this.#leading }

  /** Called with true on taking the lease and false on losing it; a returned promise is awaited before the next transition. */
  onChange (listener: LeadershipListener): () => void {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }

  start (): void {
    if (this.#started || this.#closed) return
    this.#started = true
    this.#schedule(0)
  }

  /** Stops campaigning, steps down (awaiting the listeners), then releases the Lease if held. */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#clock.clearTimeout(this.#timer)
    await this.#running
    if (this.#leading) this.#transition(false)
    await this.#transitions
    if (this.#holds) await this.#release()
    await this.#connections.close()
  }

  #schedule (ms: number): void {
    if (this.#closed) return
    this.#timer = this.#clock.setTimeout(() => {
      this.#running = this.#tick().finally(() => { this.#running = undefined })
    }, ms)
  }

  async #tick (): Promise<void> {
    const attempt = await this.#tryAcquireOrRenew()
    if (attempt !== 'error') {
      this.#holds = attempt === 'held'
      this.#failures.recovered()
    }
    if (this.#closed) return
    const now = this.#clock.now()
    if (attempt === 'held') {
      this.#lastRenewAt = now
      if (!this.#leading) {
        this.#logger.info('acquired the lease; now leading')
        this.#transition(true)
      }
      this.#schedule(this.#renewIntervalMs)
      return
    }
    if (this.#leading && (attempt === 'other' || now - this.#lastRenewAt >= this.#renewDeadlineMs)) {
      this.#logger.warn({ reason: attempt === 'other' ? 'another replica holds the lease' : 'renewals failed past the deadline' }, 'stepping down')
      this.#transition(false)
      // No reconcile may outlive leadership: campaign again only once the listeners stopped.
      await this.#transitions
    }
    this.#schedule(this.#retryIntervalMs)
  }

  #transition (leading: boolean): void {
    this.#leading = leading
    this.#gauge?.set(leading ? 1 : 0)
    const listeners = [...this.#listeners]
    this.#transitions = this.#transitions.then(async () => {
      for (const listener of listeners) {
        try {
          await listener(leading)
        } catch (err) {
          this.#logger.error({ err, leading }, 'leadership listener failed')
        }
      }
    })
  }

  /** Notes when the Lease record last changed, by this replica's clock. */
  #observe (lease: V1Lease, now: number): void {
    const spec = lease.spec ?? {}
    const record = `${spec.holderIdentity ?? ''}|${String(timeOf(spec.renewTime))}|${spec.leaseDurationSeconds ?? ''}`
    if (record !== this.#observedRecord) {
      this.#observedRecord = record
      this.#observedAt = now
    }
  }

  #leaseBody (previous: V1Lease | undefined, now: number): V1Lease {
    const spec = previous?.spec ?? {}
    const renewing = spec.holderIdentity === this.identity
    const acquiredAt = renewing ? timeOf(spec.acquireTime) : now
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: {
        name: this.leaseName,
        namespace: this.#namespace,
        ...(previous?.metadata?.resourceVersion === undefined ? {} : { resourceVersion: previous.metadata.resourceVersion }),
        ...(previous?.metadata?.labels === undefined ? {} : { labels: previous.metadata.labels }),
      },
      spec: {
        holderIdentity: this.identity,
        leaseDurationSeconds: Math.max(1, Math.ceil(this.#leaseDurationMs / 1000)),
        // MicroTime: the API server accepts only six fractional digits, which V1MicroTime writes.
        acquireTime: new V1MicroTime(Number.isNaN(acquiredAt) ? now : acquiredAt),
        renewTime: new V1MicroTime(now),
        leaseTransitions: (spec.leaseTransitions ?? 0) + (renewing || previous === undefined ? 0 : 1),
      },
    }
  }

  async #tryAcquireOrRenew (): Promise<Attempt> {
    let lease: V1Lease
    try {
      lease = await this.#api.readNamespacedLease({ name: this.leaseName, namespace: this.#namespace }, this.#options)
    } catch (err) {
      if (apiStatus(err) !== 404) return this.#failed('read', err)
      try {
        const created = await this.#api.createNamespacedLease({ namespace: this.#namespace, body: this.#leaseBody(undefined, this.#clock.now()), fieldManager: FIELD_MANAGER }, this.#options)
        this.#observe(created, this.#clock.now())
        return 'held'
      } catch (createErr) {
        return apiStatus(createErr) === 409 ? 'other' : this.#failed('create', createErr)
      }
    }
    const now = this.#clock.now()
    this.#observe(lease, now)
    const spec = lease.spec ?? {}
    const holder = spec.holderIdentity ?? ''
    const durationMs = (spec.leaseDurationSeconds ?? this.#leaseDurationMs / 1000) * 1000
    if (holder !== '' && holder !== this.identity && now < this.#observedAt + durationMs) return 'other'
    if (holder !== this.identity) this.#logger.info({ previousHolder: holder === '' ? undefined : holder }, holder === '' ? 'the lease is free; taking it' : 'the lease expired; taking it')
    try {
      const updated = await this.#api.replaceNamespacedLease({ name: this.leaseName, namespace: this.#namespace, body: this.#leaseBody(lease, now), fieldManager: FIELD_MANAGER }, this.#options)
      this.#observe(updated, this.#clock.now())
      return 'held'
    } catch (err) {
      // 409: another replica wrote the Lease since it was read; it won this round.
      if (apiStatus(err) === 409 && holder !== this.identity) return 'other'
      return this.#failed('update', err)
    }
  }

  #failed (operation: string, err: unknown): Attempt {
    this.#failures.failed(err, { operation })
    return 'error'
  }

  async #release (): Promise<void> {
    try {
      const lease = await this.#api.readNamespacedLease({ name: this.leaseName, namespace: this.#namespace }, this.#options)
      if (lease.spec?.holderIdentity !== this.identity) return
      const now = this.#clock.now()
      const body = this.#leaseBody(lease, now)
      // Like client-go: an empty holder and a 1 s duration, so the next candidate takes it at once.
      body.spec = { ...body.spec, holderIdentity: '', leaseDurationSeconds: 1 }
      await this.#api.replaceNamespacedLease({ name: this.leaseName, namespace: this.#namespace, body, fieldManager: FIELD_MANAGER }, this.#options)
      this.#logger.info('released the lease')
    } catch (err) {
      this.#logger.warn({ err: apiErrorMessage(err) }, 'could not release the lease; another replica takes over when it expires')
    }
  }
}
