// The admin API on a real admin server, over LocalWorkloads with real backend processes,
// in front of a real gateway (spawn on demand off).
import t, { type Test } from 'tap'
import type { ChildProcess } from 'node:child_process'
import { LocalEndpointSource } from '../../src/local/endpoint-source.ts'
import { createLogger } from '../../src/log.ts'
import { LocalDriver } from '../../src/local/driver.ts'
import { registerAdminApi, MAX_ADMIN_BODY_BYTES } from '../../src/workloads/admin-api.ts'
import { LocalWorkloads } from '../../src/local/workloads.ts'
import { followRevocations, RevocationMarks } from '../../src/auth/revocations.ts'
import { mintToken } from '../../src/auth/mint.ts'
import { systemClock } from '../../src/clock.ts'
import { createSpawner } from '../../src/workloads/spawner.ts'
import type { Workload } from '../../src/workloads/workloads.ts'
import { startTestGateway, type TestGateway } from '../support/gateway.ts'
import { isAlive, recordingSpawn } from '../support/processes.ts'

const ADMIN_TOKEN = 'admin-token-for-tests-0123456789'

interface Admin {
  gw: TestGateway
  workloads: LocalWorkloads
  driver: LocalDriver
  children: ChildProcess[]
  api (method: string, path: string, init?: { body?: string, headers?: Record<string, string>, token?: string | null }): Promise<{ status: number, headers: Headers, body: unknown }>
}

/** `adminToken` null: PODGATE_ADMIN_TOKEN unset. */
async function startAdmin (t: Test, adminToken: string | null = ADMIN_TOKEN): Promise<Admin> {
  const logger = createLogger('silent')
  const source = new LocalEndpointSource()
  const children: ChildProcess[] = []
  const driver = new LocalDriver({
    source,
    logger,
    spawn: recordingSpawn(children),
  })
  t.teardown(() => driver.close())
  const workloads = new LocalWorkloads({ driver, source, logger, profiles: ['default', 'large'] })
  t.teardown(() => { workloads.close() })
  const spawner = createSpawner({ workloads, source, spawnOnDemand: false, startTimeoutMs: 10_000, logger })
  const revocations = new RevocationMarks()
  followRevocations(workloads, revocations)
  const gw = await startTestGateway(t, {}, {
    source,
    revocations,
    onMissing: spawner.onMissing,
    adminRoutes: (app) => { registerAdminApi(app, { workloads, adminToken: adminToken ?? undefined, logger }) },
  })
  const api: Admin['api'] = async (method, path, init = {}) => {
    const headers: Record<string, string> = { ...init.headers }
    if (init.token !== null) headers.authorization ??= `Bearer ${init.token ?? ADMIN_TOKEN}`
    const res = await fetch(`${gw.adminUrl}${path}`, { method, headers, body: init.body, signal: AbortSignal.timeout(10_000) })
    const text = await res.text()
    return { status: res.status, headers: res.headers, body: text === '' ? undefined : JSON.parse(text) as unknown }
  }
  return { gw, workloads, driver, children, api }
}

async function routed (gw: TestGateway, user: string): Promise<{ status: number, user?: string }> {
  const res = await fetch(`${gw.url}/`, { headers: { authorization: `Bearer ${await gw.token(user)}` }, signal: AbortSignal.timeout(15_000) })
  const body = await res.json() as { user?: string }
  return { status: res.status, user: body.user }
}


