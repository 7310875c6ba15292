// What a UserWorkload turns into, as pure functions: a Deployment and a Service named
// user-<id>, a NetworkPolicy that admits only podgate's gateway pods, and a PVC
// user-<id>-data when the profile has storage. Every child carries the managed-by and user
// labels (the Service's are inherited by its EndpointSlices, which is how the gateway finds
// the user's pods) and an ownerReference to the UserWorkload, except a PVC kept on delete.
import type { V1Deployment, V1EnvVar, V1NetworkPolicy, V1NetworkPolicyIngressRule, V1OwnerReference, V1PersistentVolumeClaim, V1Probe, V1Service } from '@kubernetes/client-node'
import { DEFAULT_GATEWAY_POD_SELECTOR } from '../config.ts'
import { HTTP_PORT_NAME, MANAGED_BY, MANAGED_BY_LABEL, PROFILE_LABEL, USER_LABEL, workloadName } from '../kube/labels.ts'
import { WORKLOAD_GROUP, WORKLOAD_KIND, WORKLOAD_VERSION } from '../workloads/workloads.ts'
// User ids are checked by userIdProblem (kube/labels.ts): at most 58 characters, so user-<id> fits 63.
import type { Profile } from './profiles.ts'

export const NAME_LABEL = 'app.kubernetes.io/name'
export const WORKLOAD_APP_NAME = 'podgate-workload'
/** On a PVC kept when its user is deleted: never garbage-collected, never swept. */
export const KEEP_ANNOTATION = 'podgate.dev/keep'
/** On the Deployment and its pods; the Service carries the same key as a label (PROFILE_LABEL). */
export const PROFILE_ANNOTATION = PROFILE_LABEL
export const CONTAINER_NAME = 'workload'
export const DATA_VOLUME_NAME = 'data'

export function dataClaimName (user: string): string {
  return `${workloadName(user)}-data`
}

/** Labels on every child and every pod of `user`. */
export function childLabels (user: string): Record<string, string> {
  return { [MANAGED_BY_LABEL]: MANAGED_BY, [USER_LABEL]: user, [NAME_LABEL]: WORKLOAD_APP_NAME }
}

/** Selects the user's pods (Service, NetworkPolicy, Deployment). */
export function podSelector (user: string): Record<string, string> {
  return { [MANAGED_BY_LABEL]: MANAGED_BY, [USER_LABEL]: user }
}

/** The UserWorkload a child belongs to. */
export interface WorkloadOwner {
  readonly name: string
  readonly uid: string
}

export interface TemplateOptions {
  /** The UserWorkload's namespace, where its children go. */
  readonly namespace: string
  /** Labels of the pods allowed to reach users' pods (podgate's own). */
  readonly gatewayPodSelector?: Readonly<Record<string, string>>
  /** podgate's own namespace: the NetworkPolicy admits the gateway pods from there only (any namespace's pods with those labels otherwise would not match). */
  readonly gatewayNamespace?: string
}

/** The label the API server sets on every namespace (Kubernetes ≥ 1.21), naming it. */
export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name'

export interface WorkloadTemplateInput {
  readonly user: string
  readonly suspended: boolean
  readonly owner: WorkloadOwner
  readonly profile: Profile
}

export interface DesiredChildren {
  readonly deployment: V1Deployment
  readonly service: V1Service
  readonly networkPolicy: V1NetworkPolicy
  readonly claim: V1PersistentVolumeClaim | undefined
}

export function ownerReference (owner: WorkloadOwner): V1OwnerReference {
  return { apiVersion: `${WORKLOAD_GROUP}/${WORKLOAD_VERSION}`, kind: WORKLOAD_KIND, name: owner.name, uid: owner.uid, controller: true, blockOwnerDeletion: true }
}

export function desiredChildren (input: WorkloadTemplateInput, options: TemplateOptions): DesiredChildren {
  return {
    deployment: deploymentFor(input, options),
    service: serviceFor(input, options),
    networkPolicy: networkPolicyFor(input, options),
    claim: claimFor(input, options),
  }
}

function readinessProbe (profile: Profile): V1Probe {
  const action = profile.readinessPath === undefined
    ? { tcpSocket: { port: HTTP_PORT_NAME } }
    : { httpGet: { path: profile.readinessPath, port: HTTP_PORT_NAME } }
  return { ...action, periodSeconds: 2 }
}

