// What the primary and its gateway workers say to each other over the child_process IPC
// channel (advanced serialization). Routes travel as plain tuples; errors by class name.
import type { MetricObjectWithValues, MetricValue } from 'prom-client'
import { endpoint, type Endpoint, type EndpointSnapshot, type EndpointSource } from '../discovery/source.ts'
import { BadRequestError, DrainingError, ForbiddenError, NotReadyError, PodgateError, WorkloadFailedError, WorkloadNotFoundError } from '../errors.ts'

export type WireEndpoints = ReadonlyArray<readonly [address: string, port: number]>
/**
 * A user's endpoints, or null when the user left the snapshot; the namespace the user is routed
 * from when the source has namespaces, and the profile of their workload when it has profiles
 * (left off, or undefined, otherwise).
 */
export type WireRoute = readonly [user: string, endpoints: WireEndpoints | null, namespace?: string | undefined, profile?: string | undefined]
export type WireRoutes = ReadonlyArray<WireRoute>
/** What a source knows of its users besides their endpoints, relayed with each route. */
export type RouteLabels = Pick<EndpointSource, 'namespaceOf' | 'profileOf'>

export interface WireError {
  readonly name: string
  readonly message: string
  readonly page?: string
  readonly retryAfterSeconds?: number
}

export type WorkerMetrics = Array<MetricObjectWithValues<MetricValue<string>>>

export interface WorkerInit {
  readonly type: 'init'
  readonly routes: WireRoutes
  readonly synced: boolean
  /** Whether users without endpoints are asked of the primary (spawn on demand, 404/503 from its view). */
  readonly missing: boolean
  /** The namespace a spawn creates workloads in (the tenant check before asking the primary). */
  readonly spawnNamespaces?: readonly string[] | 'all'
  /** Whether routed users are reported for idle culling. */
  readonly activity: boolean
  /** Revocation marks (user, epoch seconds) so far; later ones come as 'revoke' messages. */
  readonly revocations?: ReadonlyArray<readonly [string, number]>
  /** The primary's activity throttle interval: how often open WebSockets count, and the longest a report waits to be sent. */
  readonly activityIntervalMs: number | undefined
}

export type ToWorker =
  | WorkerInit
  | { readonly type: 'routes', readonly routes: WireRoutes }
  | { readonly type: 'synced' }
  | { readonly type: 'revoke', readonly user: string, readonly notBeforeS: number }
  | { readonly type: 'endpoints', readonly id: number, readonly endpoints?: WireEndpoints, readonly error?: WireError }
  | { readonly type: 'scrape', readonly id: number }
  | { readonly type: 'drain' }
  /** The answer to 'bind': go ahead, or why not (the port is someone else's, the primary drains). */
  | { readonly type: 'bind', readonly refused?: string }

export type FromWorker =
  | { readonly type: 'hello' }
  /** About to bind the gateway port: the primary makes sure it is free of anyone else's listener first. */
  | { readonly type: 'bind' }
  | { readonly type: 'listening', readonly port: number }
  /** The gateway port could not be opened (a ListenError's message); the worker exits next. */
  | { readonly type: 'cannot-listen', readonly message: string }
  | { readonly type: 'missing', readonly id: number, readonly user: string, readonly accept: string | undefined, readonly namespace?: string }
  /** Users routed to their workload since the last 'activity' message (each once); the primary throttles. */
  | { readonly type: 'activity', readonly users: readonly string[] }
  | { readonly type: 'metrics', readonly id: number, readonly metrics: WorkerMetrics }

export function toWireEndpoints (list: readonly Endpoint[]): WireEndpoints {
  return list.map((e) => [e.address, e.port] as const)
}

export function fromWireEndpoints (list: WireEndpoints): readonly Endpoint[] {
  return Object.freeze(list.map(([address, port]) => endpoint(address, port)))
}

/**
 * The given users' entries of a snapshot (all users when `users` is omitted), each with its
 * namespace and profile when `labels` knows them.
 */
export function toWireRoutes (snapshot: EndpointSnapshot, users: Iterable<string> = snapshot.keys(), labels?: RouteLabels): WireRoutes {
  const routes: WireRoute[] = []
  for (const user of users) {
    const list = snapshot.get(user)
    if (list === undefined) {
      routes.push([user, null])
      continue
    }
    const endpoints = toWireEndpoints(list)
    const namespace = labels?.namespaceOf?.(user)
    const profile = labels?.profileOf?.(user)
    if (profile !== undefined) routes.push([user, endpoints, namespace, profile])
    else routes.push(namespace === undefined ? [user, endpoints] : [user, endpoints, namespace])
  }
  return routes
}

// The errors a missing-workload answer can carry; anything else reaches the client as a 500.
const ERRORS: Record<string, (wire: WireError) => PodgateError> = {
  NotReadyError: (wire) => new NotReadyError(wire.message, wire.retryAfterSeconds, { page: wire.page }),
  WorkloadFailedError: (wire) => new WorkloadFailedError(wire.message, { page: wire.page }),
  WorkloadNotFoundError: (wire) => new WorkloadNotFoundError(wire.message, { page: wire.page }),
  DrainingError: (wire) => new DrainingError(wire.message),
  BadRequestError: (wire) => new BadRequestError(wire.message),
  ForbiddenError: (wire) => new ForbiddenError(wire.message),
}

export function toWireError (err: unknown): WireError {
  if (!(err instanceof PodgateError) || !Object.hasOwn(ERRORS, err.name)) return { name: 'PodgateError', message: 'internal error' }
  const retry = (err as { retryAfterSeconds?: unknown }).retryAfterSeconds
  return {
    name: err.name,
    message: err.message,
    ...(err.page === undefined ? {} : { page: err.page }),
    ...(typeof retry === 'number' ? { retryAfterSeconds: retry } : {}),
  }
}

export function fromWireError (wire: WireError): PodgateError {
  return Object.hasOwn(ERRORS, wire.name) ? (ERRORS[wire.name] as (w: WireError) => PodgateError)(wire) : new PodgateError('internal error')
}