void t.test('without the admin token: 401 with WWW-Authenticate, and nothing is applied', async (t) => {
  const a = await startAdmin(t)
  const cases: Array<[string, Record<string, string>, string]> = [
    ['no Authorization header', {}, 'Bearer realm="podgate-admin"'],
    ['a wrong token', { authorization: 'Bearer not-the-admin-token-at-all' }, 'Bearer realm="podgate-admin", error="invalid_token"'],
    ['the token with one character more', { authorization: `Bearer ${ADMIN_TOKEN}x` }, 'Bearer realm="podgate-admin", error="invalid_token"'],
    ['a prefix of the token', { authorization: `Bearer ${ADMIN_TOKEN.slice(0, -1)}` }, 'Bearer realm="podgate-admin", error="invalid_token"'],
    ['Basic instead of Bearer', { authorization: `Basic ${Buffer.from(`admin:${ADMIN_TOKEN}`).toString('base64')}` }, 'Bearer realm="podgate-admin", error="invalid_token"'],
    ['the bare token', { authorization: ADMIN_TOKEN }, 'Bearer realm="podgate-admin", error="invalid_token"'],
  ]
  for (const [name, headers, challenge] of cases) {
    for (const [method, path] of [['PUT', '/api/users/alice'], ['GET', '/api/users/alice'], ['DELETE', '/api/users/alice'], ['GET', '/api/users']] as const) {
      const res = await a.api(method, path, { headers, token: null })
      t.equal(res.status, 401, `${name}: ${method} ${path}`)
      t.equal(res.headers.get('www-authenticate'), challenge)
      t.match(res.body, { error: 'PODGATE_AUTH' })
    }
  }
  t.same(await a.workloads.list(), [], 'no workload was created')
  t.equal(a.children.length, 0)
  const ok = await a.api('GET', '/api/users', { headers: { authorization: `bearer  ${ADMIN_TOKEN}` }, token: null })
  t.equal(ok.status, 200, 'the scheme is case-insensitive')
})

void t.test('without PODGATE_ADMIN_TOKEN the API is disabled and says how to enable it', async (t) => {
  const a = await startAdmin(t, null)
  for (const [method, path] of [['PUT', '/api/users/alice'], ['GET', '/api/users']] as const) {
    const res = await a.api(method, path, { token: 'anything-at-all-really' })
    t.equal(res.status, 404)
    t.match(res.body, { error: 'PODGATE_ADMIN_API_DISABLED', message: /set PODGATE_ADMIN_TOKEN/ })
  }
  t.equal(a.children.length, 0)
  const health = await fetch(`${a.gw.adminUrl}/healthz`)
  t.equal(health.status, 200, 'the rest of the admin port is unaffected')
  await health.body?.cancel()
})

