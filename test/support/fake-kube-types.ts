// The shapes the fake Kubernetes API server stores and answers with: objects, resource
// types (with the built-in ones it knows), and Status errors.

export interface OwnerReference {
  apiVersion: string
  kind: string
  name: string
  uid: string
  controller?: boolean
  blockOwnerDeletion?: boolean
}

export interface ObjectMeta {
  name?: string
  generateName?: string
  namespace?: string
  uid?: string
  resourceVersion?: string
  generation?: number
  creationTimestamp?: string
  deletionTimestamp?: string
  labels?: Record<string, string>
  annotations?: Record<string, string>
  ownerReferences?: OwnerReference[]
  finalizers?: string[]
  managedFields?: Array<Record<string, unknown>>
  [key: string]: unknown
}

export interface KubeObject {
  apiVersion?: string
  kind?: string
  metadata?: ObjectMeta
  [key: string]: unknown
}

export interface ResourceTypeSpec {
  group?: string
  version: string
  /** Plural, lower case: `endpointslices`. */
  resource: string
  kind: string
  namespaced?: boolean
  /** Has a `/status` subresource: writes to the main resource keep the stored status. */
  status?: boolean
  /** A custom resource: list items keep apiVersion and kind, as the API server serves them. */
  custom?: boolean
}

export interface ResourceType {
  readonly group: string
  readonly version: string
  readonly resource: string
  readonly kind: string
  readonly namespaced: boolean
  readonly status: boolean
  readonly custom: boolean
  readonly apiVersion: string
  /** `group/version/resource`, the storage key. */
  readonly key: string
  /** `resource.group`, as Kubernetes names it in messages. */
  readonly qualified: string
}

export const BUILTIN_RESOURCES: readonly ResourceTypeSpec[] = [
  { version: 'v1', resource: 'pods', kind: 'Pod', status: true },
  { version: 'v1', resource: 'services', kind: 'Service', status: true },
  { version: 'v1', resource: 'endpoints', kind: 'Endpoints' },
  { version: 'v1', resource: 'configmaps', kind: 'ConfigMap' },
  { version: 'v1', resource: 'secrets', kind: 'Secret' },
  { version: 'v1', resource: 'serviceaccounts', kind: 'ServiceAccount' },
  { version: 'v1', resource: 'persistentvolumeclaims', kind: 'PersistentVolumeClaim', status: true },
  { version: 'v1', resource: 'events', kind: 'Event' },
  { version: 'v1', resource: 'namespaces', kind: 'Namespace', namespaced: false, status: true },
  { version: 'v1', resource: 'nodes', kind: 'Node', namespaced: false, status: true },
  { group: 'apps', version: 'v1', resource: 'deployments', kind: 'Deployment', status: true },
  { group: 'apps', version: 'v1', resource: 'replicasets', kind: 'ReplicaSet', status: true },
  { group: 'apps', version: 'v1', resource: 'statefulsets', kind: 'StatefulSet', status: true },
  { group: 'discovery.k8s.io', version: 'v1', resource: 'endpointslices', kind: 'EndpointSlice' },
  { group: 'networking.k8s.io', version: 'v1', resource: 'networkpolicies', kind: 'NetworkPolicy' },
  { group: 'networking.k8s.io', version: 'v1', resource: 'ingresses', kind: 'Ingress', status: true },
  { group: 'coordination.k8s.io', version: 'v1', resource: 'leases', kind: 'Lease' },
  { group: 'events.k8s.io', version: 'v1', resource: 'events', kind: 'Event' },
  { group: 'podgate.dev', version: 'v1alpha1', resource: 'userworkloads', kind: 'UserWorkload', status: true, custom: true },
]

/** A Kubernetes `Status` failure: the HTTP layer sends it as the response body. */
export class KubeStatusError extends Error {
  override name = 'KubeStatusError'
  readonly code: number
  readonly reason: string
  readonly details: Record<string, unknown> | undefined

  constructor (code: number, reason: string, message: string, details?: Record<string, unknown>) {
    super(message)
    this.code = code
    this.reason = reason
    this.details = details
  }

  toStatus (): Record<string, unknown> {
    return {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: this.message,
      reason: this.reason,
      ...(this.details === undefined ? {} : { details: this.details }),
      code: this.code,
    }
  }
}

function details (type: ResourceType, name: string | undefined): Record<string, unknown> {
  return { ...(name === undefined ? {} : { name }), group: type.group, kind: type.resource }
}

export const statusErrors = {
  notFound: (type: ResourceType, name: string) =>
    new KubeStatusError(404, 'NotFound', `${type.qualified} "${name}" not found`, details(type, name)),
  alreadyExists: (type: ResourceType, name: string) =>
    new KubeStatusError(409, 'AlreadyExists', `${type.qualified} "${name}" already exists`, details(type, name)),
  conflict: (type: ResourceType, name: string) =>
    new KubeStatusError(409, 'Conflict', `Operation cannot be fulfilled on ${type.qualified} "${name}": the object has been modified; please apply your changes to the latest version and try again`, details(type, name)),
  invalid: (type: ResourceType, name: string | undefined, problem: string) =>
    new KubeStatusError(422, 'Invalid', `${type.kind} ${JSON.stringify(name ?? '')} is invalid: ${problem}`, details(type, name)),
  badRequest: (message: string) => new KubeStatusError(400, 'BadRequest', message),
  gone: (message: string) => new KubeStatusError(410, 'Expired', message),
}
