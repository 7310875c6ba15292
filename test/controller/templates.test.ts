// The pure parts of the Kubernetes provisioner: children templates, the status derived from
// pods, and the comparison that decides whether a child needs applying.
import type { V1Pod } from '@kubernetes/client-node'
import t from 'tap'
import { DEFAULT_GATEWAY_POD_SELECTOR } from '../../src/config.ts'
import { parseProfiles, type Profile } from '../../src/controller/profiles.ts'
import { deriveStatus, isSubset, podProblem, quantityValue, statusMatches, type ObservedWorkload } from '../../src/controller/status.ts'
import {
  claimFor, deploymentFor, desiredChildren, KEEP_ANNOTATION, networkPolicyFor, serviceFor, type WorkloadTemplateInput,
} from '../../src/controller/templates.ts'
import { MAX_WORKLOAD_USER_LENGTH, userIdProblem } from '../../src/kube/labels.ts'

const profiles = parseProfiles(`
plain:
  image: app:1
  port: 9000
  env: [{ name: MODE, value: "$(USER)-mode" }]
stateful:
  image: app:2
  command: [app, serve]
  args: [--user, $(USER)]
  readinessPath: /ready
  resources: { requests: { cpu: 100m }, limits: { memory: 1Gi } }
  storage: { size: 5Gi, storageClassName: fast, mountPath: /home/me, fsGroup: 2000 }
dropped:
  image: app:3
  storage: { size: 1Gi, keepOnDelete: false }
`)

function profile (name: string): Profile {
  const found = profiles.get(name)
  if (found === undefined) throw new Error(`no profile ${name}`)
  return found
}

const owner = { name: 'user-alice', uid: 'uid-1' }
const OWNER_REF = { apiVersion: 'podgate.dev/v1alpha1', kind: 'UserWorkload', name: 'user-alice', uid: 'uid-1', controller: true, blockOwnerDeletion: true }
const LABELS = { 'app.kubernetes.io/managed-by': 'podgate', 'podgate.dev/user': 'alice', 'app.kubernetes.io/name': 'podgate-workload' }
const SELECTOR = { 'app.kubernetes.io/managed-by': 'podgate', 'podgate.dev/user': 'alice' }
const input = (name: string, suspended = false): WorkloadTemplateInput => ({ user: 'alice', suspended, owner, profile: profile(name) })
const options = { namespace: 'apps' }

void t.test('Deployment: one hardened replica with the user in its labels and env', (t) => {
  const deployment = deploymentFor(input('plain'), options)
  t.same(deployment.metadata, { name: 'user-alice', namespace: 'apps', labels: LABELS, annotations: { 'podgate.dev/profile': 'plain' }, ownerReferences: [OWNER_REF] })
  t.equal(deployment.spec?.replicas, 1)
  t.same(deployment.spec?.selector, { matchLabels: SELECTOR })
  t.same(deployment.spec?.strategy, { type: 'RollingUpdate' })
  const pod = deployment.spec?.template
  t.same(pod?.metadata?.labels, LABELS, 'pods carry managed-by, user and name=podgate-workload')
  t.equal(pod?.spec?.automountServiceAccountToken, false)
  t.equal(pod?.spec?.enableServiceLinks, false)
  t.same(pod?.spec?.securityContext, { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } })
  const container = pod?.spec?.containers[0]
  t.equal(pod?.spec?.containers.length, 1)
  t.equal(container?.image, 'app:1')
  t.same(container?.ports, [{ name: 'http', containerPort: 9000, protocol: 'TCP' }])
  t.same(container?.env, [{ name: 'USER', value: 'alice' }, { name: 'X_USER', value: 'alice' }, { name: 'MODE', value: '$(USER)-mode' }], 'USER first, so later values can use $(USER)')
  t.same(container?.readinessProbe, { tcpSocket: { port: 'http' }, periodSeconds: 2 }, 'a TCP probe without readinessPath')
  t.same(container?.securityContext, { runAsNonRoot: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' } })
  t.equal(container?.command, undefined)
  t.equal(container?.volumeMounts, undefined)
  t.equal(pod?.spec?.volumes, undefined)
  t.equal(deploymentFor(input('plain', true), options).spec?.replicas, 0, 'suspended scales to zero')
  t.end()
})

void t.test('Deployment with storage: the volume, a Recreate strategy, fsGroup, HTTP probe', (t) => {
  const deployment = deploymentFor(input('stateful'), options)
  const spec = deployment.spec?.template.spec
  const container = spec?.containers[0]
  t.same(deployment.spec?.strategy, { type: 'Recreate' }, 'a ReadWriteOnce volume cannot be shared by two pods')
  t.same(spec?.volumes, [{ name: 'data', persistentVolumeClaim: { claimName: 'user-alice-data' } }])
  t.same(container?.volumeMounts, [{ name: 'data', mountPath: '/home/me' }])
  t.equal(spec?.securityContext?.fsGroup, 2000)
  t.same(container?.command, ['app', 'serve'])
  t.same(container?.args, ['--user', '$(USER)'])
  t.same(container?.resources, { requests: { cpu: '100m' }, limits: { memory: '1Gi' } })
  t.same(container?.readinessProbe, { httpGet: { path: '/ready', port: 'http' }, periodSeconds: 2 })
  t.end()
})

void t.test('Service: ClusterIP, port http, labelled so its EndpointSlices are found and carry the profile', (t) => {
  const service = serviceFor(input('plain'), options)
  t.same(service, {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'user-alice', namespace: 'apps', labels: { ...LABELS, 'podgate.dev/profile': 'plain' }, ownerReferences: [OWNER_REF] },
    spec: { type: 'ClusterIP', selector: SELECTOR, ports: [{ name: 'http', port: 9000, targetPort: 'http', protocol: 'TCP' }] },
  })
  t.end()
})

