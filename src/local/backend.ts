// The built-in per-user app: what the demo, the tests and the benchmarks route to, and what
// a user's pod can run. Only node:http and ws, so it starts fast anywhere.
//   node src/local/backend.ts --user alice [--port 0] [--host 127.0.0.1]
// The demo makes it start slowly, as a pod pulling its image would: READY_DELAY_MS holds it back
// before it listens, for every user but those in READY_AT_ONCE (comma-separated).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { listenOn } from '../listen.ts'
import type { Duplex } from 'node:stream'
import { pipeline } from 'node:stream'
import { fstatSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { WebSocketServer, type WebSocket } from 'ws'
import { isDnsLabel } from '../kube/labels.ts'

export interface BackendOptions {
  /** The user this backend serves: a DNS-1123 label. */
  readonly user: string
  /** 0 (the default) picks a free port. */
  readonly port?: number
  readonly host?: string
}

export interface LocalBackend {
  readonly server: Server
  readonly address: AddressInfo
  /** Stops listening, closes WebSockets with 1001 and drops every open connection. */
  close (): Promise<void>
}

/** Body of `GET /fixed`: exactly 100 bytes, for benchmarks. */
export const FIXED_BODY = Buffer.from('podgate fixed response: the same 100 bytes of plain text every time'.padEnd(99, '.') + '\n')

/** Byte `offset` of a `GET /bytes` body: the offset modulo 256. */
export function patternByte (offset: number): number {
  return offset % 256
}

const PATTERN_CHUNK = Buffer.from(Array.from({ length: 64 * 1024 }, (_, i) => patternByte(i)))
const MAX_BYTES = 2 ** 40
const MAX_WAIT_MS = 600_000
const MAX_SSE_EVENTS = 100_000
const SHUTDOWN_TIMEOUT_MS = 5_000

/** Starts a backend for `user` and resolves once it listens. */
export async function createBackend (options: BackendOptions): Promise<LocalBackend> {
  const { user, port = 0, host = '127.0.0.1' } = options
  if (!isDnsLabel(user)) throw new TypeError(`user: expected a DNS-1123 label, got ${JSON.stringify(user)}`)
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new TypeError(`port: expected an integer from 0 to 65535, got ${String(port)}`)
  if (typeof host !== 'string' || host === '') throw new TypeError('host: expected a non-empty string')

  // requestTimeout 0: echo uploads and downloads may legitimately stream for a long time;
  // the head still has a limit (requestTimeout 0 alone would turn that off too).
  const server = createServer({ requestTimeout: 0, headersTimeout: 60_000 }, (req, res) => { route(user, req, res) })
  const wss = new WebSocketServer({ noServer: true, maxPayload: 16 * 1024 * 1024 })
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => { upgrade(user, wss, req, socket, head) })
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n')
    else socket.destroy()
  })

  const address = await listenOn(server, { port, host })

  let closing: Promise<void> | undefined
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      for (const ws of wss.clients) ws.close(1001, 'backend stopping')
      server.close(() => { resolve() })
      server.closeAllConnections()
      // Upgraded sockets are no longer tracked by the HTTP server.
      setTimeout(() => { for (const ws of wss.clients) ws.terminate() }, 1_000).unref()
      wss.close()
    })
    return closing
  }
  return { server, address, close }
}

function route (user: string, req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://backend')
  const method = req.method ?? 'GET'
  const get = method === 'GET' || method === 'HEAD'
  switch (url.pathname) {
    case '/':
      return sendJson(res, 200, { user, greeting: `Hello, ${user}!`, method, url: req.url, headers: req.headers }, req)
    case '/echo':
      return method === 'POST' ? echo(req, res) : notAllowed(res, 'POST', req)
    case '/healthz':
      if (!get) return notAllowed(res, 'GET', req)
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 3 })
      return void res.end('ok\n')
    case '/fixed':
      if (!get) return notAllowed(res, 'GET', req)
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': FIXED_BODY.length })
      return void res.end(FIXED_BODY)
    case '/bytes': {
      if (!get) return notAllowed(res, 'GET', req)
      const n = integerParam(url, 'n', 0, MAX_BYTES, undefined)
      if (typeof n === 'string') return sendJson(res, 400, { error: n }, req)
      return streamBytes(res, n)
    }
    case '/sse': {
      if (!get) return notAllowed(res, 'GET', req)
      const count = integerParam(url, 'count', 1, MAX_SSE_EVENTS, 5)
      const interval = integerParam(url, 'interval', 1, MAX_WAIT_MS, 1_000)
      if (typeof count === 'string') return sendJson(res, 400, { error: count }, req)
      if (typeof interval === 'string') return sendJson(res, 400, { error: interval }, req)
      return serverSentEvents(user, res, count, interval)
    }
    case '/slow': {
      const ms = integerParam(url, 'ms', 0, MAX_WAIT_MS, 1_000)
      if (typeof ms === 'string') return sendJson(res, 400, { error: ms }, req)
      const timer = setTimeout(() => { sendJson(res, 200, { user, waitedMs: ms }, req) }, ms)
      res.on('close', () => { clearTimeout(timer) })
      return void req.resume()
    }
    case '/hang':
      // Never answers: the gateway's headers timeout must fire.
      return void req.resume()
    case '/die':
      return die(req, res)
    default:
      return sendJson(res, 404, { error: 'not found', user, path: url.pathname }, req)
  }
}

