// The Kubernetes provisioner as `podgate serve` runs it: on every replica the UserWorkload
// cache and the Workloads API (admin API, spawn on demand, activity) across the served
// namespaces; on the replica holding the Lease (in podgate's own namespace) also the
// reconciler and the orphan sweep, stopped before leadership is given up.
import type { KubeConfig } from '@kubernetes/client-node'
import type { Config } from '../config.ts'
import type { Logger } from '../log.ts'
import type { Metrics } from '../metrics.ts'
import type { ServedNamespaces } from '../kube/namespaces.ts'
import { KubernetesWorkloads } from './kubernetes-workloads.ts'
import { UserWorkloadCache } from './user-workload-cache.ts'
import { LeaderElector, type LeaderElectorOptions, type LeadershipListener } from './leader.ts'
import { loadProfiles, type Profiles } from './profiles.ts'
import { Reconciler, ReconcilerMetrics, type ReconcilerOptions } from './reconciler.ts'

/** Tuning passed through to the cache, the Lease and the reconciler (defaults there). */
type Tuning =
  & Pick<ReconcilerOptions, 'gatewayPodSelector' | 'networkPolicy' | 'concurrency' | 'retryBackoff' | 'requestTimeoutMs' | 'sweepIntervalMs' | 'resyncIntervalMs' | 'watchdogMs' | 'informerBackoff' | 'random' | 'clock'>
  & Pick<LeaderElectorOptions, 'leaseName' | 'leaseDurationMs' | 'renewIntervalMs' | 'retryIntervalMs' | 'renewDeadlineMs'>

export interface KubernetesProvisionerOptions extends Tuning {
  config: Pick<Config, 'profilesFile'>
  kubeConfig: KubeConfig
  /** podgate's own namespace: the Lease is there, and users' NetworkPolicies admit the gateway from there. */
  namespace: string
  /** Where UserWorkloads and their children live; `[namespace]` when unset. */
  namespaces?: ServedNamespaces
  /** Where a workload is created when no namespace is named; see defaultWorkloadNamespace. */
  defaultNamespace?: string
  logger: Logger
  metrics: Metrics
  /** This replica's name in the Lease (the pod name). */
  identity: string
  /** Already-loaded profiles; read from config.profilesFile otherwise. */
  profiles?: Profiles
}

export interface KubernetesProvisioner {
  readonly workloads: KubernetesWorkloads
  readonly cache: UserWorkloadCache
  readonly profiles: Profiles
  readonly isLeader: boolean
  /** The running reconciler while leading (tests wait on it); undefined otherwise. */
  readonly reconciler: Reconciler | undefined
  /** Called when this replica starts or stops leading (idle culling runs only on the leader). */
  onLeaderChange (listener: LeadershipListener): () => void
  /** Stops reconciling, releases the Lease, waits for activity writes, closes the cache. */
  close (): Promise<void>
}

/** Where workloads go when nobody names a namespace: the first one listed, or podgate's own (unlisted, or `all`). */
export function defaultWorkloadNamespace (namespaces: ServedNamespaces, own: string): string {
  return namespaces === 'all' ? own : namespaces[0] ?? own
}

/** Starts the cache and the leader election; returns at once (await `cache.synced` for the first view). */
export function startKubernetesProvisioner (options: KubernetesProvisionerOptions): KubernetesProvisioner {
  const { kubeConfig, namespace, logger, metrics } = options
  const namespaces = options.namespaces ?? [namespace]
  const defaultNamespace = options.defaultNamespace ?? defaultWorkloadNamespace(namespaces, namespace)
  const profiles = options.profiles ?? loadProfiles(options.config.profilesFile)
  // Unset options stay undefined: every collaborator applies its own default.
  const { requestTimeoutMs, watchdogMs, random, clock } = options
  const cache = new UserWorkloadCache({
    kubeConfig, namespaces, logger, defaultProfile: profiles.default.name, requestTimeoutMs, watchdogMs, backoff: options.informerBackoff, random, clock,
  })
  // Activity writes are throttled in front of it, by the gateway plug-in's ActivityRecorder.
  const workloads = new KubernetesWorkloads({ kubeConfig, namespaces, defaultNamespace, profiles, logger, cache, requestTimeoutMs })
  const elector = new LeaderElector({
    kubeConfig, namespace, identity: options.identity, logger, metrics, requestTimeoutMs, clock,
    leaseName: options.leaseName,
    leaseDurationMs: options.leaseDurationMs,
    renewIntervalMs: options.renewIntervalMs,
    retryIntervalMs: options.retryIntervalMs,
    renewDeadlineMs: options.renewDeadlineMs,
  })
  // Every replica's cache holds every workload: only the leader's count is published.
  metrics.publishWorkloads(() => elector.isLeader ? cache.workloads() : [])
  const reconcilerOptions: ReconcilerOptions = {
    kubeConfig, namespaces, gatewayNamespace: namespace, profiles, cache, logger, metrics: new ReconcilerMetrics(metrics), requestTimeoutMs, watchdogMs, random, clock,
    gatewayPodSelector: options.gatewayPodSelector,
    networkPolicy: options.networkPolicy,
    concurrency: options.concurrency,
    retryBackoff: options.retryBackoff,
    sweepIntervalMs: options.sweepIntervalMs,
    resyncIntervalMs: options.resyncIntervalMs,
    informerBackoff: options.informerBackoff,
  }

  let reconciler: Reconciler | undefined
  elector.onChange(async (leading) => {
    if (leading) {
      const next = new Reconciler(reconcilerOptions)
      reconciler = next
      logger.info({ namespace, identity: options.identity }, 'leading: reconciling UserWorkloads')
      next.start().catch((err: unknown) => { logger.error({ err }, 'the reconciler failed to start') })
      return
    }
    const current = reconciler
    reconciler = undefined
    if (current !== undefined) {
      await current.close()
      logger.info({ identity: options.identity }, 'no longer leading: reconciler stopped')
    }
  })
  cache.start()
  elector.start()
  logger.info({ namespace, namespaces: namespaces === 'all' ? '*' : namespaces, defaultNamespace, identity: options.identity, profiles: profiles.names, defaultProfile: profiles.default.name }, 'Kubernetes provisioner started')

  let closing: Promise<void> | undefined
  return {
    workloads,
    cache,
    profiles,
    get isLeader () { return elector.isLeader },
    get reconciler () { return reconciler },
    onLeaderChange: (listener) => elector.onChange(listener),
    close: () => {
      closing ??= (async () => {
        await elector.close()
        await workloads.close()
        await cache.close()
      })()
      return closing
    },
  }
}
