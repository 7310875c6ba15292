// The chart's tracing values: config.traceContext always renders PODGATE_TRACE_CONTEXT; the otel
// block renders the OTLP endpoint, the service name and its extra OTEL_* variables only with an
// endpoint; podgate starts from the rendered environment with export on; the schema refuses
// what podgate would refuse.
import t from 'tap'
import { loadConfig } from '../../src/config.ts'
import { envVar, Helm, installHelm, only, podgateContainer, renderedSecrets, resolveEnv, type Deployment, type Manifest } from './chart.ts'

let helm: Helm

t.before(async () => {
  helm = await Helm.create(t, await installHelm(t))
})

function otelEnv (manifests: readonly Manifest[]): Record<string, string> {
  const env = resolveEnv(podgateContainer(only<Deployment>(manifests, 'Deployment')), renderedSecrets(manifests))
  return Object.fromEntries(Object.entries(env).filter(([name]) => name.startsWith('OTEL_')))
}

void t.test('by default: the trace context is continued, and nothing is exported', async (t) => {
  const manifests = await helm.render({})
  t.equal(envVar(podgateContainer(only<Deployment>(manifests, 'Deployment')), 'PODGATE_TRACE_CONTEXT')?.value, 'continue')
  t.same(otelEnv(manifests), {})
  const extraOnly = await helm.render({ otel: { extraEnv: [{ name: 'OTEL_TRACES_SAMPLER', value: 'always_on' }] } })
  t.same(otelEnv(extraOnly), {}, 'otel.extraEnv without an endpoint renders nothing')
})

void t.test('with an endpoint: the OTEL_* variables render, and podgate exports from them', async (t) => {
  const headers = { name: 'OTEL_EXPORTER_OTLP_HEADERS', valueFrom: { secretKeyRef: { name: 'otel-auth', key: 'headers' } } }
  const values = {
    config: { traceContext: 'restart' },
    otel: {
      endpoint: 'http://otel-collector.monitoring:4318',
      serviceName: 'edge-gateway',
      extraEnv: [{ name: 'OTEL_TRACES_SAMPLER', value: 'parentbased_traceidratio' }, { name: 'OTEL_TRACES_SAMPLER_ARG', value: '0.1' }, headers],
    },
  }
  const lint = await helm.lint(values)
  t.equal(lint.code, 0, lint.stdout + lint.stderr)
  const manifests = await helm.render(values)
  const container = podgateContainer(only<Deployment>(manifests, 'Deployment'))
  t.same(envVar(container, 'OTEL_EXPORTER_OTLP_HEADERS'), headers, 'a header from a Secret stays a reference')
  const secrets = { ...renderedSecrets(manifests), 'otel-auth': { headers: 'x-api-key=k' } }
  const env = resolveEnv(container, secrets)
  t.match(env, {
    PODGATE_TRACE_CONTEXT: 'restart',
    OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel-collector.monitoring:4318',
    OTEL_SERVICE_NAME: 'edge-gateway',
    OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
    OTEL_TRACES_SAMPLER_ARG: '0.1',
  })
  const tracing = loadConfig(env).gateway.tracing
  t.match(tracing, {
    context: 'restart',
    export: { url: 'http://otel-collector.monitoring:4318/v1/traces', serviceName: 'edge-gateway', sampler: { name: 'parentbased_traceidratio', ratio: 0.1 } },
  })
})

void t.test('the schema refuses what podgate would refuse', async (t) => {
  const cases: [unknown, string][] = [
    [{ config: { traceContext: 'sometimes' } }, '/config/traceContext'],
    [{ otel: { endpoint: 'otel-collector:4318' } }, '/otel/endpoint'],
    [{ otel: { endpoint: 'https://user:secret@otel.example' } }, '/otel/endpoint'],
    [{ otel: { serviceName: '' } }, '/otel/serviceName'],
    [{ otel: { extraEnv: [{ name: 'PODGATE_TRACE_CONTEXT', value: 'off' }] } }, '/otel/extraEnv/0/name'],
    [{ otel: { sampler: 'always_on' } }, "additional properties 'sampler' not allowed"],
  ]
  for (const [values, field] of cases) {
    const rendered = await helm.template(values)
    t.not(rendered.code, 0, JSON.stringify(values))
    t.match(rendered.stderr, field)
  }
})
