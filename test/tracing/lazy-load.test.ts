// Nothing of the OpenTelemetry SDK is loaded unless spans are exported: every module this
// process resolves from here on is recorded (a resolve hook sees import and require alike),
// and a gateway that propagates trace context without an exporter resolves none of them. The
// API package is not the SDK: prom-client requires it anyway (for exemplars), tracing or not.
import { registerHooks } from 'node:module'
import t from 'tap'
import { request } from 'undici'

const resolved: string[] = []
registerHooks({
  resolve: (specifier, context, next) => {
    const result = next(specifier, context)
    resolved.push(result.url)
    return result
  },
})
// Only now: everything the gateway imports passes the hook.
const { startTestGateway } = await import('../support/gateway.ts')
const { startOtlpReceiver } = await import('../support/otlp-receiver.ts')

const tracingModules = (): string[] => resolved.filter((url) =>
  (url.includes('/@opentelemetry/') && !url.includes('/@opentelemetry/api/')) || /\/src\/tracing\/(otel|spans)\.ts$/.test(url))

void t.test('a gateway without an exporter loads no module of the SDK', async (t) => {
  const gw = await startTestGateway(t, { PODGATE_TRACE_CONTEXT: 'continue' })
  await gw.backend('alice')
  const { statusCode, body } = await request(`${gw.url}/`, { headers: { authorization: `Bearer ${await gw.token('alice')}` } })
  const echoed = await body.json() as { headers: { traceparent?: string } }
  t.equal(statusCode, 200)
  t.match(echoed.headers.traceparent, /^00-/, 'the trace context was propagated')
  t.ok(resolved.some((url) => url.endsWith('/src/gateway/gateway.ts')), 'the hook saw the gateway load')
  t.ok(resolved.some((url) => url.includes('/@opentelemetry/api/')), 'while prom-client required the OpenTelemetry API')
  t.same(tracingModules(), [], 'and nothing of OpenTelemetry')
})

void t.test('with an exporter the SDK is loaded, when the gateway starts', async (t) => {
  const receiver = await startOtlpReceiver(t)
  await startTestGateway(t, { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url })
  const loaded = tracingModules()
  for (const name of ['/@opentelemetry/sdk-trace/', '/@opentelemetry/exporter-trace-otlp-http/', '/src/tracing/otel.ts']) {
    t.ok(loaded.some((url) => url.includes(name)), name)
  }
})
