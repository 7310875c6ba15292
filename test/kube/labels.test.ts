// The naming contract: the DNS-1123 label rule for user ids and names, object names, the
// labels and selector, and that what templates.ts writes is what endpoint-slices.ts reads.
import type { V1Deployment, V1Service } from '@kubernetes/client-node'
import t from 'tap'
import { BUILTIN_PROFILE, parseProfiles, type Profile } from '../../src/controller/profiles.ts'
import { desiredChildren } from '../../src/controller/templates.ts'
import { EndpointIndex, type EndpointSliceLike } from '../../src/discovery/endpoint-slices.ts'
import { endpoint } from '../../src/discovery/source.ts'
import {
  DNS_LABEL, HTTP_PORT_NAME, isDnsLabel, isUserId, MANAGED_BY, MANAGED_BY_LABEL, MANAGED_BY_SELECTOR, MAX_DNS_LABEL_LENGTH,
  MAX_WORKLOAD_USER_LENGTH, USER_LABEL, userIdProblem, workloadName,
} from '../../src/kube/labels.ts'
import { parseLabelSelector } from '../support/fake-kube-selector.ts'

void t.test('DNS labels and user ids at the limits', (t) => {
  // [value, a DNS label (what a token may carry), a user id (what may get a workload)]
  const cases: Array<[string, boolean, boolean]> = [
    ['a', true, true],
    ['0', true, true],
    ['alice', true, true],
    ['user-42', true, true],
    ['a-b-c', true, true],
    ['a--b', true, true],
    ['9lives', true, true],
    ['x'.repeat(58), true, true],
    ['x'.repeat(59), true, false],
    ['x'.repeat(63), true, false],
    ['x'.repeat(64), false, false],
    ['', false, false],
    ['-', false, false],
    ['-alice', false, false],
    ['alice-', false, false],
    ['A', false, false],
    ['Alice', false, false],
    ['aLICE', false, false],
    ['alice_b', false, false],
    ['alice.b', false, false],
    [' alice', false, false],
    ['alice ', false, false],
    ['alice\n', false, false],
    ['bob\u0000', false, false],
    ['../bob', false, false],
    ['user@example', false, false],
    ['\u0430lice', false, false], // Cyrillic а
    ['ａlice', false, false], // fullwidth a
    ['alice\u200b', false, false], // zero-width space
    ['alice\u2010b', false, false], // Unicode hyphen
    ['\u00e9', false, false],
    ['ålice', false, false],
  ]
  for (const [value, dnsLabel, userId] of cases) {
    const name = value.length > 12 ? `${value.length} × ${JSON.stringify(value[0])}` : JSON.stringify(value)
    t.equal(isDnsLabel(value), dnsLabel, `${name} ${dnsLabel ? 'is' : 'is not'} a DNS label`)
    t.equal(DNS_LABEL.test(value), dnsLabel, `${name}: the exported pattern agrees`)
    t.equal(isUserId(value), userId, `${name} ${userId ? 'is' : 'is not'} a user id`)
    t.equal(userIdProblem(value) === undefined, userId, `${name}: userIdProblem agrees`)
  }
  for (const value of [undefined, null, 42, ['alice'], { toString: () => 'alice' }]) {
    t.notOk(isDnsLabel(value), `not a string: ${JSON.stringify(value)}`)
    t.notOk(isUserId(value), `not a string: ${JSON.stringify(value)}`)
  }
  t.end()
})

void t.test('userIdProblem says which rule an id breaks', (t) => {
  t.equal(MAX_DNS_LABEL_LENGTH, 63)
  t.equal(MAX_WORKLOAD_USER_LENGTH, 58)
  t.equal(userIdProblem('a'.repeat(59)), 'at most 58 characters (user-<id> names a Kubernetes Service), got 59')
  t.equal(userIdProblem('a'.repeat(63)), 'at most 58 characters (user-<id> names a Kubernetes Service), got 63')
  t.equal(userIdProblem('Alice'), 'expected a DNS-1123 label: lowercase letters, digits and \'-\', starting and ending with a letter or digit')
  t.equal(userIdProblem(42), 'expected a DNS-1123 label: lowercase letters, digits and \'-\', starting and ending with a letter or digit')
  t.end()
})

