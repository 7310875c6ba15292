// A node without a kubelet: registers a Node, binds podgate's pending user pods to it (there
// is no scheduler either), runs each pod as the built-in backend inside the pod network's
// namespace, and reports it Running and Ready with its address through pods/status, the way
// a kubelet would. The real EndpointSlice controller takes it from there.
import { mkdir } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { MANAGED_BY_SELECTOR, USER_LABEL } from '../../../src/kube/labels.ts'
import { MERGE_PATCH, type KubeApi } from './kube-api.ts'
import type { PodNetwork } from './pod-network.ts'
import { ClusterProcess, waitFor } from './processes.ts'

export const BACKEND = fileURLToPath(new URL('../../../src/local/backend.ts', import.meta.url))

interface PodObject {
  metadata: { name: string, namespace: string, uid: string, labels?: Record<string, string>, deletionTimestamp?: string }
  spec: { nodeName?: string, containers: Array<{ name: string, image?: string, ports?: Array<{ containerPort: number }>, readinessProbe?: { httpGet?: { path?: string } } }> }
  status?: { phase?: string, podIP?: string }
}

interface RunningPod {
  readonly key: string
  readonly uid: string
  readonly ip: string
  readonly process: ClusterProcess
  reportedDown: boolean
}

export interface SimulatedNodeOptions {
  readonly api: KubeApi
  readonly network: PodNetwork
  readonly logDir: string
  readonly name?: string
  readonly pollIntervalMs?: number
  /** How long a pod's backend may take to accept connections. */
  readonly podStartTimeoutMs?: number
  readonly log?: (message: string) => void
}

export class SimulatedNode {
  readonly name: string
  readonly #api: KubeApi
  readonly #network: PodNetwork
  readonly #logDir: string
  readonly #pollIntervalMs: number
  readonly #podStartTimeoutMs: number
  readonly #log: (message: string) => void
  readonly #pods = new Map<string, RunningPod>()
  readonly #starting = new Map<string, Promise<void>>()
  #loop: Promise<void> | undefined
  #stopping = false
  #failedPolls = 0
  /** Milliseconds from seeing a pod bound to this node to reporting it Ready, per pod started. */
  readonly startDurations: number[] = []

  constructor (options: SimulatedNodeOptions) {
    this.#api = options.api
    this.#network = options.network
    this.#logDir = options.logDir
    this.name = options.name ?? 'e2e-node'
    this.#pollIntervalMs = options.pollIntervalMs ?? 200
    this.#podStartTimeoutMs = options.podStartTimeoutMs ?? 20_000
    this.#log = options.log ?? (() => {})
  }

