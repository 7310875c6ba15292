// podgate's children of UserWorkloads (and the pods it watches) in the served namespaces: one table wires each kind, `Children` keeps their informers and writes them.
import {
  AppsV1Api, CoreV1Api, NetworkingV1Api, PatchStrategy,
  type ConfigurationOptions, type KubeConfig, type KubernetesListObject, type KubernetesObject,
  type V1NetworkPolicy, type V1NetworkPolicyIngressRule, type V1Pod,
} from '@kubernetes/client-node'
import type { Counter } from 'prom-client'
import type { Logger } from '../log.ts'
import type { Clock } from '../clock.ts'
import { SupervisedInformer, type Backoff } from '../kube/informer.ts'
import { apiStatus, FIELD_MANAGER, requestOptions, type ApiConnections } from '../kube/api.ts'
import { isSubset } from './status.ts'
import { KEEP_ANNOTATION, type DesiredChildren } from './templates.ts'
import { MANAGED_BY, MANAGED_BY_LABEL, MANAGED_BY_SELECTOR, USER_LABEL } from '../kube/labels.ts'
import { collectionPath, objectKey, watchScopes, type ServedNamespaces } from '../kube/namespaces.ts'

export function userOf (object: KubernetesObject): string | undefined {
  return object.metadata?.labels?.[USER_LABEL]
}

/**
 * client-node's typed lists and patches return its models, where a NetworkPolicy ingress rule's
 * `from` is called `_from`; watch events carry the wire form. The index holds the wire form.
 */
function wireNetworkPolicy (policy: V1NetworkPolicy): V1NetworkPolicy {
  const ingress = policy.spec?.ingress
  if (ingress === undefined || !ingress.some((rule) => '_from' in rule)) return policy
  const rules = ingress.map((rule) => {
    const { _from: from, ...rest } = rule
    return (from === undefined ? rest : { ...rest, from }) as V1NetworkPolicyIngressRule
  })
  return { ...policy, spec: { ...policy.spec, ingress: rules } }
}

/** objectKey(namespace, user): a user's objects in one namespace. */
export type UserKey = string

function keyOf (object: KubernetesObject): string | undefined {
  const { namespace, name } = object.metadata ?? {}
  return namespace === undefined || name === undefined ? undefined : objectKey(namespace, name)
}

function userKeyOf (object: KubernetesObject): UserKey | undefined {
  const user = userOf(object)
  const namespace = object.metadata?.namespace
  return user === undefined || namespace === undefined ? undefined : objectKey(namespace, user)
}

/** Informers' objects by objectKey(namespace, name), with the keys per (namespace, user label). */
class ObjectIndex<T extends KubernetesObject> {
  readonly #byKey = new Map<string, T>()
  readonly #byUser = new Map<UserKey, Set<string>>()
  readonly #normalize: (object: T) => T

  constructor (normalize: (object: T) => T = (object) => object) {
    this.#normalize = normalize
  }

