// The primary ↔ worker wire format, and the worker's relayed endpoint source.
import t from 'tap'
import { endpoint } from '../../src/discovery/source.ts'
import { BadRequestError, DrainingError, NotReadyError, PodgateError, UpstreamError, WorkloadFailedError, WorkloadNotFoundError } from '../../src/errors.ts'
import { fromWireError, toWireError, toWireRoutes } from '../../src/workers/messages.ts'
import { RelayedSource } from '../../src/workers/relayed-source.ts'
import { defaultRestartDelay } from '../../src/workers/supervisor.ts'

void t.test('errors a spawn answer can carry cross the wire with their class, status and details', (t) => {
  const cases: Array<[PodgateError, number]> = [
    [new NotReadyError('starting', 7, { page: '<p>starting</p>' }), 503],
    [new WorkloadFailedError('ImagePullBackOff: no such image', { page: '<p>failed</p>' }), 503],
    [new WorkloadNotFoundError('no workload for this user'), 404],
    [new DrainingError('draining'), 503],
    [new BadRequestError('bad user'), 400],
  ]
  for (const [original, status] of cases) {
    const copy = fromWireError(structuredClone(toWireError(original)))
    t.equal(copy.constructor, original.constructor, original.name)
    t.equal(copy.status, status)
    t.equal(copy.message, original.message)
    t.equal(copy.page, original.page)
    t.equal((copy as { retryAfterSeconds?: number }).retryAfterSeconds, (original as { retryAfterSeconds?: number }).retryAfterSeconds)
  }
  t.end()
})

void t.test('anything else becomes a plain internal error, without its message', (t) => {
  for (const err of [new Error('secret detail at /etc/x'), new UpstreamError('connect', 'upstream unreachable'), 'a string', undefined]) {
    const copy = fromWireError(toWireError(err))
    t.equal(copy.constructor, PodgateError)
    t.equal(copy.status, 500)
    t.equal(copy.message, 'internal error')
  }
  t.equal(fromWireError({ name: 'constructor', message: 'x' }).message, 'internal error', 'names are looked up as own keys only')
  t.end()
})

void t.test('a relayed source starts from the full table and applies changed users only', async (t) => {
  const full = new Map([
    ['alice', [endpoint('10.0.0.1', 8080), endpoint('10.0.0.2', 8080)]],
    ['bob', []],
    ['carol', [endpoint('fd00::3', 8888)]],
  ])
  const source = new RelayedSource(structuredClone(toWireRoutes(full)), false)
  t.equal(source.isSynced, false)
  t.same([...source.snapshot.keys()], ['alice', 'bob', 'carol'])
  t.equal(source.snapshot.get('carol')?.[0]?.origin, 'http://[fd00::3]:8888')
  t.equal(source.routableUsers, 2)
  t.equal(source.endpointCount, 3)

  const changes: string[][] = []
  source.onChange(({ users }) => { changes.push([...users]) })
  const before = source.snapshot
  const next = new Map(full)
  next.delete('alice')
  next.set('bob', [endpoint('10.0.0.9', 8080)])
  source.apply(structuredClone(toWireRoutes(next, ['alice', 'bob'])))
  t.same(changes, [['alice', 'bob']])
  t.not(source.snapshot, before, 'a new snapshot, the old one untouched')
  t.equal(before.get('alice')?.length, 2)
  t.equal(source.snapshot.has('alice'), false)
  t.equal(source.snapshot.get('bob')?.[0]?.origin, 'http://10.0.0.9:8080')
  t.equal(source.snapshot.get('carol'), before.get('carol'), 'unchanged users keep their list')
  t.equal(source.routableUsers, 2)
  t.equal(source.endpointCount, 2)

  source.markSynced()
  await source.synced
  t.equal(source.isSynced, true)
})

void t.test('restart delay: at once after a first death, then doubling to 30 s', (t) => {
  t.same([0, 1, 2, 3, 4, 7, 20].map(defaultRestartDelay), [0, 0, 1000, 2000, 4000, 30_000, 30_000])
  t.end()
})

void t.test('routes carry the namespace each user is routed from, and a relayed source answers namespaceOf', (t) => {
  const full = new Map([
    ['alice', [endpoint('10.0.0.1', 8080)]],
    ['bob', [endpoint('10.0.1.1', 8080)]],
    ['carol', [endpoint('10.0.2.1', 8080)]],
  ])
  const namespaces = new Map([['alice', 'team-a'], ['bob', 'team-b'], ['carol', 'team-a']])
  const asked: string[] = []
  const namespaceOf = (user: string): string | undefined => { asked.push(user); return namespaces.get(user) }
  t.same(toWireRoutes(full, ['alice'], { namespaceOf }), [['alice', [['10.0.0.1', 8080]], 'team-a']])
  t.same(toWireRoutes(full, ['alice']), [['alice', [['10.0.0.1', 8080]]]], 'no namespaces: the entry is as before')
  const source = new RelayedSource(structuredClone(toWireRoutes(full, undefined, { namespaceOf })), true)
  t.equal(source.namespaceOf('alice'), 'team-a')
  t.equal(source.namespaceOf('bob'), 'team-b')

  asked.length = 0
  const next = new Map(full)
  next.delete('alice')
  namespaces.delete('alice')
  namespaces.set('bob', 'team-c')
  const changes: string[][] = []
  source.onChange(({ users }) => { changes.push([...users]) })
  source.apply(structuredClone(toWireRoutes(next, ['alice', 'bob'], { namespaceOf })))
  t.same(asked, ['bob'], 'only the changed users still routed are looked up')
  t.same(changes, [['alice', 'bob']])
  t.equal(source.namespaceOf('alice'), undefined, 'a user who left has no namespace')
  t.equal(source.namespaceOf('bob'), 'team-c', 'a user now routed from another namespace')
  t.equal(source.namespaceOf('carol'), 'team-a', 'an unchanged user keeps its namespace')

  source.apply(structuredClone(toWireRoutes(next, ['carol'])))
  t.equal(source.namespaceOf('carol'), undefined, 'an entry without a namespace clears it: the tenant check then fails closed')
  t.end()
})
