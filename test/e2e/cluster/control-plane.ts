// A real Kubernetes control plane on 127.0.0.1 for the end-to-end tests: etcd,
// kube-apiserver (TLS, client certificates, service-account tokens, RBAC) and
// kube-controller-manager with the controllers podgate relies on. Every port is free when
// chosen, every wait is bounded, every process is stopped by close().
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import type { ControlPlaneBinaries } from './binaries.ts'
import { KubeApi } from './kube-api.ts'
import { createClusterPki, kubeconfigYaml, type ClusterPki } from './pki.ts'
import { ClusterProcess, freePorts, waitFor } from './processes.ts'

/** What podgate needs from a cluster: Deployments make ReplicaSets make Pods; Services get EndpointSlices; owners' deletion removes children. */
export const CONTROLLERS = [
  'deployment-controller', 'replicaset-controller', 'endpointslice-controller', 'garbage-collector-controller',
  'namespace-controller', 'serviceaccount-controller', 'serviceaccount-token-controller',
] as const
export const SERVICE_CIDR = '10.96.0.0/24'

export interface ControlPlaneOptions {
  readonly binaries: ControlPlaneBinaries
  /** Parent of the cluster's directory (certificates, etcd data, logs). Default: the OS temp dir. */
  readonly baseDir?: string
  readonly etcdStartTimeoutMs?: number
  readonly apiServerStartTimeoutMs?: number
  readonly controllerManagerStartTimeoutMs?: number
}

export interface StartTimings {
  readonly pkiMs: number
  readonly etcdMs: number
  readonly apiServerMs: number
  readonly controllerManagerMs: number
  readonly totalMs: number
}

export class ControlPlane {
  readonly dir: string
  readonly server: string
  readonly pki: ClusterPki
  /** Cluster-admin (system:masters) client. */
  readonly admin: KubeApi
  readonly adminKubeconfig: string
  readonly timings: StartTimings
  readonly #binaries: ControlPlaneBinaries
  readonly #apiServerArgs: readonly string[]
  readonly #apiServerTimeoutMs: number
  #etcd: ClusterProcess
  #apiServer: ClusterProcess
  #controllerManager: ClusterProcess
  #closed = false

  private constructor (init: {
    dir: string, server: string, pki: ClusterPki, admin: KubeApi, adminKubeconfig: string, timings: StartTimings,
    binaries: ControlPlaneBinaries, apiServerArgs: readonly string[], apiServerTimeoutMs: number,
    etcd: ClusterProcess, apiServer: ClusterProcess, controllerManager: ClusterProcess,
  }) {
    this.dir = init.dir
    this.server = init.server
    this.pki = init.pki
    this.admin = init.admin
    this.adminKubeconfig = init.adminKubeconfig
    this.timings = init.timings
    this.#binaries = init.binaries
    this.#apiServerArgs = init.apiServerArgs
    this.#apiServerTimeoutMs = init.apiServerTimeoutMs
    this.#etcd = init.etcd
    this.#apiServer = init.apiServer
    this.#controllerManager = init.controllerManager
  }