  /** Registers the Node (Ready) and starts watching pods. */
  async start (): Promise<void> {
    if (this.#loop !== undefined) throw new Error('the simulated node is already started')
    await mkdir(this.#logDir, { recursive: true })
    await this.#api.expect('POST', '/api/v1/nodes', {
      body: { apiVersion: 'v1', kind: 'Node', metadata: { name: this.name, labels: { 'kubernetes.io/hostname': this.name, 'kubernetes.io/os': 'linux' } } },
    })
    const now = new Date().toISOString()
    await this.#api.expect('PATCH', `/api/v1/nodes/${this.name}/status`, {
      contentType: MERGE_PATCH,
      body: {
        status: {
          capacity: { cpu: '8', memory: '16Gi', pods: '110' },
          allocatable: { cpu: '8', memory: '16Gi', pods: '110' },
          addresses: [{ type: 'InternalIP', address: `${this.#network.prefix}.2` }, { type: 'Hostname', address: this.name }],
          conditions: [{ type: 'Ready', status: 'True', reason: 'SimulatedNodeReady', message: 'simulated node (no kubelet)', lastHeartbeatTime: now, lastTransitionTime: now }],
          nodeInfo: { kubeletVersion: 'simulated', containerRuntimeVersion: 'simulated://1', operatingSystem: 'linux', architecture: 'amd64', kernelVersion: '', osImage: '', machineID: '', systemUUID: '', bootID: '', kubeProxyVersion: '' },
        },
      },
    })
    this.#loop = this.#run()
  }

  /** Pods currently running on this node, by namespace/name. */
  get runningPods (): ReadonlyMap<string, { ip: string, pid: number | undefined }> {
    return new Map([...this.#pods].map(([key, pod]) => [key, { ip: pod.ip, pid: pod.process.child.pid }]))
  }

  async #run (): Promise<void> {
    while (!this.#stopping) {
      try {
        await this.#sync()
        this.#failedPolls = 0
      } catch (err) {
        // The API server may be down on purpose (an outage scenario); keep the pods running.
        if (this.#failedPolls++ === 0) this.#log(`simulated node: pod list failed: ${(err as Error).message}`)
      }
      await sleep(this.#pollIntervalMs)
    }
  }

  async #sync (): Promise<void> {
    // Only podgate's user pods: the chart's own pods (if any) are not this node's business.
    const list = await this.#api.get<{ items: PodObject[] }>(`/api/v1/pods?labelSelector=${encodeURIComponent(MANAGED_BY_SELECTOR)}`)
    const seen = new Set<string>()
    for (const pod of list.items) {
      const key = `${pod.metadata.namespace}/${pod.metadata.name}`
      seen.add(key)
      const running = this.#pods.get(key)
      if (running !== undefined && running.uid !== pod.metadata.uid) {
        await this.#stopPod(running)
        continue
      }
      if (pod.metadata.deletionTimestamp !== undefined) {
        if (this.#starting.has(key)) continue
        if (running !== undefined) await this.#stopPod(running)
        if (pod.spec.nodeName === this.name) await this.#confirmDeletion(pod)
        continue
      }
      if (pod.spec.nodeName === undefined || pod.spec.nodeName === '') {
        await this.#bind(pod)
        continue
      }
      if (pod.spec.nodeName !== this.name || this.#starting.has(key)) continue
      if (running === undefined) {
        const start = this.#startPod(key, pod).catch((err: unknown) => {
          this.#log(`simulated node: pod ${key} did not start: ${(err as Error).message}`)
        }).finally(() => { this.#starting.delete(key) })
        this.#starting.set(key, start)
      } else if (!running.process.running && !running.reportedDown) {
        running.reportedDown = true
        await this.#reportStatus(pod, running.ip, false, 'the backend process exited')
      }
    }
    for (const [key, running] of this.#pods) {
      if (!seen.has(key)) await this.#stopPod(running)
    }
  }

  async #bind (pod: PodObject): Promise<void> {
    const { namespace, name } = pod.metadata
    const response = await this.#api.request('POST', `/api/v1/namespaces/${namespace}/pods/${name}/binding`, {
      body: { apiVersion: 'v1', kind: 'Binding', metadata: { name }, target: { apiVersion: 'v1', kind: 'Node', name: this.name } },
    })
    // 409: bound meanwhile; 404: deleted meanwhile. The next poll sees either.
    if (response.status >= 300 && response.status !== 409 && response.status !== 404) this.#log(`simulated node: binding ${namespace}/${name}: ${response.status} ${response.text.slice(0, 200)}`)
  }

  async #startPod (key: string, pod: PodObject): Promise<void> {
    const started = Date.now()
    const user = pod.metadata.labels?.[USER_LABEL]
    const container = pod.spec.containers[0]
    const port = container?.ports?.[0]?.containerPort ?? 8080
    if (user === undefined) {
      await this.#reportStatus(pod, undefined, false, `no ${USER_LABEL} label`)
      return
    }
    const ip = await this.#network.allocate()
    const command = this.#network.exec(process.execPath, [BACKEND, '--user', user, '--port', String(port), '--host', ip])
    const child = ClusterProcess.start({
      name: `pod ${key}`,
      command: command.file,
      args: command.args,
      logFile: join(this.#logDir, `pod-${pod.metadata.namespace}-${pod.metadata.name}.log`),
    })
    const running: RunningPod = { key, uid: pod.metadata.uid, ip, process: child, reportedDown: false }
    this.#pods.set(key, running)
    const path = container?.readinessProbe?.httpGet?.path
    // The readiness probe, as a kubelet would run it, but from the root namespace over the veth.
    await waitFor(async () => (await probe(ip, port, path)) ? true : undefined, {
      what: `pod ${key} listening on ${ip}:${port}${path === undefined ? '' : ` (probe ${path})`}`,
      timeoutMs: this.#podStartTimeoutMs,
      process: child,
    })
    await this.#reportStatus(pod, ip, true)
    this.startDurations.push(Date.now() - started)
  }

  async #reportStatus (pod: PodObject, ip: string | undefined, ready: boolean, message?: string): Promise<void> {
    const now = new Date().toISOString()
    const readyStatus = ready ? 'True' : 'False'
    const container = pod.spec.containers[0]
    const hostIP = `${this.#network.prefix}.2`
    await this.#api.expect('PATCH', `/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}/status`, {
      contentType: MERGE_PATCH,
      body: {
        status: {
          phase: ready ? 'Running' : 'Failed',
          hostIP,
          hostIPs: [{ ip: hostIP }],
          ...(ip === undefined ? {} : { podIP: ip, podIPs: [{ ip }] }),
          startTime: now,
          ...(message === undefined ? {} : { message }),
          conditions: [
            { type: 'PodScheduled', status: 'True', lastTransitionTime: now },
            { type: 'Initialized', status: 'True', lastTransitionTime: now },
            { type: 'ContainersReady', status: readyStatus, lastTransitionTime: now },
            { type: 'Ready', status: readyStatus, lastTransitionTime: now },
          ],
          containerStatuses: container === undefined
            ? []
            : [{
                name: container.name,
                image: container.image ?? '',
                imageID: '',
                containerID: `simulated://${pod.metadata.uid}`,
                ready,
                started: ready,
                restartCount: 0,
                state: ready ? { running: { startedAt: now } } : { terminated: { exitCode: 1, reason: 'Error', startedAt: now, finishedAt: now } },
              }],
        },
      },
    })
  }

  /** What the kubelet does once a pod's containers are gone: the final, immediate delete. */
  async #confirmDeletion (pod: PodObject): Promise<void> {
    const { namespace, name, uid } = pod.metadata
    const response = await this.#api.request('DELETE', `/api/v1/namespaces/${namespace}/pods/${name}`, {
      body: { apiVersion: 'v1', kind: 'DeleteOptions', gracePeriodSeconds: 0, preconditions: { uid } },
    })
    if (response.status >= 300 && response.status !== 404 && response.status !== 409) this.#log(`simulated node: deleting ${namespace}/${name}: ${response.status} ${response.text.slice(0, 200)}`)
  }

  async #stopPod (running: RunningPod): Promise<void> {
    this.#pods.delete(running.key)
    await running.process.stop(2_000)
    await this.#network.release(running.ip)
  }

  /** Stops polling and every pod's backend; the Node object stays (the cluster goes away with it). */
  async stop (): Promise<void> {
    this.#stopping = true
    await this.#loop
    await Promise.allSettled(this.#starting.values())
    for (const running of [...this.#pods.values()]) await this.#stopPod(running)
  }
}

/** The pod's readiness probe: an HTTP GET answered below 400 when it names a path, else a TCP connect. */
async function probe (host: string, port: number, path: string | undefined): Promise<boolean> {
  if (path === undefined) return await reachable(host, port)
  try {
    const response = await request(`http://${host}:${port}${path}`, { reset: true, signal: AbortSignal.timeout(1_000) })
    await response.body.dump()
    return response.statusCode < 400
  } catch {
    return false
  }
}

function reachable (host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: 1_000 })
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('timeout', () => { socket.destroy(); resolve(false) })
    socket.once('error', () => { resolve(false) })
  })
}
