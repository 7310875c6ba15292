// Opening ports: the one-line reason for a failed bind, the holder read from /proc, and the
// primary's exclusive claim that keeps a second podgate out of its workers' SO_REUSEPORT group.
import { once } from 'node:events'
import { createServer, type AddressInfo, type Server } from 'node:net'
import t, { type Test } from 'tap'
import { ListenError, portHolders, toListenError } from '../src/listen.ts'
import { PortClaim } from '../src/workers/port-claim.ts'

function errno (code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`listen ${code}: something 127.0.0.1:8080`), { code, syscall: 'listen' })
}

async function listen (t: Test, options: { reusePort?: boolean, port?: number } = {}): Promise<Server> {
  const server = createServer((socket) => { socket.end('holder') })
  server.listen({ host: '127.0.0.1', port: options.port ?? 0, reusePort: options.reusePort ?? false })
  await once(server, 'listening')
  t.teardown(() => { server.close() })
  return server
}

function portOf (server: Server): number {
  return (server.address() as AddressInfo).port
}

void t.test('toListenError: one line naming the address, the variable and what is wrong', (t) => {
  const target = { host: '127.0.0.1', port: 8080, portVariable: 'PODGATE_PORT' }
  const cases: Array<[string, string]> = [
    ['EADDRINUSE', 'cannot listen on 127.0.0.1:8080 (PODGATE_PORT): address already in use by pid 7 (node other.js)'],
    ['EACCES', 'cannot listen on 127.0.0.1:8080 (PODGATE_PORT): permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)'],
    ['EADDRNOTAVAIL', 'cannot listen on 127.0.0.1:8080 (PODGATE_HOST): address not available (no interface of this host has it)'],
    ['ENOTFOUND', 'cannot listen on 127.0.0.1:8080 (PODGATE_HOST): host name not found'],
  ]
  for (const [code, message] of cases) {
    const cause = errno(code)
    const err = toListenError(cause, target, () => ['pid 7 (node other.js)'])
    t.ok(err instanceof ListenError, code)
    t.equal((err as ListenError).message, message)
    t.equal((err as ListenError).code, 'PODGATE_LISTEN')
    t.equal((err as ListenError).cause, cause, 'the original is kept as cause')
  }
  t.equal((toListenError(errno('EADDRINUSE'), target, () => []) as Error).message, 'cannot listen on 127.0.0.1:8080 (PODGATE_PORT): address already in use', 'no holder found: no holder named')
  t.equal((toListenError(errno('EADDRINUSE'), { ...target, host: '::1', portVariable: 'PODGATE_ADMIN_PORT' }, () => []) as Error).message,
    'cannot listen on [::1]:8080 (PODGATE_ADMIN_PORT): address already in use')
  const other = new Error('something else')
  t.equal(toListenError(other, target), other, 'any other error is left as it is')
  const listenError = new ListenError('already explained')
  t.equal(toListenError(listenError, target), listenError)
  t.end()
})

void t.test('portHolders names the process listening on a port, whatever its SO_REUSEPORT', async (t) => {
  const plain = await listen(t)
  t.match(portHolders(portOf(plain)), [new RegExp(`^pid ${process.pid} \\(node `)])
  const shared = await listen(t, { reusePort: true })
  t.match(portHolders(portOf(shared)), [new RegExp(`^pid ${process.pid} `)])
  const free = portOf(plain)
  plain.close()
  await once(plain, 'close')
  t.same(portHolders(free), [], 'nobody listens: nobody named')
  t.same(portHolders(free, '/nonexistent'), [], 'no /proc: nobody named, no error')
})

void t.test('a claim fails on a port anyone listens on, SO_REUSEPORT listeners of this very user included', async (t) => {
  for (const reusePort of [false, true]) {
    const holder = await listen(t, { reusePort })
    const port = portOf(holder)
    const err = await PortClaim.take('127.0.0.1', port).then(() => undefined, (e: unknown) => e)
    t.ok(err instanceof ListenError, `holder with reusePort ${String(reusePort)}`)
    t.equal((err as Error).message, `cannot listen on 127.0.0.1:${port} (PODGATE_PORT): address already in use by ${portHolders(port).join(', ')}`)
  }
})

void t.test('a claim on port 0 gets a port; while held nobody can join it; once released workers can', async (t) => {
  const claim = await PortClaim.take('127.0.0.1', 0)
  t.not(claim.port, 0)
  // What a second podgate's worker would do: bind with SO_REUSEPORT.
  const joining = createServer()
  joining.listen({ host: '127.0.0.1', port: claim.port, reusePort: true })
  const [err] = await once(joining, 'error') as [NodeJS.ErrnoException]
  t.equal(err.code, 'EADDRINUSE', 'an SO_REUSEPORT bind is refused while the claim holds the port')
  await claim.release()
  await claim.release()
  const worker = await listen(t, { reusePort: true, port: claim.port })
  const sibling = await listen(t, { reusePort: true, port: claim.port })
  t.equal(portOf(worker), claim.port)
  t.equal(portOf(sibling), claim.port, 'after release, SO_REUSEPORT listeners share the port')
})