export function deploymentFor (input: WorkloadTemplateInput, options: TemplateOptions): V1Deployment {
  const { user, profile } = input
  const name = workloadName(user)
  const storage = profile.storage
  // Declared first so that command, args and the profile's env can refer to $(USER).
  const env: V1EnvVar[] = [{ name: 'USER', value: user }, { name: 'X_USER', value: user }, ...profile.env.map((e) => ({ name: e.name, value: e.value }))]
  const annotations = { [PROFILE_ANNOTATION]: profile.name }
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: options.namespace, labels: childLabels(user), annotations, ownerReferences: [ownerReference(input.owner)] },
    spec: {
      replicas: input.suspended ? 0 : 1,
      revisionHistoryLimit: 2,
      selector: { matchLabels: podSelector(user) },
      // A ReadWriteOnce volume cannot be attached to the old and the new pod at once.
      strategy: storage === undefined ? { type: 'RollingUpdate' } : { type: 'Recreate' },
      template: {
        metadata: { labels: childLabels(user), annotations },
        spec: {
          automountServiceAccountToken: false,
          // Without this every user's Service would become env vars in every other user's pod.
          enableServiceLinks: false,
          securityContext: {
            runAsNonRoot: true,
            seccompProfile: { type: 'RuntimeDefault' },
            ...(storage?.fsGroup === undefined ? {} : { fsGroup: storage.fsGroup }),
          },
          containers: [{
            name: CONTAINER_NAME,
            image: profile.image,
            ...(profile.imagePullPolicy === undefined ? {} : { imagePullPolicy: profile.imagePullPolicy }),
            ...(profile.command === undefined ? {} : { command: [...profile.command] }),
            ...(profile.args === undefined ? {} : { args: [...profile.args] }),
            ports: [{ name: HTTP_PORT_NAME, containerPort: profile.port, protocol: 'TCP' }],
            env,
            ...(profile.resources === undefined ? {} : { resources: structuredClone(profile.resources) }),
            readinessProbe: readinessProbe(profile),
            securityContext: {
              runAsNonRoot: true,
              allowPrivilegeEscalation: false,
              capabilities: { drop: ['ALL'] },
              seccompProfile: { type: 'RuntimeDefault' },
            },
            ...(storage === undefined ? {} : { volumeMounts: [{ name: DATA_VOLUME_NAME, mountPath: storage.mountPath }] }),
          }],
          ...(storage === undefined ? {} : { volumes: [{ name: DATA_VOLUME_NAME, persistentVolumeClaim: { claimName: dataClaimName(user) } }] }),
        },
      },
    },
  }
}

export function serviceFor (input: WorkloadTemplateInput, options: TemplateOptions): V1Service {
  const { user, profile } = input
  return {
    apiVersion: 'v1',
    kind: 'Service',
    // These labels are copied onto the Service's EndpointSlices (and updated there when they change):
    // the gateway selects slices by them and applies the profile's limits.
    metadata: { name: workloadName(user), namespace: options.namespace, labels: { ...childLabels(user), [PROFILE_LABEL]: profile.name }, ownerReferences: [ownerReference(input.owner)] },
    spec: {
      type: 'ClusterIP',
      selector: podSelector(user),
      ports: [{ name: HTTP_PORT_NAME, port: profile.port, targetPort: HTTP_PORT_NAME, protocol: 'TCP' }],
    },
  }
}

export function networkPolicyFor (input: WorkloadTemplateInput, options: TemplateOptions): V1NetworkPolicy {
  const { user, profile } = input
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name: workloadName(user), namespace: options.namespace, labels: childLabels(user), ownerReferences: [ownerReference(input.owner)] },
    spec: {
      podSelector: { matchLabels: podSelector(user) },
      policyTypes: ['Ingress'],
      // The wire name is `from`; client-node's model calls it `_from`, but this body is sent as is.
      ingress: [{
        from: [{
          podSelector: { matchLabels: { ...(options.gatewayPodSelector ?? DEFAULT_GATEWAY_POD_SELECTOR) } },
          ...(options.gatewayNamespace === undefined ? {} : { namespaceSelector: { matchLabels: { [NAMESPACE_NAME_LABEL]: options.gatewayNamespace } } }),
        }],
        ports: [{ port: profile.port, protocol: 'TCP' }],
      } as V1NetworkPolicyIngressRule],
    },
  }
}

/** The user's volume, or undefined when the profile has no storage. */
export function claimFor (input: WorkloadTemplateInput, options: TemplateOptions): V1PersistentVolumeClaim | undefined {
  const { user, profile } = input
  const storage = profile.storage
  if (storage === undefined) return undefined
  return {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: {
      name: dataClaimName(user),
      namespace: options.namespace,
      labels: childLabels(user),
      // Kept: no ownerReference, so the garbage collector leaves it when the user is deleted.
      ...(storage.keepOnDelete ? { annotations: { [KEEP_ANNOTATION]: 'true' } } : { ownerReferences: [ownerReference(input.owner)] }),
    },
    spec: {
      accessModes: ['ReadWriteOnce'],
      resources: { requests: { storage: storage.size } },
      ...(storage.storageClassName === undefined ? {} : { storageClassName: storage.storageClassName }),
    },
  }
}
