// One request's spans, with the OpenTelemetry API (loaded through otel.ts only when spans are
// exported): a SERVER span from arrival to the end of the answer, with events when the token
// named the user and when the endpoints were found, and a CLIENT child for the exchange with
// the pod, whose span id is the parent id in the traceparent the pod receives. Attributes
// follow the HTTP semantic conventions; a span never carries a header, a token or a query.
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, createTraceState, trace, type Attributes, type Context, type HrTime, type Span, type Tracer } from '@opentelemetry/api'
import { millisToHrTime } from '@opentelemetry/core'
import {
  ATTR_ERROR_TYPE, ATTR_HTTP_REQUEST_METHOD, ATTR_HTTP_RESPONSE_STATUS_CODE, ATTR_SERVER_ADDRESS, ATTR_SERVER_PORT, ATTR_URL_PATH,
  HTTP_REQUEST_METHOD_VALUE_OTHER,
} from '@opentelemetry/semantic-conventions'
import type { IncomingMessage } from 'node:http'
import { endpointAddress } from '../gateway/response.ts'
import { dropTraceContext, formatTraceparent, parseTraceparent, type TraceContextMode, type TraceIds } from './context.ts'
import type { GatewayTracer, RequestSpans, UpstreamExchange } from './tracer.ts'

/** Incubating in the semantic conventions, whose incubating entry point is too large to load for one name. */
const ATTR_ENDUSER_ID = 'enduser.id'
/** The status podgate records for a client that left before its answer began: no HTTP status on the span. */
const CLIENT_LEFT = 499
/** Read once: a getter call per timestamp otherwise. */
const TIME_ORIGIN = performance.timeOrigin
/** Methods the HTTP semantic conventions name; any other is `_OTHER`, so span names stay few. */
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH', 'QUERY'])

export class ExportingTracer implements Omit<GatewayTracer, 'shutdown'> {
  readonly #tracer: Tracer
  readonly #ids: TraceIds
  readonly #mode: TraceContextMode

  /** `ids` must be the id generator `tracer` uses: a CLIENT span takes the id its traceparent announced. */
  constructor (tracer: Tracer, ids: TraceIds, mode: TraceContextMode) {
    this.#tracer = tracer
    this.#ids = ids
    this.#mode = mode
  }

  begin (req: IncomingMessage, startedAt: number): RequestSpans {
    const inbound = this.#mode === 'continue' ? parseTraceparent(req.headers.traceparent) : undefined
    let parent = ROOT_CONTEXT
    if (inbound !== undefined) {
      const state = req.headers.tracestate
      parent = trace.setSpanContext(ROOT_CONTEXT, {
        traceId: inbound.traceId,
        spanId: inbound.parentId,
        traceFlags: inbound.flags & TraceFlags.SAMPLED,
        isRemote: true,
        ...(typeof state === 'string' ? { traceState: createTraceState(state) } : {}),
      })
    }
    const method = KNOWN_METHODS.has(req.method ?? '') ? req.method as string : HTTP_REQUEST_METHOD_VALUE_OTHER
    const server = this.#tracer.startSpan(method === HTTP_REQUEST_METHOD_VALUE_OTHER ? 'HTTP' : method, {
      kind: SpanKind.SERVER,
      startTime: hrTimeOf(startedAt),
      attributes: { [ATTR_HTTP_REQUEST_METHOD]: method },
    }, parent)
    return new ExportedRequest(this.#tracer, this.#ids, this.#mode, req, server, method, inbound !== undefined)
  }
}

class ExportedRequest implements RequestSpans {
  readonly #tracer: Tracer
  readonly #ids: TraceIds
  readonly #mode: TraceContextMode
  readonly #req: IncomingMessage
  readonly #server: Span
  readonly #method: string
  /** The client's trace is continued: its tracestate goes on to the pod. */
  readonly #continued: boolean
  /** The CLIENT span's id, chosen when the request went to the pod; the span itself is made at the end. */
  #clientSpanId: string | undefined
  #forwardedAt = 0

