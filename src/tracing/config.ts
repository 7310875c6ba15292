// PODGATE_TRACE_CONTEXT and the OTEL_* variables podgate honours → one TracingConfig, read by
// loadConfig from the environment it is given (never process.env behind its back), so every
// gateway, a test's included, traces as its own environment says. Export is on only with an
// OTLP endpoint; the SDK is not even loaded otherwise (docs/adr/0012-tracing.md).
import type { EnvReader } from '../env-reader.ts'
import { ConfigError } from '../errors.ts'
import { TRACE_CONTEXT_MODES, type TraceContextMode } from './context.ts'

export const DEFAULT_SERVICE_NAME = 'podgate'

/** The samplers of the OpenTelemetry SDK configuration spec that need nothing but a ratio. */
export const TRACES_SAMPLERS = [
  'always_on', 'always_off', 'traceidratio', 'parentbased_always_on', 'parentbased_always_off', 'parentbased_traceidratio',
] as const
export type TracesSampler = typeof TRACES_SAMPLERS[number]

export interface SamplerConfig {
  readonly name: TracesSampler
  /** OTEL_TRACES_SAMPLER_ARG: the share of new traces recorded by the ratio samplers, 0 to 1. */
  readonly ratio: number
}

/** The BatchSpanProcessor's settings (OTEL_BSP_*), in milliseconds and spans. */
export interface BatchConfig {
  readonly scheduledDelayMillis: number
  readonly exportTimeoutMillis: number
  readonly maxQueueSize: number
  readonly maxExportBatchSize: number
}

export interface OtlpExportConfig {
  /** Where spans are POSTed as OTLP/HTTP JSON: the traces endpoint as given, or the base endpoint + /v1/traces. */
  readonly url: string
  readonly serviceName: string
  /** OTEL_RESOURCE_ATTRIBUTES, decoded; service.name is serviceName's. */
  readonly resourceAttributes: Readonly<Record<string, string>>
  readonly sampler: SamplerConfig
  readonly batch: BatchConfig
}

export interface TracingConfig {
  readonly context: TraceContextMode
  /** Undefined: nothing is exported and podgate has no span of its own. */
  readonly export: OtlpExportConfig | undefined
}

export function readTracing (read: EnvReader): TracingConfig {
  return {
    context: read.oneOf('PODGATE_TRACE_CONTEXT', TRACE_CONTEXT_MODES, 'continue'),
    export: readExport(read),
  }
}

function readExport (read: EnvReader): OtlpExportConfig | undefined {
  const url = readEndpoint(read)
  if (url === undefined || read.boolean('OTEL_SDK_DISABLED', false)) return undefined
  if (read.oneOf('OTEL_TRACES_EXPORTER', ['otlp', 'none'], 'otlp') === 'none') return undefined
  for (const name of ['OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', 'OTEL_EXPORTER_OTLP_PROTOCOL']) {
    const protocol = read.optional(name, /^.+$/)?.trim()
    if (protocol === undefined) continue
    if (protocol !== 'http/json') throw new ConfigError(name, `podgate exports OTLP over HTTP as JSON: expected http/json, got ${JSON.stringify(protocol.slice(0, 32))} (an OpenTelemetry Collector takes it on its OTLP/HTTP port, 4318)`)
    break
  }
  const resourceAttributes = readResourceAttributes(read)
  return {
    url,
    serviceName: read.optional('OTEL_SERVICE_NAME', /^.+$/)?.trim() ?? resourceAttributes['service.name'] ?? DEFAULT_SERVICE_NAME,
    resourceAttributes,
    sampler: readSampler(read),
    batch: readBatch(read),
  }
}

/** The traces endpoint is used as given; the base endpoint gets /v1/traces (OTLP exporter spec). */
function readEndpoint (read: EnvReader): string | undefined {
  const traces = read.optional('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', /^.+$/)?.trim()
  if (traces !== undefined) return checkedUrl('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', traces).href
  const base = read.optional('OTEL_EXPORTER_OTLP_ENDPOINT', /^.+$/)?.trim()
  if (base === undefined) return undefined
  const url = checkedUrl('OTEL_EXPORTER_OTLP_ENDPOINT', base)
  return `${url.href}${url.href.endsWith('/') ? '' : '/'}v1/traces`
}

function checkedUrl (name: string, text: string): URL {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw new ConfigError(name, `not an absolute URL: ${JSON.stringify(text.slice(0, 64))} (e.g. http://otel-collector:4318)`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError(name, 'must be an http(s) URL (OTLP over HTTP)')
  // The URL may end up in a log line when an export fails; credentials belong in OTEL_EXPORTER_OTLP_HEADERS.
  if (url.username !== '' || url.password !== '') throw new ConfigError(name, 'must not carry a user name or password: put credentials in OTEL_EXPORTER_OTLP_HEADERS')
  return url
}

function readSampler (read: EnvReader): SamplerConfig {
  const name = read.oneOf('OTEL_TRACES_SAMPLER', TRACES_SAMPLERS, 'parentbased_always_on')
  const arg = read.optional('OTEL_TRACES_SAMPLER_ARG', /^\s*(?:0|1|0?\.\d+|[01]\.\d*)\s*$/, 'a number from 0 to 1, e.g. 0.25')
  const ratio = arg === undefined ? 1 : Number(arg)
  if (ratio > 1) throw new ConfigError('OTEL_TRACES_SAMPLER_ARG', `expected a number from 0 to 1, got ${ratio}`)
  return { name, ratio }
}

function readBatch (read: EnvReader): BatchConfig {
  const maxQueueSize = read.integer('OTEL_BSP_MAX_QUEUE_SIZE', 2048, 1, 1_000_000)
  const maxExportBatchSize = read.integer('OTEL_BSP_MAX_EXPORT_BATCH_SIZE', Math.min(512, maxQueueSize), 1, 1_000_000)
  if (maxExportBatchSize > maxQueueSize) throw new ConfigError('OTEL_BSP_MAX_EXPORT_BATCH_SIZE', `must not exceed OTEL_BSP_MAX_QUEUE_SIZE (${maxQueueSize})`)
  return {
    scheduledDelayMillis: read.integer('OTEL_BSP_SCHEDULE_DELAY', 5000, 0, 3_600_000),
    exportTimeoutMillis: read.integer('OTEL_BSP_EXPORT_TIMEOUT', 30_000, 1, 3_600_000),
    maxQueueSize,
    maxExportBatchSize,
  }
}

/** `key=value,key=value` with `,` `=` and `%` percent-encoded (OpenTelemetry resource SDK spec). */
function readResourceAttributes (read: EnvReader): Record<string, string> {
  const items = read.list('OTEL_RESOURCE_ATTRIBUTES')
  const attributes: Record<string, string> = {}
  for (const item of items ?? []) {
    const parts = item.split('=')
    const key = decoded(parts[0]?.trim() ?? '')
    const value = decoded(parts[1]?.trim() ?? '')
    if (parts.length !== 2 || key === undefined || key === '' || value === undefined) {
      throw new ConfigError('OTEL_RESOURCE_ATTRIBUTES', `expected key=value pairs separated by commas (percent-encode , = and %), got ${JSON.stringify(item.slice(0, 64))}`)
    }
    attributes[key] = value
  }
  return attributes
}

function decoded (text: string): string | undefined {
  try {
    return decodeURIComponent(text)
  } catch {
    return undefined
  }
}
