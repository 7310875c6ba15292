// podgate's children of a UserWorkload (and the pods it watches): one table wires each kind, `Children` keeps their informers and writes them.
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

/** An informer's objects by name, with the names per user label. */
class ObjectIndex<T extends KubernetesObject> {
  readonly #byName = new Map<string, T>()
  readonly #byUser = new Map<string, Set<string>>()
  readonly #normalize: (object: T) => T

  constructor (normalize: (object: T) => T = (object) => object) {
    this.#normalize = normalize
  }

  get (name: string): T | undefined { return this.#byName.get(name) }
  all (): T[] { return [...this.#byName.values()] }
  get size (): number { return this.#byName.size }

  forUser (user: string): T[] {
    return [...(this.#byUser.get(user) ?? [])].flatMap((name) => {
      const object = this.#byName.get(name)
      return object === undefined ? [] : [object]
    })
  }

  /** Returns the users whose objects changed (before and after). */
  upsert (received: T): string[] {
    const object = this.#normalize(received)
    const name = object.metadata?.name
    if (name === undefined) return []
    const previous = this.remove(name)
    this.#byName.set(name, object)
    const user = userOf(object)
    if (user !== undefined) {
      let names = this.#byUser.get(user)
      if (names === undefined) {
        names = new Set()
        this.#byUser.set(user, names)
      }
      names.add(name)
    }
    return [...new Set([...previous, ...(user === undefined ? [] : [user])])]
  }

  remove (name: string): string[] {
    const previous = this.#byName.get(name)
    if (previous === undefined) return []
    this.#byName.delete(name)
    const user = userOf(previous)
    if (user === undefined) return []
    const names = this.#byUser.get(user)
    names?.delete(name)
    if (names?.size === 0) this.#byUser.delete(user)
    return [user]
  }

  replace (objects: readonly T[]): string[] {
    const users = new Set<string>()
    const seen = new Set<string>()
    for (const object of objects) {
      const name = object.metadata?.name
      if (name === undefined) continue
      seen.add(name)
      const previous = this.#byName.get(name)
      if (previous !== undefined && previous.metadata?.resourceVersion === object.metadata?.resourceVersion) continue
      for (const user of this.upsert(object)) users.add(user)
    }
    for (const name of [...this.#byName.keys()]) if (!seen.has(name)) for (const user of this.remove(name)) users.add(user)
    return [...users]
  }
}

/** The kinds podgate creates for a workload; the orphan sweep deletes the same kinds. */
export type SweptKind = 'Deployment' | 'Service' | 'NetworkPolicy' | 'PersistentVolumeClaim'

interface Preconditions { uid?: string, resourceVersion?: string }

interface ApiClients { readonly apps: AppsV1Api, readonly core: CoreV1Api, readonly networking: NetworkingV1Api }
interface ListRequest { namespace: string, labelSelector: string }
interface PatchRequest { namespace: string, name: string, body: object, fieldManager: string, force?: boolean }
interface DeleteRequest { namespace: string, name: string, propagationPolicy: string, body: { preconditions: Preconditions } }

/** A kind podgate watches in its namespace: where its collection is and which client-node call lists it. */
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
    list: ({ apps }, request, options) => apps.listNamespacedDeployment(request, options),
    patch: ({ apps }, request, options) => apps.patchNamespacedDeployment(request, options),
    delete: ({ apps }, request, options) => apps.deleteNamespacedDeployment(request, options),
    desired: (children) => children.deployment,
  },
  {
    kind: 'Service', group: '', version: 'v1', plural: 'services', keptOnDelete: false,
    list: ({ core }, request, options) => core.listNamespacedService(request, options),
    patch: ({ core }, request, options) => core.patchNamespacedService(request, options),
    delete: ({ core }, request, options) => core.deleteNamespacedService(request, options),
    desired: (children) => children.service,
  },
  {
    kind: 'NetworkPolicy', group: 'networking.k8s.io', version: 'v1', plural: 'networkpolicies', keptOnDelete: false,
    list: ({ networking }, request, options) => networking.listNamespacedNetworkPolicy(request, options),
    patch: ({ networking }, request, options) => networking.patchNamespacedNetworkPolicy(request, options),
    delete: ({ networking }, request, options) => networking.deleteNamespacedNetworkPolicy(request, options),
    desired: (children, networkPolicy) => networkPolicy ? children.networkPolicy : undefined,
    normalize: wireNetworkPolicy,
  },
  {
    kind: 'PersistentVolumeClaim', group: '', version: 'v1', plural: 'persistentvolumeclaims', keptOnDelete: true,
    list: ({ core }, request, options) => core.listNamespacedPersistentVolumeClaim(request, options),
    patch: ({ core }, request, options) => core.patchNamespacedPersistentVolumeClaim(request, options),
    delete: ({ core }, request, options) => core.deleteNamespacedPersistentVolumeClaim(request, options),
    desired: (children) => children.claim,
  },
]

/** Watched for the status only: podgate never writes pods (their ReplicaSet does). */
const POD_KIND: WatchedKindSpec<V1Pod> = {
  kind: 'Pod', group: '', version: 'v1', plural: 'pods',
  list: ({ core }, request, options) => core.listNamespacedPod(request, options),
}

/** Volume first (the pod mounts it), the NetworkPolicy before the pod exists, the Deployment last. */
const APPLY_ORDER: readonly SweptKind[] = ['PersistentVolumeClaim', 'Service', 'NetworkPolicy', 'Deployment']

/** One kind of child at run time: its informer's index and the writes the reconciler makes. */
export interface ChildKind {
  readonly spec: ChildKindSpec
  readonly index: ObjectIndex<KubernetesObject>
  apply (name: string, body: KubernetesObject): Promise<KubernetesObject>
  patch (name: string, body: object): Promise<KubernetesObject>
  remove (name: string, preconditions: Preconditions): Promise<void>
}

export interface ChildrenOptions {
  kubeConfig: KubeConfig
  namespace: string
  /** Whether podgate makes a NetworkPolicy per user; when false, its existing ones are stale. */
  networkPolicy: boolean
  connections: ApiConnections
  requestTimeoutMs: number
  /** Called with the users whose children or pods the informers saw change. */
  onChange: (users: readonly string[]) => void
  logger: Logger
  writes?: Counter<'kind' | 'verb'>
  watchdogMs?: number
  informerBackoff?: Backoff
  random?: () => number
  clock: Clock
}

/** podgate's children in the namespace, one informer and index per kind, and the writes that bring them to what the templates want. */
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
    const { kubeConfig, namespace, connections, requestTimeoutMs } = options
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
      const informer = new SupervisedInformer<T>({
        kubeConfig,
        path: `${spec.group === '' ? '/api' : `/apis/${spec.group}`}/${spec.version}/namespaces/${namespace}/${spec.plural}`,
        list: () => spec.list(apis, { namespace, labelSelector: MANAGED_BY_SELECTOR }, plain),
        labelSelector: MANAGED_BY_SELECTOR,
        handlers: {
          replace: (objects) => { options.onChange(index.replace(objects)) },
          upsert: (object) => { options.onChange(index.upsert(object)) },
          remove: (object) => { options.onChange(index.remove(object.metadata?.name ?? '')) },
        },
        logger: options.logger.child({ informer: spec.kind }),
        watchdogMs: options.watchdogMs,
        backoff: options.informerBackoff,
        random: options.random,
        clock: options.clock,
      })
      informers.push(informer)
      return index
    }
    this.kinds = CHILD_KINDS.map((spec) => ({
      spec,
      index: watch(spec),
      apply: (name, body) => spec.patch(apis, { namespace, fieldManager: FIELD_MANAGER, force: true, name, body }, apply),
      patch: (name, body) => spec.patch(apis, { namespace, fieldManager: FIELD_MANAGER, name, body }, merge),
      remove: async (name, preconditions) => { await spec.delete(apis, { namespace, propagationPolicy: 'Background', body: { preconditions }, name }, plain) },
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

  /** The object of `kind` named `name`, as last seen. */
  get (kind: SweptKind, name: string): KubernetesObject | undefined {
    return this.#kind(kind).index.get(name)
  }

  /** The user's pods, as last seen. */
  podsOf (user: string): V1Pod[] {
    return this.#pods.forUser(user)
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
    const name = desired.metadata?.name ?? ''
    const current = kind.index.get(name)
    if (current !== undefined && isSubset(desired, current)) return
    const applied = await kind.apply(name, desired)
    this.#writes?.inc({ kind: kind.spec.kind, verb: 'apply' })
    // The informer brings the same object soon; until then a reconcile must not apply it again.
    if (applied?.metadata?.name === name) kind.index.upsert(applied)
  }

  /**
   * A PVC (the kind kept on delete) is created once; afterwards only its ownership changes (keepOnDelete),
   * never its spec: storage class and access modes are immutable, and shrinking is refused.
   */
  async #ensureClaim (kind: ChildKind, desired: KubernetesObject): Promise<void> {
    const name = desired.metadata?.name ?? ''
    const current = kind.index.get(name)
    if (current === undefined) {
      await this.#applyIfChanged(kind, desired)
      return
    }
    const keep = desired.metadata?.annotations?.[KEEP_ANNOTATION] === 'true'
    const ownedByWorkload = (current.metadata?.ownerReferences ?? []).some((ref) => ref.kind === 'UserWorkload')
    const kept = current.metadata?.annotations?.[KEEP_ANNOTATION] === 'true'
    const ownerMatches = keep ? !ownedByWorkload : isSubset(desired.metadata?.ownerReferences, current.metadata?.ownerReferences)
    if (kept === keep && ownerMatches && isSubset(desired.metadata?.labels, current.metadata?.labels)) return
    const patched = await kind.patch(name, {
      metadata: {
        labels: desired.metadata?.labels,
        annotations: { [KEEP_ANNOTATION]: keep ? 'true' : null },
        ownerReferences: keep ? null : desired.metadata?.ownerReferences,
      },
    })
    this.#writes?.inc({ kind: kind.spec.kind, verb: 'patch' })
    if (patched?.metadata?.name === name) kind.index.upsert(patched)
  }

  /** Children of `user` that the templates no longer produce (a renamed child, a disabled NetworkPolicy); never a PVC. */
  async deleteStale (user: string, children: DesiredChildren): Promise<void> {
    for (const kind of this.kinds) {
      if (kind.spec.keptOnDelete) continue
      const keep = kind.spec.desired(children, this.#networkPolicy)?.metadata?.name
      for (const object of kind.index.forUser(user)) {
        const name = object.metadata?.name
        if (name === undefined || name === keep || object.metadata?.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY) continue
        try {
          await kind.remove(name, { uid: object.metadata?.uid })
          this.#writes?.inc({ kind: kind.spec.kind, verb: 'delete' })
          kind.index.remove(name)
          this.#logger.info({ kind: kind.spec.kind, name, user }, 'deleted a child the templates no longer produce')
        } catch (err) {
          if (apiStatus(err) !== 404) throw err
        }
      }
    }
  }
}
