// What the provisioner plugs into the gateway, for any Workloads (Kubernetes or local):
// spawn on demand for users without endpoints, activity recording, the admin API, and
// idle culling (started where this replica should cull: the leader, or the demo).
import type { PodgateOptions } from '../app.ts'
import type { Config } from '../config.ts'
import type { EndpointSource } from '../discovery/source.ts'
import type { ServedNamespaces } from '../kube/namespaces.ts'
import { componentLogger, type Logger } from '../log.ts'
import type { Metrics } from '../metrics.ts'
import { ActivityRecorder } from './activity.ts'
import { registerAdminApi } from './admin-api.ts'
import { Culler } from './culler.ts'
import { createSpawner, type SpawnerOptions } from './spawner.ts'
import type { Workloads } from './workloads.ts'

export interface ProvisionerHooksOptions {
  readonly config: Pick<Config, 'gateway' | 'idleTimeoutMs'>
  readonly workloads: Workloads
  readonly source: EndpointSource
  readonly logger: Logger
  /** Where spawn on demand is counted: the registry of the process that runs these hooks. */
  readonly metrics: Metrics
  /** Bearer token of the admin API; undefined disables it. */
  readonly adminToken: string | undefined
  /** Profile names the admin API accepts; any when undefined. */
  readonly profiles?: readonly string[]
  readonly spawner?: Pick<SpawnerOptions, 'browserGraceMs'>
  readonly cullIntervalMs?: number
  /** The namespaces the provisioner manages (undefined for the local driver, which has none). */
  readonly namespaces?: ServedNamespaces
}

export interface ProvisionerHooks {
  /** The options startPodgate takes from the provisioner. */
  readonly gateway: Pick<PodgateOptions, 'onMissing' | 'spawnNamespaces' | 'onActivity' | 'adminRoutes' | 'activityIntervalMs'>
  /** Starts or stops idle culling (no-op when PODGATE_IDLE_TIMEOUT is 0). */
  culling (on: boolean): Promise<void>
  /** Stops culling and flushes recorded activity. */
  close (): Promise<void>
}

export function createProvisionerHooks (options: ProvisionerHooksOptions): ProvisionerHooks {
  const { config, workloads, source, logger, adminToken, profiles } = options
  const recorder = new ActivityRecorder({ workloads, logger: componentLogger(logger, 'activity'), idleTimeoutMs: config.idleTimeoutMs })
  const culler = config.idleTimeoutMs > 0
    ? new Culler({ workloads, logger: componentLogger(logger, 'culler'), idleTimeoutMs: config.idleTimeoutMs, intervalMs: options.cullIntervalMs })
    : undefined
  const spawner = createSpawner({
    browserGraceMs: config.gateway.browserGraceMs,
    ...options.spawner,
    workloads,
    source,
    spawnOnDemand: config.gateway.spawnOnDemand,
    startTimeoutMs: config.gateway.startTimeoutMs,
    logger: componentLogger(logger, 'spawner'),
    onActivity: recorder.record,
    metrics: options.metrics,
  })
  return {
    gateway: {
      onMissing: spawner.onMissing,
      spawnNamespaces: options.namespaces,
      onActivity: recorder.record,
      activityIntervalMs: recorder.intervalMs,
      adminRoutes: (app) => { registerAdminApi(app, { workloads, adminToken, logger, profiles }) },
    },
    culling: async (on) => {
      if (on) culler?.start()
      else await culler?.stop()
    },
    close: async () => {
      await culler?.stop()
      recorder.close()
    },
  }
}