void t.test('NetworkPolicy: ingress to the user\'s pods only from podgate\'s, on the http port', (t) => {
  const policy = networkPolicyFor(input('plain'), options)
  t.same(policy.metadata, { name: 'user-alice', namespace: 'apps', labels: LABELS, ownerReferences: [OWNER_REF] })
  t.same(policy.spec, {
    podSelector: { matchLabels: SELECTOR },
    policyTypes: ['Ingress'],
    ingress: [{ from: [{ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'podgate' } } }], ports: [{ port: 9000, protocol: 'TCP' }] }],
  })
  t.same(DEFAULT_GATEWAY_POD_SELECTOR, { 'app.kubernetes.io/name': 'podgate' })
  const custom = networkPolicyFor(input('plain'), { namespace: 'apps', gatewayPodSelector: { 'app.kubernetes.io/instance': 'pg', role: 'gateway' } })
  t.same((custom.spec?.ingress?.[0] as unknown as { from: unknown }).from, [{ podSelector: { matchLabels: { 'app.kubernetes.io/instance': 'pg', role: 'gateway' } } }])
  t.end()
})

void t.test('PVC: only with storage; a kept one has no ownerReference and the keep annotation', (t) => {
  t.equal(claimFor(input('plain'), options), undefined)
  t.equal(desiredChildren(input('plain'), options).claim, undefined)
  const kept = claimFor(input('stateful'), options)
  t.same(kept, {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name: 'user-alice-data', namespace: 'apps', labels: LABELS, annotations: { [KEEP_ANNOTATION]: 'true' } },
    spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '5Gi' } }, storageClassName: 'fast' },
  })
  const dropped = claimFor(input('dropped'), options)
  t.same(dropped?.metadata?.ownerReferences, [OWNER_REF], 'keepOnDelete: false lets the garbage collector take it')
  t.equal(dropped?.metadata?.annotations, undefined)
  t.equal(dropped?.spec?.storageClassName, undefined, 'no class: the cluster default')
  t.end()
})

void t.test('user ids: 58 characters fit every child name, 59 are refused', (t) => {
  t.equal(MAX_WORKLOAD_USER_LENGTH, 58)
  const longest = 'a'.repeat(58)
  t.equal(userIdProblem(longest), undefined)
  const children = desiredChildren({ user: longest, suspended: false, owner, profile: profile('stateful') }, options)
  for (const child of [children.deployment, children.service, children.networkPolicy]) t.ok((child.metadata?.name ?? '').length <= 63, `${child.kind ?? ''} name fits 63`)
  t.ok((children.claim?.metadata?.name ?? '').length <= 253, 'the PVC name is a DNS subdomain (253)')
  t.match(userIdProblem('a'.repeat(59)), /at most 58/)
  t.ok(userIdProblem('Alice') !== undefined)
  t.ok(userIdProblem('-a') !== undefined)
  t.end()
})

