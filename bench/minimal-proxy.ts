// The floor of podgate's own stack, for the `node-minimal` path: node:http in, a token cache
// in front of jose, undici's dispatch out, and nothing else — no header hygiene, no metrics,
// no timeouts, no retries, no WebSocket, no draining. What podgate costs above this is the
// price of what it does beyond forwarding.
// Usage: node bench/minimal-proxy.ts --upstream host:port --secret S; prints {"listening":{...}}
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import { parseArgs } from 'node:util'
import { jwtVerify } from 'jose'
import { Pool, type Dispatcher } from 'undici'

const { values } = parseArgs({ options: { upstream: { type: 'string' }, secret: { type: 'string' } } })
if (values.upstream === undefined || values.secret === undefined) throw new Error('usage: minimal-proxy.ts --upstream host:port --secret S')
const secret = new TextEncoder().encode(values.secret)
const pool = new Pool(`http://${values.upstream}`, { connections: 256, pipelining: 1 })
const users = new Map<string, string>()

class Forward implements Dispatcher.DispatchHandler {
  readonly #res: ServerResponse
  constructor (res: ServerResponse) { this.#res = res }
  onRequestStart (): void {}
  onResponseStart (_controller: Dispatcher.DispatchController, status: number, headers: IncomingHttpHeaders): void {
    const out = { ...headers }
    delete out.connection
    delete out['keep-alive']
    this.#res.writeHead(status, out)
  }

  onResponseData (_controller: Dispatcher.DispatchController, chunk: Buffer): void { this.#res.write(chunk) }
  onResponseEnd (): void { this.#res.end() }
  onResponseError (_controller: Dispatcher.DispatchController, err: Error): void { process.stderr.write(String(err) + '\n'); this.#res.destroy() }
}

function forward (req: IncomingMessage, res: ServerResponse, user: string): void {
  pool.dispatch({ path: req.url ?? '/', method: 'GET', headers: ['x-user-id', user, 'host', req.headers.host ?? ''] }, new Forward(res))
}

const server = createServer((req, res) => {
  const token = req.headers.authorization?.slice(7) ?? ''
  const user = users.get(token)
  if (user !== undefined) {
    forward(req, res, user)
    return
  }
  jwtVerify(token, secret, { algorithms: ['HS256'] }).then(({ payload }) => {
    users.set(token, String(payload.sub))
    forward(req, res, String(payload.sub))
  }, () => { res.writeHead(401).end() })
})
// An orderly exit, so that a profile asked for with --cpu-prof is written (bench/profile.ts).
process.once('SIGTERM', () => { process.exit(0) })
server.listen(0, '127.0.0.1', () => {
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  process.stdout.write(JSON.stringify({ listening: { address: address.address, port: address.port } }) + '\n')
})
