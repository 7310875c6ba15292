// The Kubernetes provisioner as `podgate serve` runs it: on every replica the UserWorkload
// cache and the Workloads API (admin API, spawn on demand, activity); on the replica holding
// the Lease also the reconciler and the orphan sweep, stopped before leadership is given up.
import type { KubeConfig } from '@kubernetes/client-node'
import type { Config } from '../config.ts'
import type { Logger } from '../log.ts'
import type { Metrics } from '../metrics.ts'
import type { Backoff, CancelSchedule, Schedule } from '../kube/informer.ts'
import { KubernetesWorkloads, UserWorkloadCache } from './kubernetes-workloads.ts'
import { LeaderElector, type LeadershipListener } from './leader.ts'
import { loadProfiles, type Profiles } from './profiles.ts'
import { Reconciler, ReconcilerMetrics } from './reconciler.ts'

export interface KubernetesProvisionerOptions {
  config: Pick<Config, 'profilesFile'>
  kubeConfig: KubeConfig
  namespace: string
  logger: Logger
  metrics: Metrics
  /** This replica's name in the Lease (the pod name). */
  identity: string
  /** Already-loaded profiles; read from config.profilesFile otherwise. */
  profiles?: Profiles
  leaseName?: string
  leaseDurationMs?: number
  renewIntervalMs?: number
  retryIntervalMs?: number
  renewDeadlineMs?: number
  /** Labels of podgate's own pods, admitted by each user's NetworkPolicy. */
  gatewayPodSelector?: Readonly<Record<string, string>>
  networkPolicy?: boolean
  concurrency?: number
  retryBackoff?: Backoff
  requestTimeoutMs?: number
  sweepIntervalMs?: number
  resyncIntervalMs?: number
  activityIntervalMs?: number
  watchdogMs?: number
  informerBackoff?: Backoff
  random?: () => number
  setTimeout?: Schedule
  clearTimeout?: CancelSchedule
  now?: () => number
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
  /** Stops reconciling, releases the Lease, flushes activity, closes the cache. */
  close (): Promise<void>
}

/** Starts the cache and the leader election; returns at once (await `cache.synced` for the first view). */
export function startKubernetesProvisioner (options: KubernetesProvisionerOptions): KubernetesProvisioner {
  const { kubeConfig, namespace, logger, metrics } = options
  const profiles = options.profiles ?? loadProfiles(options.config.profilesFile)
  const timers = {
    ...(options.setTimeout === undefined ? {} : { setTimeout: options.setTimeout }),
    ...(options.clearTimeout === undefined ? {} : { clearTimeout: options.clearTimeout }),
    ...(options.now === undefined ? {} : { now: options.now }),
  }
  const cache = new UserWorkloadCache({
    kubeConfig, namespace, logger, defaultProfile: profiles.default.name,
    ...(options.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: options.requestTimeoutMs }),
    ...(options.watchdogMs === undefined ? {} : { watchdogMs: options.watchdogMs }),
    ...(options.informerBackoff === undefined ? {} : { backoff: options.informerBackoff }),
    ...(options.random === undefined ? {} : { random: options.random }),
    ...timers,
  })
  const workloads = new KubernetesWorkloads({
    kubeConfig, namespace, profiles, logger, cache,
    ...(options.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: options.requestTimeoutMs }),
    ...(options.activityIntervalMs === undefined ? {} : { activityIntervalMs: options.activityIntervalMs }),
    ...timers,
  })
  const elector = new LeaderElector({
    kubeConfig, namespace, identity: options.identity, logger, metrics,
    ...(options.leaseName === undefined ? {} : { leaseName: options.leaseName }),
    ...(options.leaseDurationMs === undefined ? {} : { leaseDurationMs: options.leaseDurationMs }),
    ...(options.renewIntervalMs === undefined ? {} : { renewIntervalMs: options.renewIntervalMs }),
    ...(options.retryIntervalMs === undefined ? {} : { retryIntervalMs: options.retryIntervalMs }),
    ...(options.renewDeadlineMs === undefined ? {} : { renewDeadlineMs: options.renewDeadlineMs }),
    ...(options.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: options.requestTimeoutMs }),
    ...timers,
  })
  const reconcilerOptions = {
    kubeConfig, namespace, profiles, cache, logger, metrics: new ReconcilerMetrics(metrics),
    ...(options.gatewayPodSelector === undefined ? {} : { gatewayPodSelector: options.gatewayPodSelector }),
    ...(options.networkPolicy === undefined ? {} : { networkPolicy: options.networkPolicy }),
    ...(options.concurrency === undefined ? {} : { concurrency: options.concurrency }),
    ...(options.retryBackoff === undefined ? {} : { retryBackoff: options.retryBackoff }),
    ...(options.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: options.requestTimeoutMs }),
    ...(options.sweepIntervalMs === undefined ? {} : { sweepIntervalMs: options.sweepIntervalMs }),
    ...(options.resyncIntervalMs === undefined ? {} : { resyncIntervalMs: options.resyncIntervalMs }),
    ...(options.watchdogMs === undefined ? {} : { watchdogMs: options.watchdogMs }),
    ...(options.informerBackoff === undefined ? {} : { informerBackoff: options.informerBackoff }),
    ...(options.random === undefined ? {} : { random: options.random }),
    ...timers,
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
  logger.info({ namespace, identity: options.identity, profiles: profiles.names, defaultProfile: profiles.default.name }, 'Kubernetes provisioner started')

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
