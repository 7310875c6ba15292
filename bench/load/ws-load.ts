// WebSocket echo load: each connection keeps `window` messages in flight for the duration
// (1: the round trip; more: the relay's throughput, several messages on the wire each way).
// Usage: node ws-load.ts '<WsLoadSpec JSON>'; prints one JSON line (WsLoadResult).
import { WebSocket } from 'ws'
import { parseSpec } from './spec.ts'

export interface WsLoadSpec {
  readonly url: string
  readonly connections: number
  /** Messages each connection keeps in flight: one more is sent for every echo. */
  readonly window: number
  readonly durationS: number
  readonly messageBytes: number
  readonly headers: Record<string, string>
}

export interface WsLoadResult {
  readonly messages: number
  readonly durationS: number
  readonly messagesPerS: number
  readonly errors: number
}

const OPEN_TIMEOUT_MS = 5000

const spec = parseSpec<WsLoadSpec>(process.argv[2], ['url', 'connections', 'window', 'durationS', 'messageBytes', 'headers'])
const payload = Buffer.alloc(spec.messageBytes, 'x')

async function open (): Promise<WebSocket> {
  const socket = new WebSocket(spec.url, { headers: spec.headers, perMessageDeflate: false, handshakeTimeout: OPEN_TIMEOUT_MS })
  await new Promise<void>((resolve, reject) => {
    socket.once('open', resolve)
    socket.once('error', reject)
    socket.once('unexpected-response', (_request, response) => { reject(new Error(`upgrade refused: HTTP ${response.statusCode ?? '?'}`)) })
  })
  return socket
}

const STALL_GRACE_MS = 2000

/** Echoes until the deadline; `completed` is false when the connection closed or stalled first. */
async function echoUntil (socket: WebSocket, deadline: number): Promise<{ echoed: number, completed: boolean }> {
  return await new Promise((resolve) => {
    let echoed = 0
    const finish = (completed: boolean): void => {
      clearTimeout(stall)
      socket.off('message', onMessage)
      socket.off('close', onClose)
      resolve({ echoed, completed })
    }
    const onMessage = (): void => {
      echoed += 1
      if (performance.now() >= deadline) finish(true)
      else socket.send(payload)
    }
    const onClose = (): void => { finish(false) }
    const stall = setTimeout(() => { finish(false) }, deadline - performance.now() + STALL_GRACE_MS)
    socket.on('message', onMessage)
    socket.once('close', onClose)
    for (let sent = 0; sent < spec.window; sent++) socket.send(payload)
  })
}

const sockets = await Promise.all(Array.from({ length: spec.connections }, open))
const started = performance.now()
const outcomes = await Promise.all(sockets.map(async (socket) => await echoUntil(socket, started + spec.durationS * 1000)))
const durationS = (performance.now() - started) / 1000
for (const socket of sockets) socket.terminate()
const messages = outcomes.reduce((sum, outcome) => sum + outcome.echoed, 0)
const result: WsLoadResult = { messages, durationS, messagesPerS: messages / durationS, errors: outcomes.filter((outcome) => !outcome.completed).length }
process.stdout.write(JSON.stringify(result) + '\n')
