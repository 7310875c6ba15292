// The pure part of Kubernetes discovery: reading slices, indexing them, building snapshots.
import t from 'tap'
import { EndpointIndex, readSlice, type EndpointSliceLike } from '../../src/discovery/endpoint-slices.ts'
import { changedUsers, endpoint, type EndpointSnapshot } from '../../src/discovery/source.ts'
import { backoffDelay } from '../../src/kube/informer.ts'
import { sliceFor } from '../support/fake-kube.ts'

function slice (user: string, addresses: string[], options: Parameters<typeof sliceFor>[2] = {}): EndpointSliceLike {
  return sliceFor(user, addresses, options)
}

function withVersion (s: EndpointSliceLike, resourceVersion: string): EndpointSliceLike {
  return { ...s, metadata: { ...s.metadata, resourceVersion } }
}

void t.test('readSlice: which endpoints and which port', (t) => {
  const cases: Array<[string, EndpointSliceLike, string[] | undefined, RegExp | undefined]> = [
    ['ready endpoints on the http port', slice('a', ['10.0.0.1', '10.0.0.2']), ['http://10.0.0.1:8080', 'http://10.0.0.2:8080'], undefined],
    ['ready unset means ready', slice('a', ['10.0.0.1'], { ready: null }), ['http://10.0.0.1:8080'], undefined],
    ['not ready', slice('a', ['10.0.0.1'], { ready: false }), [], undefined],
    ['serving but terminating', slice('a', ['10.0.0.1'], { ready: false, terminating: true }), [], undefined],
    ['ready but terminating (publishNotReadyAddresses)', slice('a', ['10.0.0.1'], { ready: true, terminating: true }), [], undefined],
    ['IPv6 is bracketed', slice('a', ['fd00::1']), ['http://[fd00::1]:8080'], undefined],
    ['the http port among several', slice('a', ['10.0.0.1'], { portName: 'metrics', port: 9090, extraPorts: [{ name: 'http', port: 80 }] }), ['http://10.0.0.1:80'], undefined],
    ['the only port, unnamed', slice('a', ['10.0.0.1'], { portName: null, port: 3000 }), ['http://10.0.0.1:3000'], undefined],
    ['the only port, named otherwise', slice('a', ['10.0.0.1'], { portName: 'web', port: 3000 }), ['http://10.0.0.1:3000'], undefined],
    ['several ports, none http', slice('a', ['10.0.0.1'], { portName: 'web', extraPorts: [{ name: 'admin', port: 81 }] }), undefined, /none is named "http"/],
    ['no ports', { ...slice('a', ['10.0.0.1']), ports: [] }, undefined, /no ports/],
    ['ports null (a headless Service without ports)', { ...slice('a', ['10.0.0.1']), ports: null }, undefined, /no ports/],
    ['port without a number', { ...slice('a', ['10.0.0.1']), ports: [{ name: 'http', port: null }] }, undefined, /not a usable TCP port/],
    ['UDP http port', { ...slice('a', ['10.0.0.1']), ports: [{ name: 'http', port: 80, protocol: 'UDP' }] }, undefined, /not a usable TCP port/],
    ['FQDN slices', slice('a', ['example.com'], { addressType: 'FQDN' }), undefined, /FQDN/],
    ['no user label', slice('a', ['10.0.0.1'], { labels: { 'podgate.dev/user': undefined } }), undefined, /podgate\.dev\/user/],
    ['a garbage address is skipped', slice('a', ['10.0.0.1', 'not-an-ip']), ['http://10.0.0.1:8080'], /1 address/],
    ['no endpoints at all', { ...slice('a', []), endpoints: null }, [], undefined],
    ['an endpoint without addresses', { ...slice('a', []), endpoints: [{ conditions: { ready: true } }] }, [], undefined],
  ]
  for (const [name, input, origins, problem] of cases) {
    const reading = readSlice(input)
    t.same(reading.route?.endpoints.map((e) => e.origin), origins, `${name}: endpoints`)
    if (problem === undefined) t.equal(reading.problem, undefined, `${name}: no problem`)
    else t.match(reading.problem, problem, `${name}: problem`)
  }
  t.equal(readSlice(slice('alice', ['10.0.0.1'], { service: 'svc' })).route?.service, 'svc')
  t.end()
})

