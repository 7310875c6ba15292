// W3C Trace Context (https://www.w3.org/TR/trace-context/) on the request path: the
// traceparent check, trace and span ids, and the upstream header edits. Without an exporter
// this is all of tracing: podgate has no span of its own and only continues or starts the
// trace its pods see (docs/adr/0012-tracing.md).
import { randomFillSync } from 'node:crypto'
import type { IncomingMessage } from 'node:http'

/** continue: a valid client traceparent is kept; restart: never (an edge that does not trust clients); off: headers untouched. */
export const TRACE_CONTEXT_MODES = ['continue', 'restart', 'off'] as const
export type TraceContextMode = typeof TRACE_CONTEXT_MODES[number]

/** `00-<trace-id>-<parent-id>-<flags>`: 2 + 1 + 32 + 1 + 16 + 1 + 2 characters. */
const TRACEPARENT_LENGTH = 55

function isLowerHex (c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66)
}

/** Lower-case hex from `from` to `to`, not all zeros (an all-zero trace or parent id is invalid). */
function isId (value: string, from: number, to: number): boolean {
  let nonZero = false
  for (let i = from; i < to; i++) {
    const c = value.charCodeAt(i)
    if (!isLowerHex(c)) return false
    if (c !== 0x30) nonZero = true
  }
  return nonZero
}

/**
 * Whether `value` is a traceparent a participant may continue (W3C Trace Context §3.2):
 * version 00 exactly 55 characters; a later version (not ff) 55, or more after a '-'.
 * Several traceparent headers arrive joined by ", " and so fail here, as the spec requires.
 */
export function isValidTraceparent (value: string): boolean {
  if (value.length < TRACEPARENT_LENGTH) return false
  const v0 = value.charCodeAt(0)
  const v1 = value.charCodeAt(1)
  if (!isLowerHex(v0) || !isLowerHex(v1) || (v0 === 0x66 && v1 === 0x66)) return false
  if (v0 === 0x30 && v1 === 0x30) {
    if (value.length !== TRACEPARENT_LENGTH) return false
  } else if (value.length > TRACEPARENT_LENGTH && value.charCodeAt(TRACEPARENT_LENGTH) !== 0x2d) {
    return false
  }
  return value.charCodeAt(2) === 0x2d && value.charCodeAt(35) === 0x2d && value.charCodeAt(52) === 0x2d &&
    isId(value, 3, 35) && isId(value, 36, 52) && isLowerHex(value.charCodeAt(53)) && isLowerHex(value.charCodeAt(54))
}

/** A valid traceparent's fields; the flags as their number (bit 0: sampled). */
export interface TraceParent {
  readonly traceId: string
  readonly parentId: string
  readonly flags: number
}

/** The inbound traceparent's fields when it is one string and valid; else undefined. */
export function parseTraceparent (value: string | string[] | undefined): TraceParent | undefined {
  if (typeof value !== 'string' || !isValidTraceparent(value)) return undefined
  return { traceId: value.slice(3, 35), parentId: value.slice(36, 52), flags: Number.parseInt(value.slice(53, 55), 16) }
}

export function formatTraceparent (traceId: string, spanId: string, sampled: boolean): string {
  return `00-${traceId}-${spanId}-${sampled ? '01' : '00'}`
}

/** Random bytes fetched in bulk: one randomFillSync per 170 new traces instead of a call per id. */
const POOL_BYTES = 4080

/**
 * Trace and span ids from a pooled buffer of cryptographic randomness (the ids of podgate's
 * spans too, as the SDK's IdGenerator), hex-encoded once per refill: an id is a slice of that
 * string, not a call into the buffer's encoder. `reserveSpanId` makes the next span id a given
 * one, so a span created after the fact can carry the id its traceparent already announced.
 */
export class TraceIds {
  readonly #pool = Buffer.allocUnsafeSlow(POOL_BYTES)
  readonly #fill: (buffer: Buffer) => void
  #hex = ''
  #offset = POOL_BYTES
  #reserved: string | undefined

  /** `fill`: where the randomness comes from (tests pass a fixed one). */
  constructor (fill: (buffer: Buffer) => void = randomFillSync) {
    this.#fill = fill
  }

  #id (bytes: number): string {
    const pool = this.#pool
    if (this.#offset + bytes > POOL_BYTES) {
      this.#fill(pool)
      this.#hex = pool.toString('hex')
      this.#offset = 0
    }
    const at = this.#offset
    this.#offset += bytes
    const id = this.#hex.slice(at * 2, (at + bytes) * 2)
    // An all-zero id is invalid; this one in 2^64 (or 2^128) case is made valid, not redrawn.
    let i = at
    while (i < at + bytes && pool[i] === 0) i++
    return i === at + bytes ? `${id.slice(0, -1)}1` : id
  }

  generateTraceId (): string {
    return this.#id(16)
  }

  generateSpanId (): string {
    const reserved = this.#reserved
    if (reserved !== undefined) {
      this.#reserved = undefined
      return reserved
    }
    return this.#id(8)
  }

  /** The next generateSpanId() returns `spanId`; undefined cancels a reservation not taken. */
  reserveSpanId (spanId: string | undefined): void {
    this.#reserved = spanId
  }

  /** A new trace's traceparent, sampled (see propagateWithoutSpans). */
  newTraceparent (): string {
    return `00-${this.#id(16)}-${this.#id(8)}-01`
  }
}

/** Removes every traceparent (and, with `state`, tracestate) field, any case, from a flat [name, value, …] list in place. */
export function dropTraceContext (headers: string[], state: boolean): void {
  let kept = 0
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i] as string
    if (name.length === 11 && name.toLowerCase() === 'traceparent') continue
    if (state && name.length === 10 && name.toLowerCase() === 'tracestate') continue
    if (kept !== i) {
      headers[kept] = name
      headers[kept + 1] = headers[i + 1] as string
    }
    kept += 2
  }
  headers.length = kept
}

/**
 * Trace context without an exporter: a valid client traceparent passes untouched (continue);
 * otherwise the client's traceparent and tracestate are dropped and a new trace is started,
 * sampled, so that a pod whose sampler follows its parent (the OpenTelemetry default) records
 * it: podgate has no span and so no sampling decision of its own to pass on.
 */
export class TraceContextPropagator {
  readonly #continue: boolean
  readonly #ids: TraceIds

  constructor (mode: Exclude<TraceContextMode, 'off'>, ids = new TraceIds()) {
    this.#continue = mode === 'continue'
    this.#ids = ids
  }

  /** Edits `headers` (upstreamHeaders' list for `req`) to carry the trace context the pod gets. */
  apply (req: IncomingMessage, headers: string[]): void {
    const inbound = req.headers.traceparent
    if (inbound !== undefined) {
      if (this.#continue && typeof inbound === 'string' && isValidTraceparent(inbound)) return
      dropTraceContext(headers, true)
    } else if (req.headers.tracestate !== undefined) {
      dropTraceContext(headers, true)
    }
    headers.push('traceparent', this.#ids.newTraceparent())
  }
}
