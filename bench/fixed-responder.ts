// The benchmark's upstream when the built-in backend (src/local/backend.ts) is not there:
// the same routes and start-up line, and nothing else, so it costs as little as possible.
// It also stands in for an OpenTelemetry collector (POST /v1/traces → 200) for the tracing row.
// Usage: node bench/fixed-responder.ts [--port N]; prints {"listening":{"address":...,"port":N}}
import { createServer } from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { parseArgs } from 'node:util'
import { WebSocketServer } from 'ws'

const FIXED_BODY = Buffer.alloc(100, 'x')
const CHUNK = Buffer.alloc(64 * 1024, 'x')
const MAX_BYTES = 16 * 1024 ** 3

const { values } = parseArgs({ options: { port: { type: 'string', default: '0' }, user: { type: 'string' } } })
const port = Number(values.port)
if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port: expected 0-65535, got ${values.port}`)

function handle (request: IncomingMessage, response: ServerResponse): void {
  const url = new URL(request.url ?? '/', 'http://upstream')
  if (request.method === 'POST' && url.pathname === '/echo') {
    response.writeHead(200, { 'content-type': request.headers['content-type'] ?? 'application/octet-stream' })
    request.pipe(response)
    return
  }
  if (request.method === 'GET' && url.pathname === '/bytes') {
    const n = Number(url.searchParams.get('n') ?? '0')
    if (!Number.isInteger(n) || n < 0 || n > MAX_BYTES) {
      response.writeHead(400).end('n must be an integer from 0 to 16 GiB\n')
      return
    }
    response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': n })
    let left = n
    const writeMore = (): void => {
      while (left > 0) {
        const chunk = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left)
        left -= chunk.length
        if (!response.write(chunk)) { response.once('drain', writeMore); return }
      }
      response.end()
    }
    writeMore()
    return
  }
  if (request.method === 'POST' && url.pathname === '/v1/traces') {
    // An OTLP/HTTP collector that keeps nothing: podgate's span export costs what it would against a real one.
    request.resume()
    request.once('end', () => { response.writeHead(200, { 'content-type': 'application/json', 'content-length': 2 }).end('{}') })
    return
  }
  if (request.method === 'GET') {
    response.writeHead(200, { 'content-type': 'text/plain', 'content-length': FIXED_BODY.length }).end(FIXED_BODY)
    return
  }
  response.writeHead(405).end()
}

const server = createServer({ keepAliveTimeout: 60_000 }, handle)
const sockets = new WebSocketServer({ server, path: '/ws', perMessageDeflate: false })
sockets.on('connection', (socket) => {
  socket.on('message', (data, isBinary) => { socket.send(data, { binary: isBinary }) })
})
server.listen(port, '127.0.0.1', () => {
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  process.stdout.write(JSON.stringify({ listening: { address: address.address, port: address.port } }) + '\n')
})
process.once('SIGTERM', () => {
  sockets.close()
  server.closeAllConnections()
  server.close()
})
