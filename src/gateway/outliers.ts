// Outlier ejection per endpoint: consecutive connect failures or 5xx answers take an endpoint
// out of rotation for a backoff that doubles with each ejection; then one probe request is let
// through (half-open), whose success readmits it. A user's last endpoint in rotation stays in.
// A probe whose outcome never comes (the client left, the answer timed out) holds the half-open
// slot only as long as the ejection lasted, then the next request probes.
import { Counter, Gauge, Registry } from 'prom-client'
import { systemClock, type Clock } from '../clock.ts'
import type { Endpoint } from '../discovery/source.ts'

export type EjectionReason = 'connect' | '5xx'

export interface OutlierOptions {
  readonly clock?: Clock | undefined
  /** Where podgate_endpoint_ejections_total and podgate_endpoints_ejected are registered. */
  readonly registry?: Registry | undefined
  /** Consecutive failures that eject an endpoint (default 5). */
  readonly threshold?: number
  /** First ejection's length (default 1 s), doubled per ejection up to maxEjectionMs (default 30 s). */
  readonly baseEjectionMs?: number
  readonly maxEjectionMs?: number
}

interface OutlierState {
  /** Consecutive failures since the last success. */
  failures: number
  /** Ejections since the last success: the next backoff is base × 2^ejections. */
  ejections: number
  /** Epoch ms the ejection ends; 0 while in rotation. */
  until: number
  /** The current ejection's length. */
  backoffMs: number
  /** Epoch ms a probe handed out stops holding the half-open slot (a probe that never reports). */
  probeUntil: number
}

export class EndpointOutliers {
  /** Only endpoints with a failure since their last success: empty (one size check) while nothing fails. */
  readonly #states = new Map<string, OutlierState>()
  readonly #clock: Clock
  readonly #threshold: number
  readonly #baseMs: number
  readonly #maxMs: number
  readonly #ejections: Counter<'reason'>
  readonly #ejected: Gauge
  #ejectedCount = 0

  constructor (options: OutlierOptions = {}) {
    this.#clock = options.clock ?? systemClock
    this.#threshold = positiveInteger('threshold', options.threshold ?? 5)
    this.#baseMs = positiveInteger('baseEjectionMs', options.baseEjectionMs ?? 1000)
    this.#maxMs = positiveInteger('maxEjectionMs', options.maxEjectionMs ?? 30_000)
    const registers = [options.registry ?? new Registry()]
    this.#ejections = new Counter({ name: 'podgate_endpoint_ejections_total', help: 'Endpoints taken out of their users\' rotation, by the failures that did it', labelNames: ['reason'] as const, registers })
    this.#ejections.inc({ reason: 'connect' }, 0)
    this.#ejections.inc({ reason: '5xx' }, 0)
    this.#ejected = new Gauge({ name: 'podgate_endpoints_ejected', help: 'Endpoints out of rotation after consecutive failures (probing ones included)', registers })
    this.#ejected.set(0)
  }

  /** Endpoints ejected now (a probe in flight included). */
  get ejected (): number { return this.#ejectedCount }

  /**
   * The index of the endpoint to use, starting the search at `start`: the first one in
   * rotation, or an ejected one whose backoff is over and whose probe slot is free (`probe`
   * allowed). None: `start`, so the request fails as it would without ejection.
   */
  pick (endpoints: readonly Endpoint[], start: number, probe = true): number {
    if (this.#states.size === 0) return start
    let now = 0
    for (let i = 0; i < endpoints.length; i++) {
      const index = (start + i) % endpoints.length
      const state = this.#states.get((endpoints[index] as Endpoint).origin)
      if (state === undefined || state.until === 0) return index
      if (now === 0) now = this.#clock.now()
      if (probe && state.until <= now && state.probeUntil <= now) {
        // Not the longest backoff: an endpoint out for 1 s is not kept out 30 s because one client hung up.
        state.probeUntil = now + state.backoffMs
        return index
      }
    }
    return start
  }

  /** A response below 500 from `origin`: readmitted and reset. */
  succeeded (origin: string): void {
    if (this.#states.size === 0) return
    const state = this.#states.get(origin)
    if (state === undefined) return
    if (state.until !== 0) this.#setEjected(-1)
    this.#states.delete(origin)
  }

  /** A connect failure or a 5xx from `origin`, one of `endpoints` (the user's list it was picked from). */
  failed (origin: string, reason: EjectionReason, endpoints: readonly Endpoint[]): void {
    let state = this.#states.get(origin)
    if (state === undefined) {
      state = { failures: 0, ejections: 0, until: 0, backoffMs: 0, probeUntil: 0 }
      this.#states.set(origin, state)
    }
    state.failures++
    const now = this.#clock.now()
    if (state.until !== 0) {
      // A failed probe (or a request that was in flight when it was ejected): the next backoff.
      if (state.until <= now) this.#eject(state, reason, now)
      return
    }
    if (state.failures < this.#threshold || !this.#othersInRotation(origin, endpoints)) return
    this.#setEjected(1)
    this.#eject(state, reason, now)
  }

  /** Drops what is known of an endpoint that left every snapshot. */
  forget (origin: string): void {
    const state = this.#states.get(origin)
    if (state === undefined) return
    if (state.until !== 0) this.#setEjected(-1)
    this.#states.delete(origin)
  }

  #eject (state: OutlierState, reason: EjectionReason, now: number): void {
    state.backoffMs = Math.min(this.#baseMs * 2 ** state.ejections, this.#maxMs)
    state.until = now + state.backoffMs
    state.probeUntil = 0
    state.ejections++
    this.#ejections.inc({ reason })
  }

  #othersInRotation (origin: string, endpoints: readonly Endpoint[]): boolean {
    for (const e of endpoints) {
      if (e.origin !== origin && (this.#states.get(e.origin)?.until ?? 0) === 0) return true
    }
    return false
  }

  #setEjected (delta: number): void {
    this.#ejectedCount += delta
    this.#ejected.set(this.#ejectedCount)
  }
}

function positiveInteger (field: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new TypeError(`EndpointOutliers: ${field} must be a positive integer, got ${String(value)}`)
  return value
}