void t.test('each bad field is a 400 that names it, and nothing is applied', async (t) => {
  const a = await startAdmin(t)
  const json = { 'content-type': 'application/json' }
  const cases: Array<[string, string, string | undefined, Record<string, string>, RegExp]> = [
    ['uppercase id', '/api/users/Alice', undefined, {}, /^id: expected a DNS-1123 label/],
    ['underscore', '/api/users/a_b', undefined, {}, /^id: expected a DNS-1123 label/],
    ['leading dash', '/api/users/-a', undefined, {}, /^id: expected a DNS-1123 label/],
    ['encoded slash', '/api/users/a%2Fb', undefined, {}, /^id: expected a DNS-1123 label/],
    ['nested path', '/api/users/a/b', undefined, {}, /^id: expected a DNS-1123 label/],
    ['empty id', '/api/users/', undefined, {}, /^id: expected a DNS-1123 label/],
    ['59 characters', `/api/users/${'a'.repeat(59)}`, undefined, {}, /^id: at most 58 characters \(user-<id> names a Kubernetes Service\), got 59$/],
    ['300 characters', `/api/users/${'a'.repeat(300)}`, undefined, {}, /^id: expected a DNS-1123 label/],
    ['not JSON', '/api/users/alice', 'profile=large', {}, /^body: not valid JSON/],
    ['truncated JSON', '/api/users/alice', '{"profile":', json, /^body: not valid JSON/],
    ['an array', '/api/users/alice', '["large"]', json, /^body: expected a JSON object .*got an array$/],
    ['null', '/api/users/alice', 'null', json, /^body: expected a JSON object .*got null$/],
    ['a string', '/api/users/alice', '"large"', json, /^body: expected a JSON object .*got string$/],
    ['profile is a number', '/api/users/alice', '{"profile":5}', json, /^profile: expected a string, got number$/],
    ['profile is null', '/api/users/alice', '{"profile":null}', json, /^profile: expected a string, got null$/],
    ['profile is an array', '/api/users/alice', '{"profile":["large"]}', json, /^profile: expected a string, got an array$/],
    ['profile with a space', '/api/users/alice', '{"profile":"la rge"}', json, /^profile: expected a name of 1–63/],
    ['unknown profile', '/api/users/alice', '{"profile":"huge"}', json, /^profile: unknown profile "huge"; known: default, large$/],
    ['unknown field', '/api/users/alice', '{"profile":"large","suspended":true}', json, /^suspended: unknown field \(allowed: profile\)$/],
    ['a typo', '/api/users/alice', '{"profil":"large"}', json, /^profil: unknown field/],
    ['too large', '/api/users/alice', JSON.stringify({ profile: 'x'.repeat(MAX_ADMIN_BODY_BYTES) }), json, new RegExp(`^body: larger than ${MAX_ADMIN_BODY_BYTES} bytes$`)],
  ]
  for (const [name, path, body, headers, message] of cases) {
    const res = await a.api('PUT', path, { body, headers })
    t.equal(res.status, 400, name)
    t.match(res.body, { error: 'PODGATE_BAD_REQUEST', message }, name)
  }
  for (const [method, path] of [['GET', '/api/users/Bob'], ['DELETE', '/api/users/b_b']] as const) {
    const res = await a.api(method, path)
    t.equal(res.status, 400, `${method} ${path}`)
    t.match(res.body, { message: /^id: / })
  }
  t.same(await a.workloads.list(), [], 'no workload was created by any of them')
  t.equal(a.children.length, 0, 'no backend was started')
})

void t.test('PUT creates (201) then is idempotent (200); GET, list; the user is routed', async (t) => {
  const a = await startAdmin(t)
  const first = await a.api('PUT', '/api/users/alice')
  t.equal(first.status, 201)
  t.equal(first.headers.get('location'), '/api/users/alice')
  t.match(first.body, { user: 'alice', profile: 'default', suspended: false, status: { phase: /^(Pending|Starting)$/ } })
  const second = await a.api('PUT', '/api/users/alice', { body: '{}', headers: { 'content-type': 'application/json' } })
  t.equal(second.status, 200)
  t.match(second.body, { user: 'alice', profile: 'default' })

  const reached = await routed(a.gw, 'alice')
  t.same(reached, { status: 200, user: 'alice' }, 'a request with alice\'s token reaches her backend')
  const status = await a.api('GET', '/api/users/alice')
  t.equal(status.status, 200)
  t.match(status.body, { user: 'alice', status: { phase: 'Ready', readyReplicas: 1 } })

  const large = await a.api('PUT', '/api/users/bob', { body: '{"profile":"large"}' })
  t.equal(large.status, 201)
  t.match(large.body, { user: 'bob', profile: 'large' })
  const list = await a.api('GET', '/api/users')
  t.equal(list.status, 200)
  t.same((list.body as { items: Workload[] }).items.map((w) => [w.user, w.profile]), [['alice', 'default'], ['bob', 'large']])
  const missing = await a.api('GET', '/api/users/nobody')
  t.equal(missing.status, 404)
  t.match(missing.body, { error: 'PODGATE_NO_WORKLOAD', message: 'no workload for user nobody' })
  t.equal(a.children.length, 2, 'one backend per user, none for the repeated PUT')
})

