// The UserWorkload CRD the chart ships: names, printer columns, status subresource and a
// structural schema that enforces the data model (immutable DNS-1123 user, phase enum…).
import t from 'tap'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { isUserId, MAX_WORKLOAD_USER_LENGTH } from '../../src/kube/labels.ts'
import { CHART_DIR, parseManifests } from './chart.ts'

interface Schema {
  type?: string
  description?: string
  properties?: Record<string, Schema>
  items?: Schema
  additionalProperties?: Schema | boolean
  required?: string[]
  enum?: unknown[]
  pattern?: string
  format?: string
  default?: unknown
  maxLength?: number
  'x-kubernetes-validations'?: { rule: string, message?: string }[]
  'x-kubernetes-list-type'?: string
  'x-kubernetes-list-map-keys'?: string[]
  'x-kubernetes-preserve-unknown-fields'?: boolean
  'x-kubernetes-int-or-string'?: boolean
}

interface Crd {
  apiVersion: string
  metadata: { name: string }
  spec: {
    group: string
    scope: string
    names: { kind: string, listKind: string, plural: string, singular: string, shortNames: string[] }
    versions: {
      name: string
      served: boolean
      storage: boolean
      subresources?: { status?: object }
      additionalPrinterColumns: { name: string, type: string, jsonPath: string }[]
      schema: { openAPIV3Schema: Schema }
    }[]
  }
}

const text = await readFile(join(CHART_DIR, 'crds', 'userworkloads.yaml'), 'utf8')
const manifests = parseManifests(text)
t.equal(manifests.length, 1, 'one document')
const crd = manifests[0] as unknown as Crd
const version = crd.spec.versions[0]
if (version === undefined) throw new Error('the CRD has no version')
const root = version.schema.openAPIV3Schema

function at (schema: Schema, path: string): Schema {
  let node: Schema | undefined = schema
  for (const key of path.split('.')) node = key === '[]' ? node?.items : node?.properties?.[key]
  if (node === undefined) throw new Error(`no schema at ${path}`)
  return node
}

void t.test('names, scope and version', (t) => {
  t.equal(crd.apiVersion, 'apiextensions.k8s.io/v1')
  t.equal(crd.metadata.name, `${crd.spec.names.plural}.${crd.spec.group}`)
  t.equal(crd.metadata.name, 'userworkloads.podgate.dev')
  t.equal(crd.spec.scope, 'Namespaced')
  t.match(crd.spec.names, { kind: 'UserWorkload', listKind: 'UserWorkloadList', plural: 'userworkloads', singular: 'userworkload' })
  t.same(crd.spec.names.shortNames, ['uw'])
  t.same(crd.spec.versions.map((v) => [v.name, v.served, v.storage]), [['v1alpha1', true, true]])
  t.same(version.subresources, { status: {} }, 'status is a subresource (spec and status written separately)')
  t.end()
})

void t.test('printer columns: User, Phase, Ready, Age', (t) => {
  t.same(version.additionalPrinterColumns.map((c) => [c.name, c.type, c.jsonPath]), [
    ['User', 'string', '.spec.user'],
    ['Phase', 'string', '.status.phase'],
    ['Ready', 'integer', '.status.readyReplicas'],
    ['Age', 'date', '.metadata.creationTimestamp'],
  ])
  for (const column of version.additionalPrinterColumns.filter((c) => !c.jsonPath.startsWith('.metadata.'))) {
    const field = at(root, column.jsonPath.slice(1))
    t.equal(field.type, column.type, `${column.jsonPath} exists with the column's type`)
  }
  t.end()
})

void t.test('the schema is structural: every node has a type', (t) => {
  const untyped: string[] = []
  const walk = (node: Schema, path: string): void => {
    if (node.type === undefined && node['x-kubernetes-int-or-string'] !== true && node['x-kubernetes-preserve-unknown-fields'] !== true) untyped.push(path)
    for (const [key, child] of Object.entries(node.properties ?? {})) walk(child, `${path}.${key}`)
    if (node.items !== undefined) walk(node.items, `${path}[]`)
    if (typeof node.additionalProperties === 'object') walk(node.additionalProperties, `${path}{}`)
  }
  walk(root, '')
  t.same(untyped, [])
  t.same(root.required, ['spec'])
  t.same(at(root, 'spec').required, ['user'])
  t.end()
})

void t.test('spec.user: an immutable DNS-1123 label short enough for user-<id>, the same rule podgate applies', (t) => {
  const user = at(root, 'spec.user')
  t.equal(user.type, 'string')
  t.equal(user.maxLength, MAX_WORKLOAD_USER_LENGTH)
  t.same(user['x-kubernetes-validations'], [{ rule: 'self == oldSelf', message: 'spec.user is immutable' }])
  const pattern = new RegExp(user.pattern ?? '(?!)')
  const samples = ['alice', 'a', '7', 'user-42', 'a'.repeat(58), 'a'.repeat(59), 'a'.repeat(63), 'a'.repeat(64), 'Alice', '-alice', 'alice-', 'al_ice', 'al.ice', '', 'ålice', 'alice\n']
  for (const id of samples) {
    const accepted = pattern.test(id) && id.length <= (user.maxLength ?? Infinity) && id.length >= 1
    const podgateAccepts = isUserId(id)
    t.equal(accepted, podgateAccepts, `${JSON.stringify(id)}: CRD and podgate agree (${accepted ? 'valid' : 'invalid'})`)
  }
  t.end()
})

void t.test('spec.profile and spec.suspended', (t) => {
  t.equal(at(root, 'spec.profile').type, 'string')
  t.match(at(root, 'spec.suspended'), { type: 'boolean', default: false })
  t.end()
})

void t.test('status fields', (t) => {
  t.same(at(root, 'status.phase').enum, ['Pending', 'Starting', 'Ready', 'Suspended', 'Failed'])
  t.match(at(root, 'status.readyReplicas'), { type: 'integer', format: 'int32' })
  t.equal(at(root, 'status.serviceName').type, 'string')
  t.match(at(root, 'status.lastActivity'), { type: 'string', format: 'date-time' })
  t.equal(at(root, 'status.message').type, 'string')
  t.end()
})

void t.test('status.conditions has the metav1.Condition shape, keyed by type', (t) => {
  const conditions = at(root, 'status.conditions')
  t.equal(conditions.type, 'array')
  t.equal(conditions['x-kubernetes-list-type'], 'map')
  t.same(conditions['x-kubernetes-list-map-keys'], ['type'])
  const item = at(root, 'status.conditions.[]')
  t.same(item.required, ['type', 'status', 'lastTransitionTime', 'reason', 'message'])
  t.same(at(item, 'status').enum, ['True', 'False', 'Unknown'])
  t.match(at(item, 'lastTransitionTime'), { type: 'string', format: 'date-time' })
  t.match(at(item, 'observedGeneration'), { type: 'integer', format: 'int64' })
  const reason = new RegExp(at(item, 'reason').pattern ?? '(?!)')
  t.ok(reason.test('ImagePullBackOff') && reason.test('MinimumReplicasAvailable'), 'usual reasons are accepted')
  t.notOk(reason.test('image pull back-off'), 'free text is not a reason')
  t.end()
})
