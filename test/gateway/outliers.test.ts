// Outlier ejection through forward(): real pods on port 0, a port with nothing listening, and a
// ManualClock for the backoffs, so no test waits for one.
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { request } from 'undici'
import { endpoint, type Endpoint } from '../../src/discovery/source.ts'
import { forward, type ForwardTarget } from '../../src/gateway/forward.ts'
import { EndpointOutliers } from '../../src/gateway/outliers.ts'
import { EndpointPools } from '../../src/gateway/pools.ts'
import { GatewayResponse } from '../../src/gateway/response.ts'
import { LocalEndpointSource } from '../../src/local/endpoint-source.ts'
import { Metrics } from '../../src/metrics.ts'
import { ManualClock } from '../support/manual-clock.ts'
import { startTestGateway } from '../support/gateway.ts'

interface Teardown { teardown (fn: () => unknown): void }

interface Pod {
  readonly endpoint: Endpoint
  /** Requests it answered. */
  hits: number
  /** Answer 500 instead of 200. */
  failing: boolean
}

async function listen (t: Teardown, server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve) }))
  return (server.address() as AddressInfo).port
}

async function pod (t: Teardown, failing = false): Promise<Pod> {
  const state = { hits: 0, failing }
  const server = createServer((_req, res) => {
    state.hits++
    res.statusCode = state.failing ? 500 : 200
    res.end(state.failing ? 'broken' : 'ok')
  })
  const port = await listen(t, server)
  return Object.assign(state, { endpoint: endpoint('127.0.0.1', port) })
}

/** An endpoint with nothing listening: connections are refused. */
async function refusing (): Promise<Endpoint> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return endpoint('127.0.0.1', port)
}

/** A gateway reduced to forward(): every request goes to alice's endpoints. */
async function gateway (t: Teardown, endpoints: readonly Endpoint[]): Promise<{ url: string, clock: ManualClock, metrics: Metrics, source: LocalEndpointSource, pools: EndpointPools }> {
  const clock = new ManualClock()
  const metrics = new Metrics({ defaultMetrics: false })
  const source = new LocalEndpointSource()
  await source.start()
  source.set('alice', endpoints)
  const pools = new EndpointPools(source, { connectTimeoutMs: 1000, headersTimeoutMs: 5000, bodyTimeoutMs: 5000, registry: metrics.registry, clock })
  t.teardown(() => pools.destroy())
  const target: ForwardTarget = { pools, metrics, turn: 0 }
  const server = createServer({ ServerResponse: GatewayResponse }, (req, res) => { forward(req, res, source.snapshot.get('alice') ?? [], ['x-user-id', 'alice'], target) })
  const port = await listen(t, server)
  return { url: `http://127.0.0.1:${port}/`, clock, metrics, source, pools }
}

async function get (url: string): Promise<number> {
  const res = await request(url)
  await res.body.dump()
  return res.statusCode
}

async function statuses (url: string, n: number): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) out.push(await get(url))
  return out
}

async function metric (metrics: Metrics, name: string): Promise<Record<string, number>> {
  const values: Record<string, number> = {}
  for (const v of (await metrics.registry.getSingleMetric(name)!.get()).values) values[String(v.labels.reason ?? '')] = v.value
  return values
}

void t.test('the metrics are there at zero from the start', async (t) => {
  const { metrics } = await gateway(t, [])
  t.same(await metric(metrics, 'podgate_endpoints_ejected'), { '': 0 })
  t.same(await metric(metrics, 'podgate_endpoint_ejections_total'), { connect: 0, '5xx': 0 })
})

void t.test('a refusing and a failing endpoint are ejected; a probe after the backoff readmits one', async (t) => {
  const healthy = await pod(t)
  const broken = await pod(t, true)
  const refused = await refusing()
  const { url, clock, metrics } = await gateway(t, [refused, broken.endpoint, healthy.endpoint])

  await statuses(url, 15)
  t.same(await metric(metrics, 'podgate_endpoints_ejected'), { '': 1 + 1 }, 'both ejected after 5 consecutive failures each')
  t.same(await metric(metrics, 'podgate_endpoint_ejections_total'), { connect: 1, '5xx': 1 })

  const before = { healthy: healthy.hits, broken: broken.hits }
  t.same(await statuses(url, 9), Array(9).fill(200), 'every request answered by the healthy endpoint')
  t.equal(healthy.hits - before.healthy, 9)
  t.equal(broken.hits, before.broken, 'none reached the ejected one')

  await clock.advance(999)
  await statuses(url, 3)
  t.equal(broken.hits, before.broken, 'still ejected 1 ms before its backoff ends')

  broken.failing = false
  await clock.advance(1)
  let sent = 0
  while (broken.hits === before.broken && sent < 3) { await get(url); sent++ }
  t.equal(broken.hits, before.broken + 1, 'one probe once the backoff is over')
  t.same(await metric(metrics, 'podgate_endpoints_ejected'), { '': 1 }, 'the healthy probe readmitted it; the refusing one is still out')
  const readmitted = broken.hits
  t.same(await statuses(url, 8), Array(8).fill(200))
  t.ok(broken.hits - readmitted >= 3, 'back in rotation: it takes its share')
})