void t.test('workloadName: user-<id>, a DNS label for every user id', (t) => {
  t.equal(workloadName('alice'), 'user-alice')
  const longest = 'a'.repeat(MAX_WORKLOAD_USER_LENGTH)
  t.equal(workloadName(longest).length, 63)
  t.ok(isDnsLabel(workloadName(longest)), 'the longest user id still names a Service')
  t.notOk(isDnsLabel(workloadName(`${longest}a`)), 'one more character would not')
  t.end()
})

void t.test('the labels, port name and selector on the wire', (t) => {
  // Renaming any of these orphans every existing workload: they are part of the contract.
  t.equal(MANAGED_BY_LABEL, 'app.kubernetes.io/managed-by')
  t.equal(MANAGED_BY, 'podgate')
  t.equal(USER_LABEL, 'podgate.dev/user')
  t.equal(HTTP_PORT_NAME, 'http')
  t.equal(MANAGED_BY_SELECTOR, 'app.kubernetes.io/managed-by=podgate')
  const selects = parseLabelSelector(MANAGED_BY_SELECTOR)
  t.ok(selects({ [MANAGED_BY_LABEL]: MANAGED_BY, [USER_LABEL]: 'alice' }))
  t.notOk(selects({ [MANAGED_BY_LABEL]: 'helm', [USER_LABEL]: 'alice' }))
  t.notOk(selects({ [USER_LABEL]: 'alice' }))
  t.end()
})

/** What the EndpointSlice controller writes for `service` with one ready pod of `deployment` at `ip`. */
function sliceLikeTheController (service: V1Service, deployment: V1Deployment, ip: string): EndpointSliceLike {
  const pod = deployment.spec?.template
  const podLabels = pod?.metadata?.labels ?? {}
  const selected = Object.entries(service.spec?.selector ?? {}).every(([key, value]) => podLabels[key] === value)
  const containerPorts = (pod?.spec?.containers ?? []).flatMap((c) => c.ports ?? [])
  return {
    metadata: {
      name: `${service.metadata?.name ?? ''}-abcde`,
      namespace: service.metadata?.namespace ?? '',
      resourceVersion: '1',
      // The Service's labels, plus the two the controller sets itself.
      labels: { ...service.metadata?.labels, 'kubernetes.io/service-name': service.metadata?.name ?? '', 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' },
    },
    addressType: 'IPv4',
    endpoints: selected ? [{ addresses: [ip], conditions: { ready: true, terminating: false } }] : [],
    ports: (service.spec?.ports ?? []).map((port) => ({
      name: port.name ?? null,
      // A named targetPort resolves to the pod's container port of that name.
      port: typeof port.targetPort === 'string' ? containerPorts.find((c) => c.name === port.targetPort)?.containerPort ?? null : port.targetPort ?? port.port,
      protocol: port.protocol ?? 'TCP',
    })),
  }
}

void t.test('writer and reader agree: a Service from templates.ts is found and indexed under its user', (t) => {
  const custom = parseProfiles('custom:\n  image: app:1\n  port: 9000\n').get('custom') as Profile
  const users: Array<[string, Profile, string]> = [['alice', custom, '10.0.0.5'], ['a'.repeat(MAX_WORKLOAD_USER_LENGTH), BUILTIN_PROFILE, '10.0.0.6']]
  const index = new EndpointIndex((slice, problem) => { t.fail(`${slice}: ${problem}`) })
  const selects = parseLabelSelector(MANAGED_BY_SELECTOR)
  for (const [user, profile, ip] of users) {
    const { deployment, service } = desiredChildren({ user, suspended: false, owner: { name: workloadName(user), uid: `uid-${user}` }, profile }, { namespace: 'apps' })
    t.ok(selects(service.metadata?.labels), 'the Service carries what the gateway selects')
    const slice = sliceLikeTheController(service, deployment, ip)
    t.ok(selects(slice.metadata?.labels), 'and so does its EndpointSlice')
    t.equal(slice.endpoints?.length, 1, 'the Service selects the Deployment\'s pods')
    index.upsert(slice)
  }
  const snapshot = index.apply(new Map())
  t.same([...snapshot.keys()].sort(), users.map(([user]) => user).sort())
  t.same(snapshot.get('alice'), [endpoint('10.0.0.5', 9000)], 'the profile\'s port, through the http port name')
  t.same(snapshot.get('a'.repeat(MAX_WORKLOAD_USER_LENGTH)), [endpoint('10.0.0.6', BUILTIN_PROFILE.port)])
  t.end()
})