  /** Starts etcd, kube-apiserver and kube-controller-manager; on any failure stops what started and throws with its log. */
  static async start (options: ControlPlaneOptions): Promise<ControlPlane> {
    const { binaries } = options
    const started = Date.now()
    const dir = await mkdtemp(join(options.baseDir ?? tmpdir(), 'podgate-e2e-'))
    const logs = join(dir, 'logs')
    const certs = join(dir, 'pki')
    await mkdir(logs)
    await mkdir(certs, { mode: 0o700 })
    const running: ClusterProcess[] = []
    let admin: KubeApi | undefined
    try {
      const pki = await createClusterPki(certs)
      const pkiMs = Date.now() - started
      const [etcdClient, etcdPeer, apiPort, kcmPort] = await freePorts(4) as [number, number, number, number]

      const etcdStarted = Date.now()
      const etcdUrl = `http://127.0.0.1:${etcdClient}`
      const etcd = ClusterProcess.start({
        name: 'etcd',
        command: binaries.etcd,
        logFile: join(logs, 'etcd.log'),
        args: [
          '--name=e2e', `--data-dir=${join(dir, 'etcd')}`,
          `--listen-client-urls=${etcdUrl}`, `--advertise-client-urls=${etcdUrl}`,
          `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`, `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
          `--initial-cluster=e2e=http://127.0.0.1:${etcdPeer}`,
          // A test cluster lives for minutes: durability buys nothing and costs seconds.
          '--unsafe-no-fsync', '--log-level=warn',
        ],
      })
      running.push(etcd)
      await waitFor(async () => {
        const response = await request(`${etcdUrl}/health`, { signal: AbortSignal.timeout(1_000) })
        const body = await response.body.json() as { health?: string }
        return body.health === 'true' ? true : undefined
      }, { what: 'etcd health', timeoutMs: options.etcdStartTimeoutMs ?? 30_000, process: etcd })
      const etcdMs = Date.now() - etcdStarted

      const server = `https://127.0.0.1:${apiPort}`
      const apiServerArgs = [
        `--etcd-servers=${etcdUrl}`,
        '--bind-address=127.0.0.1', '--advertise-address=127.0.0.1', `--secure-port=${apiPort}`,
        `--cert-dir=${join(dir, 'apiserver')}`,
        `--tls-cert-file=${pki.servingCertFile}`, `--tls-private-key-file=${pki.servingKeyFile}`,
        `--client-ca-file=${pki.caFile}`,
        '--service-account-issuer=https://kubernetes.default.svc',
        `--service-account-key-file=${pki.serviceAccountPublicKeyFile}`,
        `--service-account-signing-key-file=${pki.serviceAccountKeyFile}`,
        `--service-cluster-ip-range=${SERVICE_CIDR}`,
        '--authorization-mode=RBAC',
        // The reconciler of the `kubernetes` Service refuses a loopback address; nothing here dials that Service.
        '--endpoint-reconciler-type=none',
        '--profiling=false',
      ]
      const apiServerTimeoutMs = options.apiServerStartTimeoutMs ?? 90_000
      const apiServerStarted = Date.now()
      admin = new KubeApi({ server, ca: pki.ca, cert: pki.admin.cert, key: pki.admin.key })
      const apiServer = await startApiServer(binaries, apiServerArgs, join(logs, 'kube-apiserver.log'), admin, apiServerTimeoutMs)
      running.push(apiServer)
      const apiServerMs = Date.now() - apiServerStarted

      const adminKubeconfig = join(dir, 'admin.kubeconfig')
      await writeFile(adminKubeconfig, kubeconfigYaml({ server, ca: pki.ca, user: 'admin', cert: pki.admin.cert, key: pki.admin.key }), { mode: 0o600 })
      const kcmKubeconfig = join(dir, 'controller-manager.kubeconfig')
      await writeFile(kcmKubeconfig, kubeconfigYaml({ server, ca: pki.ca, user: 'kube-controller-manager', cert: pki.controllerManager.cert, key: pki.controllerManager.key }), { mode: 0o600 })

      const kcmStarted = Date.now()
      const controllerManager = ClusterProcess.start({
        name: 'kube-controller-manager',
        command: binaries.kubeControllerManager,
        logFile: join(logs, 'kube-controller-manager.log'),
        args: [
          `--kubeconfig=${kcmKubeconfig}`,
          '--bind-address=127.0.0.1', `--secure-port=${kcmPort}`, `--cert-dir=${join(dir, 'controller-manager')}`,
          `--controllers=${CONTROLLERS.join(',')}`,
          // Each controller acts as its own service account, under the bootstrap RBAC roles.
          '--use-service-account-credentials=true',
          `--service-account-private-key-file=${pki.serviceAccountKeyFile}`,
          `--root-ca-file=${pki.caFile}`,
          '--leader-elect=false',
          '--profiling=false',
          // Level 2 logs what the garbage collector and the EndpointSlice controller decide.
          '--v=2',
        ],
      })
      running.push(controllerManager)
      const insecure = new Agent({ connect: { rejectUnauthorized: false } })
      try {
        // Its own serving certificate is self-signed; /healthz is readable without credentials.
        await waitFor(async () => {
          const response = await request(`https://127.0.0.1:${kcmPort}/healthz`, { dispatcher: insecure, signal: AbortSignal.timeout(1_000) })
          const text = await response.body.text()
          return response.statusCode === 200 ? true : (() => { throw new Error(`${response.statusCode} ${text.slice(0, 200)}`) })()
        }, { what: 'kube-controller-manager /healthz', timeoutMs: options.controllerManagerStartTimeoutMs ?? 60_000, process: controllerManager })
      } finally {
        await insecure.close()
      }
      // The serviceaccount controller at work: pods cannot be created in a namespace without it.
      await waitFor(async () => {
        const response = await admin!.request('GET', '/api/v1/namespaces/default/serviceaccounts/default')
        return response.status === 200 ? true : undefined
      }, { what: 'the default ServiceAccount (serviceaccount controller)', timeoutMs: options.controllerManagerStartTimeoutMs ?? 60_000, process: controllerManager })
      const controllerManagerMs = Date.now() - kcmStarted

      return new ControlPlane({
        dir, server, pki, admin, adminKubeconfig, binaries, apiServerArgs, apiServerTimeoutMs,
        etcd, apiServer, controllerManager,
        timings: { pkiMs, etcdMs, apiServerMs, controllerManagerMs, totalMs: Date.now() - started },
      })
    } catch (err) {
      for (const child of running.reverse()) await child.stop()
      await admin?.close()
      throw new Error(`the test control plane did not start (files kept in ${dir}): ${(err as Error).message}`, { cause: err })
    }
  }

