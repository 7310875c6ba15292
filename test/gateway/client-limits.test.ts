// Connection limits on the client side: a request head must arrive in time, an idle
// keep-alive connection and a silent connection end, but a slow upload that keeps moving
// and a quiet WebSocket are never cut.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import WebSocket from 'ws'
import { startTestGateway } from '../support/gateway.ts'

// Short limits so each case takes seconds; the upstream waits stay below the idle timeout.
const LIMITS = {
  PODGATE_CLIENT_HEADERS_TIMEOUT: '1s',
  PODGATE_KEEP_ALIVE_TIMEOUT: '1s',
  PODGATE_CLIENT_IDLE_TIMEOUT: '3s',
  PODGATE_HEADERS_TIMEOUT: '2s',
  PODGATE_BODY_TIMEOUT: '2s',
  PODGATE_START_TIMEOUT: '1s',
}
/** Far beyond every limit above: a connection still open then is one the limits missed. */
const PATIENCE_MS = 15_000

/** Resolves with what the server sent and whether it closed the socket within `withinMs`. */
async function closedWithin (socket: Socket, withinMs: number): Promise<{ closed: boolean, received: string }> {
  let received = ''
  socket.on('data', (chunk: Buffer) => { received += chunk.toString('latin1') })
  const closed = await Promise.race([
    once(socket, 'close').then(() => true),
    sleep(withinMs, false, { ref: false }),
  ])
  socket.destroy()
  return { closed, received }
}

async function open (url: string): Promise<Socket> {
  const { port } = new URL(url)
  const socket = connect(Number(port), '127.0.0.1')
  await once(socket, 'connect')
  return socket
}

/** A gateway with the short limits, alice's backend, and a connection that collects what it receives. */
async function aliceConnection (t: Parameters<typeof startTestGateway>[0]): Promise<{ socket: Socket, token: string, received: () => string }> {
  const gw = await startTestGateway(t, LIMITS)
  await gw.backend('alice')
  const token = await gw.token('alice')
  const socket = await open(gw.url)
  let received = ''
  socket.on('data', (chunk: Buffer) => { received += chunk.toString('latin1') })
  return { socket, token, received: () => received }
}

void t.test('a request head that stalls is answered 408 and the connection closed', async (t) => {
  const gw = await startTestGateway(t, LIMITS)
  const socket = await open(gw.url)
  socket.write('GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ')
  const { closed, received } = await closedWithin(socket, PATIENCE_MS)
  t.ok(closed, 'closed')
  t.match(received, /^HTTP\/1\.1 408 /, 'with 408 Request Timeout')
})

void t.test('a connection that never sends a byte is closed', async (t) => {
  const gw = await startTestGateway(t, LIMITS)
  const socket = await open(gw.url)
  const { closed } = await closedWithin(socket, PATIENCE_MS)
  t.ok(closed)
})

void t.test('an idle keep-alive connection is closed after PODGATE_KEEP_ALIVE_TIMEOUT', async (t) => {
  const { socket, token, received } = await aliceConnection(t)
  socket.write(`GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n\r\n`)
  const { closed } = await closedWithin(socket, PATIENCE_MS)
  t.match(received(), /^HTTP\/1\.1 200 /, 'served')
  t.match(received(), /keep-alive: timeout=1/i, 'told the client the keep-alive timeout')
  t.ok(closed, 'then closed while idle')
})

void t.test('an upload that keeps moving outlasts every client limit', async (t) => {
  const { socket, token, received } = await aliceConnection(t)
  const closed = once(socket, 'close')
  socket.write(`POST /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n`)
  // Ten chunks 500 ms apart: 5 s in all, longer than the head (1 s) and idle (3 s) limits.
  for (let i = 0; i < 10; i++) {
    socket.write(`6\r\nchunk${i}\r\n`)
    await sleep(500)
  }
  socket.write('0\r\n\r\n')
  await closed
  t.match(received(), /^HTTP\/1\.1 200 /, 'answered')
  for (let i = 0; i < 10; i++) t.match(received(), `chunk${i}`, `chunk ${i} reached the pod and came back`)
})

void t.test('a quiet WebSocket is not cut by the idle timeout', async (t) => {
  const gw = await startTestGateway(t, LIMITS)
  await gw.backend('alice')
  const token = await gw.token('alice')
  const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/ws`, { headers: { authorization: `Bearer ${token}` } })
  t.teardown(() => { ws.terminate() })
  await once(ws, 'open')
  let closed = false
  ws.once('close', () => { closed = true })
  // Silent for longer than PODGATE_CLIENT_IDLE_TIMEOUT (3 s), then still usable.
  await sleep(4_500)
  t.notOk(closed, 'still open after the idle timeout')
  ws.send('still here')
  const [message] = await once(ws, 'message') as [Buffer]
  t.match(message.toString(), /still here/, 'and echoing')
})

void t.test('the gateway port asks the kernel for a deep accept queue, not Node\'s 511', async (t) => {
  const gw = await startTestGateway(t, {})
  const { port } = new URL(gw.url)
  const somaxconn = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8'))
  // `ss` shows a listening socket's backlog as its Send-Q.
  const listening = execFileSync('ss', ['-Hltn', `sport = :${port}`], { encoding: 'utf8' }).trim().split(/\s+/)
  t.equal(Number(listening[2]), Math.min(4096, somaxconn), `backlog ${listening[2] ?? '?'} on port ${port}`)
})