void t.test('EndpointIndex: incremental snapshots', (t) => {
  const problems: string[] = []
  const index = new EndpointIndex((key, problem) => problems.push(`${key}: ${problem}`))
  const empty: EndpointSnapshot = new Map()
  t.equal(index.apply(empty), empty, 'nothing pending: the same snapshot')

  index.upsert(withVersion(slice('alice', ['10.0.0.1'], { name: 'a1' }), '1'))
  index.upsert(withVersion(slice('alice', ['10.0.0.1', '10.0.0.2'], { name: 'a2' }), '2'))
  index.upsert(withVersion(slice('bob', ['10.0.0.9'], { name: 'b1', ready: false }), '3'))
  t.equal(index.pending, true)
  const first = index.apply(empty)
  t.same([...first.keys()], ['alice', 'bob'])
  t.same(first.get('bob'), [], 'a user with slices but no ready endpoint is known, with an empty list')
  t.same(first.get('alice'), [endpoint('10.0.0.1', 8080), endpoint('10.0.0.2', 8080)])
  t.ok(Object.isFrozen(first.get('alice')), 'endpoint lists are frozen')
  t.equal(index.sliceCount, 3)

  index.upsert(withVersion(slice('alice', ['10.0.0.1'], { name: 'a1' }), '1'))
  t.equal(index.apply(first), first, 'the same resourceVersion again changes nothing')
  index.upsert(withVersion(slice('alice', ['10.0.0.1'], { name: 'a1', port: 8080 }), '4'))
  t.equal(index.apply(first), first, 'a new resourceVersion with the same endpoints keeps the snapshot')

  index.upsert(withVersion(slice('bob', ['10.0.0.9'], { name: 'b1' }), '5'))
  const second = index.apply(first)
  t.not(second, first)
  t.equal(second.get('alice'), first.get('alice'), 'unchanged users keep their list (same reference)')
  t.same(changedUsers(first, second), new Set(['bob']))

  index.upsert(withVersion(slice('carol', ['10.0.0.7'], { name: 'b1' }), '6'))
  const moved = index.apply(second)
  t.equal(moved.has('bob'), false, 'a slice relabelled to another user leaves the first user')
  t.same(moved.get('carol'), [endpoint('10.0.0.7', 8080)])

  index.upsert(withVersion(slice('carol', ['10.0.0.7'], { name: 'b1', labels: { 'podgate.dev/user': undefined } }), '7'))
  const dropped = index.apply(moved)
  t.equal(dropped.has('carol'), false, 'a slice that loses its user label is dropped')
  t.match(problems, [/default\/b1: no podgate\.dev\/user label/])

  index.replace([withVersion(slice('alice', ['10.0.0.3'], { name: 'a2' }), '8')])
  const replaced = index.apply(dropped)
  t.same([...replaced.keys()], ['alice'], 'replace drops every slice not in the list')
  t.same(replaced.get('alice'), [endpoint('10.0.0.3', 8080)])
  t.equal(index.sliceCount, 1)

  index.remove(slice('alice', [], { name: 'a2' }))
  index.remove(slice('nobody', [], { name: 'never-seen' }))
  t.equal(index.apply(replaced).size, 0)
  t.end()
})

void t.test('backoffDelay: exponential, capped, half jitter', (t) => {
  const backoff = { initialMs: 100, maxMs: 1000 }
  t.same([0, 1, 2, 3, 4, 10, 100].map((n) => backoffDelay(n, backoff, () => 0)), [50, 100, 200, 400, 500, 500, 500])
  t.same([0, 1, 2, 3, 4].map((n) => backoffDelay(n, backoff, () => 1)), [100, 200, 400, 800, 1000])
  t.equal(backoffDelay(2, backoff, () => 0.5), 300)
  t.end()
})

void t.test('EndpointIndex over namespaces: one contested user, the oldest namespace, a scoped replace', (t) => {
  const conflicts: unknown[] = []
  const index = new EndpointIndex(undefined, (conflict) => conflicts.push(conflict))
  const at = (s: EndpointSliceLike, creationTimestamp: Date | string | undefined): EndpointSliceLike => ({ ...s, metadata: { ...s.metadata, creationTimestamp } })
  index.upsert(at(slice('alice', ['10.0.3.1'], { name: 'alice', namespace: 'team-c' }), undefined))
  index.upsert(at(slice('alice', ['10.0.2.1'], { name: 'alice', namespace: 'team-b' }), '2026-01-01T00:00:10Z'))
  index.upsert(at(slice('alice', ['10.0.1.1'], { name: 'alice', namespace: 'team-a' }), new Date('2026-01-01T00:00:10Z')))
  index.upsert(at(slice('bob', ['10.0.2.2'], { name: 'bob', namespace: 'team-b' }), '2026-01-01T00:00:00Z'))
  let snapshot = index.apply(new Map())
  t.same(snapshot.get('alice'), [endpoint('10.0.1.1', 8080)], 'equal ages (a Date from a list, a string from a watch): the first name; no age counts as the newest')
  t.equal(index.namespaceOf('alice'), 'team-a')
  t.equal(index.usersInSeveralNamespaces, 1)
  t.same(conflicts, [{ user: 'alice', routed: 'team-a', ignored: ['team-b', 'team-c'] }])

  index.replace([at(slice('bob', ['10.0.2.2'], { name: 'bob', namespace: 'team-b' }), '2026-01-01T00:00:00Z')], 'team-b')
  snapshot = index.apply(snapshot)
  t.equal(index.namespaceOf('alice'), 'team-a', 'team-b\'s list drops team-b\'s alice slice only')
  t.same(index.changed, new Set(), 'and changes no route')
  index.replace([], 'team-a')
  snapshot = index.apply(snapshot)
  t.same(snapshot.get('alice'), [endpoint('10.0.3.1', 8080)], 'team-c takes over')
  t.same(snapshot.get('bob'), [endpoint('10.0.2.2', 8080)])
  t.equal(index.usersInSeveralNamespaces, 0)
  t.equal(conflicts.length, 1, 'no warning once the conflict is gone')
  t.end()
})

void t.test('EndpointIndex: a user moved to another namespace with the same endpoints is a change (the tenant check reads it)', (t) => {
  const index = new EndpointIndex()
  index.upsert(slice('alice', ['10.0.0.1'], { name: 'alice', namespace: 'team-a' }))
  let snapshot = index.apply(new Map())
  t.equal(index.namespaceOf('alice'), 'team-a')
  index.remove(slice('alice', ['10.0.0.1'], { name: 'alice', namespace: 'team-a' }))
  index.upsert(slice('alice', ['10.0.0.1'], { name: 'alice', namespace: 'team-b' }))
  const before = snapshot
  snapshot = index.apply(snapshot)
  t.same(snapshot.get('alice'), before.get('alice'), 'the same endpoints')
  t.equal(index.namespaceOf('alice'), 'team-b')
  t.same(index.changed, new Set(['alice']), 'reported as changed, so listeners and gateway workers learn the namespace')
  t.end()
})
