import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { request, type IncomingMessage } from 'node:http'
import { fileURLToPath } from 'node:url'
import { WebSocket } from 'ws'
import { createBackend, FIXED_BODY, patternByte, type LocalBackend } from '../../src/local/backend.ts'

const backendScript = fileURLToPath(new URL('../../src/local/backend.ts', import.meta.url))

async function startBackend (t: Test, user = 'alice'): Promise<{ backend: LocalBackend, base: string }> {
  const backend = await createBackend({ user })
  t.teardown(() => backend.close())
  return { backend, base: `http://127.0.0.1:${backend.address.port}` }
}

/** Reads a response body to the end. */
async function readAll (res: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of res) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

void t.test('GET / names the user and echoes what it received', async (t) => {
  const { base } = await startBackend(t, 'bob')
  const res = await fetch(`${base}/?x=1`, { headers: { 'x-user-id': 'bob', 'x-extra': 'yes' } })
  t.equal(res.status, 200)
  t.match(res.headers.get('content-type'), /application\/json/)
  const body = await res.json() as { user: string, method: string, url: string, headers: Record<string, string> }
  t.equal(body.user, 'bob')
  t.equal(body.method, 'GET')
  t.equal(body.url, '/?x=1')
  t.equal(body.headers['x-user-id'], 'bob')
  t.equal(body.headers['x-extra'], 'yes')
})

void t.test('POST /echo streams the body back before the upload ends', async (t) => {
  const { backend } = await startBackend(t)
  const req = request({ host: '127.0.0.1', port: backend.address.port, method: 'POST', path: '/echo', headers: { 'content-type': 'text/x-podgate' } })
  const responded = once(req, 'response') as Promise<[IncomingMessage]>
  req.write('first chunk;')
  const [res] = await responded
  t.equal(res.statusCode, 200)
  t.equal(res.headers['content-type'], 'text/x-podgate', 'same content type')
  const [first] = await once(res, 'data') as [Buffer]
  t.equal(first.toString(), 'first chunk;', 'the first chunk came back while the request was still open')
  t.equal(req.writableEnded, false)
  const rest = readAll(res)
  req.end('second chunk')
  t.equal((await rest).toString(), 'second chunk')
})

void t.test('POST /echo returns a large body unchanged', async (t) => {
  const { backend } = await startBackend(t)
  const size = 16 * 1024 * 1024
  const body = Buffer.alloc(size)
  for (let i = 0; i < size; i += 4) body.writeUInt32LE((i * 2654435761) >>> 0, i)
  const req = request({ host: '127.0.0.1', port: backend.address.port, method: 'POST', path: '/echo', headers: { 'content-length': size } })
  const responded = once(req, 'response') as Promise<[IncomingMessage]>
  req.end(body)
  const [res] = await responded
  t.equal(res.headers['content-length'], String(size), 'content-length passed through')
  const echoed = await readAll(res)
  t.equal(echoed.length, size)
  t.equal(createHash('sha256').update(echoed).digest('hex'), createHash('sha256').update(body).digest('hex'))
})

void t.test('GET /ws echoes text and binary and propagates close codes', async (t) => {
  const { backend } = await startBackend(t)
  const url = `ws://127.0.0.1:${backend.address.port}/ws`

  const ws = new WebSocket(url)
  await once(ws, 'open')
  ws.send('hello')
  const [text, textIsBinary] = await once(ws, 'message') as [Buffer, boolean]
  t.equal(text.toString(), 'hello')
  t.equal(textIsBinary, false)
  ws.send(Buffer.from([0, 1, 2, 255]))
  const [binary, binaryIsBinary] = await once(ws, 'message') as [Buffer, boolean]
  t.same([...binary], [0, 1, 2, 255])
  t.equal(binaryIsBinary, true)
  const closed = once(ws, 'close') as Promise<[number, Buffer]>
  ws.close(4001, 'client done')
  const [code, reason] = await closed
  t.equal(code, 4001, 'the server answers the close with the client\'s code')
  t.equal(reason.toString(), 'client done')

  const server = new WebSocket(`${url}?closeAfter=1&code=4002&greet`)
  const [greeting] = await once(server, 'message') as [Buffer]
  t.match(JSON.parse(greeting.toString()), { user: 'alice', headers: { upgrade: 'websocket' } }, 'greet sends the user and the upgrade headers')
  const serverClosed = once(server, 'close') as Promise<[number, Buffer]>
  server.send('one')
  const [echoed] = await once(server, 'message') as [Buffer]
  t.equal(echoed.toString(), 'one')
  t.equal((await serverClosed)[0], 4002, 'server-side close code reaches the client')
})

