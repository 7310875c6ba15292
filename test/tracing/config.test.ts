// PODGATE_TRACE_CONTEXT and the OTEL_* variables as loadConfig reads them from the environment
// it is given: defaults, the endpoint rules of the OTLP exporter spec, and one ConfigError
// naming the variable for each value podgate cannot honour.
import t from 'tap'
import { loadConfig } from '../../src/config.ts'
import { ConfigError } from '../../src/errors.ts'
import type { TracingConfig } from '../../src/tracing/config.ts'

function tracing (env: Record<string, string>): TracingConfig | undefined {
  return loadConfig({ PODGATE_JWT_SECRET: 'x'.repeat(32), ...env }).gateway.tracing
}

const ENDPOINT = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }

void t.test('defaults: continue, nothing exported', (t) => {
  t.same(tracing({}), { context: 'continue', export: undefined })
  for (const mode of ['continue', 'restart', 'off']) t.equal(tracing({ PODGATE_TRACE_CONTEXT: mode })?.context, mode)
  t.same(tracing({ OTEL_SERVICE_NAME: 'x', OTEL_TRACES_SAMPLER: 'always_off' })?.export, undefined, 'other OTEL_* alone export nothing')
  t.end()
})

void t.test('an endpoint turns export on, with the SDK defaults', (t) => {
  t.same(tracing(ENDPOINT)?.export, {
    url: 'http://collector:4318/v1/traces',
    serviceName: 'podgate',
    resourceAttributes: {},
    sampler: { name: 'parentbased_always_on', ratio: 1 },
    batch: { scheduledDelayMillis: 5000, exportTimeoutMillis: 30000, maxQueueSize: 2048, maxExportBatchSize: 512 },
  })
  t.equal(tracing({ OTEL_EXPORTER_OTLP_ENDPOINT: 'https://otel.example/base/' })?.export?.url, 'https://otel.example/base/v1/traces', 'the base endpoint gets v1/traces')
  t.equal(tracing({ ...ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://traces:9999/custom' })?.export?.url, 'http://traces:9999/custom', 'the traces endpoint is used as given, and wins')
  t.end()
})

void t.test('the OTEL_* settings podgate honours', (t) => {
  const config = tracing({
    ...ENDPOINT,
    OTEL_SERVICE_NAME: 'edge',
    OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=prod, k8s.pod.name=podgate-0,team=a%2Cb%3Dc,service.name=ignored',
    OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
    OTEL_TRACES_SAMPLER_ARG: '0.25',
    OTEL_BSP_SCHEDULE_DELAY: '100',
    OTEL_BSP_EXPORT_TIMEOUT: '2000',
    OTEL_BSP_MAX_QUEUE_SIZE: '100',
    OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '50',
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
  })?.export
  t.same(config, {
    url: 'http://collector:4318/v1/traces',
    serviceName: 'edge',
    resourceAttributes: { 'deployment.environment.name': 'prod', 'k8s.pod.name': 'podgate-0', team: 'a,b=c', 'service.name': 'ignored' },
    sampler: { name: 'parentbased_traceidratio', ratio: 0.25 },
    batch: { scheduledDelayMillis: 100, exportTimeoutMillis: 2000, maxQueueSize: 100, maxExportBatchSize: 50 },
  })
  t.equal(tracing({ ...ENDPOINT, OTEL_RESOURCE_ATTRIBUTES: 'service.name=billing' })?.export?.serviceName, 'billing', 'service.name from the resource attributes without OTEL_SERVICE_NAME')
  t.equal(tracing({ ...ENDPOINT, OTEL_BSP_MAX_QUEUE_SIZE: '100' })?.export?.batch.maxExportBatchSize, 100, 'the default batch fits a smaller queue')
  t.equal(tracing({ ...ENDPOINT, OTEL_TRACES_EXPORTER: 'none' })?.export, undefined, 'OTEL_TRACES_EXPORTER=none')
  t.equal(tracing({ ...ENDPOINT, OTEL_SDK_DISABLED: 'true' })?.export, undefined, 'OTEL_SDK_DISABLED=true')
  t.end()
})

void t.test('values podgate cannot honour stop start-up naming the variable', (t) => {
  const cases: [Record<string, string>, string, RegExp][] = [
    [{ PODGATE_TRACE_CONTEXT: 'on' }, 'PODGATE_TRACE_CONTEXT', /continue, restart, off/],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' }, 'OTEL_EXPORTER_OTLP_ENDPOINT', /http\(s\) URL/],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'not a url' }, 'OTEL_EXPORTER_OTLP_ENDPOINT', /absolute URL/],
    [{ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://user:pw@collector/v1/traces' }, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', /OTEL_EXPORTER_OTLP_HEADERS/],
    [{ ...ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }, 'OTEL_EXPORTER_OTLP_PROTOCOL', /http\/json/],
    [{ ...ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/protobuf', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' }, 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', /http\/json/],
    [{ ...ENDPOINT, OTEL_TRACES_EXPORTER: 'zipkin' }, 'OTEL_TRACES_EXPORTER', /otlp, none/],
    [{ ...ENDPOINT, OTEL_TRACES_SAMPLER: 'jaeger_remote' }, 'OTEL_TRACES_SAMPLER', /parentbased_traceidratio/],
    [{ ...ENDPOINT, OTEL_TRACES_SAMPLER_ARG: '1.5' }, 'OTEL_TRACES_SAMPLER_ARG', /0 to 1/],
    [{ ...ENDPOINT, OTEL_TRACES_SAMPLER_ARG: 'half' }, 'OTEL_TRACES_SAMPLER_ARG', /0 to 1/],
    [{ ...ENDPOINT, OTEL_SDK_DISABLED: 'maybe' }, 'OTEL_SDK_DISABLED', /true or false/],
    [{ ...ENDPOINT, OTEL_RESOURCE_ATTRIBUTES: 'a=b=c' }, 'OTEL_RESOURCE_ATTRIBUTES', /key=value/],
    [{ ...ENDPOINT, OTEL_RESOURCE_ATTRIBUTES: 'a=%zz' }, 'OTEL_RESOURCE_ATTRIBUTES', /percent-encode/],
    [{ ...ENDPOINT, OTEL_BSP_SCHEDULE_DELAY: '5s' }, 'OTEL_BSP_SCHEDULE_DELAY', /integer/],
    [{ ...ENDPOINT, OTEL_BSP_MAX_QUEUE_SIZE: '10', OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '20' }, 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE', /OTEL_BSP_MAX_QUEUE_SIZE/],
  ]
  for (const [env, variable, message] of cases) {
    let thrown: unknown
    try {
      tracing(env)
    } catch (err) {
      thrown = err
    }
    t.ok(thrown instanceof ConfigError && thrown.variable === variable, `${JSON.stringify(env)} → ${variable}`)
    t.match((thrown as Error | undefined)?.message, message)
  }
  t.end()
})