function pod (status: V1Pod['status'], deleting = false): V1Pod {
  return { metadata: { name: 'p', ...(deleting ? { deletionTimestamp: new Date() } : {}) }, status }
}
const readyPod = pod({ conditions: [{ type: 'Ready', status: 'True' }] })
const waiting = (reason: string, message?: string): V1Pod => pod({
  conditions: [{ type: 'Ready', status: 'False' }],
  containerStatuses: [{ name: 'workload', image: 'x', imageID: '', ready: false, restartCount: 0, state: { waiting: { reason, ...(message === undefined ? {} : { message }) } } }],
})

void t.test('deriveStatus: phase, ready count, reason and a stable transition time', (t) => {
  const now = new Date('2025-01-02T03:04:05.678Z')
  const base: ObservedWorkload = { suspended: false, generation: 3, serviceName: 'user-alice', hasDeployment: true, pods: [] }
  const cases: Array<[string, Partial<ObservedWorkload>, { phase: string, readyReplicas?: number, message?: string | undefined, reason: string }]> = [
    ['no Deployment yet', { hasDeployment: false, serviceName: undefined }, { phase: 'Pending', reason: 'Pending', message: 'waiting for the Deployment' }],
    ['Deployment, no pod', {}, { phase: 'Starting', reason: 'Starting', message: 'waiting for the pod to become ready' }],
    ['a ready pod', { pods: [readyPod] }, { phase: 'Ready', readyReplicas: 1, reason: 'PodReady', message: undefined }],
    ['a terminating ready pod does not count', { pods: [pod({ conditions: [{ type: 'Ready', status: 'True' }] }, true)] }, { phase: 'Starting', readyReplicas: 0, reason: 'Starting' }],
    ['image pull back-off', { pods: [waiting('ImagePullBackOff', 'Back-off pulling image "nope:1"')] }, { phase: 'Failed', reason: 'ImagePullBackOff', message: 'ImagePullBackOff: Back-off pulling image "nope:1"' }],
    ['ErrImagePull', { pods: [waiting('ErrImagePull', 'not found')] }, { phase: 'Failed', reason: 'ErrImagePull', message: 'ErrImagePull: not found' }],
    ['crash loop', { pods: [waiting('CrashLoopBackOff', 'back-off 10s restarting failed container')] }, { phase: 'Failed', reason: 'CrashLoopBackOff', message: 'CrashLoopBackOff: back-off 10s restarting failed container' }],
    ['config error without a message', { pods: [waiting('CreateContainerConfigError')] }, { phase: 'Failed', reason: 'CreateContainerConfigError', message: 'CreateContainerConfigError' }],
    ['ContainerCreating is just starting', { pods: [waiting('ContainerCreating')] }, { phase: 'Starting', reason: 'Starting' }],
    ['unschedulable', { pods: [pod({ conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/3 nodes are available: 3 Insufficient memory.' }] })] }, { phase: 'Failed', reason: 'Unschedulable', message: 'Unschedulable: 0/3 nodes are available: 3 Insufficient memory.' }],
    ['a ready pod wins over a failing one', { pods: [waiting('CrashLoopBackOff'), readyPod] }, { phase: 'Ready', readyReplicas: 1, reason: 'PodReady' }],
    ['suspended', { suspended: true }, { phase: 'Suspended', reason: 'Suspended', message: 'scaled to zero' }],
    ['suspended, pod still up', { suspended: true, pods: [readyPod] }, { phase: 'Suspended', readyReplicas: 1, reason: 'Suspended', message: 'scaling to zero' }],
    ['a configuration problem', { problem: 'spec.profile: unknown profile "gpu"' }, { phase: 'Failed', reason: 'InvalidWorkload', message: 'spec.profile: unknown profile "gpu"' }],
  ]
  for (const [what, observed, expected] of cases) {
    const status = deriveStatus({ ...base, ...observed }, undefined, now)
    t.equal(status.phase, expected.phase, `${what}: phase`)
    t.equal(status.readyReplicas, expected.readyReplicas ?? 0, `${what}: readyReplicas`)
    if ('message' in expected) t.equal(status.message, expected.message, `${what}: message`)
    const condition = status.conditions[0]
    t.equal(condition?.reason, expected.reason, `${what}: condition reason`)
    t.equal(condition?.status, expected.phase === 'Ready' ? 'True' : 'False', `${what}: Ready condition`)
    t.match(condition?.reason, /^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/, `${what}: reason fits the CRD's pattern`)
    t.equal(condition?.lastTransitionTime, '2025-01-02T03:04:05Z')
  }
  const first = deriveStatus({ ...base, pods: [] }, undefined, now)
  const later = deriveStatus({ ...base, pods: [waiting('CrashLoopBackOff')] }, { ...first, conditions: [...first.conditions] }, new Date('2025-01-02T04:00:00Z'))
  t.equal(later.conditions[0]?.lastTransitionTime, '2025-01-02T03:04:05Z', 'Ready stayed False: the transition time is kept')
  const ready = deriveStatus({ ...base, pods: [readyPod] }, { ...later, conditions: [...later.conditions] }, new Date('2025-01-02T05:00:00Z'))
  t.equal(ready.conditions[0]?.lastTransitionTime, '2025-01-02T05:00:00Z', 'Ready became True: a new transition time')
  t.ok(statusMatches(ready, { ...ready, conditions: [...ready.conditions], lastActivity: '2025-01-02T05:00:00Z' }), 'lastActivity is not podgate\'s to compare')
  t.notOk(statusMatches(ready, { ...ready, conditions: [...ready.conditions], readyReplicas: 2 }))
  t.notOk(statusMatches(ready, undefined))
  t.equal(deriveStatus({ ...base, problem: 'x'.repeat(5000) }, undefined, now).message?.length, 1024, 'messages are bounded')
  t.end()
})

void t.test('podProblem reads init containers and ignores terminating pods', (t) => {
  t.same(podProblem([pod({ initContainerStatuses: [{ name: 'init', image: 'x', imageID: '', ready: false, restartCount: 0, state: { waiting: { reason: 'ErrImagePull', message: 'denied' } } }] })]), { reason: 'ErrImagePull', message: 'denied' })
  t.equal(podProblem([pod({ containerStatuses: [{ name: 'w', image: 'x', imageID: '', ready: false, restartCount: 3, state: { waiting: { reason: 'CrashLoopBackOff' } } }] }, true)]), undefined)
  t.equal(podProblem([]), undefined)
  t.end()
})

void t.test('isSubset: defaults the server adds do not count as a difference', (t) => {
  const desired = { spec: { replicas: 1, ports: [{ name: 'http', port: 80 }], selector: { a: 'b' } }, skip: undefined }
  t.ok(isSubset(desired, { spec: { replicas: 1, ports: [{ name: 'http', port: 80, protocol: 'TCP' }], selector: { a: 'b' }, sessionAffinity: 'None' }, status: {} }))
  t.notOk(isSubset(desired, { spec: { replicas: 0, ports: [{ name: 'http', port: 80 }], selector: { a: 'b' } } }), 'a changed value')
  t.notOk(isSubset(desired, { spec: { replicas: 1, ports: [{ name: 'http', port: 80 }, { name: 'x', port: 81 }], selector: { a: 'b' } } }), 'lists must have the same length')
  t.notOk(isSubset(desired, { spec: { replicas: 1, ports: [], selector: { a: 'b' } } }))
  t.notOk(isSubset({ a: { b: 1 } }, { a: null }))
  t.notOk(isSubset({ a: [1] }, { a: { 0: 1 } }))
  t.ok(isSubset('x', 'x'))
  const limits = (cpu: string, memory: string): unknown => ({ spec: { containers: [{ resources: { requests: { cpu }, limits: { memory } } }] } })
  t.ok(isSubset(limits('0.5', '1Gi'), limits('500m', '1073741824')), 'quantities the API server rewrote are the same quantities')
  t.ok(isSubset(limits('1', '1024Mi'), limits('1000m', '1Gi')))
  t.notOk(isSubset(limits('0.5', '1Gi'), limits('600m', '1Gi')), 'a different quantity is a difference')
  t.notOk(isSubset({ env: [{ name: 'A', value: '1' }] }, { env: [{ name: 'A', value: '1.0' }] }), 'only resource quantities compare by value')
  t.equal(quantityValue('250m'), 0.25)
  t.equal(quantityValue('2Ki'), 2048)
  t.equal(quantityValue('1e3'), 1000)
  t.equal(quantityValue('lots'), undefined)
  t.end()
})
