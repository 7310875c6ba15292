// The environment the installed chart gives podgate's container, resolved the way the
// kubelet would (values, Secret keys, downward API fields, the profiles ConfigMap mounted as
// a file), so a local podgate process runs with exactly the chart's configuration.
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { KubeApi } from './cluster/kube-api.ts'

interface EnvVar {
  name: string
  value?: string
  valueFrom?: {
    secretKeyRef?: { name: string, key: string }
    configMapKeyRef?: { name: string, key: string }
    fieldRef?: { fieldPath: string }
  }
}

interface DeploymentObject {
  spec: { template: { spec: {
    containers: Array<{ name: string, env?: EnvVar[], volumeMounts?: Array<{ name: string, mountPath: string }> }>
    volumes?: Array<{ name: string, configMap?: { name: string } }>
  } } }
}

export interface ChartEnvironmentOptions {
  readonly api: KubeApi
  readonly namespace: string
  readonly deployment: string
  /** The pod name the downward API would give (metadata.name). */
  readonly podName: string
  /** Where ConfigMap volumes are written instead of their mount paths. */
  readonly dir: string
}

export async function chartEnvironment (options: ChartEnvironmentOptions): Promise<Record<string, string>> {
  const { api, namespace, dir } = options
  const deployment = await api.get<DeploymentObject>(`/apis/apps/v1/namespaces/${namespace}/deployments/${options.deployment}`)
  const pod = deployment.spec.template.spec
  const container = pod.containers.find((c) => c.name === 'podgate') ?? pod.containers[0]
  if (container === undefined) throw new Error(`deployment ${options.deployment} has no container`)

  const secrets = new Map<string, Record<string, string>>()
  const secretKey = async (name: string, key: string): Promise<string> => {
    let data = secrets.get(name)
    if (data === undefined) {
      data = (await api.get<{ data?: Record<string, string> }>(`/api/v1/namespaces/${namespace}/secrets/${name}`)).data ?? {}
      secrets.set(name, data)
    }
    const value = data[key]
    if (value === undefined) throw new Error(`secret ${name} has no key ${key}`)
    return Buffer.from(value, 'base64').toString('utf8')
  }
  const configMapKey = async (name: string, key: string): Promise<string> => {
    const data = (await api.get<{ data?: Record<string, string> }>(`/api/v1/namespaces/${namespace}/configmaps/${name}`)).data ?? {}
    const value = data[key]
    if (value === undefined) throw new Error(`configmap ${name} has no key ${key}`)
    return value
  }

  // ConfigMap volumes become local directories; paths in the env are rewritten to them.
  const mounts = new Map<string, string>()
  for (const mount of container.volumeMounts ?? []) {
    const volume = pod.volumes?.find((v) => v.name === mount.name)
    if (volume?.configMap === undefined) continue
    const local = join(dir, `volume-${mount.name}`)
    const data = (await api.get<{ data?: Record<string, string> }>(`/api/v1/namespaces/${namespace}/configmaps/${volume.configMap.name}`)).data ?? {}
    await mkdir(local, { recursive: true })
    for (const [file, text] of Object.entries(data)) await writeFile(join(local, file), text)
    mounts.set(mount.mountPath.replace(/\/$/, ''), local)
  }
  const localPath = (value: string): string => {
    for (const [mountPath, local] of mounts) {
      if (value === mountPath || value.startsWith(mountPath + '/')) return local + value.slice(mountPath.length)
    }
    return value
  }

  const env: Record<string, string> = {}
  for (const variable of container.env ?? []) {
    const from = variable.valueFrom
    if (from === undefined) env[variable.name] = localPath(variable.value ?? '')
    else if (from.secretKeyRef !== undefined) env[variable.name] = await secretKey(from.secretKeyRef.name, from.secretKeyRef.key)
    else if (from.configMapKeyRef !== undefined) env[variable.name] = await configMapKey(from.configMapKeyRef.name, from.configMapKeyRef.key)
    else if (from.fieldRef?.fieldPath === 'metadata.namespace') env[variable.name] = namespace
    else if (from.fieldRef?.fieldPath === 'metadata.name') env[variable.name] = options.podName
    else if (from.fieldRef?.fieldPath === 'status.podIP') env[variable.name] = '127.0.0.1'
    else throw new Error(`env ${variable.name}: a source the test cannot resolve: ${JSON.stringify(from)}`)
  }
  return env
}
