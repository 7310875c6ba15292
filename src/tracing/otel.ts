// The OpenTelemetry SDK set-up of one gateway process, imported only when spans are exported
// (tracer.ts): a TracerProvider of its own (never the global one: each gateway in a process
// keeps its own), the sampler and resource from podgate's config, and a BatchSpanProcessor
// sending OTLP/HTTP JSON. The exporter itself reads its headers, timeout, compression and TLS
// files from the process environment, as the OTLP exporter spec says.
import { ExportResultCode, type ExportResult } from '@opentelemetry/core'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http'
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources'
import {
  AlwaysOffSampler, AlwaysOnSampler, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, TracerProvider,
  type ReadableSpan, type Sampler, type SpanExporter,
} from '@opentelemetry/sdk-trace'
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions'
import { setTimeout as sleep } from 'node:timers/promises'
import { componentLogger, FailureStreaks, type Logger } from '../log.ts'
import type { OtlpExportConfig, SamplerConfig } from './config.ts'
import { TraceIds, type TraceContextMode } from './context.ts'
import { ExportingTracer } from './spans.ts'
import type { GatewayTracer } from './tracer.ts'

/** Longest shutdown waits for the last export (or OTEL_BSP_EXPORT_TIMEOUT if shorter): a collector that is down must not hold the drain up. */
export const SHUTDOWN_TIMEOUT_MS = 5_000
const TIMED_OUT = Symbol('timed out')

export function startTracer (mode: TraceContextMode, config: OtlpExportConfig, logger: Logger): GatewayTracer {
  const log = componentLogger(logger, 'tracing')
  const ids = new TraceIds()
  const exporter = new LoggedExporter(new OTLPTraceExporter({ url: config.url }), log)
  const provider = new TracerProvider({
    // process.pid tells the gateway workers of one pod apart (semantic conventions, incubating).
    resource: defaultResource().merge(resourceFromAttributes({ ...config.resourceAttributes, [ATTR_SERVICE_NAME]: config.serviceName, 'process.pid': process.pid })),
    sampler: sampler(config.sampler),
    idGenerator: ids,
    spanProcessors: [new BatchSpanProcessor({ exporter, ...config.batch })],
  })
  const spans = new ExportingTracer(provider.getTracer('podgate'), ids, mode)
  return {
    begin: (req, startedAt) => spans.begin(req, startedAt),
    shutdown: async () => {
      const timeoutMs = Math.min(SHUTDOWN_TIMEOUT_MS, config.batch.exportTimeoutMillis)
      const failed = await Promise.race([
        provider.shutdown().then(() => undefined, (err: unknown) => err),
        sleep(timeoutMs, TIMED_OUT, { ref: false }),
      ])
      if (failed === undefined) return
      // The export either failed or was still waiting for the collector when the drain could wait no longer.
      log.warn(failed === TIMED_OUT ? { timeoutMs } : { err: failed }, 'spans not exported at shutdown')
    },
  }
}

function sampler ({ name, ratio }: SamplerConfig): Sampler {
  switch (name) {
    case 'always_on': return new AlwaysOnSampler()
    case 'always_off': return new AlwaysOffSampler()
    case 'traceidratio': return new TraceIdRatioBasedSampler(ratio)
    case 'parentbased_always_on': return new ParentBasedSampler({ root: new AlwaysOnSampler() })
    case 'parentbased_always_off': return new ParentBasedSampler({ root: new AlwaysOffSampler() })
    case 'parentbased_traceidratio': return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) })
  }
}

/** The SDK reports a failed export to a global handler that logs nowhere: podgate logs it, once per outage. */
class LoggedExporter implements SpanExporter {
  readonly #exporter: SpanExporter
  readonly #failures: FailureStreaks

  constructor (exporter: SpanExporter, logger: Logger) {
    this.#exporter = exporter
    this.#failures = new FailureStreaks(logger, { failed: 'span export failed; spans of this batch are dropped', recovered: 'span export working again' })
  }

  export (spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.#exporter.export(spans, (result) => {
      if (result.code === ExportResultCode.SUCCESS) this.#failures.recovered()
      else this.#failures.failed(result.error ?? new Error('span export failed'), { spans: spans.length })
      done(result)
    })
  }

  shutdown (): Promise<void> {
    return this.#exporter.shutdown()
  }
}
