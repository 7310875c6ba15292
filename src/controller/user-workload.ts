// The UserWorkload custom object as the API server stores it, and the Workload it describes.
import type { KubernetesObject } from '@kubernetes/client-node'
import { isDnsLabel, workloadName } from '../kube/labels.ts'
import { WORKLOAD_PHASES, type Workload, type WorkloadCondition, type WorkloadPhase, type WorkloadStatus } from '../workloads/workloads.ts'

export interface UserWorkloadStatusObject {
  phase?: string
  readyReplicas?: number
  serviceName?: string
  lastActivity?: string
  message?: string
  conditions?: WorkloadCondition[]
}

export interface UserWorkloadObject extends KubernetesObject {
  spec?: { user?: string, profile?: string, suspended?: boolean, tokensNotBefore?: string }
  status?: UserWorkloadStatusObject
}

function isPhase (value: unknown): value is WorkloadPhase {
  return (WORKLOAD_PHASES as readonly unknown[]).includes(value)
}

/** The Workload a UserWorkload object describes; undefined when it names no valid user. */
export function toWorkload (object: UserWorkloadObject, defaultProfile = ''): Workload | undefined {
  const user = object.spec?.user
  if (!isDnsLabel(user) || object.metadata?.name !== workloadName(user)) return undefined
  const status = object.status ?? {}
  const readyReplicas = typeof status.readyReplicas === 'number' && status.readyReplicas >= 0 ? status.readyReplicas : 0
  const workloadStatus: WorkloadStatus = {
    phase: isPhase(status.phase) ? status.phase : 'Pending',
    readyReplicas,
    ...(typeof status.serviceName === 'string' ? { serviceName: status.serviceName } : {}),
    ...(typeof status.lastActivity === 'string' ? { lastActivity: status.lastActivity } : {}),
    ...(typeof status.message === 'string' ? { message: status.message } : {}),
    ...(Array.isArray(status.conditions) ? { conditions: status.conditions.map((c) => ({ ...c })) } : {}),
  }
  const profile = object.spec?.profile
  const created: unknown = object.metadata?.creationTimestamp
  const createdAt = created instanceof Date ? created.toISOString() : typeof created === 'string' ? created : undefined
  const namespace = object.metadata?.namespace
  return deepFreeze({
    user,
    ...(namespace === undefined ? {} : { namespace }),
    profile: typeof profile === 'string' && profile !== '' ? profile : defaultProfile,
    suspended: object.spec?.suspended === true,
    ...(typeof object.spec?.tokensNotBefore === 'string' ? { tokensNotBefore: object.spec.tokensNotBefore } : {}),
    status: workloadStatus,
    ...(createdAt === undefined ? {} : { createdAt }),
  })
}

function deepFreeze<T> (value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const child of Object.values(value)) deepFreeze(child)
    Object.freeze(value)
  }
  return value
}