void t.test('an upgrade on another path is refused with 404', async (t) => {
  const { backend } = await startBackend(t)
  const ws = new WebSocket(`ws://127.0.0.1:${backend.address.port}/nope`)
  ws.on('error', () => {})
  const [, res] = await once(ws, 'unexpected-response') as [unknown, IncomingMessage]
  t.equal(res.statusCode, 404)
  ws.terminate()
})

void t.test('GET /sse sends the first event before the response ends', async (t) => {
  const { base } = await startBackend(t)
  const started = Date.now()
  const res = await fetch(`${base}/sse?count=3&interval=300`)
  t.equal(res.headers.get('content-type'), 'text/event-stream')
  const reader = (res.body as ReadableStream<Uint8Array>).getReader()
  const decoder = new TextDecoder()
  const first = await reader.read()
  t.equal(first.done, false)
  const firstText = decoder.decode(first.value)
  t.match(firstText, /^id: 1\nevent: tick\ndata: \{"user":"alice","n":1,"of":3\}\n\n/)
  t.equal(firstText.match(/^event: tick$/gm)?.length, 1, 'the first read holds only the first event: nothing was held back')
  let rest = firstText
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    rest += decoder.decode(value)
  }
  t.equal(rest.match(/^event: tick$/gm)?.length, 3, 'count events in all')
  t.ok(Date.now() - started >= 550, 'events are spaced by the interval')
})

void t.test('GET /bytes streams exactly n bytes of the pattern', async (t) => {
  const { base } = await startBackend(t)
  for (const n of [0, 1, 65_536, 1_000_003]) {
    const res = await fetch(`${base}/bytes?n=${n}`)
    t.equal(res.headers.get('content-length'), String(n))
    const body = Buffer.from(await res.arrayBuffer())
    t.equal(body.length, n, `n=${n}`)
    let mismatch = -1
    for (let i = 0; i < body.length; i++) if (body[i] !== patternByte(i)) { mismatch = i; break }
    t.equal(mismatch, -1, `n=${n}: every byte follows the pattern`)
  }
  for (const bad of ['', '-1', 'x', '1.5', String(2 ** 41)]) {
    const res = await fetch(`${base}/bytes?n=${bad}`)
    t.equal(res.status, 400, `n=${JSON.stringify(bad)} is refused`)
    t.match(await res.json(), { error: /^n: / })
  }
  const missing = await fetch(`${base}/bytes`)
  t.equal(missing.status, 400)
})

void t.test('GET /bytes respects backpressure from a slow reader', async (t) => {
  const { backend } = await startBackend(t)
  const n = 64 * 1024 * 1024
  let serverResponse: { writableLength: number } | undefined
  backend.server.once('request', (_req, res) => { serverResponse = res })
  const req = request({ host: '127.0.0.1', port: backend.address.port, path: `/bytes?n=${n}` })
  const [res] = await once(req.end(), 'response') as [IncomingMessage]
  res.pause()
  await new Promise((resolve) => setTimeout(resolve, 200))
  // Without backpressure the whole body would sit in the server's write buffer by now.
  t.ok(serverResponse !== undefined && serverResponse.writableLength < 1024 * 1024, `server buffers little while the reader is paused (${serverResponse?.writableLength} bytes)`)
  let total = 0
  res.on('data', (chunk: Buffer) => { total += chunk.length })
  res.resume()
  await once(res, 'end')
  t.equal(total, n)
})

void t.test('fixed, health, slow, errors', async (t) => {
  const { base } = await startBackend(t)
  const fixed = await fetch(`${base}/fixed`)
  t.equal(fixed.headers.get('content-type'), 'text/plain')
  const fixedBody = Buffer.from(await fixed.arrayBuffer())
  t.equal(fixedBody.length, 100)
  t.same(fixedBody, FIXED_BODY)

  t.equal((await fetch(`${base}/healthz`)).status, 200)

  const before = Date.now()
  const slow = await fetch(`${base}/slow?ms=150`)
  t.ok(Date.now() - before >= 140, 'slow waited')
  t.match(await slow.json(), { user: 'alice', waitedMs: 150 })
  t.equal((await fetch(`${base}/slow?ms=soon`)).status, 400)

  const missing = await fetch(`${base}/nothing-here`)
  t.equal(missing.status, 404)
  t.match(await missing.json(), { error: 'not found', path: '/nothing-here' })

  const wrong = await fetch(`${base}/echo`)
  t.equal(wrong.status, 405)
  t.equal(wrong.headers.get('allow'), 'POST')
  t.equal((await fetch(`${base}/fixed`, { method: 'DELETE' })).status, 405)
})

