// An OTLP/HTTP trace receiver on loopback, as a collector's :4318 would be: accepts
// POST /v1/traces with an ExportTraceServiceRequest as JSON (the encoding podgate's exporter
// sends), keeps every span it decodes and every raw body, and lets a test wait for spans.
import { createServer } from 'node:http'
import { listenOn } from '../../src/listen.ts'

interface Teardown { teardown (fn: () => unknown): void }

type AttributeValue = string | number | boolean

/** One received span, flattened: ids in hex, times in nanoseconds since the epoch, attributes by key. */
export interface ReceivedSpan {
  readonly traceId: string
  readonly spanId: string
  /** '' for a root span. */
  readonly parentSpanId: string
  readonly traceState: string
  readonly name: string
  /** OTLP SpanKind: 2 SERVER, 3 CLIENT. */
  readonly kind: number
  readonly startNs: bigint
  readonly endNs: bigint
  readonly attributes: Readonly<Record<string, AttributeValue>>
  readonly events: readonly { readonly name: string, readonly timeNs: bigint }[]
  /** OTLP status code: 0 unset, 1 ok, 2 error. */
  readonly statusCode: number
  /** The resource it came with (service.name, …). */
  readonly resource: Readonly<Record<string, AttributeValue>>
}

export const SPAN_KIND_SERVER = 2
export const SPAN_KIND_CLIENT = 3
export const STATUS_ERROR = 2

export interface OtlpReceiver {
  /** The base endpoint, for OTEL_EXPORTER_OTLP_ENDPOINT. */
  readonly url: string
  readonly spans: readonly ReceivedSpan[]
  /** Every request body as received, to search for what must never be exported. */
  readonly bodies: readonly string[]
  /** Resolves with the received spans once `ready` holds for them (checked on each export). */
  waitFor (ready: (spans: readonly ReceivedSpan[]) => boolean): Promise<readonly ReceivedSpan[]>
}

interface JsonKeyValue { key: string, value: { stringValue?: string, intValue?: number | string, boolValue?: boolean, doubleValue?: number } }
interface JsonSpan {
  traceId: string
  spanId: string
  parentSpanId?: string
  traceState?: string
  name: string
  kind: number
  startTimeUnixNano: string | number
  endTimeUnixNano: string | number
  attributes?: JsonKeyValue[]
  events?: { name: string, timeUnixNano: string | number }[]
  status?: { code?: number }
}
interface JsonRequest {
  resourceSpans?: { resource?: { attributes?: JsonKeyValue[] }, scopeSpans?: { spans?: JsonSpan[] }[] }[]
}

export async function startOtlpReceiver (t: Teardown): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = []
  const bodies: string[] = []
  const waiters = new Set<() => void>()
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => { chunks.push(chunk) })
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8')
      if (req.method !== 'POST' || req.url !== '/v1/traces' || req.headers['content-type'] !== 'application/json') {
        res.writeHead(415, { 'content-type': 'text/plain' }).end(`expected POST /v1/traces as application/json, got ${req.method ?? ''} ${req.url ?? ''} ${req.headers['content-type'] ?? ''}`)
        return
      }
      bodies.push(body)
      spans.push(...decode(JSON.parse(body) as JsonRequest))
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
      for (const wake of [...waiters]) wake()
    })
  })
  const address = await listenOn(server, { host: '127.0.0.1', port: 0 })
  t.teardown(() => new Promise<void>((resolve) => {
    server.close(() => { resolve() })
    server.closeAllConnections()
  }))
  return {
    url: `http://127.0.0.1:${address.port}`,
    spans,
    bodies,
    waitFor: (ready) => new Promise((resolve) => {
      const check = (): void => {
        if (!ready(spans)) return
        waiters.delete(check)
        resolve([...spans])
      }
      waiters.add(check)
      check()
    }),
  }
}

function decode (request: JsonRequest): ReceivedSpan[] {
  const out: ReceivedSpan[] = []
  for (const resourceSpans of request.resourceSpans ?? []) {
    const resource = attributes(resourceSpans.resource?.attributes)
    for (const scope of resourceSpans.scopeSpans ?? []) {
      for (const span of scope.spans ?? []) {
        out.push({
          traceId: span.traceId,
          spanId: span.spanId,
          parentSpanId: span.parentSpanId ?? '',
          traceState: span.traceState ?? '',
          name: span.name,
          kind: span.kind,
          startNs: BigInt(span.startTimeUnixNano),
          endNs: BigInt(span.endTimeUnixNano),
          attributes: attributes(span.attributes),
          events: (span.events ?? []).map((e) => ({ name: e.name, timeNs: BigInt(e.timeUnixNano) })),
          statusCode: span.status?.code ?? 0,
          resource,
        })
      }
    }
  }
  return out
}

function attributes (list: JsonKeyValue[] | undefined): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {}
  for (const { key, value } of list ?? []) {
    const v = value.stringValue ?? value.boolValue ?? value.doubleValue ?? value.intValue
    if (v !== undefined) out[key] = typeof v === 'string' && value.intValue !== undefined ? Number(v) : v
  }
  return out
}
