// `podgate serve` with two gateway workers and an OTLP endpoint in its environment: each worker
// exports its own spans (the primary serves no requests and exports none), and spans still
// buffered when SIGTERM comes are exported before the workers exit.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { request } from 'undici'
import { mintToken } from '../../src/auth/mint.ts'
import { createBackend } from '../../src/local/backend.ts'
import { startServe } from '../support/serve.ts'
import { SPAN_KIND_SERVER, startOtlpReceiver } from '../support/otlp-receiver.ts'

/** A new connection each: the kernel hashes each to a worker, so one worker gets none with odds of 2^-23. */
const REQUESTS = 24

void t.test('each worker exports its own spans, and SIGTERM flushes them', async (t) => {
  const receiver = await startOtlpReceiver(t)
  const backend = await createBackend({ user: 'alice' })
  t.teardown(() => backend.close())
  const dir = mkdtempSync(join(tmpdir(), 'podgate-tracing-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const routes = join(dir, 'routes.json')
  writeFileSync(routes, JSON.stringify({ alice: [`127.0.0.1:${backend.address.port}`] }))
  const secret = 'a-secret-of-at-least-thirty-two-bytes!'
  const serve = await startServe(t, {
    PODGATE_JWT_SECRET: secret,
    PODGATE_LOCAL_ROUTES: routes,
    PODGATE_WORKERS: '2',
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    // Nothing leaves before the shutdown: what arrives was flushed by it.
    OTEL_BSP_SCHEDULE_DELAY: '600000',
  })
  const token = await mintToken({ secret: new TextEncoder().encode(secret), user: 'alice', ttlSeconds: 600 })
  const traceIds = new Set<string>()
  const statuses = new Set<number>()
  for (let i = 0; i < REQUESTS; i++) {
    const { statusCode, body } = await request(`${serve.gatewayUrl}/`, { headers: { authorization: `Bearer ${token}`, connection: 'close' } })
    const echoed = await body.json() as { headers: { traceparent: string } }
    statuses.add(statusCode)
    traceIds.add(echoed.headers.traceparent.slice(3, 35))
  }
  t.same([...statuses], [200])
  t.same(receiver.spans, [], 'nothing exported before the shutdown')
  t.equal(await serve.stop(), 0, 'serve exits 0 on SIGTERM')
  const servers = receiver.spans.filter((s) => s.kind === SPAN_KIND_SERVER)
  t.same(new Set(servers.map((s) => s.traceId)), traceIds, 'every request\'s SERVER span was exported at the shutdown')
  const pids = new Set(servers.map((s) => s.resource['process.pid']))
  t.equal(pids.size, 2, 'from two processes')
  t.notOk(pids.has(serve.child.pid), 'neither of them the primary')
})
