// `podgate serve` (one process and with workers) and `podgate demo` as real processes on a port
// something else holds, or an address this host does not have: one line on stderr, exit 1,
// no stack, and nothing of theirs left running.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { once } from 'node:events'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { runCli } from './support/serve.ts'

const SECRET = 'a test secret that is at least thirty-two bytes long'

void t.test('a port another process holds, or an address not on this host: one line, exit 1, nothing left running', async (t) => {
  const holder = createServer((socket) => { socket.end() })
  holder.listen({ host: '127.0.0.1', port: 0 })
  await once(holder, 'listening')
  t.teardown(() => { holder.close() })
  const busy = (holder.address() as AddressInfo).port
  const dir = mkdtempSync(join(tmpdir(), 'podgate-busy-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const routes = join(dir, 'routes.json')
  writeFileSync(routes, JSON.stringify({ alice: [] }))
  const serve = (workers: string): Record<string, string> => ({
    PODGATE_JWT_SECRET: SECRET, PODGATE_LOCAL_ROUTES: routes, PODGATE_HOST: '127.0.0.1', PODGATE_WORKERS: workers, PODGATE_ACCESS_LOG: 'false',
  })
  const inUse = (variable: string): string => `podgate: cannot listen on 127.0.0.1:${busy} (${variable}): address already in use by pid ${process.pid} (node `
  // An address of TEST-NET-1 (RFC 5737): on no interface of any host.
  const notHere = 'podgate: cannot listen on 192.0.2.1:0 (PODGATE_HOST): address not available (no interface of this host has it)'

  const cases: Array<{ name: string, args: string[], env: Record<string, string>, line: string }> = [
    { name: 'serve, one process, gateway port', args: ['serve'], env: { ...serve('1'), PODGATE_PORT: String(busy), PODGATE_ADMIN_PORT: '0' }, line: inUse('PODGATE_PORT') },
    { name: 'serve, two workers, gateway port', args: ['serve'], env: { ...serve('2'), PODGATE_PORT: String(busy), PODGATE_ADMIN_PORT: '0' }, line: inUse('PODGATE_PORT') },
    { name: 'demo, gateway port', args: ['demo'], env: { PODGATE_PORT: String(busy), PODGATE_ADMIN_PORT: '0' }, line: inUse('PODGATE_PORT') },
    { name: 'serve, one process, admin port', args: ['serve'], env: { ...serve('1'), PODGATE_PORT: '0', PODGATE_ADMIN_PORT: String(busy) }, line: inUse('PODGATE_ADMIN_PORT') },
    { name: 'serve, two workers, admin port', args: ['serve'], env: { ...serve('2'), PODGATE_PORT: '0', PODGATE_ADMIN_PORT: String(busy) }, line: inUse('PODGATE_ADMIN_PORT') },
    { name: 'demo, admin port', args: ['demo'], env: { PODGATE_PORT: '0', PODGATE_ADMIN_PORT: String(busy) }, line: inUse('PODGATE_ADMIN_PORT') },
    { name: 'serve, two workers, foreign address', args: ['serve'], env: { ...serve('2'), PODGATE_HOST: '192.0.2.1', PODGATE_PORT: '0', PODGATE_ADMIN_PORT: '0' }, line: notHere },
    { name: 'demo, foreign address', args: ['demo'], env: { PODGATE_HOST: '192.0.2.1', PODGATE_PORT: '0', PODGATE_ADMIN_PORT: '0' }, line: notHere },
  ]
  for (const c of cases) {
    const run = await runCli(c.args, c.env)
    const lines = run.stderr.split('\n').filter(Boolean)
    t.equal(run.code, 1, `${c.name}: exit 1`)
    t.equal(lines.length, 1, `${c.name}: one line on stderr`)
    t.ok(lines[0]?.startsWith(c.line), `${c.name}: ${lines[0] ?? ''}`)
    t.notMatch(run.stderr + run.stdout, /^\s+at /m, `${c.name}: no stack anywhere`)
    t.notOk(run.leftBehind, `${c.name}: no worker or backend outlives it`)
  }
})
