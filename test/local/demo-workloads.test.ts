// `podgate demo` with the provisioner: the admin API it prints, spawn on demand and idle
// culling, all over local backend processes.
import t, { type Test } from 'tap'
import { PassThrough } from 'node:stream'
import { mintToken } from '../../src/auth/mint.ts'
import { loadConfig } from '../../src/config.ts'
import { runDemo, type RunningDemo } from '../../src/local/demo.ts'
import { createLogger } from '../../src/log.ts'

const SECRET = 'a demo secret that is at least thirty-two bytes long'

async function demo (t: Test, env: Record<string, string>): Promise<{ running: RunningDemo, output: string }> {
  const fullEnv = { PODGATE_PORT: '0', PODGATE_ADMIN_PORT: '0', PODGATE_ACCESS_LOG: 'false', PODGATE_JWT_SECRET: SECRET, ...env }
  const out = new PassThrough()
  let output = ''
  out.on('data', (chunk: Buffer) => { output += String(chunk) })
  const running = await runDemo({ config: loadConfig(fullEnv, { requireKey: false }), env: fullEnv, logger: createLogger('silent'), out, cullIntervalMs: 50 })
  t.teardown(() => running.close())
  return { running, output }
}

const token = (user: string): Promise<string> => mintToken({ secret: new TextEncoder().encode(SECRET), user, ttlSeconds: 60 })

async function status (url: string, user: string): Promise<number> {
  const res = await fetch(url, { headers: { authorization: `Bearer ${await token(user)}` }, signal: AbortSignal.timeout(20_000) })
  await res.body?.cancel()
  return res.status
}

void t.test('the demo prints a working admin token and curl lines; PUT and DELETE a user through them', async (t) => {
  const { running, output } = await demo(t, {})
  const put = /curl -s -X PUT (http:\/\/127\.0\.0\.1:\d+\/api\/users\/carol) -H 'Authorization: Bearer ([\w-]+)'/.exec(output)
  t.ok(put, 'a PUT /api/users/carol line is printed')
  const [, putUrl = '', adminToken = ''] = put ?? []
  t.equal(adminToken, running.adminToken)
  t.ok(adminToken.length >= 16, 'a generated admin token')
  t.match(output, 'generated for this run; set PODGATE_ADMIN_TOKEN to choose one')
  t.match(output, /curl -s http:\/\/127\.0\.0\.1:\d+\/ -H 'Authorization: Bearer [\w-]+\.[\w-]+\.[\w-]+'/)

  t.equal(await status(`${running.gatewayUrl}/`, 'carol'), 404, 'carol has no workload yet (spawn on demand is off)')
  const created = await fetch(putUrl, { method: 'PUT', headers: { authorization: `Bearer ${adminToken}` } })
  t.equal(created.status, 201)
  await created.body?.cancel()
  t.equal(await status(`${running.gatewayUrl}/`, 'carol'), 200, 'after the PUT, carol\'s first request waits for her backend and gets through')
  const list = await fetch(`${running.adminUrl}/api/users`, { headers: { authorization: `Bearer ${adminToken}` } })
  t.same(((await list.json()) as { items: Array<{ user: string }> }).items.map((w) => w.user), ['alice', 'bob', 'carol'])
  const deleted = await fetch(putUrl, { method: 'DELETE', headers: { authorization: `Bearer ${adminToken}` } })
  t.equal(deleted.status, 204)
  t.equal(await status(`${running.gatewayUrl}/`, 'carol'), 404)
})

void t.test('the demo uses PODGATE_ADMIN_TOKEN when set, and culls idle backends with PODGATE_IDLE_TIMEOUT', async (t) => {
  const adminToken = 'an-admin-token-chosen-by-the-operator'
  const { running, output } = await demo(t, { PODGATE_ADMIN_TOKEN: adminToken, PODGATE_IDLE_TIMEOUT: '600ms' })
  t.equal(running.adminToken, adminToken)
  t.match(output, 'admin token from PODGATE_ADMIN_TOKEN')
  t.match(output, 'Backends idle for 600ms are stopped (PODGATE_IDLE_TIMEOUT)')
  const deadline = Date.now() + 10_000
  while ((await running.workloads.get('alice'))?.suspended !== true && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 25))
  t.match(await running.workloads.get('alice'), { suspended: true, status: { phase: 'Suspended' } }, 'alice was suspended after 600 ms without requests')
  t.equal(await status(`${running.gatewayUrl}/`, 'alice'), 200, 'her next request wakes her backend')
  t.equal((await running.workloads.get('alice'))?.suspended, false)
})

void t.test('the demo with spawn on demand starts a backend for any valid token', async (t) => {
  const { running, output } = await demo(t, { PODGATE_SPAWN_ON_DEMAND: 'true' })
  t.match(output, 'Spawn on demand is on')
  t.equal(await status(`${running.gatewayUrl}/`, 'zoe'), 200)
  t.match(await running.workloads.get('zoe'), { user: 'zoe', status: { phase: 'Ready' } })
})
