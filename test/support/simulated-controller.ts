// Stands in for the kubelet, the Deployment controller and the EndpointSlice controller of a
// real cluster, against a FakeKubeServer: it watches podgate's Deployments and Services
// through the API (real client-node informers), and for a Deployment with replicas ≥ 1 starts
// a real local backend (createBackend), writes a ready Pod and an EndpointSlice pointing at
// the backend's 127.0.0.1 port, labelled as the real controller would (copied from the
// Service). Replicas 0 or a deleted Deployment stop the backend and remove both. An image
// marked as failing gets a Pod stuck in a waiting reason (ImagePullBackOff) and no endpoint.
import type { V1Deployment, V1Service } from '@kubernetes/client-node'
import { AppsV1Api, CoreV1Api } from '@kubernetes/client-node'
import { createBackend, type LocalBackend } from '../../src/local/backend.ts'
import { createLogger, type Logger } from '../../src/log.ts'
import { SupervisedInformer } from '../../src/kube/informer.ts'
import { MANAGED_BY_LABEL, MANAGED_BY_SELECTOR, USER_LABEL, workloadName } from '../../src/kube/labels.ts'
import type { FakeKubeServer, KubeObject } from './fake-kube.ts'
import { sliceFor } from './fake-kube-slices.ts'
import { kubeConfigFor } from './kubeconfig.ts'

const PODS = 'v1/pods'
const SLICES = 'discovery.k8s.io/v1/endpointslices'

export interface SimulatedControllerOptions {
  namespace?: string
  logger?: Logger
}

interface Failure {
  readonly reason: string
  readonly message: string
}

export class SimulatedController {
  readonly #server: FakeKubeServer
  readonly #namespace: string
  readonly #deployments = new Map<string, V1Deployment>()
  readonly #services = new Map<string, V1Service>()
  readonly #backends = new Map<string, LocalBackend>()
  readonly #failing = new Map<string, Failure>()
  readonly #chains = new Map<string, Promise<void>>()
  readonly #informers: Array<SupervisedInformer<V1Deployment> | SupervisedInformer<V1Service>>
  /** Every backend start, in order (user names), for tests that count restarts. */
  readonly started: string[] = []
  /** Syncs that threw; a test asserts this stays empty. */
  readonly errors: Error[] = []
  readonly #since = new Map<string, string>()
  #closed = false

