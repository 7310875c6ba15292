// The durable desired state of "user X has a workload": UserWorkload objects in the API
// server (Kubernetes driver) or the local driver's processes. The admin API, spawn on
// demand and idle culling speak only this interface, so they work the same on both.
export const WORKLOAD_GROUP = 'podgate.dev'
export const WORKLOAD_VERSION = 'v1alpha1'
export const WORKLOAD_PLURAL = 'userworkloads'
export const WORKLOAD_KIND = 'UserWorkload'

export const WORKLOAD_PHASES = ['Pending', 'Starting', 'Ready', 'Suspended', 'Failed'] as const
export type WorkloadPhase = typeof WORKLOAD_PHASES[number]

export interface WorkloadCondition {
  readonly type: string
  readonly status: 'True' | 'False' | 'Unknown'
  readonly reason: string
  readonly message: string
  readonly lastTransitionTime: string
}

export interface WorkloadStatus {
  readonly phase: WorkloadPhase
  readonly readyReplicas: number
  readonly serviceName?: string
  /** RFC 3339. */
  readonly lastActivity?: string
  /** Human-readable; for Failed, the pod's reason (ImagePullBackOff: …). */
  readonly message?: string
  readonly conditions?: readonly WorkloadCondition[]
}

export interface Workload {
  readonly user: string
  /** Where the workload's UserWorkload lives (Kubernetes); absent for the local driver. */
  readonly namespace?: string
  readonly profile: string
  readonly suspended: boolean
  readonly status: WorkloadStatus
  /** RFC 3339 (metadata.creationTimestamp); idle culling counts from it until there is activity. */
  readonly createdAt?: string
  /** RFC 3339 (spec.tokensNotBefore): the user's tokens issued before it are refused. */
  readonly tokensNotBefore?: string
}

/** A workload changed (spec or status); `workload` is undefined once it is deleted. */
export interface WorkloadChange {
  readonly user: string
  readonly workload: Workload | undefined
}

export type WorkloadListener = (change: WorkloadChange) => void

export interface WorkloadSpecInput {
  /** Profile name; the default profile when undefined. */
  readonly profile?: string
}

/**
 * `namespace` (Kubernetes with several served namespaces) names where the UserWorkload is; left
 * out, a call acts on the user's workload wherever it is, and put creates a new one in the
 * default namespace. The local driver has no namespaces and refuses one (BadRequestError).
 */
export interface Workloads {
  /** Creates or updates the user's workload (idempotent); resolves with the stored state. ConflictError when `namespace` is not where the user's workload is. */
  put (user: string, spec: WorkloadSpecInput, namespace?: string): Promise<{ workload: Workload, created: boolean }>
  get (user: string, namespace?: string): Promise<Workload | undefined>
  /** Every workload, or those in `namespace`. */
  list (namespace?: string): Promise<Workload[]>
  /** Deletes the workload and (through ownership) its children; false when there was none. */
  delete (user: string, namespace?: string): Promise<boolean>
  /**
   * Revokes the user's tokens issued before `at` (spec.tokensNotBefore; a mark only moves later).
   * WorkloadNotFoundError without a workload: the mark lives on it.
   */
  revoke (user: string, at: Date, namespace?: string): Promise<Workload>
  /** Sets spec.suspended (suspend when idle, wake on the next request). */
  setSuspended (user: string, suspended: boolean, namespace?: string): Promise<void>
  /**
   * Writes `at` as the user's status.lastActivity, without a throttle of its own: the
   * ActivityRecorder (activity.ts) in front of it is the one throttle. Ignores a user without
   * a workload; an asynchronous write's failure is the implementation's to log.
   */
  touch (user: string, at: Date): void
  /** The last known state without I/O (an informer cache); undefined when not known. Optional. */
  cached? (user: string): Workload | undefined
  /** Subscribes to changes of any workload; returns the unsubscribe function. Optional: without it, waiters check status at a low rate. */
  onChange? (listener: WorkloadListener): () => void
}