  get (namespace: string, name: string): T | undefined { return this.#byKey.get(objectKey(namespace, name)) }
  all (): T[] { return [...this.#byKey.values()] }
  get size (): number { return this.#byKey.size }

  forUser (namespace: string, user: string): T[] {
    return [...(this.#byUser.get(objectKey(namespace, user)) ?? [])].flatMap((key) => {
      const object = this.#byKey.get(key)
      return object === undefined ? [] : [object]
    })
  }

  /** Returns the (namespace, user) keys whose objects changed (before and after). */
  upsert (received: T): UserKey[] {
    const object = this.#normalize(received)
    const key = keyOf(object)
    if (key === undefined) return []
    const previous = this.#removeKey(key)
    this.#byKey.set(key, object)
    const userKey = userKeyOf(object)
    if (userKey !== undefined) {
      let keys = this.#byUser.get(userKey)
      if (keys === undefined) {
        keys = new Set()
        this.#byUser.set(userKey, keys)
      }
      keys.add(key)
    }
    return [...new Set([...previous, ...(userKey === undefined ? [] : [userKey])])]
  }

  remove (namespace: string, name: string): UserKey[] {
    return this.#removeKey(objectKey(namespace, name))
  }

  #removeKey (key: string): UserKey[] {
    const previous = this.#byKey.get(key)
    if (previous === undefined) return []
    this.#byKey.delete(key)
    const userKey = userKeyOf(previous)
    if (userKey === undefined) return []
    const keys = this.#byUser.get(userKey)
    keys?.delete(key)
    if (keys?.size === 0) this.#byUser.delete(userKey)
    return [userKey]
  }

  /** A complete list of `namespace` (every namespace when undefined): what it lacks there is gone. */
  replace (objects: readonly T[], namespace: string | undefined): UserKey[] {
    const users = new Set<UserKey>()
    const seen = new Set<string>()
    for (const object of objects) {
      const key = keyOf(object)
      if (key === undefined) continue
      seen.add(key)
      const previous = this.#byKey.get(key)
      if (previous !== undefined && previous.metadata?.resourceVersion === object.metadata?.resourceVersion) continue
      for (const user of this.upsert(object)) users.add(user)
    }
    for (const [key, object] of [...this.#byKey]) {
      if (seen.has(key) || (namespace !== undefined && object.metadata?.namespace !== namespace)) continue
      for (const user of this.#removeKey(key)) users.add(user)
    }
    return [...users]
  }
}

/** The kinds podgate creates for a workload; the orphan sweep deletes the same kinds. */
export type SweptKind = 'Deployment' | 'Service' | 'NetworkPolicy' | 'PersistentVolumeClaim'

interface Preconditions { uid?: string, resourceVersion?: string }

interface ApiClients { readonly apps: AppsV1Api, readonly core: CoreV1Api, readonly networking: NetworkingV1Api }
/** Without a namespace: the collection across every namespace. */
interface ListRequest { namespace: string | undefined, labelSelector: string }
interface PatchRequest { namespace: string, name: string, body: object, fieldManager: string, force?: boolean }
interface DeleteRequest { namespace: string, name: string, propagationPolicy: string, body: { preconditions: Preconditions } }

/** A kind podgate watches in the served namespaces: where its collection is and which client-node calls list it. */
interface WatchedKindSpec<T extends KubernetesObject> {
  readonly kind: SweptKind | 'Pod'
  /** '' is the core group, served under /api rather than /apis. */
  readonly group: string
  readonly version: string
  readonly plural: string
  readonly list: (apis: ApiClients, request: ListRequest, options: ConfigurationOptions) => Promise<KubernetesListObject<T>>
  /** The form the index holds objects in; as received when undefined. */
  readonly normalize?: (object: T) => T
}

/** A kind of child: also which client-node calls write it and what the templates want of it. */
export interface ChildKindSpec extends WatchedKindSpec<KubernetesObject> {
  readonly kind: SweptKind
  /** Server-side apply and merge patch both go through it (the content type says which). */
  readonly patch: (apis: ApiClients, request: PatchRequest, options: ConfigurationOptions) => Promise<KubernetesObject>
  readonly delete: (apis: ApiClients, request: DeleteRequest, options: ConfigurationOptions) => Promise<unknown>
  /** The object of this kind the templates produce; undefined for none (`networkPolicy` is the reconciler's option). */
  readonly desired: (children: DesiredChildren, networkPolicy: boolean) => KubernetesObject | undefined
  /**
   * It holds the user's data and may outlive the workload (PVCs): created once and afterwards only its
   * keep annotation, owner and labels change; never deleted as stale; the sweep spares one annotated keep.
   */
  readonly keptOnDelete: boolean
}

/** Informers start, and the orphan sweep deletes, in this order. */
export const CHILD_KINDS: readonly ChildKindSpec[] = [
  {
    kind: 'Deployment', group: 'apps', version: 'v1', plural: 'deployments', keptOnDelete: false,
    list: ({ apps }, { namespace, labelSelector }, options) => namespace === undefined
      ? apps.listDeploymentForAllNamespaces({ labelSelector }, options)
      : apps.listNamespacedDeployment({ namespace, labelSelector }, options),
    patch: ({ apps }, request, options) => apps.patchNamespacedDeployment(request, options),
    delete: ({ apps }, request, options) => apps.deleteNamespacedDeployment(request, options),
    desired: (children) => children.deployment,
  },
  {
    kind: 'Service', group: '', version: 'v1', plural: 'services', keptOnDelete: false,
    list: ({ core }, { namespace, labelSelector }, options) => namespace === undefined
      ? core.listServiceForAllNamespaces({ labelSelector }, options)
      : core.listNamespacedService({ namespace, labelSelector }, options),
    patch: ({ core }, request, options) => core.patchNamespacedService(request, options),
    delete: ({ core }, request, options) => core.deleteNamespacedService(request, options),
    desired: (children) => children.service,
  },
  {
    kind: 'NetworkPolicy', group: 'networking.k8s.io', version: 'v1', plural: 'networkpolicies', keptOnDelete: false,
    list: ({ networking }, { namespace, labelSelector }, options) => namespace === undefined
      ? networking.listNetworkPolicyForAllNamespaces({ labelSelector }, options)
      : networking.listNamespacedNetworkPolicy({ namespace, labelSelector }, options),
    patch: ({ networking }, request, options) => networking.patchNamespacedNetworkPolicy(request, options),
    delete: ({ networking }, request, options) => networking.deleteNamespacedNetworkPolicy(request, options),
    desired: (children, networkPolicy) => networkPolicy ? children.networkPolicy : undefined,
    normalize: wireNetworkPolicy,
  },
  {
    kind: 'PersistentVolumeClaim', group: '', version: 'v1', plural: 'persistentvolumeclaims', keptOnDelete: true,
    list: ({ core }, { namespace, labelSelector }, options) => namespace === undefined
      ? core.listPersistentVolumeClaimForAllNamespaces({ labelSelector }, options)
      : core.listNamespacedPersistentVolumeClaim({ namespace, labelSelector }, options),
    patch: ({ core }, request, options) => core.patchNamespacedPersistentVolumeClaim(request, options),
    delete: ({ core }, request, options) => core.deleteNamespacedPersistentVolumeClaim(request, options),
    desired: (children) => children.claim,
  },
]

/** Watched for the status only: podgate never writes pods (their ReplicaSet does). */
const POD_KIND: WatchedKindSpec<V1Pod> = {
  kind: 'Pod', group: '', version: 'v1', plural: 'pods',
  list: ({ core }, { namespace, labelSelector }, options) => namespace === undefined
      ? core.listPodForAllNamespaces({ labelSelector }, options)
      : core.listNamespacedPod({ namespace, labelSelector }, options),
}

/** Volume first (the pod mounts it), the NetworkPolicy before the pod exists, the Deployment last. */
const APPLY_ORDER: readonly SweptKind[] = ['PersistentVolumeClaim', 'Service', 'NetworkPolicy', 'Deployment']

/** One kind of child at run time: its informer's index and the writes the reconciler makes. */
export interface ChildKind {
  readonly spec: ChildKindSpec
  readonly index: ObjectIndex<KubernetesObject>
  apply (namespace: string, name: string, body: KubernetesObject): Promise<KubernetesObject>
  patch (namespace: string, name: string, body: object): Promise<KubernetesObject>
  remove (namespace: string, name: string, preconditions: Preconditions): Promise<void>
}

export interface ChildrenOptions {
  kubeConfig: KubeConfig
  namespaces: ServedNamespaces
  /** Whether podgate makes a NetworkPolicy per user; when false, its existing ones are stale. */
  networkPolicy: boolean
  connections: ApiConnections
  requestTimeoutMs: number
  /** Called with the objectKey(namespace, user) of users whose children or pods the informers saw change. */
  onChange: (users: readonly UserKey[]) => void
  logger: Logger
  writes?: Counter<'kind' | 'verb'>
  watchdogMs?: number
  informerBackoff?: Backoff
  random?: () => number
  clock: Clock
}

/** podgate's children in the served namespaces, one index per kind (fed by an informer per namespace, or one cluster-wide), and the writes that bring them to what the templates want. */
export class Children {
  /** In table order. */
  readonly kinds: readonly ChildKind[]
  readonly #byKind: ReadonlyMap<SweptKind, ChildKind>
  readonly #pods: ObjectIndex<V1Pod>
  readonly #informers: ReadonlyArray<SupervisedInformer<KubernetesObject>>
  readonly #networkPolicy: boolean
  readonly #logger: Logger
  readonly #writes: Counter<'kind' | 'verb'> | undefined
  readonly synced: Promise<void>

  constructor (options: ChildrenOptions) {
    const { kubeConfig, connections, requestTimeoutMs } = options
    this.#networkPolicy = options.networkPolicy
    this.#logger = options.logger
    this.#writes = options.writes
    const apis: ApiClients = {
      apps: kubeConfig.makeApiClient(AppsV1Api),
      core: kubeConfig.makeApiClient(CoreV1Api),
      networking: kubeConfig.makeApiClient(NetworkingV1Api),
    }
    const plain = requestOptions(requestTimeoutMs, connections)
    const apply = requestOptions(requestTimeoutMs, connections, PatchStrategy.ServerSideApply)
    const merge = requestOptions(requestTimeoutMs, connections, PatchStrategy.MergePatch)
    const informers: Array<SupervisedInformer<KubernetesObject>> = []
    const watch = <T extends KubernetesObject>(spec: WatchedKindSpec<T>): ObjectIndex<T> => {
      const index = new ObjectIndex<T>(spec.normalize)
      for (const namespace of watchScopes(options.namespaces)) {
        informers.push(new SupervisedInformer<T>({
          kubeConfig,
          path: collectionPath(spec.group, spec.version, spec.plural, namespace),
          list: () => spec.list(apis, { namespace, labelSelector: MANAGED_BY_SELECTOR }, plain),
          labelSelector: MANAGED_BY_SELECTOR,
          handlers: {
            replace: (objects) => { options.onChange(index.replace(objects, namespace)) },
            upsert: (object) => { options.onChange(index.upsert(object)) },
            remove: (object) => { options.onChange(index.remove(object.metadata?.namespace ?? '', object.metadata?.name ?? '')) },
          },
          logger: options.logger.child({ informer: spec.kind, namespace: namespace ?? '*' }),
          watchdogMs: options.watchdogMs,
          backoff: options.informerBackoff,
          random: options.random,
          clock: options.clock,
        }))
      }
      return index
    }
    this.kinds = CHILD_KINDS.map((spec) => ({
      spec,
      index: watch(spec),
      apply: (namespace, name, body) => spec.patch(apis, { namespace, fieldManager: FIELD_MANAGER, force: true, name, body }, apply),
      patch: (namespace, name, body) => spec.patch(apis, { namespace, fieldManager: FIELD_MANAGER, name, body }, merge),
      remove: async (namespace, name, preconditions) => { await spec.delete(apis, { namespace, propagationPolicy: 'Background', body: { preconditions }, name }, plain) },
    }))
    this.#byKind = new Map(this.kinds.map((kind) => [kind.spec.kind, kind]))
    this.#pods = watch(POD_KIND)
    this.#informers = informers
    this.synced = Promise.all(informers.map((informer) => informer.synced)).then(() => {})
  }

  start (): void {
    for (const informer of this.#informers) informer.start()
  }

  async close (): Promise<void> {
    await Promise.all(this.#informers.map((informer) => informer.close()))
  }

  /** The object of `kind` named `name` in `namespace`, as last seen. */
  get (kind: SweptKind, namespace: string, name: string): KubernetesObject | undefined {
    return this.#kind(kind).index.get(namespace, name)
  }

  /** The user's pods in `namespace`, as last seen. */
  podsOf (namespace: string, user: string): V1Pod[] {
    return this.#pods.forUser(namespace, user)
  }

  #kind (kind: SweptKind): ChildKind {
    const found = this.#byKind.get(kind)
    if (found === undefined) throw new Error(`no child kind ${kind}`)
    return found
  }

  /** Applies what differs from what the informers last saw, in APPLY_ORDER. */
  async apply (children: DesiredChildren): Promise<void> {
    for (const kindName of APPLY_ORDER) {
      const kind = this.#kind(kindName)
      const desired = kind.spec.desired(children, this.#networkPolicy)
      if (desired === undefined) continue
      if (kind.spec.keptOnDelete) await this.#ensureClaim(kind, desired)
      else await this.#applyIfChanged(kind, desired)
    }
  }

  async #applyIfChanged (kind: ChildKind, desired: KubernetesObject): Promise<void> {
    const { name = '', namespace = '' } = desired.metadata ?? {}
    const current = kind.index.get(namespace, name)
    if (current !== undefined && isSubset(desired, current)) return
    const applied = await kind.apply(namespace, name, desired)
    this.#writes?.inc({ kind: kind.spec.kind, verb: 'apply' })
    // The informer brings the same object soon; until then a reconcile must not apply it again.
    if (applied?.metadata?.name === name) kind.index.upsert({ ...applied, metadata: { ...applied.metadata, namespace } })
  }

  /**
   * A PVC (the kind kept on delete) is created once; afterwards only its ownership changes (keepOnDelete),
   * never its spec: storage class and access modes are immutable, and shrinking is refused.
   */
  async #ensureClaim (kind: ChildKind, desired: KubernetesObject): Promise<void> {
    const { name = '', namespace = '' } = desired.metadata ?? {}
    const current = kind.index.get(namespace, name)
    if (current === undefined) {
      await this.#applyIfChanged(kind, desired)
      return
    }
    const keep = desired.metadata?.annotations?.[KEEP_ANNOTATION] === 'true'
    const ownedByWorkload = (current.metadata?.ownerReferences ?? []).some((ref) => ref.kind === 'UserWorkload')
    const kept = current.metadata?.annotations?.[KEEP_ANNOTATION] === 'true'
    const ownerMatches = keep ? !ownedByWorkload : isSubset(desired.metadata?.ownerReferences, current.metadata?.ownerReferences)
    if (kept === keep && ownerMatches && isSubset(desired.metadata?.labels, current.metadata?.labels)) return
    const patched = await kind.patch(namespace, name, {
      metadata: {
        labels: desired.metadata?.labels,
        annotations: { [KEEP_ANNOTATION]: keep ? 'true' : null },
        ownerReferences: keep ? null : desired.metadata?.ownerReferences,
      },
    })
    this.#writes?.inc({ kind: kind.spec.kind, verb: 'patch' })
    if (patched?.metadata?.name === name) kind.index.upsert({ ...patched, metadata: { ...patched.metadata, namespace } })
  }

  /**
   * Children of `user` in `namespace` that the templates no longer produce (a renamed child, a
   * disabled NetworkPolicy; all of them when `children` is undefined); never a PVC.
   */
  async deleteStale (namespace: string, user: string, children: DesiredChildren | undefined): Promise<void> {
    for (const kind of this.kinds) {
      if (kind.spec.keptOnDelete) continue
      const keep = children === undefined ? undefined : kind.spec.desired(children, this.#networkPolicy)?.metadata?.name
      for (const object of kind.index.forUser(namespace, user)) {
        const name = object.metadata?.name
        if (name === undefined || name === keep || object.metadata?.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY) continue
        try {
          await kind.remove(namespace, name, { uid: object.metadata?.uid })
          this.#writes?.inc({ kind: kind.spec.kind, verb: 'delete' })
          kind.index.remove(namespace, name)
          this.#logger.info({ kind: kind.spec.kind, namespace, name, user }, children === undefined ? 'deleted a child of a refused workload' : 'deleted a child the templates no longer produce')
        } catch (err) {
          if (apiStatus(err) !== 404) throw err
        }
      }
    }
  }
}
