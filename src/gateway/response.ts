// The gateway server's response class: node's ServerResponse plus what the request path
// learns on the way (whose request it is, which pod answered, when), read once at the end by
// the metrics, the access log and the usage meter. Fields on the response the server already
// allocates: nothing more is allocated per request to carry them.
import type { IncomingMessage } from 'node:http'
import { ServerResponse } from './node-http.ts'

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
}

/** `address:port` of an endpoint origin (`http://10.0.0.1:8080`, `http://[fd00::1]:8080`): where a log line says the request went. */
export function endpointAddress (origin: string): string {
  return origin.startsWith('http://') ? origin.slice(7) : origin
}
