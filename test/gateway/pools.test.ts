// Pools follow endpoints: created on first use, shared by every user that names the same
// endpoint, refused to new work and closed once no snapshot names it, in-flight finishing;
// each holds at most PODGATE_UPSTREAM_CONNECTIONS connections.
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { Agent, Pool, request } from 'undici'
import { LocalEndpointSource } from '../../src/local/endpoint-source.ts'
import { endpoint } from '../../src/discovery/source.ts'
import { EndpointPools } from '../../src/gateway/pools.ts'
import { createBackend } from '../../src/local/backend.ts'
import { startTestGateway } from '../support/gateway.ts'

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

void t.test('PODGATE_UPSTREAM_CONNECTIONS caps the connections to an endpoint; requests beyond them wait their turn', async (t) => {
  // A pod that answers each request after 100 ms and counts the connections it was given.
  const pod = createServer((req, res) => { setTimeout(() => { res.end(req.url) }, 100) })
  let opened = 0
  let open = 0
  let peak = 0
  pod.on('connection', (socket) => {
    opened++
    peak = Math.max(peak, ++open)
    socket.once('close', () => { open-- })
  })
  pod.listen(0, '127.0.0.1')
  await once(pod, 'listening')
  t.teardown(() => { pod.closeAllConnections(); pod.close() })
  const port = (pod.address() as AddressInfo).port
  const agent = new Agent({ connections: 16 })
  t.teardown(() => agent.close())

  // Six requests at once through a gateway of its own; the connections it opened to the pod, at most at once and in all.
  const burst = async (env: Record<string, string>): Promise<{ statuses: number[], peak: number, opened: number }> => {
    const [before, openBefore] = [opened, open]
    peak = open
    const gw = await startTestGateway(t, env)
    gw.local.set('alice', [endpoint('127.0.0.1', port)])
    const token = await gw.token('alice')
    const statuses = await Promise.all(Array.from({ length: 6 }, async (_, i) => {
      const res = await request(`${gw.url}/n${i}`, { dispatcher: agent, headers: { authorization: `Bearer ${token}` } })
      t.equal(await res.body.text(), `/n${i}`, 'each request got its own answer')
      return res.statusCode
    }))
    return { statuses, peak: peak - openBefore, opened: opened - before }
  }
  t.same(await burst({ PODGATE_UPSTREAM_CONNECTIONS: '2' }), { statuses: [200, 200, 200, 200, 200, 200], peak: 2, opened: 2 },
    'six at once over two connections, kept alive: none fails, never more than two to the pod')
  t.same(await burst({}), { statuses: [200, 200, 200, 200, 200, 200], peak: 6, opened: 6 }, 'the default (256) opens one per request in flight')
})