function sendJson (res: ServerResponse, status: number, body: unknown, req: IncomingMessage): void {
  req.resume()
  const payload = Buffer.from(JSON.stringify(body) + '\n')
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': payload.length })
  res.end(req.method === 'HEAD' ? undefined : payload)
}

function notAllowed (res: ServerResponse, allow: string, req: IncomingMessage): void {
  res.setHeader('allow', allow)
  sendJson(res, 405, { error: 'method not allowed', allow }, req)
}

/** A query parameter as an integer in [min, max]; a message naming it when it is not. */
function integerParam (url: URL, name: string, min: number, max: number, fallback: number | undefined): number | string {
  const raw = url.searchParams.get(name)
  if (raw === null) return fallback ?? `missing query parameter ${name}`
  const n = Number(raw)
  if (!/^\d+$/.test(raw) || n < min || n > max) return `${name}: expected an integer from ${min} to ${max}, got ${JSON.stringify(raw.slice(0, 32))}`
  return n
}

function echo (req: IncomingMessage, res: ServerResponse): void {
  const headers: Record<string, string> = { 'content-type': req.headers['content-type'] ?? 'application/octet-stream' }
  if (req.headers['content-length'] !== undefined) headers['content-length'] = req.headers['content-length']
  res.writeHead(200, headers)
  // Headers go out now, so the client sees the echo start before its upload ends.
  res.flushHeaders()
  pipeline(req, res, (err) => { if (err) res.destroy() })
}

function streamBytes (res: ServerResponse, n: number): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': n })
  if (res.req.method === 'HEAD') return void res.end()
  let sent = 0
  const write = (): void => {
    while (sent < n) {
      const size = Math.min(PATTERN_CHUNK.length, n - sent)
      // Chunks start at offsets that are multiples of 64 KiB, so every chunk begins at pattern byte 0.
      const more = res.write(size === PATTERN_CHUNK.length ? PATTERN_CHUNK : PATTERN_CHUNK.subarray(0, size))
      sent += size
      if (!more) return void res.once('drain', write)
    }
    res.end()
  }
  res.on('close', () => { res.off('drain', write) })
  write()
}

function serverSentEvents (user: string, res: ServerResponse, count: number, interval: number): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' })
  let sent = 0
  const send = (): void => {
    sent += 1
    res.write(`id: ${sent}\nevent: tick\ndata: ${JSON.stringify({ user, n: sent, of: count })}\n\n`)
    if (sent >= count) stop(true)
  }
  // Closing the server destroys the response, which clears the timer.
  const timer = setInterval(send, interval)
  const stop = (end: boolean): void => {
    clearInterval(timer)
    if (end && !res.writableEnded) res.end()
  }
  res.on('close', () => { stop(false) })
  send()
}

function die (req: IncomingMessage, res: ServerResponse): void {
  req.resume()
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 1000 })
  // Destroy only once the partial body is on the wire, so the client sees a truncated response.
  res.write('partial body, then the connection drops\n', () => { res.socket?.destroy() })
}

function upgrade (user: string, wss: WebSocketServer, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  socket.on('error', () => { socket.destroy() })
  const url = new URL(req.url ?? '/', 'http://backend')
  if (url.pathname !== '/ws') {
    socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n')
    return
  }
  const closeAfter = integerParam(url, 'closeAfter', 1, 1_000_000, undefined)
  const code = integerParam(url, 'code', 1000, 4999, 1000)
  wss.handleUpgrade(req, socket, head, (ws) => {
    webSocketEcho(ws, {
      user,
      headers: req.headers,
      greet: url.searchParams.has('greet'),
      closeAfter: typeof closeAfter === 'number' ? closeAfter : undefined,
      closeCode: typeof code === 'number' ? code : 1000,
    })
  })
}

