// The half-open probe of an ejected endpoint whose outcome never comes (its client left before
// the answer): the slot is free again after the ejection's own backoff, not the 30 s cap, so
// an endpoint out for 1 s is probed again 1 s later. A real gateway, real pods, a ManualClock.
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { request } from 'undici'
import { endpoint, type Endpoint } from '../../src/discovery/source.ts'
import { startTestGateway, type TestGateway } from '../support/gateway.ts'
import { ManualClock } from '../support/manual-clock.ts'

interface Teardown { teardown (fn: () => unknown): void }

type Mode = 'ok' | 'fail' | 'hang'

interface Pod {
  readonly endpoint: Endpoint
  hits: number
  mode: Mode
  /** Resolves at the next request the pod receives. */
  nextHit (): Promise<void>
}

async function pod (t: Teardown, mode: Mode): Promise<Pod> {
  const waiting: Array<() => void> = []
  const hung: ServerResponse[] = []
  const state = { hits: 0, mode, nextHit: () => new Promise<void>((resolve) => { waiting.push(resolve) }) }
  const server = createServer((_req, res) => {
    state.hits++
    for (const resolve of waiting.splice(0)) resolve()
    if (state.mode === 'hang') hung.push(res)
    else res.writeHead(state.mode === 'fail' ? 500 : 200).end(state.mode)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve) }))
  return Object.assign(state, { endpoint: endpoint('127.0.0.1', (server.address() as AddressInfo).port) })
}

async function get (gw: TestGateway, token: string, signal?: AbortSignal): Promise<number> {
  const res = await request(gw.url, { headers: { authorization: `Bearer ${token}` }, signal })
  await res.body.dump()
  return res.statusCode
}

async function ejected (gw: TestGateway): Promise<number> {
  return (await gw.metrics.registry.getSingleMetric('podgate_endpoints_ejected')!.get()).values[0]?.value ?? Number.NaN
}

void t.test('a probe abandoned by its client frees the slot after the ejection\'s backoff, not 30 s', async (t) => {
  const clock = new ManualClock()
  const gw = await startTestGateway(t, {}, { clock })
  const healthy = await pod(t, 'ok')
  const broken = await pod(t, 'fail')
  gw.local.set('alice', [healthy.endpoint, broken.endpoint])
  const alice = await gw.token('alice')

  for (let i = 0; i < 10; i++) await get(gw, alice)
  t.equal(broken.hits, 5, 'ejected at its fifth 500 in a row')
  t.equal(await ejected(gw), 1)

  await clock.advance(1000)
  broken.mode = 'hang'
  // Round robin: one of the next two requests is the probe; its client gives up on it.
  let probed = false
  for (let i = 0; i < 2 && !probed; i++) {
    const abandon = new AbortController()
    const hit = broken.nextHit().then(() => { probed = true; abandon.abort() })
    const answered = get(gw, alice, abandon.signal).catch(() => 0)
    await Promise.race([hit, answered])
  }
  t.ok(probed, 'the probe reached the ejected endpoint, and its client left before any answer')
  const afterProbe = broken.hits

  broken.mode = 'ok'
  for (let i = 0; i < 4; i++) t.equal(await get(gw, alice), 200)
  await clock.advance(999)
  for (let i = 0; i < 4; i++) t.equal(await get(gw, alice), 200)
  t.equal(broken.hits, afterProbe, 'the unanswered probe holds the slot for the ejection\'s 1 s')

  await clock.advance(1)
  for (let i = 0; i < 2; i++) t.equal(await get(gw, alice), 200)
  t.equal(broken.hits, afterProbe + 1, 'then the next request probes it')
  t.equal(await ejected(gw), 0, 'and its 200 readmits it, 29 s before the cap would have')
})