void t.test('twenty concurrent PUTs of one user: one 201, nineteen 200, one backend', async (t) => {
  const a = await startAdmin(t)
  const results = await Promise.all(Array.from({ length: 20 }, () => a.api('PUT', '/api/users/dave')))
  const statuses = results.map((r) => r.status).sort()
  t.same(statuses, [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 201])
  t.same(await routed(a.gw, 'dave'), { status: 200, user: 'dave' })
  t.equal(a.children.length, 1, 'exactly one backend process was spawned')
  t.same(a.driver.users(), ['dave'])
})

void t.test('DELETE stops the backend; requests are 404 with spawn off; DELETE again is 204', async (t) => {
  const a = await startAdmin(t)
  t.equal((await a.api('PUT', '/api/users/carol')).status, 201)
  t.same(await routed(a.gw, 'carol'), { status: 200, user: 'carol' })
  const pid = a.driver.status('carol')?.pid
  t.ok(isAlive(pid))

  const deleted = await a.api('DELETE', '/api/users/carol')
  t.equal(deleted.status, 204)
  t.equal(deleted.body, undefined, 'no body')
  t.equal(isAlive(pid), false, 'the backend process is gone once DELETE answers')
  t.equal((await a.api('GET', '/api/users/carol')).status, 404)
  const after = await fetch(`${a.gw.url}/`, { headers: { authorization: `Bearer ${await a.gw.token('carol')}` } })
  t.equal(after.status, 404)
  t.match(await after.json(), { error: 'PODGATE_NO_WORKLOAD' })
  t.equal((await a.api('DELETE', '/api/users/carol')).status, 204, 'deleting a user with no workload is a 204 too (idempotent)')
  t.equal((await a.api('DELETE', '/api/users/never-existed')).status, 204)
})

void t.test('time from PUT to the first routed request (local mode)', async (t) => {
  const a = await startAdmin(t)
  const samples: number[] = []
  for (let i = 0; i < 5; i++) {
    const user = `timed-${i}`
    const token = await a.gw.token(user)
    const started = performance.now()
    t.equal((await a.api('PUT', `/api/users/${user}`)).status, 201)
    const res = await fetch(`${a.gw.url}/`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(15_000) })
    t.equal(res.status, 200)
    t.equal(((await res.json()) as { user: string }).user, user)
    samples.push(performance.now() - started)
  }
  samples.sort((x, y) => x - y)
  t.comment(`PUT → first routed request, local mode, 5 users: min ${samples[0]?.toFixed(0)} ms, median ${samples[2]?.toFixed(0)} ms, max ${samples[4]?.toFixed(0)} ms`)
  t.ok((samples[4] ?? Infinity) < 10_000, 'well within the backend start timeout')
})

void t.test('POST /api/users/<id>/revoke refuses the user\'s older tokens at once; a new token works', async (t) => {
  const a = await startAdmin(t)
  t.equal((await a.api('PUT', '/api/users/alice')).status, 201)
  const clock = { ...systemClock, now: () => Date.now() - 60_000 }
  const old = await mintToken({ secret: new TextEncoder().encode(a.gw.secret), user: 'alice', ttlSeconds: 600, clock })
  const ask = async (token: string): Promise<number> => (await fetch(a.gw.url, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(15_000) })).status
  t.equal(await ask(old), 200, 'routed before')
  const revoked = await a.api('POST', '/api/users/alice/revoke')
  t.equal(revoked.status, 200)
  t.match(revoked.body, { user: 'alice', tokensNotBefore: /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/ })
  t.equal(await ask(old), 401, 'the cached token is refused')
  t.equal(await ask(await a.gw.token('alice')), 200, 'a token issued now works')
  t.match(await a.api('POST', '/api/users/nobody/revoke'), { status: 404, body: { error: 'PODGATE_NO_WORKLOAD' } })
  t.match(await a.api('POST', '/api/users/alice'), { status: 404, body: { message: /expected POST …\/users\/<id>\/revoke/ } })
  t.match(await a.api('PUT', '/api/namespaces/team-a/users/alice'), { status: 400, body: { message: /local workloads have no namespaces/ } })
})