  constructor (tracer: Tracer, ids: TraceIds, mode: TraceContextMode, req: IncomingMessage, server: Span, method: string, continued: boolean) {
    this.#tracer = tracer
    this.#ids = ids
    this.#mode = mode
    this.#req = req
    this.#server = server
    this.#method = method
    this.#continued = continued
  }

  authenticated (user: string): void {
    this.#server.setAttribute(ATTR_ENDUSER_ID, user)
    this.#server.addEvent('auth', hrTimeOf(performance.now()))
  }

  forwarding (headers: string[]): void {
    this.#forwardedAt = performance.now()
    this.#server.addEvent('lookup', hrTimeOf(this.#forwardedAt))
    const spanId = this.#ids.generateSpanId()
    this.#clientSpanId = spanId
    if (this.#mode === 'off') return
    const req = this.#req
    if (req.headers.traceparent !== undefined || (!this.#continued && req.headers.tracestate !== undefined)) dropTraceContext(headers, !this.#continued)
    const context = this.#server.spanContext()
    headers.push('traceparent', formatTraceparent(context.traceId, spanId, (context.traceFlags & TraceFlags.SAMPLED) !== 0))
  }

  end (status: number, upstream: UpstreamExchange, endedAt: number): void {
    const server = this.#server
    // Not sampled: nothing is exported, so nothing more is worth recording.
    if (!server.isRecording()) return
    const url = this.#req.url ?? '/'
    const query = url.indexOf('?')
    server.setAttribute(ATTR_URL_PATH, query === -1 ? url : url.slice(0, query))
    setOutcome(server, status, status >= 500)
    if (this.#clientSpanId !== undefined) this.#endClient(trace.setSpan(ROOT_CONTEXT, server), this.#clientSpanId, status, upstream, endedAt)
    server.end(hrTimeOf(endedAt))
  }

  /** The exchange with the pod, timed by the gateway's own marks, under the id the pod was told. */
  #endClient (parent: Context, spanId: string, status: number, upstream: UpstreamExchange, endedAt: number): void {
    const attributes: Attributes = { [ATTR_HTTP_REQUEST_METHOD]: this.#method }
    if (upstream.endpoint !== undefined) {
      const address = endpointAddress(upstream.endpoint)
      const colon = address.lastIndexOf(':')
      // An IPv6 endpoint is [address]:port; the attribute is the bare address.
      attributes[ATTR_SERVER_ADDRESS] = address.startsWith('[') ? address.slice(1, colon - 1) : address.slice(0, colon)
      attributes[ATTR_SERVER_PORT] = Number(address.slice(colon + 1))
    }
    this.#ids.reserveSpanId(spanId)
    const client = this.#tracer.startSpan(this.#method === HTTP_REQUEST_METHOD_VALUE_OTHER ? 'HTTP' : this.#method, {
      kind: SpanKind.CLIENT,
      startTime: hrTimeOf(upstream.upstreamStart === 0 ? this.#forwardedAt : upstream.upstreamStart),
      attributes,
    }, parent)
    this.#ids.reserveSpanId(undefined)
    // The pod's own status, or podgate's 502/504 when the pod gave none (a client that left is no failure of the pod's).
    if (upstream.byPod) setOutcome(client, status, status >= 400)
    else if (status >= 500) setOutcome(client, undefined, true, status)
    client.end(hrTimeOf(upstream.upstreamEnd === 0 ? endedAt : upstream.upstreamEnd))
  }
}

/**
 * A performance.now() mark as the absolute time the SDK records. Every span and event goes
 * through this one conversion: the SDK's own maps each span onto the wall clock separately, so
 * a child could start before its parent by the millisecond Date.now() rounds to.
 */
function hrTimeOf (mark: number): HrTime {
  return millisToHrTime(TIME_ORIGIN + mark)
}

/** `status` as the span's HTTP status (none for a client that left), and the error status when `failed`. */
function setOutcome (span: Span, status: number | undefined, failed: boolean, errorStatus = status): void {
  if (status !== undefined && status !== CLIENT_LEFT) span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status)
  if (!failed) return
  span.setAttribute(ATTR_ERROR_TYPE, String(errorStatus))
  span.setStatus({ code: SpanStatusCode.ERROR })
}