  constructor (server: FakeKubeServer, options: SimulatedControllerOptions = {}) {
    this.#server = server
    this.#namespace = options.namespace ?? 'default'
    const logger = options.logger ?? createLogger('silent')
    const kubeConfig = kubeConfigFor(server)
    const apps = kubeConfig.makeApiClient(AppsV1Api)
    const core = kubeConfig.makeApiClient(CoreV1Api)
    const namespace = this.#namespace
    const track = <T extends V1Deployment | V1Service>(map: Map<string, T>) => ({
      replace: (objects: readonly T[]) => {
        const users = new Set([...map.keys()])
        map.clear()
        for (const object of objects) {
          const user = object.metadata?.labels?.[USER_LABEL]
          if (user === undefined) continue
          map.set(user, object)
          users.add(user)
        }
        for (const user of users) this.#schedule(user)
      },
      upsert: (object: T) => {
        const user = object.metadata?.labels?.[USER_LABEL]
        if (user === undefined) return
        map.set(user, object)
        this.#schedule(user)
      },
      remove: (object: T) => {
        const user = object.metadata?.labels?.[USER_LABEL]
        if (user === undefined) return
        map.delete(user)
        this.#schedule(user)
      },
    })
    this.#informers = [
      new SupervisedInformer<V1Deployment>({
        kubeConfig,
        path: `/apis/apps/v1/namespaces/${namespace}/deployments`,
        list: () => apps.listNamespacedDeployment({ namespace, labelSelector: MANAGED_BY_SELECTOR }),
        labelSelector: MANAGED_BY_SELECTOR,
        handlers: track(this.#deployments),
        logger,
        backoff: { initialMs: 20, maxMs: 200 },
        watchdogMs: 10_000,
      }),
      new SupervisedInformer<V1Service>({
        kubeConfig,
        path: `/api/v1/namespaces/${namespace}/services`,
        list: () => core.listNamespacedService({ namespace, labelSelector: MANAGED_BY_SELECTOR }),
        labelSelector: MANAGED_BY_SELECTOR,
        handlers: track(this.#services),
        logger,
        backoff: { initialMs: 20, maxMs: 200 },
        watchdogMs: 10_000,
      }),
    ]
  }

  /** Starts watching; resolves once both informers have listed. */
  static async start (server: FakeKubeServer, options: SimulatedControllerOptions = {}): Promise<SimulatedController> {
    const controller = new SimulatedController(server, options)
    for (const informer of controller.#informers) informer.start()
    await Promise.all(controller.#informers.map((informer) => informer.synced))
    return controller
  }

  /** Pods of Deployments running `image` never start: their container waits with `reason`. */
  failImage (image: string, reason = 'ImagePullBackOff', message = `Back-off pulling image "${image}"`): void {
    this.#failing.set(image, { reason, message })
    for (const user of this.#deployments.keys()) this.#schedule(user)
  }

  backend (user: string): LocalBackend | undefined {
    return this.#backends.get(user)
  }

  get runningBackends (): number {
    return this.#backends.size
  }

  /** Resolves once every change seen so far has been acted on. */
  async settled (): Promise<void> {
    while (this.#chains.size > 0) await Promise.allSettled([...this.#chains.values()])
  }

  async close (): Promise<void> {
    this.#closed = true
    await Promise.all(this.#informers.map((informer) => informer.close()))
    await this.settled()
    await Promise.all([...this.#backends.values()].map((backend) => backend.close()))
    this.#backends.clear()
  }

  #schedule (user: string): void {
    const previous = this.#chains.get(user) ?? Promise.resolve()
    const next = previous.then(() => this.#sync(user)).catch((err: unknown) => {
      this.errors.push(err instanceof Error ? err : new Error(String(err)))
    })
    this.#chains.set(user, next)
    void next.finally(() => { if (this.#chains.get(user) === next) this.#chains.delete(user) })
  }

  async #sync (user: string): Promise<void> {
    if (this.#closed) return
    const deployment = this.#deployments.get(user)
    const service = this.#services.get(user)
    const replicas = deployment?.spec?.replicas ?? 0
    const container = deployment?.spec?.template?.spec?.containers?.[0]
    const failure = container?.image === undefined ? undefined : this.#failing.get(container.image)
    const running = deployment !== undefined && replicas >= 1 && failure === undefined
    let backend = this.#backends.get(user)
    if (running && backend === undefined) {
      backend = await createBackend({ user })
      if (this.#closed) {
        await backend.close()
        return
      }
      this.#backends.set(user, backend)
      this.started.push(user)
    } else if (!running && backend !== undefined) {
      this.#backends.delete(user)
      await backend.close()
      backend = undefined
    }
    const podName = `${workloadName(user)}-sim`
    if (deployment === undefined || replicas < 1) {
      this.#server.delete(PODS, this.#namespace, podName)
    } else {
      this.#server.put(this.#pod(podName, deployment, failure))
    }
    const sliceName = `${workloadName(user)}-sim`
    if (backend === undefined || service === undefined) {
      this.#server.delete(SLICES, this.#namespace, sliceName)
      return
    }
    const serviceLabels = service.metadata?.labels ?? {}
    const slice = sliceFor(user, ['127.0.0.1'], {
      namespace: this.#namespace,
      name: sliceName,
      service: service.metadata?.name ?? workloadName(user),
      port: backend.address.port,
      portName: service.spec?.ports?.[0]?.name ?? null,
      // Like the real controller: the slice carries the Service's labels, nothing invented.
      labels: {
        [MANAGED_BY_LABEL]: serviceLabels[MANAGED_BY_LABEL],
        [USER_LABEL]: serviceLabels[USER_LABEL],
        ...serviceLabels,
      },
    })
    const owner = slice.metadata?.ownerReferences?.[0]
    if (owner !== undefined && service.metadata?.uid !== undefined) owner.uid = service.metadata.uid
    this.#server.put(slice)
  }

  #pod (name: string, deployment: V1Deployment, failure: Failure | undefined): KubeObject {
    const container = deployment.spec?.template?.spec?.containers?.[0]
    const ready = failure === undefined
    // Stable times: rewriting an unchanged pod must not produce a watch event.
    const key = `${name}|${String(ready)}`
    const now = this.#since.get(key) ?? new Date().toISOString().replace(/\.\d+Z$/, 'Z')
    this.#since.set(key, now)
    return {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name,
        namespace: this.#namespace,
        labels: { ...(deployment.spec?.template?.metadata?.labels ?? {}) },
        ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata?.name ?? '', uid: deployment.metadata?.uid ?? '', controller: true, blockOwnerDeletion: true }],
      },
      spec: { containers: [{ name: container?.name ?? 'workload', image: container?.image ?? '' }] },
      status: {
        phase: ready ? 'Running' : 'Pending',
        podIP: '127.0.0.1',
        conditions: [
          { type: 'PodScheduled', status: 'True', lastTransitionTime: now },
          { type: 'Ready', status: ready ? 'True' : 'False', lastTransitionTime: now, ...(ready ? {} : { reason: 'ContainersNotReady' }) },
        ],
        containerStatuses: [{
          name: container?.name ?? 'workload',
          image: container?.image ?? '',
          ready,
          restartCount: 0,
          state: ready ? { running: { startedAt: now } } : { waiting: { reason: failure.reason, message: failure.message } },
        }],
      },
    }
  }
}
