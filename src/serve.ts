// `podgate serve`: the gateway routing from EndpointSlices and, unless turned off, the
// Kubernetes provisioner (every replica serves; the Lease holder reconciles and culls).
// With PODGATE_LOCAL_ROUTES it routes from a static file instead, without a cluster.
import { startPodgate, type PodgateOptions, type RunningPodgate } from './app.ts'
import { createCredentialVerifier } from './auth/credential-verifier.ts'
import { followRevocations, RevocationMarks } from './auth/revocations.ts'
import { servedNamespaces, type Config } from './config.ts'
import { componentLogger, type Logger } from './log.ts'
import { Metrics } from './metrics.ts'

export interface RunningServe {
  readonly podgate: RunningPodgate
  close (): Promise<void>
}

export async function runServe (config: Config, logger: Logger): Promise<RunningServe> {
  const metrics = new Metrics()
  const verifier = createCredentialVerifier(config, { metrics, logger })
  const start = async (options: PodgateOptions): Promise<RunningPodgate> => {
    if (config.workers === 1) return await startPodgate(options)
    const { startPrimary } = await import('./workers/primary.ts')
    return await startPrimary({ ...options, workers: config.workers })
  }
  if (config.routesFile !== undefined) {
    const { RoutesFileSource } = await import('./discovery/routes-file.ts')
    const podgate = await start({ config, source: new RoutesFileSource(config.routesFile), verifier, logger, metrics })
    return { podgate, close: () => podgate.close() }
  }

  const { resolveCluster } = await import('./kube/kubeconfig.ts')
  const { createKubernetesSource } = await import('./discovery/kubernetes.ts')
  const cluster = resolveCluster(config.namespace)
  const namespaces = servedNamespaces(config, cluster.namespace)
  const source = createKubernetesSource({ cluster, namespaces, logger, metrics })
  if (!config.provisioner) {
    const podgate = await start({ config, source, verifier, logger, metrics })
    return { podgate, close: () => podgate.close() }
  }

  const { startKubernetesProvisioner } = await import('./controller/provisioner.ts')
  const { createProvisionerHooks } = await import('./workloads/gateway-plugin.ts')
  const provisioner = startKubernetesProvisioner({
    config,
    kubeConfig: cluster.kubeConfig,
    namespace: cluster.namespace,
    namespaces,
    logger: componentLogger(logger, 'provisioner'),
    metrics,
    identity: config.podName,
    gatewayPodSelector: config.gatewayPodSelector,
  })
  // Every replica (and each of its workers) enforces the revocation marks its UserWorkload cache sees.
  const revocations = new RevocationMarks()
  followRevocations(provisioner.workloads, revocations)
  const hooks = createProvisionerHooks({
    config,
    workloads: provisioner.workloads,
    source,
    logger,
    metrics,
    adminToken: config.adminToken,
    profiles: provisioner.profiles.names,
    namespaces,
  })
  // Idle culling writes suspensions: only the Lease holder does it.
  provisioner.onLeaderChange((leading) => hooks.culling(leading))
  let podgate: RunningPodgate
  try {
    podgate = await start({ config, source, verifier, logger, metrics, revocations, ...hooks.gateway })
  } catch (err) {
    await hooks.close()
    await provisioner.close()
    throw err
  }
  let closing: Promise<void> | undefined
  return {
    podgate,
    close: () => {
      closing ??= (async () => {
        await podgate.close()
        await hooks.close()
        await provisioner.close()
      })()
      return closing
    },
  }
}