void t.test('a failed probe re-ejects with a doubled backoff; success resets it', async (t) => {
  const healthy = await pod(t)
  const flaky = await pod(t, true)
  const { url, clock, metrics, pools } = await gateway(t, [healthy.endpoint, flaky.endpoint])

  await statuses(url, 10)
  t.equal(flaky.hits, 5, 'ejected at its fifth consecutive 500')
  t.equal(pools.outliers.ejected, 1)
  await statuses(url, 4)
  t.equal(flaky.hits, 5)

  await clock.advance(1000)
  await statuses(url, 2)
  t.equal(flaky.hits, 6, 'one probe after 1 s')
  t.same(await metric(metrics, 'podgate_endpoint_ejections_total'), { connect: 0, '5xx': 2 }, 'the failed probe is a second ejection')
  await clock.advance(1999)
  await statuses(url, 4)
  t.equal(flaky.hits, 6, 'the second backoff is 2 s')

  flaky.failing = false
  await clock.advance(1)
  await statuses(url, 2)
  t.equal(flaky.hits, 7, 'one probe after 2 s, answered 200')
  t.equal(pools.outliers.ejected, 0, 'readmitted')
  await statuses(url, 4)
  t.equal(flaky.hits, 9, 'round robin again')

  // Reset: the next ejection starts over at 1 s.
  flaky.failing = true
  await statuses(url, 10)
  t.equal(pools.outliers.ejected, 1)
  await clock.advance(1000)
  await statuses(url, 2)
  t.equal(flaky.hits, 9 + 5 + 1, 'probed again after 1 s, not 4 s')
})

void t.test('a user\'s only endpoint is never ejected: requests keep failing with 502', async (t) => {
  const { url, metrics } = await gateway(t, [await refusing()])
  t.same(await statuses(url, 12), Array(12).fill(502))
  t.same(await metric(metrics, 'podgate_endpoints_ejected'), { '': 0 })
  t.same(await metric(metrics, 'podgate_endpoint_ejections_total'), { connect: 0, '5xx': 0 })
})

void t.test('the last endpoint in rotation stays in, even when another is ejected already', async (t) => {
  const a = await pod(t, true)
  const b = await pod(t, true)
  const { url, pools } = await gateway(t, [a.endpoint, b.endpoint])
  t.same(await statuses(url, 20), Array(20).fill(500))
  t.equal(pools.outliers.ejected, 1, 'one of the two is ejected, the other keeps answering')
})

void t.test('endpoints that leave the snapshot are forgotten', async (t) => {
  const healthy = await pod(t)
  const flaky = await pod(t, true)
  const { url, metrics, source, pools } = await gateway(t, [healthy.endpoint, flaky.endpoint])
  await statuses(url, 10)
  t.equal(pools.outliers.ejected, 1)

  const other = await pod(t)
  source.set('alice', [healthy.endpoint, flaky.endpoint, other.endpoint])
  t.equal(pools.outliers.ejected, 1, 'a change that keeps the endpoint keeps its state')

  source.set('alice', [healthy.endpoint, other.endpoint])
  t.equal(pools.outliers.ejected, 0, 'gone from the snapshot: forgotten')
  t.same(await metric(metrics, 'podgate_endpoints_ejected'), { '': 0 })

  flaky.failing = false
  source.set('alice', [healthy.endpoint, flaky.endpoint])
  await statuses(url, 2)
  t.equal(flaky.hits, 6, 'back in the snapshot: in rotation at once, no backoff remembered')
})

void t.test('options are validated by name', (t) => {
  t.throws(() => new EndpointOutliers({ threshold: 0 }), /threshold must be a positive integer/)
  t.throws(() => new EndpointOutliers({ baseEjectionMs: 1.5 }), /baseEjectionMs/)
  t.throws(() => new EndpointOutliers({ maxEjectionMs: -1 }), /maxEjectionMs/)
  t.end()
})

void t.test('a running gateway exposes the ejection metrics from the start', async (t) => {
  const gw = await startTestGateway(t)
  const text = await (await fetch(`${gw.adminUrl}/metrics`)).text()
  t.match(text, /podgate_endpoint_ejections_total\{reason="connect"\} 0/)
  t.match(text, /podgate_endpoint_ejections_total\{reason="5xx"\} 0/)
  t.match(text, /podgate_endpoints_ejected 0/)
})
