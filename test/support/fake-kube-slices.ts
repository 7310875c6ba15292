// EndpointSlices shaped like the ones the EndpointSlice controller writes for a podgate
// user's Service (labels inherited from the Service, one endpoint per pod).
import { randomBytes } from 'node:crypto'
import { SERVICE_NAME_LABEL } from '../../src/discovery/endpoint-slices.ts'
import { HTTP_PORT_NAME, MANAGED_BY, MANAGED_BY_LABEL, USER_LABEL, workloadName } from '../../src/kube/labels.ts'
import type { KubeObject } from './fake-kube-types.ts'

export interface SliceOptions {
  /** `conditions.ready` of every endpoint; `null` leaves it unset (which means ready). Default true. */
  ready?: boolean | null
  terminating?: boolean
  namespace?: string
  /** Service the slice belongs to. Default `user-<user>`. */
  service?: string
  /** Slice name. Default `<service>-<random>`, like the controller's generateName. */
  name?: string
  port?: number
  /** Port name; `null` leaves it unnamed. Default `http`. */
  portName?: string | null
  /** Extra ports after the main one. */
  extraPorts?: Array<{ name?: string, port: number, protocol?: string }>
  addressType?: 'IPv4' | 'IPv6' | 'FQDN'
  /** Extra labels (or overrides, `undefined` removes one). */
  labels?: Record<string, string | undefined>
}

/** A discovery.k8s.io/v1 EndpointSlice routing `user` to `addresses`. */
export function sliceFor (user: string, addresses: readonly string[], options: SliceOptions = {}): KubeObject {
  const service = options.service ?? workloadName(user)
  const namespace = options.namespace ?? 'default'
  const ready = options.ready === undefined ? true : options.ready
  const terminating = options.terminating ?? false
  const labels: Record<string, string> = {
    [MANAGED_BY_LABEL]: MANAGED_BY,
    [USER_LABEL]: user,
    [SERVICE_NAME_LABEL]: service,
    'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io',
  }
  for (const [key, value] of Object.entries(options.labels ?? {})) {
    if (value === undefined) delete labels[key]
    else labels[key] = value
  }
  const portName = options.portName === undefined ? HTTP_PORT_NAME : options.portName
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: options.name ?? `${service}-${randomBytes(3).toString('hex')}`,
      namespace,
      labels,
      ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: service, uid: `service-${service}`, controller: true, blockOwnerDeletion: true }],
    },
    addressType: options.addressType ?? (addresses.some((a) => a.includes(':')) ? 'IPv6' : 'IPv4'),
    endpoints: addresses.map((address, index) => ({
      addresses: [address],
      conditions: {
        ...(ready === null ? {} : { ready }),
        serving: ready !== false || terminating,
        terminating,
      },
      nodeName: 'node-1',
      targetRef: { kind: 'Pod', namespace, name: `${service}-pod-${index}` },
    })),
    ports: [
      { ...(portName === null ? {} : { name: portName }), port: options.port ?? 8080, protocol: 'TCP' },
      ...(options.extraPorts ?? []).map((p) => ({ ...p, protocol: p.protocol ?? 'TCP' })),
    ],
  }
}