interface EchoOptions {
  readonly user: string
  readonly headers: IncomingMessage['headers']
  /** Send `{ user, headers }` first, so a test can see the identity headers of the upgrade. */
  readonly greet: boolean
  /** Close from the server side, with `closeCode`, after echoing this many messages. */
  readonly closeAfter: number | undefined
  readonly closeCode: number
}

function webSocketEcho (ws: WebSocket, options: EchoOptions): void {
  ws.on('error', () => { ws.terminate() })
  if (options.greet) ws.send(JSON.stringify({ user: options.user, headers: options.headers }))
  let echoed = 0
  ws.on('message', (data, isBinary) => {
    ws.send(data as Buffer, { binary: isBinary })
    echoed += 1
    if (options.closeAfter !== undefined && echoed >= options.closeAfter) ws.close(options.closeCode, 'closeAfter reached')
  })
  // ws answers a client's close frame with the same code by itself.
}

/** Runs the backend as a process: parses argv, listens, prints the address as one JSON line. */
async function main (argv: string[]): Promise<void> {
  let values: { user?: string, port?: string, host?: string }
  try {
    values = parseArgs({ args: argv, options: { user: { type: 'string' }, port: { type: 'string' }, host: { type: 'string' } }, strict: true }).values
  } catch (err) {
    return fail(`${(err as Error).message}\nusage: backend --user <id> [--port 0] [--host 127.0.0.1]`, 2)
  }
  if (values.user === undefined) return fail('--user is required\nusage: backend --user <id> [--port 0] [--host 127.0.0.1]', 2)
  const port = values.port === undefined ? 0 : Number(values.port)
  if (values.port !== undefined && !/^\d+$/.test(values.port)) return fail(`--port: expected an integer from 0 to 65535, got ${JSON.stringify(values.port)}`, 2)

  const delayMs = readyDelayMs(process.env, values.user)
  if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs))

  let backend: LocalBackend
  try {
    backend = await createBackend({ user: values.user, port, host: values.host ?? '127.0.0.1' })
  } catch (err) {
    if (err instanceof TypeError) return fail(`--${err.message}`, 2)
    return fail(`cannot listen on ${values.host ?? '127.0.0.1'}:${port}: ${(err as Error).message}`, 1)
  }

  let stopping = false
  const stop = (reason: string): void => {
    if (stopping) return
    stopping = true
    process.stderr.write(`backend ${values.user ?? ''}: stopping (${reason})\n`)
    setTimeout(() => { process.exit(0) }, SHUTDOWN_TIMEOUT_MS).unref()
    void backend.close().then(() => { process.exit(0) })
  }
  process.on('SIGTERM', () => { stop('SIGTERM') })
  process.on('SIGINT', () => { stop('SIGINT') })
  // A parent that started us over IPC or a pipe owns our lifetime: when it goes, so do we.
  if (process.channel !== undefined) process.on('disconnect', () => { stop('parent disconnected') })
  if (stdinIsPipe()) {
    process.stdin.on('end', () => { stop('stdin closed') })
    process.stdin.on('error', () => { stop('stdin error') })
    process.stdin.resume()
  }
  process.stdout.on('error', () => { /* parent gone; the stdin or IPC watch ends us */ })
  process.stdout.write(JSON.stringify({ listening: { address: backend.address.address, port: backend.address.port } }) + '\n')
}

/** How long `user`'s backend waits before it listens: READY_DELAY_MS unless READY_AT_ONCE names the user. */
export function readyDelayMs (env: NodeJS.ProcessEnv, user: string): number {
  const delay = Number(env.READY_DELAY_MS ?? 0)
  if (!Number.isInteger(delay) || delay <= 0) return 0
  return (env.READY_AT_ONCE ?? '').split(',').includes(user) ? 0 : Math.min(delay, MAX_WAIT_MS)
}

function stdinIsPipe (): boolean {
  try {
    const stat = fstatSync(0)
    return stat.isFIFO() || stat.isSocket()
  } catch {
    return false
  }
}

function fail (message: string, exitCode: number): void {
  process.stderr.write(`backend: ${message}\n`)
  process.exitCode = exitCode
}

if (import.meta.main) await main(process.argv.slice(2))
