import t from 'tap'
import { LocalEndpointSource } from '../../src/local/endpoint-source.ts'
import { endpoint, type EndpointChange } from '../../src/discovery/source.ts'

void t.test('synced resolves on start', async (t) => {
  const source = new LocalEndpointSource()
  t.equal(source.isSynced, false)
  let resolved = false
  void source.synced.then(() => { resolved = true })
  await Promise.resolve()
  t.equal(resolved, false, 'not synced before start')
  await source.start()
  await source.synced
  t.equal(source.isSynced, true)
  await source.close()
})

void t.test('each change publishes a new snapshot and names the changed users', async (t) => {
  const source = new LocalEndpointSource()
  await source.start()
  const changes: EndpointChange[] = []
  const unsubscribe = source.onChange((change) => { changes.push(change) })
  t.teardown(unsubscribe)

  const first = source.snapshot
  t.equal(first.size, 0)

  const alice = endpoint('127.0.0.1', 40001)
  source.set('alice', [alice])
  const second = source.snapshot
  t.not(second, first, 'a new map is published')
  t.equal(first.size, 0, 'the previous snapshot is left unchanged')
  t.same(second.get('alice'), [alice])
  t.equal(changes.length, 1)
  t.same([...changes[0]?.users ?? []], ['alice'])
  t.equal(changes[0]?.snapshot, second)

  source.set('bob', [])
  t.same([...changes[1]?.users ?? []], ['bob'], 'only bob changed')
  t.same(source.snapshot.get('bob'), [], 'a user with no ready endpoint stays known')
  t.same(source.snapshot.get('alice'), [alice], 'alice is carried over')

  source.set('alice', [alice])
  t.equal(changes.length, 2, 'setting the same endpoints again notifies nobody')

  const moved = endpoint('127.0.0.1', 40002)
  source.set('alice', [moved, alice])
  t.same([...changes[2]?.users ?? []], ['alice'])
  t.same(source.snapshot.get('alice')?.map((e) => e.port), [40002, 40001])

  const beforeDelete = source.snapshot
  source.delete('alice')
  t.equal(source.snapshot.has('alice'), false)
  t.equal(beforeDelete.has('alice'), true, 'old snapshot still has alice')
  t.same([...changes[3]?.users ?? []], ['alice'])

  source.delete('alice')
  source.delete('nobody')
  t.equal(changes.length, 4, 'deleting an unknown user notifies nobody')

  unsubscribe()
  source.set('carol', [alice])
  t.equal(changes.length, 4, 'an unsubscribed listener hears nothing')
  await source.close()
})

void t.test('published lists cannot be changed by the caller', async (t) => {
  const source = new LocalEndpointSource()
  const list = [endpoint('127.0.0.1', 40001)]
  source.set('alice', list)
  list.push(endpoint('127.0.0.1', 40002))
  t.equal(source.snapshot.get('alice')?.length, 1, 'the caller\'s array was copied')
  t.ok(Object.isFrozen(source.snapshot.get('alice')))
  await source.close()
})

void t.test('bad input is a TypeError naming the argument', async (t) => {
  const source = new LocalEndpointSource()
  t.throws(() => { source.set('', []) }, { name: 'TypeError', message: /^user:/ })
  t.throws(() => { source.set('alice', 'x' as never) }, { name: 'TypeError', message: /^endpoints:/ })
  t.throws(() => { source.set('alice', [{ address: '127.0.0.1', port: 1 }] as never) }, { name: 'TypeError', message: /^endpoints\[0\]:/ })
  t.throws(() => { source.set('alice', [null] as never) }, { name: 'TypeError', message: /^endpoints\[0\]:/ })
  t.throws(() => { source.delete(42 as never) }, { name: 'TypeError', message: /^user:/ })
  t.equal(source.snapshot.size, 0, 'nothing was published')
  await source.close()
})
