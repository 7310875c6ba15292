// What the request path asks of span export, and its loader: the OpenTelemetry SDK behind it
// (otel.ts) is imported only when an OTLP endpoint is configured, so a gateway that exports
// nothing never loads a module of it.
import type { IncomingMessage } from 'node:http'
import type { Logger } from '../log.ts'
import type { TracingConfig } from './config.ts'

/** How the pod took part in an exchange: GatewayResponse's fields, or an upgrade's. */
export interface UpstreamExchange {
  /** The pod's status line reached the client. */
  readonly byPod: boolean
  /** Origin of the endpoint last asked; undefined when none was. */
  readonly endpoint: string | undefined
  /** performance.now() of the first dispatch to the pod and of the end of its answer; 0 when unknown. */
  readonly upstreamStart: number
  readonly upstreamEnd: number
}

/** The spans of one request or upgrade: a SERVER span, and a CLIENT child for the exchange with the pod. */
export interface RequestSpans {
  /** The token named `user`. */
  authenticated (user: string): void
  /** The user's endpoints were found and `headers` go to one now: the CLIENT span's traceparent goes into them. */
  forwarding (headers: string[]): void
  /** The answer is over (or the client left): the spans end with its outcome. */
  end (status: number, upstream: UpstreamExchange, endedAt: number): void
}

export interface GatewayTracer {
  /** A request (or upgrade) that arrived at `startedAt` (performance.now()). */
  begin (req: IncomingMessage, startedAt: number): RequestSpans
  /** Exports the spans still buffered and stops; bounded in time. */
  shutdown (): Promise<void>
}

/** The tracer of one gateway process; undefined when nothing is exported. */
export async function loadTracer (config: TracingConfig | undefined, logger: Logger): Promise<GatewayTracer | undefined> {
  if (config?.export === undefined) return undefined
  const { startTracer } = await import('./otel.ts')
  return startTracer(config.context, config.export, logger)
}
