// A collector that fails: an export it refuses is logged (component tracing, nothing secret in
// the line) and requests go on; spans it never takes before the shutdown are reported lost and
// the shutdown still ends. The exporter reads its own request timeout from the process
// environment (OTLP exporter spec), so this file shortens it there: a silent collector's
// pending export would otherwise hold the process for 10 s after the test.
import { createServer as createHttpServer, type RequestListener } from 'node:http'
import { Writable } from 'node:stream'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { listenOn } from '../../src/listen.ts'
import { createLogger, type Logger } from '../../src/log.ts'
import { startTestGateway, type TestGateway } from '../support/gateway.ts'

process.env.OTEL_EXPORTER_OTLP_TIMEOUT = '300'

const QUERY_SECRET = 'q-secret-4f1e0c'

/** A logger whose lines the test reads, and a wait for a line with a given message. */
function capturedLogger (): { logger: Logger, raw: string[], line: (msg: string) => Promise<Record<string, unknown>> } {
  const raw: string[] = []
  const waiters = new Set<() => void>()
  const stream = new Writable({
    write (chunk: Buffer, _encoding, done) {
      raw.push(...String(chunk).split('\n').filter((text) => text !== ''))
      for (const wake of [...waiters]) wake()
      done()
    },
  })
  const line = (msg: string): Promise<Record<string, unknown>> => new Promise((resolve) => {
    const check = (): void => {
      const found = raw.map((text) => JSON.parse(text) as Record<string, unknown>).find((entry) => entry.msg === msg)
      if (found === undefined) return
      waiters.delete(check)
      resolve(found)
    }
    waiters.add(check)
    check()
  })
  return { logger: createLogger('info', stream), raw, line }
}

/** A stand-in collector on loopback answering with `handler`. */
async function collector (t: Test, handler: RequestListener): Promise<string> {
  const server = createHttpServer(handler)
  const { port } = await listenOn(server, { host: '127.0.0.1', port: 0 })
  t.teardown(() => new Promise<void>((resolve) => {
    server.close(() => { resolve() })
    server.closeAllConnections()
  }))
  return `http://127.0.0.1:${port}`
}

/** The status of a GET through the gateway. */
async function get (gw: TestGateway, path: string, headers: string[]): Promise<{ status: number }> {
  const { statusCode, body } = await request(`${gw.url}${path}`, { headers })
  await body.dump()
  return { status: statusCode }
}

void t.test('a collector that refuses spans: logged by podgate, requests unaffected', async (t) => {
  const url = await collector(t, (req, res) => { req.resume(); req.once('end', () => { res.writeHead(400).end('no') }) })
  const { logger, raw, line } = capturedLogger()
  const gw = await startTestGateway(t, { OTEL_EXPORTER_OTLP_ENDPOINT: url, OTEL_BSP_SCHEDULE_DELAY: '0', PODGATE_LOG_LEVEL: 'info' }, { logger })
  await gw.backend('alice')
  const token = await gw.token('alice')
  t.equal((await get(gw, `/?q=${QUERY_SECRET}`, ['authorization', `Bearer ${token}`])).status, 200)
  t.match(await line('span export failed; spans of this batch are dropped'), { level: 40, component: 'tracing', attempt: 1 })
  t.notMatch(raw.join('\n'), token)
  t.notMatch(raw.join('\n'), QUERY_SECRET)
})

void t.test('spans a silent collector never takes are reported lost at the shutdown, which still ends', async (t) => {
  const url = await collector(t, (req) => { req.resume() })
  const { logger, line } = capturedLogger()
  const gw = await startTestGateway(t, { OTEL_EXPORTER_OTLP_ENDPOINT: url, OTEL_BSP_SCHEDULE_DELAY: '600000', OTEL_BSP_EXPORT_TIMEOUT: '200' }, { logger })
  await gw.backend('alice')
  t.equal((await get(gw, '/', ['authorization', `Bearer ${await gw.token('alice')}`])).status, 200)
  await gw.podgate.close()
  t.match(await line('spans not exported at shutdown'), { component: 'tracing' })
})
