// A real auth service on 127.0.0.1 for PODGATE_AUTH_URL tests: it records every call it gets
// and answers with whatever handler the test sets, by default a token table the way the
// old Django view reads it (bearer token, else the session cookie).
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { bearerToken } from '../../src/auth/extract.ts'

interface Teardown { teardown (fn: () => unknown): void }

export type AuthHandler = (req: IncomingMessage, res: ServerResponse) => void

export interface AuthServiceCall {
  readonly method: string
  readonly url: string
  readonly headers: IncomingHttpHeaders
}

export interface TestAuthService {
  readonly url: string
  readonly server: Server
  /** Every call received, in order. */
  readonly calls: AuthServiceCall[]
  /** How the service answers from now on. */
  handler: AuthHandler
  /** Stops listening and drops every connection (the service is down). */
  close (): Promise<void>
}

/** Starts the service at `path` and closes it with the test. */
export async function startAuthService (t: Teardown, handler: AuthHandler, path = '/auth/validate'): Promise<TestAuthService> {
  const calls: AuthServiceCall[] = []
  const service: { handler: AuthHandler } = { handler }
  const server = createServer((req, res) => {
    calls.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers })
    service.handler(req, res)
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  const { port } = server.address() as AddressInfo
  let closing: Promise<void> | undefined
  const close = (): Promise<void> => {
    closing ??= new Promise((resolve) => {
      server.close(() => { resolve() })
      server.closeAllConnections()
    })
    return closing
  }
  t.teardown(close)
  return Object.assign(service, { url: `http://127.0.0.1:${port}${path}`, server, calls, close })
}

/** The credential a request carries as the old auth view reads it: bearer first, else the session cookie. */
export function credentialOf (req: IncomingMessage): string | undefined {
  const auth = req.headers.authorization
  const bearer = auth === undefined ? undefined : bearerToken(auth)
  if (bearer !== undefined) return bearer
  return /(?:^|;\s*)session=([^;]*)/.exec(req.headers.cookie ?? '')?.[1]
}

/** Answers 200 with `header: <prefix><user>` for a token in `table`, else 401. */
export function tokenTable (table: Readonly<Record<string, string>>, header = 'X-User-ID', prefix = ''): AuthHandler {
  return (req, res) => {
    const token = credentialOf(req)
    const user = token === undefined || !Object.hasOwn(table, token) ? undefined : table[token]
    if (user === undefined) {
      res.writeHead(401, { 'content-type': 'text/plain' }).end('unauthorized')
      return
    }
    res.writeHead(200, { [header]: `${prefix}${user}`, 'content-type': 'text/plain' }).end('ok')
  }
}
