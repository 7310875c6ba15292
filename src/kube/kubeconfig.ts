// Where podgate finds its Kubernetes API server and namespace: an explicit KUBECONFIG, else
// the pod's service account (in-cluster), else ~/.kube/config. Each failure is one
// ConfigError naming what to fix.
import { KubeConfig } from '@kubernetes/client-node'
import { existsSync, readFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { delimiter, join } from 'node:path'
import { isIPv6 } from 'node:net'
import type { Env } from '../config.ts'
import { ConfigError } from '../errors.ts'
import { isDnsLabel } from './labels.ts'

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount'
export const DEFAULT_NAMESPACE = 'default'

export interface KubeEnvironment {
  env?: Env
  /** Directory holding the service account's token, ca.crt and namespace. */
  serviceAccountDir?: string
  homeDir?: string
}

export type KubeConfigSource = 'kubeconfig' | 'in-cluster' | 'home'

function loadFile (kubeConfig: KubeConfig, file: string, variable: string): void {
  try {
    kubeConfig.loadFromFile(file)
  } catch (err) {
    throw new ConfigError(variable, `cannot load kubeconfig ${file}: ${(err as Error).message}`)
  }
}

/** The in-cluster configuration, as client-node's loadFromCluster builds it but from `environment`. */
function inClusterConfig (host: string, port: string, dir: string): KubeConfig {
  const kubeConfig = new KubeConfig()
  const server = `https://${isIPv6(host) ? `[${host}]` : host}:${port}`
  const namespaceFile = join(dir, 'namespace')
  let namespace: string | undefined
  try {
    namespace = readFileSync(namespaceFile, 'utf8').trim()
  } catch {
    // resolveNamespace reports an unreadable namespace file; the client works without one.
  }
  kubeConfig.loadFromOptions({
    clusters: [{ name: 'in-cluster', server, caFile: join(dir, 'ca.crt'), skipTLSVerify: false }],
    // The token file is re-read periodically: projected service account tokens rotate.
    users: [{ name: 'in-cluster', authProvider: { name: 'tokenFile', config: { tokenFile: join(dir, 'token') } } }],
    contexts: [{ name: 'in-cluster', cluster: 'in-cluster', user: 'in-cluster', ...(namespace === undefined ? {} : { namespace }) }],
    currentContext: 'in-cluster',
  })
  return kubeConfig
}

/**
 * Loads the client configuration: KUBECONFIG (path-list, merged like kubectl) if set, else the
 * service account when running in a pod, else ~/.kube/config. Throws ConfigError otherwise.
 */
export function loadKubeConfig (environment: KubeEnvironment = {}): { kubeConfig: KubeConfig, source: KubeConfigSource } {
  const env = environment.env ?? process.env
  const dir = environment.serviceAccountDir ?? SERVICE_ACCOUNT_DIR
  let kubeConfig: KubeConfig
  let source: KubeConfigSource
  const listed = (env.KUBECONFIG ?? '').split(delimiter).map((file) => file.trim()).filter((file) => file !== '')
  const host = env.KUBERNETES_SERVICE_HOST?.trim()
  const port = env.KUBERNETES_SERVICE_PORT?.trim()
  const home = environment.homeDir ?? homedir()
  if (listed.length > 0) {
    const files = listed.filter((file) => existsSync(file))
    if (files.length === 0) throw new ConfigError('KUBECONFIG', `none of the listed files exists: ${listed.join(delimiter)}`)
    kubeConfig = new KubeConfig()
    loadFile(kubeConfig, files[0] ?? '', 'KUBECONFIG')
    for (const file of files.slice(1)) {
      const next = new KubeConfig()
      loadFile(next, file, 'KUBECONFIG')
      try {
        // Like kubectl, the first file that sets current-context wins.
        kubeConfig.mergeConfig(next, kubeConfig.getCurrentContext() !== undefined && kubeConfig.getCurrentContext() !== '')
      } catch (err) {
        throw new ConfigError('KUBECONFIG', `cannot merge ${file}: ${(err as Error).message}`)
      }
    }
    source = 'kubeconfig'
  } else if (host !== undefined && host !== '' && port !== undefined && port !== '' && existsSync(join(dir, 'token'))) {
    kubeConfig = inClusterConfig(host, port, dir)
    source = 'in-cluster'
  } else if (home !== '' && existsSync(join(home, '.kube', 'config'))) {
    kubeConfig = new KubeConfig()
    loadFile(kubeConfig, join(home, '.kube', 'config'), 'KUBECONFIG')
    source = 'home'
  } else {
    throw new ConfigError('KUBECONFIG', `no Kubernetes configuration: KUBECONFIG is unset, this is not a pod with a service account (KUBERNETES_SERVICE_HOST/PORT and ${join(dir, 'token')}), and ${join(home, '.kube', 'config')} does not exist`)
  }
  checkUsable(kubeConfig, source === 'in-cluster' ? 'KUBERNETES_SERVICE_HOST' : 'KUBECONFIG')
  return { kubeConfig, source }
}

/** Fails at start-up on what client-node would otherwise only report on the first request. */
function checkUsable (kubeConfig: KubeConfig, variable: string): void {
  const contextName = kubeConfig.getCurrentContext()
  if (contextName === undefined || contextName === '') throw new ConfigError(variable, 'the kubeconfig sets no current-context')
  const context = kubeConfig.getContextObject(contextName)
  if (context === null) throw new ConfigError(variable, `current-context ${JSON.stringify(contextName)} is not defined`)
  const cluster = kubeConfig.getCurrentCluster()
  if (cluster === null) throw new ConfigError(variable, `context ${JSON.stringify(contextName)} names cluster ${JSON.stringify(context.cluster)}, which is not defined`)
  let url: URL
  try {
    url = new URL(cluster.server)
  } catch {
    throw new ConfigError(variable, `cluster ${JSON.stringify(cluster.name)} has an invalid server URL ${JSON.stringify(cluster.server)}`)
  }
  if (url.protocol === 'http:' && cluster.skipTLSVerify !== true) {
    throw new ConfigError(variable, `cluster ${JSON.stringify(cluster.name)} uses http://, which @kubernetes/client-node refuses unless insecure-skip-tls-verify is true`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError(variable, `cluster ${JSON.stringify(cluster.name)} server must be http(s), got ${url.protocol}`)
  if (kubeConfig.getCurrentUser() === null) throw new ConfigError(variable, `context ${JSON.stringify(contextName)} names user ${JSON.stringify(context.user)}, which is not defined`)
}

export interface NamespaceSources {
  /** PODGATE_NAMESPACE, already validated by loadConfig. */
  configured?: string
  serviceAccountDir?: string
  kubeConfig?: KubeConfig
}

/**
 * The namespace podgate works in: PODGATE_NAMESPACE, else the pod's own namespace (from the
 * service account), else the kubeconfig context's namespace, else "default".
 */
export function resolveNamespace (sources: NamespaceSources = {}): string {
  if (sources.configured !== undefined && sources.configured !== '') return sources.configured
  const file = join(sources.serviceAccountDir ?? SERVICE_ACCOUNT_DIR, 'namespace')
  if (existsSync(file)) {
    let text: string
    try {
      text = readFileSync(file, 'utf8').trim()
    } catch (err) {
      throw new ConfigError('PODGATE_NAMESPACE', `unset, and ${file} is unreadable (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
    }
    if (!isDnsLabel(text)) throw new ConfigError('PODGATE_NAMESPACE', `unset, and ${file} holds no valid namespace name: ${JSON.stringify(text.slice(0, 64))}`)
    return text
  }
  const kubeConfig = sources.kubeConfig
  const contextName = kubeConfig?.getCurrentContext()
  const fromContext = contextName === undefined ? undefined : kubeConfig?.getContextObject(contextName)?.namespace
  if (fromContext !== undefined && fromContext !== '') {
    if (!isDnsLabel(fromContext)) throw new ConfigError('PODGATE_NAMESPACE', `unset, and the kubeconfig context namespace ${JSON.stringify(fromContext)} is not a valid name`)
    return fromContext
  }
  return DEFAULT_NAMESPACE
}

export interface Cluster {
  readonly kubeConfig: KubeConfig
  readonly namespace: string
  /** Where the credentials came from. */
  readonly source: KubeConfigSource
}

/** The cluster podgate talks to and the namespace it manages, resolved once at start. */
export function resolveCluster (configuredNamespace: string | undefined, environment: KubeEnvironment = {}): Cluster {
  const { kubeConfig, source } = loadKubeConfig(environment)
  const namespace = resolveNamespace({
    configured: configuredNamespace,
    kubeConfig,
    ...(environment.serviceAccountDir === undefined ? {} : { serviceAccountDir: environment.serviceAccountDir }),
  })
  return { kubeConfig, namespace, source }
}
