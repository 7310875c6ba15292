// The gateway server's response class: node's ServerResponse plus what the request path
// learns on the way (whose request it is, which pod answered, when), read once at the end by
// the metrics, the access log and the usage meter. Fields on the response the server already
// allocates: nothing more is allocated per request to carry them, and one `close` listener,
// the same function for every response, tells both who need to know that it has ended.
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { RequestSpans } from '../tracing/tracer.ts'
import { ServerResponse } from './node-http.ts'

/** Told once that a response has closed: finished, failed, or left by its client first. */
export interface CloseWatcher {
  responseClosed (res: GatewayResponse): void
}

export class GatewayResponse<Request extends IncomingMessage = IncomingMessage> extends ServerResponse<Request> {
  /** The user the token named; undefined when it named none (refused before that). */
  user: string | undefined = undefined
  /** `http://address:port` of the endpoint that was last asked; undefined when none was. */
  endpoint: string | undefined = undefined
  /** The pod's status line reached the client: the pod answered, not podgate. */
  byPod = false
  /** performance.now() when the request first went to a pod, and when the pod's answer ended or failed; 0 when not. */
  upstreamStart = 0
  upstreamEnd = 0
  /** performance.now() when the request arrived. */
  started = 0
  /** The client's connection, kept for its byte counts: Node detaches it from the request once the response is done. */
  clientSocket: Duplex | undefined = undefined
  /** The request's spans when podgate exports them. */
  spans: RequestSpans | undefined = undefined
  /** The gateway's accounting of the request (metrics, access log, spans), told first. */
  accounting: CloseWatcher | undefined = undefined
  /** The exchange with a pod, told next: a client that left aborts the pod's request. */
  exchange: CloseWatcher | undefined = undefined

  constructor (...args: [req: Request]) {
    super(...args)
    // `on`: close is emitted once, and once() would wrap the listener anew for every response.
    this.on('close', closed)
  }
}

function closed (this: GatewayResponse): void {
  this.accounting?.responseClosed(this)
  this.exchange?.responseClosed(this)
}

/** `address:port` of an endpoint origin (`http://10.0.0.1:8080`, `http://[fd00::1]:8080`): where a log line says the request went. */
export function endpointAddress (origin: string): string {
  return origin.startsWith('http://') ? origin.slice(7) : origin
}