void t.test('GET /hang never answers and GET /die cuts the body short', async (t) => {
  const { base } = await startBackend(t)
  await t.rejects(fetch(`${base}/hang`, { signal: AbortSignal.timeout(300) }), { name: 'TimeoutError' })

  const died = await fetch(`${base}/die`)
  t.equal(died.status, 200)
  t.equal(died.headers.get('content-length'), '1000')
  await t.rejects(died.arrayBuffer(), 'the body ends before its content-length')
})

void t.test('close() ends open WebSockets with 1001 and hanging requests', async (t) => {
  const backend = await createBackend({ user: 'alice' })
  const ws = new WebSocket(`ws://127.0.0.1:${backend.address.port}/ws`)
  await once(ws, 'open')
  const hanging = fetch(`http://127.0.0.1:${backend.address.port}/hang`).then(() => 'answered', () => 'dropped')
  const wsClosed = once(ws, 'close') as Promise<[number]>
  await new Promise((resolve) => setTimeout(resolve, 50))
  await backend.close()
  t.equal((await wsClosed)[0], 1001)
  t.equal(await hanging, 'dropped', 'the hanging request is dropped')
  t.equal(backend.server.listening, false)
  await backend.close()
})

void t.test('createBackend refuses bad options', async (t) => {
  await t.rejects(createBackend({ user: 'Alice!' }), { name: 'TypeError', message: /^user:/ })
  await t.rejects(createBackend({ user: '' }), { name: 'TypeError', message: /^user:/ })
  await t.rejects(createBackend({ user: 'alice', port: 70000 }), { name: 'TypeError', message: /^port:/ })
  await t.rejects(createBackend({ user: 'alice', host: '' }), { name: 'TypeError', message: /^host:/ })
  const taken = await createBackend({ user: 'alice' })
  t.teardown(() => taken.close())
  await t.rejects(createBackend({ user: 'bob', port: taken.address.port }), { code: 'EADDRINUSE' })
})

/** Starts the backend script; resolves with the child and the port from its listening line. */
async function runScript (t: Test, args: string[]): Promise<{ child: ReturnType<typeof spawn>, port: number }> {
  const child = spawn(process.execPath, [backendScript, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: {} })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  child.stdout.setEncoding('utf8')
  const [line] = await once(child.stdout, 'data') as [string]
  const parsed = JSON.parse(line) as { listening: { address: string, port: number } }
  t.equal(parsed.listening.address, '127.0.0.1')
  return { child, port: parsed.listening.port }
}

void t.test('as a script: prints its address, serves, exits 0 on SIGTERM', async (t) => {
  const { child, port } = await runScript(t, ['--user', 'carol', '--port', '0'])
  const res = await fetch(`http://127.0.0.1:${port}/`)
  t.match(await res.json(), { user: 'carol' })
  const exited = once(child, 'exit') as Promise<[number | null, string | null]>
  child.kill('SIGTERM')
  t.same(await exited, [0, null])
})

void t.test('as a script: exits when its parent closes stdin', async (t) => {
  const { child } = await runScript(t, ['--user', 'carol'])
  const exited = once(child, 'exit') as Promise<[number | null, string | null]>
  child.stdin?.end()
  t.same(await exited, [0, null])
})

void t.test('as a script: bad arguments exit 2 with one clear line', async (t) => {
  for (const [args, message] of [
    [[], /--user is required/],
    [['--user', 'Not_Valid'], /--user: expected a DNS-1123 label/],
    [['--user', 'a', '--port', 'x'], /--port: expected an integer/],
    [['--user', 'a', '--frobnicate'], /Unknown option '--frobnicate'/],
  ] as const) {
    const child = spawn(process.execPath, [backendScript, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: {} })
    let stderr = ''
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
    const [code] = await once(child, 'exit') as [number | null]
    t.equal(code, 2, args.join(' '))
    t.match(stderr, message)
  }
})
