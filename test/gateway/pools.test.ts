// Pools follow endpoints: created on first use, shared by every user that names the same
// endpoint, refused to new work and closed once no snapshot names it, in-flight finishing.
import t from 'tap'
import { Pool, request } from 'undici'
import { LocalEndpointSource } from '../../src/local/endpoint-source.ts'
import { endpoint } from '../../src/discovery/source.ts'
import { EndpointPools } from '../../src/gateway/pools.ts'
import { createBackend } from '../../src/local/backend.ts'

void t.test('a pool per endpoint, created on first use and closed after its endpoint leaves', async (t) => {
  const backend = await createBackend({ user: 'alice' })
  t.teardown(() => backend.close())
  const source = new LocalEndpointSource()
  await source.start()
  const created: Pool[] = []
  const pools = new EndpointPools(source, { connectTimeoutMs: 1000, headersTimeoutMs: 5000, bodyTimeoutMs: 5000 }, (origin, options) => {
    const pool = new Pool(origin, options)
    created.push(pool)
    return pool
  })
  t.teardown(() => pools.destroy())
  const alive = endpoint('127.0.0.1', backend.address.port)

  t.equal(pools.get(alive.origin), undefined, 'no pool for an endpoint no snapshot names')
  source.set('alice', [alive])
  source.set('alice-too', [alive])
  t.equal(created.length, 0, 'nothing is created before first use')
  const pool = pools.get(alive.origin)
  t.ok(pool)
  t.equal(pools.get(alive.origin), pool, 'one long-lived pool per endpoint')
  t.equal(created.length, 1)

  const slow = request(`${alive.origin}/slow?ms=300`, { dispatcher: pool! })
  await new Promise((resolve) => setTimeout(resolve, 50))
  source.delete('alice')
  t.equal(pools.get(alive.origin), pool, 'still named by another user: kept')
  t.equal(pool!.closed, false)

  source.delete('alice-too')
  t.equal(pools.get(alive.origin), undefined, 'gone from every snapshot: no longer handed out')
  t.equal(pool!.closed, true, 'closed to new requests at once')
  const res = await slow
  t.equal(res.statusCode, 200, 'the in-flight request finished on the closing pool')
  await res.body.dump()
  await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(pool!.destroyed, true, 'and the pool is gone once it has')

  source.set('alice', [alive])
  const again = pools.get(alive.origin)
  t.not(again, pool, 'an endpoint that comes back gets a new pool on first use')
  t.equal(created.length, 2)
  t.equal(pools.size, 1)
})