  get processes (): readonly ClusterProcess[] {
    return [this.#etcd, this.#apiServer, this.#controllerManager]
  }

  get apiServerRunning (): boolean {
    return this.#apiServer.running
  }

  /** Stops kube-apiserver only (etcd and the controller manager keep running). */
  async stopApiServer (): Promise<void> {
    await this.#apiServer.stop()
  }

  /** Starts kube-apiserver again on the same port, with the same data; resolves once /readyz is 200. */
  async restartApiServer (): Promise<number> {
    if (this.#closed) throw new Error('the control plane is closed')
    if (this.#apiServer.running) throw new Error('kube-apiserver is still running')
    const started = Date.now()
    this.#apiServer = await startApiServer(this.#binaries, this.#apiServerArgs, this.#apiServer.logFile, this.admin, this.#apiServerTimeoutMs)
    return Date.now() - started
  }

  /** Resolves once kube-controller-manager has logged a line matching `pattern`; for facts the API does not show. */
  async controllerManagerLogged (pattern: RegExp, what: string, timeoutMs: number): Promise<number> {
    const started = Date.now()
    const log = this.#controllerManager.logFile
    await waitFor(async () => pattern.test(await readFile(log, 'utf8')) ? true : undefined, { what, timeoutMs, intervalMs: 250, process: this.#controllerManager })
    return Date.now() - started
  }

  /** The last lines of every component's log, for a failure report. */
  logTails (lines = 30): string {
    return this.processes.map((child) => `--- ${child.name} (${child.logFile}) ---\n${child.logTail(lines)}`).join('\n')
  }

  /** Stops every process (controller manager, API server, etcd) and removes the directory unless `keep`. */
  async close (options: { keep?: boolean } = {}): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#controllerManager.stop()
    await this.#apiServer.stop()
    await this.#etcd.stop()
    await this.admin.close()
    if (options.keep !== true) await rm(this.dir, { recursive: true, force: true })
  }
}

async function startApiServer (binaries: ControlPlaneBinaries, args: readonly string[], logFile: string, admin: KubeApi, timeoutMs: number): Promise<ClusterProcess> {
  const apiServer = ClusterProcess.start({ name: 'kube-apiserver', command: binaries.kubeApiserver, args, logFile })
  try {
    await waitFor(async () => {
      const response = await admin.request('GET', '/readyz', { timeoutMs: 2_000 })
      if (response.status === 200) return true
      throw new Error(`/readyz ${response.status}: ${response.text.split('\n').filter((line) => line.includes('[-]')).join('; ').slice(0, 300)}`)
    }, { what: 'kube-apiserver /readyz', timeoutMs, intervalMs: 200, process: apiServer })
  } catch (err) {
    await apiServer.stop()
    throw err
  }
  return apiServer
}
