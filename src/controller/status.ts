// What a UserWorkload's status should say, from its pods and problems, and the desired-vs-seen comparison children.ts shares; pure, no I/O.
import type { V1Pod } from '@kubernetes/client-node'
import type { UserWorkloadStatusObject } from './user-workload.ts'
import type { WorkloadCondition, WorkloadPhase } from '../workloads/workloads.ts'

const MAX_MESSAGE = 1024

/** Container waiting reasons that mean the pod will not become ready by waiting. */
export const FAILURE_REASONS: ReadonlySet<string> = new Set([
  'ImagePullBackOff', 'ErrImagePull', 'InvalidImageName', 'CrashLoopBackOff', 'CreateContainerConfigError', 'CreateContainerError', 'RunContainerError',
])

export interface PodProblem {
  readonly reason: string
  readonly message: string
}

function isLive (pod: V1Pod): boolean {
  return pod.metadata?.deletionTimestamp === undefined || pod.metadata.deletionTimestamp === null
}

export function isPodReady (pod: V1Pod): boolean {
  return isLive(pod) && (pod.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True')
}

/** Why the user's pods cannot start (a container waiting reason, or Unschedulable); undefined otherwise. */
export function podProblem (pods: readonly V1Pod[]): PodProblem | undefined {
  for (const pod of pods) {
    if (!isLive(pod)) continue
    for (const container of [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])]) {
      const waiting = container.state?.waiting
      if (waiting?.reason !== undefined && FAILURE_REASONS.has(waiting.reason)) return { reason: waiting.reason, message: waiting.message ?? '' }
    }
    const scheduled = (pod.status?.conditions ?? []).find((c) => c.type === 'PodScheduled')
    if (scheduled?.status === 'False' && scheduled.reason === 'Unschedulable') return { reason: 'Unschedulable', message: scheduled.message ?? '' }
  }
  return undefined
}

export interface ObservedWorkload {
  readonly suspended: boolean
  /** The UserWorkload's metadata.generation. */
  readonly generation: number | undefined
  /** A configuration problem (bad user id, unknown profile): the workload is Failed with this message. */
  readonly problem?: string
  /** The Ready condition's reason with `problem`; InvalidWorkload when unset. */
  readonly problemReason?: string
  readonly serviceName: string | undefined
  readonly hasDeployment: boolean
  readonly pods: readonly V1Pod[]
}

export interface DesiredStatus {
  readonly phase: WorkloadPhase
  readonly readyReplicas: number
  readonly serviceName: string | undefined
  readonly message: string | undefined
  readonly conditions: readonly WorkloadCondition[]
}

function clip (text: string): string {
  return text.length > MAX_MESSAGE ? `${text.slice(0, MAX_MESSAGE - 3)}...` : text
}

/** The status a workload should show, from what was observed. `previous` keeps lastTransitionTime stable. */
export function deriveStatus (observed: ObservedWorkload, previous: UserWorkloadStatusObject | undefined, now: Date): DesiredStatus {
  const readyReplicas = observed.pods.filter(isPodReady).length
  let phase: WorkloadPhase
  let reason: string
  let message: string | undefined
  const problem = observed.problem === undefined ? podProblem(observed.pods) : undefined
  if (observed.problem !== undefined) {
    [phase, reason, message] = ['Failed', observed.problemReason ?? 'InvalidWorkload', observed.problem]
  } else if (observed.suspended) {
    [phase, reason, message] = ['Suspended', 'Suspended', readyReplicas > 0 ? 'scaling to zero' : 'scaled to zero']
  } else if (readyReplicas > 0) {
    [phase, reason, message] = ['Ready', 'PodReady', undefined]
  } else if (problem !== undefined) {
    [phase, reason, message] = ['Failed', problem.reason, problem.message === '' ? problem.reason : `${problem.reason}: ${problem.message}`]
  } else if (observed.hasDeployment) {
    [phase, reason, message] = ['Starting', 'Starting', 'waiting for the pod to become ready']
  } else {
    [phase, reason, message] = ['Pending', 'Pending', 'waiting for the Deployment']
  }
  const ready = phase === 'Ready' ? 'True' : 'False'
  const before = previous?.conditions?.find((c) => c.type === 'Ready')
  const condition: WorkloadCondition & { observedGeneration?: number } = {
    type: 'Ready',
    status: ready,
    reason,
    message: clip(message ?? 'a pod is ready'),
    lastTransitionTime: before?.status === ready && typeof before.lastTransitionTime === 'string' ? before.lastTransitionTime : now.toISOString().replace(/\.\d+Z$/, 'Z'),
    ...(observed.generation === undefined ? {} : { observedGeneration: observed.generation }),
  }
  return { phase, readyReplicas, serviceName: observed.serviceName, message: message === undefined ? undefined : clip(message), conditions: [condition] }
}

/** Whether `current` already says what `desired` says (ignoring fields podgate does not write). */
export function statusMatches (desired: DesiredStatus, current: UserWorkloadStatusObject | undefined): boolean {
  return current !== undefined &&
    current.phase === desired.phase &&
    (current.readyReplicas ?? 0) === desired.readyReplicas &&
    current.serviceName === desired.serviceName &&
    current.message === desired.message &&
    isSubset(desired.conditions, current.conditions) && (current.conditions?.length ?? 0) === desired.conditions.length
}

const QUANTITY = /^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$/
const QUANTITY_SCALE: Record<string, number> = {
  '': 1, n: 1e-9, u: 1e-6, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
}

/** A Kubernetes quantity as a number ("500m" → 0.5, "1Gi" → 1073741824); undefined if it is not one. */
export function quantityValue (text: string): number | undefined {
  const match = QUANTITY.exec(text)
  if (match === null) return undefined
  const suffix = match[2] ?? ''
  const scale = /^[eE]/.test(suffix) ? 10 ** Number(suffix.slice(1)) : QUANTITY_SCALE[suffix]
  return scale === undefined ? undefined : Number(match[1]) * scale
}

function sameQuantity (desired: string, actual: string): boolean {
  const a = quantityValue(desired)
  const b = quantityValue(actual)
  return a !== undefined && b !== undefined && Math.abs(a - b) <= Math.abs(a) * 1e-12
}

/**
 * True when every field of `desired` has the same value in `actual`; the server's defaults in
 * `actual` are ignored, and resource quantities compare by value (the API server rewrites
 * "0.5" as "500m").
 */
export function isSubset (desired: unknown, actual: unknown, path: readonly string[] = []): boolean {
  if (Array.isArray(desired)) {
    return Array.isArray(actual) && actual.length === desired.length && desired.every((item, i) => isSubset(item, actual[i], path))
  }
  if (desired !== null && typeof desired === 'object') {
    if (actual === null || typeof actual !== 'object' || Array.isArray(actual)) return false
    const record = actual as Record<string, unknown>
    return Object.entries(desired).every(([key, value]) => value === undefined || isSubset(value, record[key], [...path.slice(-2), key]))
  }
  if (desired === actual) return true
  const [resources, section] = path
  return typeof desired === 'string' && typeof actual === 'string' && path.length === 3 && resources === 'resources' &&
    (section === 'requests' || section === 'limits') && sameQuantity(desired, actual)
}
